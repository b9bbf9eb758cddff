/**
 * Real trees for the shift tests (needs root): every kind of entry, owners at range edges and
 * outside the range, ACLs, file capabilities, set-ID bits, hard links, links pointing inside and
 * outside the tree. `snapshot()` reads everything a shift may change, independently of the walk
 * under test: lstat from Node, raw xattrs from getfattr, decoded with the TypeScript codecs.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  lchownSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join, relative } from 'node:path';
import type { IdMap } from '../../src/idmap/idmap.js';
import { type AclEntry, decodeAcl } from './oracle/acl-xattr.js';
import { decodeCapability, type FileCapability } from './oracle/capability-xattr.js';

export interface EntryState {
  type: string;
  uid: number;
  gid: number;
  mode: number;
  ino: number;
  accessAcl?: AclEntry[];
  defaultAcl?: AclEntry[];
  capability?: FileCapability;
}

export type Snapshot = Map<string, EntryState>;

function typeOf(st: import('node:fs').Stats): string {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  return 'socket';
}

/** Raw xattrs of interest of every entry under dir (getfattr never follows links with -P). */
function readXattrs(dir: string): Map<string, Map<string, Buffer>> {
  const out = new Map<string, Map<string, Buffer>>();
  let text = '';
  try {
    text = execFileSync(
      'getfattr',
      [
        '--absolute-names',
        '-P',
        '-R',
        '-d',
        '-e',
        'hex',
        '-m',
        '^(system\\.posix_acl_|security\\.capability)',
        dir,
      ],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 1 << 28 },
    );
  } catch (error) {
    // getfattr exits 1 when some entry has no xattr support (e.g. a symlink); its output stands.
    text = (error as { stdout?: string }).stdout ?? '';
  }
  let current: Map<string, Buffer> | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('# file: ')) {
      current = new Map();
      out.set(relative(dir, line.slice(8)) || '.', current);
    } else if (current && /^[a-z.\w]+=0x/.test(line)) {
      const eq = line.indexOf('=');
      current.set(line.slice(0, eq), Buffer.from(line.slice(eq + 3), 'hex'));
    }
  }
  return out;
}

export function snapshot(dir: string): Snapshot {
  const xattrs = readXattrs(dir);
  const out: Snapshot = new Map();
  const visit = (path: string) => {
    const st = lstatSync(path);
    const rel = relative(dir, path) || '.';
    const x = xattrs.get(rel);
    const state: EntryState = { type: typeOf(st), uid: st.uid, gid: st.gid, mode: st.mode, ino: st.ino };
    const access = x?.get('system.posix_acl_access');
    const dflt = x?.get('system.posix_acl_default');
    const cap = x?.get('security.capability');
    if (access) state.accessAcl = decodeAcl(access);
    if (dflt) state.defaultAcl = decodeAcl(dflt);
    if (cap) state.capability = decodeCapability(cap);
    out.set(rel, state);
    if (st.isDirectory()) for (const name of readdirSync(path).sort()) visit(join(path, name));
  };
  visit(dir);
  return out;
}

function sh(command: string, args: string[]): void {
  execFileSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export interface TreeOptions {
  /** The base of the range the tree is owned in (inside 0 = base). */
  base: number;
  /** The size of that range; IDs base+size-1 and an ID past the end are used. */
  size: number;
  /** Where links pointing outside the tree point (created here, owned in the range). */
  outside: string;
  /** Add an entry owned by an ID outside the range. */
  withUnmapped?: boolean;
}

/** Builds the tree; returns the paths of special interest. */
export function buildTree(root: string, options: TreeOptions): { unmappedPath?: string } {
  const { base, size } = options;
  const own = (path: string, uid: number, gid: number) => lchownSync(path, base + uid, base + gid);
  mkdirSync(root, { recursive: true });
  mkdirSync(options.outside, { recursive: true });
  writeFileSync(join(options.outside, 'target'), 'outside\n');
  own(options.outside, 7, 7);
  own(join(options.outside, 'target'), 7, 7);

  mkdirSync(join(root, 'etc'));
  mkdirSync(join(root, 'usr/bin'), { recursive: true });
  mkdirSync(join(root, 'home/user'), { recursive: true });
  mkdirSync(join(root, 'shared'));
  writeFileSync(
    join(root, 'etc/passwd'),
    'root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n',
  );
  writeFileSync(join(root, 'etc/shadow'), 'root:*:1::::::\n');
  chmodSync(join(root, 'etc/shadow'), 0o640);
  writeFileSync(join(root, 'usr/bin/su'), '#!/bin/sh\n');
  writeFileSync(join(root, 'usr/bin/wall'), '#!/bin/sh\n');
  writeFileSync(join(root, 'usr/bin/ping'), '#!/bin/sh\n');
  writeFileSync(join(root, 'home/user/notes'), 'hello\n');
  linkSync(join(root, 'home/user/notes'), join(root, 'home/user/notes-link'));
  linkSync(join(root, 'home/user/notes'), join(root, 'shared/notes-hardlink'));
  symlinkSync('../etc/passwd', join(root, 'home/user/inside-link'));
  symlinkSync(join(options.outside, 'target'), join(root, 'home/user/outside-link'));
  symlinkSync(options.outside, join(root, 'home/user/outside-dir-link'));
  sh('mkfifo', [join(root, 'home/user/fifo')]);
  sh('mknod', [join(root, 'etc/null'), 'c', '1', '3']);
  writeFileSync(join(root, 'first'), '');
  writeFileSync(join(root, 'last'), '');

  for (const p of ['', 'etc', 'etc/passwd', 'etc/null', 'usr', 'usr/bin', 'home', 'shared'])
    own(join(root, p), 0, 0);
  own(join(root, 'etc/shadow'), 0, 42);
  own(join(root, 'usr/bin/su'), 0, 0);
  own(join(root, 'usr/bin/wall'), 0, 5);
  own(join(root, 'usr/bin/ping'), 0, 0);
  own(join(root, 'home/user'), 1000, 1000);
  own(join(root, 'home/user/notes'), 1000, 1000);
  own(join(root, 'home/user/inside-link'), 1000, 1000);
  own(join(root, 'home/user/outside-link'), 1000, 1000);
  own(join(root, 'home/user/outside-dir-link'), 1000, 1000);
  own(join(root, 'home/user/fifo'), 1000, 1000);
  own(join(root, 'first'), 0, 1);
  own(join(root, 'last'), size - 1, size - 1);
  // chown cleared nothing yet (modes are set after the owners).
  chmodSync(join(root, 'usr/bin/su'), 0o4755);
  chmodSync(join(root, 'usr/bin/wall'), 0o2755);
  chmodSync(join(root, 'shared'), 0o1777);
  // ACLs: user and group entries in the range, on a file and a directory (access + default).
  sh('setfacl', ['-m', `u:${base + 1000}:rw,g:${base + 42}:r`, join(root, 'home/user/notes')]);
  sh('setfacl', [
    '-m',
    `u:${base + 1000}:rwx,d:u:${base + 1000}:rwx,d:g:${base + 5}:rx`,
    join(root, 'shared'),
  ]);
  // File capabilities: a v3 capability whose root is the range's root, and (base 0) a v2 one.
  sh('setcap', [...(base === 0 ? [] : ['-n', String(base)]), 'cap_net_raw+ep', join(root, 'usr/bin/ping')]);
  let unmappedPath: string | undefined;
  if (options.withUnmapped) {
    unmappedPath = 'home/user/foreign';
    writeFileSync(join(root, unmappedPath), 'foreign\n');
    lchownSync(join(root, unmappedPath), base + size + 10, base + 1000);
  }
  return unmappedPath === undefined ? {} : { unmappedPath };
}

/** What a snapshot must look like after shifting every in-range ID by `delta`. */
export function shifted(before: Snapshot, delta: number, inRange: (id: number) => boolean): Snapshot {
  const move = (id: number) => (inRange(id) ? id + delta : id);
  const out: Snapshot = new Map();
  for (const [path, s] of before) {
    const next: EntryState = { ...s, uid: move(s.uid), gid: move(s.gid) };
    const acl = (entries: AclEntry[] | undefined) =>
      entries?.map((e) => (e.tag === 0x02 || e.tag === 0x08 ? { ...e, id: move(e.id) } : { ...e }));
    if (s.accessAcl) next.accessAcl = acl(s.accessAcl)!;
    if (s.defaultAcl) next.defaultAcl = acl(s.defaultAcl)!;
    if (s.capability) next.capability = { ...s.capability, rootid: move(s.capability.rootid ?? 0) };
    out.set(path, next);
  }
  return out;
}

/** Capabilities compared by meaning: a v2 capability is a v3 one with root ID 0. */
export function normalizeSnapshot(s: Snapshot): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [path, e] of s) {
    const { capability, ...rest } = e;
    out[path] = {
      ...rest,
      ...(capability
        ? {
            capability: {
              permitted: capability.permitted,
              inheritable: capability.inheritable,
              effective: capability.effective,
              rootid: capability.rootid ?? 0,
            },
          }
        : {}),
    };
  }
  return out;
}

/** What a shift was asked to do, for `expectShiftOutcome`. `from`/`to` already swapped for --reverse. */
export interface ShiftModel {
  from: { uid: IdMap; gid: IdMap };
  to: { uid: IdMap; gid: IdMap };
  policy?: 'error' | 'skip' | 'overflow';
  /** Whether the walk ran in the protective user namespace (default true). */
  protective?: boolean;
  overflow?: { uid: number; gid: number };
}

/** The counters of a shift summary that `expectShiftOutcome` checks. */
export interface ShiftCounts {
  dryRun: boolean;
  seen: number;
  changed: number;
  skipped: number;
  alreadyShifted: number;
  hardlinks: number;
  errorCount: number;
  /** The errors reported: an entry named here must be as it was (a failed change is no change). */
  errors: readonly { path: string }[];
}

/**
 * Checks a shift's summary against the trees before and after it, by an independent model of
 * the shift: every counter must count exactly what happened on disk (or, for a dry run, what
 * would have), and the tree after must be exactly the model's (a dry run: unchanged). The model
 * per inode: an ID `from` maps whose inside ID `to` maps becomes `to`'s outside ID; an ID in
 * `to`'s outside range and not `from`'s is already shifted (kept); any other ID is kept (skip),
 * becomes the overflow ID (overflow), or leaves the entry alone (error). In the protective
 * namespace an entry whose owner or group is outside from ∪ to (∪ the overflow ID) cannot be
 * changed at all and counts as skipped. Returns the model's counts.
 */
export function expectShiftOutcome(
  before: Snapshot,
  after: Snapshot,
  result: ShiftCounts,
  model: ShiftModel,
): Omit<ShiftCounts, 'dryRun' | 'errorCount' | 'errors'> {
  const policy = model.policy ?? 'error';
  const protective = model.protective ?? true;
  const overflow = model.overflow ?? { uid: 65534, gid: 65534 };
  /** Whether `id` is one of the map's outside IDs. */
  const inRanges = (map: IdMap, id: number) => map.toInside(id) !== undefined;
  const reachable = (kind: 'uid' | 'gid', id: number) =>
    inRanges(model.from[kind], id) ||
    inRanges(model.to[kind], id) ||
    (policy === 'overflow' && id === overflow[kind]);
  const expected: Snapshot = new Map();
  const byInode = new Map<number, string[]>();
  for (const [path, s] of before) byInode.set(s.ino, [...(byInode.get(s.ino) ?? []), path]);
  const failed = new Set(result.errors.map((e) => e.path || '.'));
  let changed = 0;
  let skipped = 0;
  let already = 0;
  let hardlinks = 0;
  for (const paths of byInode.values()) {
    const s = before.get(paths[0]!)!;
    if (s.type !== 'dir') hardlinks += paths.length - 1;
    let untranslated = false;
    let done = false;
    const move = (kind: 'uid' | 'gid', id: number): number => {
      const inside = model.from[kind].toInside(id);
      const next = inside === undefined ? undefined : model.to[kind].toOutside(inside);
      if (next !== undefined) return next;
      if (inRanges(model.to[kind], id)) {
        done = true;
        return id;
      }
      untranslated = true;
      return policy === 'overflow' ? overflow[kind] : id;
    };
    const next: EntryState = { ...s, uid: move('uid', s.uid), gid: move('gid', s.gid) };
    const acl = (entries: AclEntry[] | undefined) =>
      entries?.map((e) =>
        e.tag === 0x02 || e.tag === 0x08
          ? { ...e, id: move(e.tag === 0x02 ? 'uid' : 'gid', e.id) }
          : { ...e },
      );
    if (s.accessAcl) next.accessAcl = acl(s.accessAcl)!;
    if (s.defaultAcl) next.defaultAcl = acl(s.defaultAcl)!;
    if (s.capability) next.capability = { ...s.capability, rootid: move('uid', s.capability.rootid ?? 0) };
    const outside = protective && (!reachable('uid', s.uid) || !reachable('gid', s.gid));
    const leftAlone = outside || (untranslated && policy === 'error') || paths.some((p) => failed.has(p));
    if (untranslated && (policy !== 'overflow' || outside)) skipped++;
    const target = leftAlone ? s : next;
    const differs =
      JSON.stringify(normalizeSnapshot(new Map([['x', s]]))) !==
      JSON.stringify(normalizeSnapshot(new Map([['x', target]])));
    if (differs) changed++;
    else if (done && !untranslated) already++;
    for (const path of paths) expected.set(path, { ...target, mode: s.mode });
  }
  const counts = { seen: before.size, changed, skipped, alreadyShifted: already, hardlinks };
  assert.equal(result.errorCount, result.errors.length, 'every error is listed');
  assert.deepEqual(
    {
      seen: result.seen,
      changed: result.changed,
      skipped: result.skipped,
      alreadyShifted: result.alreadyShifted,
      hardlinks: result.hardlinks,
    },
    counts,
    'the summary counts what happened on disk',
  );
  assert.deepEqual(normalizeSnapshot(after), normalizeSnapshot(result.dryRun ? before : expected));
  return counts;
}
