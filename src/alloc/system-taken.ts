import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type IdRange, normalizeRanges } from '../idmap/ranges.js';
import { findProgram } from '../system/exec.js';
import { parseGroupLine, parsePasswdLine } from '../system/users.js';

/**
 * IDs that are taken although no userns allocation holds them: owned by a passwd or group entry
 * (the files and, through `getent`, every NSS source: LDAP, SSSD, systemd-userdb), or registered
 * by systemd-nsresourced (`u<start>.userns` / `g<start>.userns` in its registry).
 *
 * Looked up once and cached: the files and the registry directory are re-read when their
 * modification time changes (a stat per operation), `getent` enumeration at most every
 * `getentTtlMs` (it may be slow, and is a no-op for most sources but the files).
 */

export interface SystemTakenOptions {
  passwdPath?: string;
  groupPath?: string;
  /** systemd-nsresourced's registry (default /run/systemd/nsresource/registry). */
  nsresourceDir?: string;
  /** Enumerate through getent too (default true). */
  getent?: boolean;
  getentTtlMs?: number;
}

/** IDs taken by the system, per kind, as sorted ranges. */
export interface TakenIds {
  uid: IdRange[];
  gid: IdRange[];
  /** Where each came from, for messages: passwd, group, nsresourced. */
  sources: string[];
}

/** Where systemd-nsresourced records the ranges it handed out (they count as taken). */
export const NSRESOURCE_REGISTRY = '/run/systemd/nsresource/registry';

function mtimeKey(path: string): string {
  try {
    const st = statSync(path);
    return `${st.ino}:${st.mtimeMs}:${st.size}`;
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

/** Every uid (passwd) and gid (group entries and primary groups of passwd entries) in use. */
export function entryIds(
  passwdLines: Iterable<string>,
  groupLines: Iterable<string>,
): { uid: number[]; gid: number[] } {
  const uid: number[] = [];
  const gid: number[] = [];
  for (const line of passwdLines) {
    const u = parsePasswdLine(line);
    if (u === undefined) continue;
    uid.push(u.uid);
    gid.push(u.gid);
  }
  for (const line of groupLines) {
    const g = parseGroupLine(line);
    if (g !== undefined) gid.push(g.gid);
  }
  return { uid, gid };
}

/**
 * The ranges registered by systemd-nsresourced: files `u<start>.userns` (uid) and
 * `g<start>.userns` (gid) holding JSON with `size`. When the size cannot be read: 1 in the
 * dynamic range 61184–65519 (its size-1 allocations), else 65536.
 */
export function readNsresourceRegistry(dir = NSRESOURCE_REGISTRY): { uid: IdRange[]; gid: IdRange[] } {
  const out = { uid: [] as IdRange[], gid: [] as IdRange[] };
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
    (m[1] === 'u' ? out.uid : out.gid).push({ start, count: size });
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
  #getent: { uid: number[]; gid: number[] } = { uid: [], gid: [] };
  #value: TakenIds = { uid: [], gid: [], sources: [] };
  /** Bumped whenever the set changes, so indexes built on it know to rebuild. */
  version = 0;

  constructor(options: SystemTakenOptions = {}) {
    this.#options = options;
  }

  /** The current set (cheap when nothing changed: three stats). */
  get(): TakenIds {
    const o = this.#options;
    const passwd = o.passwdPath ?? '/etc/passwd';
    const group = o.groupPath ?? '/etc/group';
    const nsr = o.nsresourceDir ?? NSRESOURCE_REGISTRY;
    const key = `${mtimeKey(passwd)}|${mtimeKey(group)}|${mtimeKey(nsr)}`;
    const now = Date.now();
    const getentDue = (o.getent ?? true) && now - this.#getentAt > (o.getentTtlMs ?? 30_000);
    if (key === this.#key && !getentDue) return this.#value;
    if (getentDue) {
      this.#getentAt = now;
      this.#getent = entryIds(getentLines('passwd'), getentLines('group'));
    }
    const files = entryIds(readText(passwd).split('\n'), readText(group).split('\n'));
    const registry = readNsresourceRegistry(nsr);
    const single = (ids: number[]): IdRange[] => ids.map((id) => ({ start: id, count: 1 }));
    const value: TakenIds = {
      uid: normalizeRanges([...single(files.uid), ...single(this.#getent.uid), ...registry.uid]),
      gid: normalizeRanges([...single(files.gid), ...single(this.#getent.gid), ...registry.gid]),
      sources: [passwd, group, nsr],
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
}
