import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { formatRange } from '../idmap/extent.js';
import { subidOwnerMatches } from '../idmap/formats/subid.js';
import { type IdRange, intersectRanges, normalizeRanges } from '../idmap/ranges.js';
import { findProgram } from '../system/exec.js';
import { getSubordinateRanges, listAllSubordinateRanges, parseNsswitchSubid } from '../system/subordinate.js';
import { lookupUser, parseGroupLine, parsePasswdLine } from '../system/users.js';

/**
 * IDs that are taken although no userns allocation holds them, each with why:
 *
 * - owned by a passwd or group entry (the files and, through `getent`, every NSS source: LDAP,
 *   SSSD, systemd-userdb);
 * - registered by systemd-nsresourced (`u<start>.userns` / `g<start>.userns` in its registry);
 * - **every subordinate range of every user** but the pool's own owner (root: the user
 *   `containers`, whose ranges are root's pool; others: themselves): /etc/subuid and
 *   /etc/subgid, or, when nsswitch.conf names another `subid:` module (sss, ldap…), `getsubids`
 *   for every user NSS knows. A range handed to a container must never be one a user can map
 *   through newuidmap: that user could then enter the container's files and processes.
 *
 * Looked up once and cached: files are re-read when their identity or modification time changes
 * (a few stats per operation), `getent` and `getsubids` enumeration at most every `getentTtlMs`.
 */

export interface SystemTakenOptions {
  passwdPath?: string;
  groupPath?: string;
  /** systemd-nsresourced's registry (default /run/systemd/nsresource/registry). */
  nsresourceDir?: string;
  /**
   * Enumerate through getent too (default: true unless passwdPath or groupPath is given, so a
   * test's own files are the only source).
   */
  getent?: boolean;
  getentTtlMs?: number;
  /** Exclude users' subordinate ranges (default true). */
  subordinate?: boolean;
  subuidPath?: string;
  subgidPath?: string;
  nsswitchPath?: string;
  getsubidsPath?: string;
  /**
   * Whose subordinate ranges stay usable (they are the pool): default `containers` for root,
   * the caller otherwise.
   */
  poolOwner?: { name: string; uid: number };
}

/** One taken range and why, for `alloc list`. */
export interface Exclusion {
  start: number;
  count: number;
  /** e.g. "subordinate uids of bob (/etc/subuid line 3)", "passwd user www-data". */
  reason: string;
}

/** IDs taken by the system, per kind, as sorted ranges. */
export interface TakenIds {
  uid: IdRange[];
  gid: IdRange[];
  /** The same, each range with its reason (not merged), sorted by start. */
  why: { uid: Exclusion[]; gid: Exclusion[] };
  /** The sources consulted, for messages. */
  sources: string[];
}

/** Where systemd-nsresourced records the ranges it handed out (they count as taken). */
export const NSRESOURCE_REGISTRY = '/run/systemd/nsresource/registry';

function mtimeKey(path: string): string {
  try {
    // throwIfNoEntry: a missing file (no nsresourced registry, no /etc/subgid) is the common
    // case, and building an exception for it on every allocation costs more than the stat.
    const st = statSync(path, { throwIfNoEntry: false });
    return st === undefined ? '-' : `${st.ino}:${st.mtimeMs}:${st.size}`;
  } catch {
    return '-';
  }
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function getentLines(database: 'passwd' | 'group'): string[] {
  const getent = findProgram('getent');
  if (getent === undefined) return [];
  const result = spawnSync(getent, [database], { encoding: 'utf8', timeout: 10_000, maxBuffer: 256 << 20 });
  return result.status === 0 ? result.stdout.split('\n') : [];
}

interface NamedIds {
  uid: { id: number; reason: string }[];
  gid: { id: number; reason: string }[];
}

/** Every uid (passwd) and gid (group entries and primary groups of passwd entries) in use. */
export function entryIds(
  passwdLines: Iterable<string>,
  groupLines: Iterable<string>,
): { uid: number[]; gid: number[] } {
  const named = namedEntryIds(passwdLines, groupLines);
  return { uid: named.uid.map((x) => x.id), gid: named.gid.map((x) => x.id) };
}

function namedEntryIds(passwdLines: Iterable<string>, groupLines: Iterable<string>, where = ''): NamedIds {
  const out: NamedIds = { uid: [], gid: [] };
  for (const line of passwdLines) {
    const u = parsePasswdLine(line);
    if (u === undefined) continue;
    out.uid.push({ id: u.uid, reason: `passwd user ${u.name}${where}` });
    out.gid.push({ id: u.gid, reason: `primary group of passwd user ${u.name}${where}` });
  }
  for (const line of groupLines) {
    const g = parseGroupLine(line);
    if (g !== undefined) out.gid.push({ id: g.gid, reason: `group ${g.name}${where}` });
  }
  return out;
}

/**
 * The ranges registered by systemd-nsresourced: files `u<start>.userns` (uid) and
 * `g<start>.userns` (gid) holding JSON with `size`. When the size cannot be read: 1 in the
 * dynamic range 61184–65519 (its size-1 allocations), else 65536.
 */
export function readNsresourceRegistry(dir = NSRESOURCE_REGISTRY): { uid: IdRange[]; gid: IdRange[] } {
  const named = namedNsresource(dir);
  const strip = (xs: Exclusion[]) => xs.map(({ start, count }) => ({ start, count }));
  return { uid: strip(named.uid), gid: strip(named.gid) };
}

function namedNsresource(dir: string): { uid: Exclusion[]; gid: Exclusion[] } {
  const out = { uid: [] as Exclusion[], gid: [] as Exclusion[] };
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of names) {
    const m = /^([ug])([0-9]{1,10})\.userns$/.exec(name);
    if (!m) continue;
    const start = Number(m[2]);
    let size = start >= 61184 && start <= 65519 ? 1 : 65536;
    try {
      const json = JSON.parse(readFileSync(join(dir, name), 'utf8')) as { size?: unknown };
      if (typeof json.size === 'number' && Number.isInteger(json.size) && json.size > 0) size = json.size;
    } catch {
      /* unreadable: keep the default size */
    }
    (m[1] === 'u' ? out.uid : out.gid).push({
      start,
      count: size,
      reason: `systemd-nsresourced ${join(dir, name)}`,
    });
  }
  return out;
}

/** Every subordinate range of every user but `except`, with its owner and line. */
async function subordinateExclusions(
  options: SystemTakenOptions,
  except: { name: string; uid: number },
  users: () => { name: string; uid: number }[],
): Promise<{ uid: Exclusion[]; gid: Exclusion[] }> {
  const out = { uid: [] as Exclusion[], gid: [] as Exclusion[] };
  const subordinate = {
    ...(options.subuidPath === undefined ? {} : { subuidPath: options.subuidPath }),
    ...(options.subgidPath === undefined ? {} : { subgidPath: options.subgidPath }),
    ...(options.nsswitchPath === undefined ? {} : { nsswitchPath: options.nsswitchPath }),
    ...(options.getsubidsPath === undefined ? {} : { getsubidsPath: options.getsubidsPath }),
  };
  let module = 'files';
  // Substituted files (tests, another root) are the only source, unless nsswitch.conf is too.
  const substituted = options.subuidPath !== undefined || options.subgidPath !== undefined;
  if (!substituted || options.nsswitchPath !== undefined) {
    try {
      module =
        parseNsswitchSubid(readFileSync(options.nsswitchPath ?? '/etc/nsswitch.conf', 'utf8')) ?? 'files';
    } catch {
      /* no nsswitch.conf: files */
    }
  }
  for (const kind of ['uid', 'gid'] as const) {
    if (module === 'files') {
      const file = await listAllSubordinateRanges(kind, subordinate);
      for (const e of file.entries) {
        if (subidOwnerMatches(e.owner, except)) continue;
        out[kind].push({
          start: e.start,
          count: e.count,
          reason: `subordinate ${kind}s of ${e.owner} (${file.file} line ${e.line})`,
        });
      }
      continue;
    }
    // Another NSS module: only libsubid can read it, one user at a time.
    const everyone = users().filter((u) => !(u.name === except.name || u.uid === except.uid));
    for (let i = 0; i < everyone.length; i += 8) {
      const batch = await Promise.all(
        everyone
          .slice(i, i + 8)
          .map(async (u) => ({ u, r: await getSubordinateRanges(u, kind, subordinate) })),
      );
      for (const { u, r } of batch)
        for (const range of r.ranges)
          out[kind].push({
            ...range,
            reason: `subordinate ${kind}s of ${u.name} (libsubid module ${module})`,
          });
    }
  }
  return out;
}

/**
 * IDs the allocator must not hand out although no allocation holds them: IDs of passwd and group
 * entries and ranges registered by systemd-nsresourced; re-read when those files change.
 */
export class SystemTaken {
  readonly #options: SystemTakenOptions;
  #key = '';
  #getentAt = -Infinity;
  #getent: NamedIds = { uid: [], gid: [] };
  #getentUsers: { name: string; uid: number }[] = [];
  #value: TakenIds = { uid: [], gid: [], why: { uid: [], gid: [] }, sources: [] };
  #owner: { name: string; uid: number } | undefined;
  /** Bumped whenever the set changes, so indexes built on it know to rebuild. */
  version = 0;

  constructor(options: SystemTakenOptions = {}) {
    this.#options = options;
  }

  get #getentOn(): boolean {
    const o = this.#options;
    return o.getent ?? (o.passwdPath === undefined && o.groupPath === undefined);
  }

  /** Looks everything up again if a source changed (call before get(); cheap when nothing did). */
  async refresh(): Promise<TakenIds> {
    const o = this.#options;
    const passwd = o.passwdPath ?? '/etc/passwd';
    const group = o.groupPath ?? '/etc/group';
    const nsr = o.nsresourceDir ?? NSRESOURCE_REGISTRY;
    const subordinate = o.subordinate ?? true;
    const subFiles = subordinate
      ? [o.subuidPath ?? '/etc/subuid', o.subgidPath ?? '/etc/subgid', o.nsswitchPath ?? '/etc/nsswitch.conf']
      : [];
    const key = [passwd, group, nsr, ...subFiles].map(mtimeKey).join('|');
    const now = Date.now();
    const getentDue = this.#getentOn && now - this.#getentAt > (o.getentTtlMs ?? 30_000);
    if (key === this.#key && !getentDue) return this.#value;
    if (getentDue) {
      this.#getentAt = now;
      const passwdLines = getentLines('passwd');
      this.#getent = namedEntryIds(passwdLines, getentLines('group'), ' (getent)');
      this.#getentUsers = passwdLines.flatMap((l) => {
        const u = parsePasswdLine(l);
        return u === undefined ? [] : [{ name: u.name, uid: u.uid }];
      });
    }
    const passwdText = readText(passwd);
    const files = namedEntryIds(passwdText.split('\n'), readText(group).split('\n'));
    const registry = namedNsresource(nsr);
    this.#owner ??= o.poolOwner ?? (await defaultPoolOwner(o.passwdPath));
    const users = () => {
      const seen = new Map<string, { name: string; uid: number }>();
      for (const l of passwdText.split('\n')) {
        const u = parsePasswdLine(l);
        if (u !== undefined) seen.set(u.name, { name: u.name, uid: u.uid });
      }
      for (const u of this.#getentUsers) seen.set(u.name, u);
      return [...seen.values()];
    };
    const subs = subordinate
      ? await subordinateExclusions(o, this.#owner, users)
      : { uid: [] as Exclusion[], gid: [] as Exclusion[] };
    const single = (xs: { id: number; reason: string }[]): Exclusion[] =>
      xs.map((x) => ({ start: x.id, count: 1, reason: x.reason }));
    const sorted = (xs: Exclusion[]) =>
      xs.filter((x) => x.count > 0).sort((a, b) => a.start - b.start || a.count - b.count);
    const why = {
      uid: sorted([...single(files.uid), ...single(this.#getent.uid), ...registry.uid, ...subs.uid]),
      gid: sorted([...single(files.gid), ...single(this.#getent.gid), ...registry.gid, ...subs.gid]),
    };
    const strip = (xs: Exclusion[]) => normalizeRanges(xs.map(({ start, count }) => ({ start, count })));
    const value: TakenIds = {
      uid: strip(why.uid),
      gid: strip(why.gid),
      why,
      sources: [passwd, group, nsr, ...subFiles.slice(0, 2)],
    };
    this.#key = key;
    if (
      JSON.stringify(value.uid) !== JSON.stringify(this.#value.uid) ||
      JSON.stringify(value.gid) !== JSON.stringify(this.#value.gid)
    ) {
      this.version++;
    }
    this.#value = value;
    return value;
  }

  /** The set as of the last refresh(). */
  get(): TakenIds {
    return this.#value;
  }
}

async function defaultPoolOwner(passwdPath: string | undefined): Promise<{ name: string; uid: number }> {
  const euid = process.geteuid?.() ?? 0;
  const lookup = passwdPath === undefined ? {} : { passwdPath, getentPath: '/nonexistent' };
  if (euid === 0) {
    const containers = await lookupUser('containers', lookup);
    return { name: 'containers', uid: containers?.uid ?? -1 };
  }
  const me = await lookupUser(euid, lookup);
  return { name: me?.name ?? String(euid), uid: euid };
}

/** The exclusions of `why` that meet `pool`, clipped to it (for `alloc list`). */
export function exclusionsIn(why: readonly Exclusion[], pool: readonly IdRange[]): Exclusion[] {
  const out: Exclusion[] = [];
  for (const x of why) {
    for (const r of intersectRanges([{ start: x.start, count: x.count }], pool))
      out.push({ ...r, reason: x.reason });
  }
  return out;
}

/** "100000-165535 subordinate uids of bob (/etc/subuid line 2)" */
export function formatExclusion(x: Exclusion): string {
  return `${formatRange(x.start, x.count)} ${x.reason}`;
}
