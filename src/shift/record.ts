/**
 * The progress record of a shift: written (fsynced) under the state root before the first change
 * to a tree and removed once a direct shift has completed, so that a shift killed at any point
 * (SIGKILL, OOM, a crash of userns) leaves a record saying which shift of which tree is unfinished
 * and, for a two-phase shift (overlapping ranges), which phase it reached.
 *
 * A two-phase shift that completed keeps its record, marked `completed`: between overlapping
 * ranges nothing on the tree tells a shifted entry from one to shift, so the same shift run again
 * (its user could not tell whether it had finished) would shift every entry a second time. The
 * completed record makes that rerun a refusal (SHIFT_ALREADY_DONE, src/shift/shift.ts). It is not
 * pending: it blocks no other shift, and the next shift of the tree replaces it at its first
 * change. A record without `completed` (as written before it existed) is pending.
 *
 * Why under the state root and not on the tree (an xattr on its root directory): the tree may
 * be read-only to us except for its owners (an immutable root, a filesystem without user xattrs),
 * a `trusted.` xattr needs CAP_SYS_ADMIN in the initial namespace (a rootless shift has not), and
 * anything on the tree travels with it into an image or a copy (`tar --xattrs`, `cp -a`), where
 * it would describe a shift that is not happening there. The state root is private to the
 * caller (src/state/state-root.ts).
 *
 * The tree is identified by what the kernel guarantees while it exists: the device and inode
 * numbers of its root directory (and its birth time where the filesystem has one, so a new
 * directory that reuses the inode number is not taken for the old one), never by a path string
 * alone; the path is kept for messages. Root's state root is /run/userns (tmpfs): a record lives
 * as long as the boot, which is as long as device numbers are stable.
 *
 * Layout: `<state root>/shift/<dev>-<ino>.json` (the record) and `<dev>-<ino>.lock` (a
 * kernel-enforced lock held for the whole shift, so two shifts of one tree never run at once).
 */
import { lstatSync, readdirSync, readFileSync, realpathSync, unlinkSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { ShiftError } from '../errors/index.js';
import type { IdKind } from '../idmap/extent.js';
import { IdMap } from '../idmap/idmap.js';
import { mapsEqual } from '../idmap/normalize.js';
import type { IdRange } from '../idmap/ranges.js';
import { fsyncDirectory, writeFileAtomic } from '../state/atomic.js';
import { type FileLock, tryFileLock } from '../state/lock.js';
import { defaultStateRoot, ensurePrivateDir, ensureStateRoot } from '../state/state-root.js';
import type { UnmappedPolicy } from './tree-walk.js';

/** A tree's root directory as the kernel identifies it (decimal strings: 64-bit numbers). */
export interface TreeIdentity {
  dev: string;
  ino: string;
  /** Birth time in nanoseconds, or null where the filesystem does not record one. */
  birth: string | null;
}

/** What makes two shifts the same shift: the maps (after --reverse) and the options that change the result. */
export interface ShiftIntent {
  from: { uid: IdMap; gid: IdMap };
  to: { uid: IdMap; gid: IdMap };
  unmapped: UnmappedPolicy;
  crossFilesystems: boolean;
}

/** The record of a shift that has started (pending, or completed when `completed` is set). */
export interface ShiftRecord extends ShiftIntent {
  tree: TreeIdentity & { path: string };
  /** 'direct': one walk (the ranges do not overlap); 'two-phase': from → intermediate, then intermediate → to. */
  method: 'direct' | 'two-phase';
  /** The intermediate ranges of a two-phase shift (null for a direct one). */
  intermediate: { uid: IdRange; gid: IdRange } | null;
  /** The phase a two-phase shift reached (1 or 2; always 1 for a direct one). */
  phase: 1 | 2;
  /** When the shift started (ISO 8601). */
  started: string;
  /**
   * When a two-phase shift completed (ISO 8601), or null while the shift is pending. Only
   * two-phase shifts keep a record once complete (a direct one is removed).
   */
  completed: string | null;
}

/** Whether `record` describes a shift that has not completed (the rerun finishes it). */
export function isPending(record: ShiftRecord): boolean {
  return record.completed === null;
}

/** The identity of the directory at `root` (not following a link). */
export function treeIdentity(root: string): TreeIdentity {
  const st = lstatSync(root, { bigint: true });
  return {
    dev: String(st.dev),
    ino: String(st.ino),
    birth: st.birthtimeNs > 0n ? String(st.birthtimeNs) : null,
  };
}

/** Where the records of a state root live. */
function recordDir(stateRoot: string | undefined): string {
  return join(stateRoot ?? defaultStateRoot(), 'shift');
}

function recordPath(stateRoot: string | undefined, id: TreeIdentity): string {
  return join(recordDir(stateRoot), `${id.dev}-${id.ino}.json`);
}

/**
 * Takes the tree's lock (creating the state root and its `shift/` directory, private, as
 * needed): ShiftError SHIFT_BUSY when another shift of the same tree holds it.
 */
export async function lockTree(
  stateRoot: string | undefined,
  id: TreeIdentity,
  path: string,
): Promise<FileLock> {
  const root = stateRoot ?? defaultStateRoot();
  ensureStateRoot(root);
  const dir = ensurePrivateDir(join(root, 'shift'), 'shift record directory');
  const lock = await tryFileLock(join(dir, `${id.dev}-${id.ino}.lock`), { what: `the shift of ${path}` });
  if (lock === undefined) {
    throw new ShiftError('SHIFT_BUSY', `another shift of ${path} is running`, {
      hint: 'wait for it to end (two shifts of one tree at once would shift some entries twice)',
      data: { dir: path },
    });
  }
  return lock;
}

function mapsToJson(maps: { uid: IdMap; gid: IdMap }) {
  return { uid: maps.uid.extents, gid: maps.gid.extents };
}

function mapsFromJson(value: unknown): { uid: IdMap; gid: IdMap } {
  const v = value as { uid: unknown; gid: unknown };
  const one = (x: unknown) => {
    if (!Array.isArray(x)) throw new Error('not a list of extents');
    return new IdMap(
      x.map((e: { inside: unknown; outside: unknown; count: unknown }) => {
        if (![e.inside, e.outside, e.count].every((n) => Number.isInteger(n))) throw new Error('bad extent');
        return { inside: e.inside as number, outside: e.outside as number, count: e.count as number };
      }),
    );
  };
  return { uid: one(v.uid), gid: one(v.gid) };
}

/**
 * The record of the tree `id` (pending or completed: see isPending), or null. A record of another directory that had the same
 * device and inode numbers (different birth time) is stale and removed when `removeStale`. An
 * unreadable or malformed record is a ShiftError SHIFT_RECORD_UNREADABLE (never ignored: it may
 * be the only thing that says the tree is half shifted).
 */
export function readRecord(
  stateRoot: string | undefined,
  id: TreeIdentity,
  removeStale: boolean,
): ShiftRecord | null {
  const file = recordPath(stateRoot, id);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new ShiftError(
      'SHIFT_RECORD_UNREADABLE',
      `cannot read the shift record ${file}: ${(error as Error).message}`,
      {
        hint: 'fix its permissions; it records an unfinished shift of this tree',
        data: { file },
        cause: error,
      },
    );
  }
  let record: ShiftRecord;
  try {
    const raw = JSON.parse(text) as Record<string, unknown> & { tree: ShiftRecord['tree'] };
    if (raw.version !== 1 || typeof raw.tree?.dev !== 'string') throw new Error('unknown version');
    record = {
      tree: raw.tree,
      from: mapsFromJson(raw.from),
      to: mapsFromJson(raw.to),
      unmapped: raw.unmapped as UnmappedPolicy,
      crossFilesystems: raw.crossFilesystems === true,
      method: raw.method === 'two-phase' ? 'two-phase' : 'direct',
      intermediate: (raw.intermediate ?? null) as ShiftRecord['intermediate'],
      phase: raw.phase === 2 ? 2 : 1,
      started: String(raw.started),
      completed: typeof raw.completed === 'string' ? raw.completed : null,
    };
  } catch (error) {
    throw new ShiftError(
      'SHIFT_RECORD_UNREADABLE',
      `the shift record ${file} is damaged: ${(error as Error).message}`,
      {
        hint: 'restore the tree from a backup, then shift with --forget-interrupted',
        data: { file },
        cause: error,
      },
    );
  }
  if (record.tree.birth !== id.birth) {
    if (removeStale) removeRecord(stateRoot, id);
    return null;
  }
  return record;
}

/** Whether the entry at `path` (not following a last link) is the directory `id`. */
function isTree(path: string, id: TreeIdentity): boolean {
  try {
    const st = lstatSync(path, { bigint: true });
    const birth = st.birthtimeNs > 0n ? String(st.birthtimeNs) : null;
    return st.isDirectory() && String(st.dev) === id.dev && String(st.ino) === id.ino && birth === id.birth;
  } catch {
    return false;
  }
}

/**
 * The pending record of another tree that contains `root` (`where: 'around'`) or lies inside it
 * (`'inside'`), or null; completed records are not pending and are never returned. A shift of
 * a subtree of a half-shifted tree (or of a tree holding a half-shifted subtree) would shift some
 * entries that the pending shift also handles: between overlapping ranges, twice. Ancestors are
 * found by the identity of each directory above `root`; trees inside it by their recorded path,
 * when that path still names the recorded directory (a tree moved since is not found). Records
 * that cannot be read are left to the shift of their own tree.
 */
export function pendingNested(
  stateRoot: string | undefined,
  root: string,
  id: TreeIdentity,
  matches: (record: ShiftRecord) => boolean = isPending,
): { record: ShiftRecord; where: 'around' | 'inside' } | null {
  const dir = recordDir(stateRoot);
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.json') && n !== `${id.dev}-${id.ino}.json`);
  } catch {
    return null;
  }
  if (names.length === 0) return null;
  let real: string;
  try {
    real = realpathSync(root);
  } catch {
    return null;
  }
  const ancestors: string[] = [];
  for (let p = dirname(real); ; p = dirname(p)) {
    ancestors.push(p);
    if (p === dirname(p)) break;
  }
  for (const name of names) {
    let record: ShiftRecord | null;
    const [dev, ino] = name.slice(0, -'.json'.length).split('-');
    try {
      const text = readFileSync(join(dir, name), 'utf8');
      const birth = (JSON.parse(text) as { tree?: { birth?: string | null } }).tree?.birth ?? null;
      record = readRecord(stateRoot, { dev: dev ?? '', ino: ino ?? '', birth }, false);
    } catch {
      continue;
    }
    if (record === null || !matches(record)) continue;
    const tree = record.tree;
    if (ancestors.some((p) => isTree(p, tree))) return { record, where: 'around' };
    if (!isTree(tree.path, tree)) continue;
    let inner: string;
    try {
      inner = realpathSync(tree.path);
    } catch {
      continue;
    }
    if (inner.startsWith(real === sep ? sep : `${real}${sep}`)) return { record, where: 'inside' };
  }
  return null;
}

/** Writes (or replaces) the tree's record, fsynced with its directory, before anything it describes happens. */
export function writeRecord(stateRoot: string | undefined, record: ShiftRecord): void {
  const json = {
    version: 1,
    tree: record.tree,
    from: mapsToJson(record.from),
    to: mapsToJson(record.to),
    unmapped: record.unmapped,
    crossFilesystems: record.crossFilesystems,
    method: record.method,
    intermediate: record.intermediate,
    phase: record.phase,
    started: record.started,
    // Only when set: a pending record is written exactly as before the field existed.
    ...(record.completed === null ? {} : { completed: record.completed }),
  };
  writeFileAtomic(recordPath(stateRoot, record.tree), `${JSON.stringify(json, null, 2)}\n`);
}

/** Removes the tree's record (a direct shift completed, or a first run changed nothing). */
export function removeRecord(stateRoot: string | undefined, id: TreeIdentity): void {
  try {
    unlinkSync(recordPath(stateRoot, id));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  fsyncDirectory(recordDir(stateRoot));
}

/** Whether `record` is the shift `intent` (same maps after --reverse, same result-changing options). */
export function sameShift(record: ShiftIntent, intent: ShiftIntent): boolean {
  const kinds: IdKind[] = ['uid', 'gid'];
  return (
    kinds.every((k) => mapsEqual(record.from[k], intent.from[k]) && mapsEqual(record.to[k], intent.to[k])) &&
    record.unmapped === intent.unmapped &&
    record.crossFilesystems === intent.crossFilesystems
  );
}

/**
 * The command line that runs the shift `intent` on `dir` (maps as inline triples), with
 * `--root stateRoot` when the record is under a state root the caller chose: without it the
 * command would look in the default state root, find no record and start a fresh shift (between
 * overlapping ranges, a second shift of every entry already done).
 */
export function shiftCommand(intent: ShiftIntent, dir: string, stateRoot?: string): string {
  const maps = (name: 'from' | 'to', m: { uid: IdMap; gid: IdMap }) =>
    mapsEqual(m.uid, m.gid)
      ? [`--${name}`, m.uid.toString()]
      : [`--${name}`, m.uid.toString(), `--${name}-gid`, m.gid.toString()];
  const quote = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
  return [
    'userns',
    'shift',
    ...maps('from', intent.from),
    ...maps('to', intent.to),
    ...(intent.unmapped === 'error' ? [] : ['--unmapped', intent.unmapped]),
    ...(intent.crossFilesystems ? ['--cross-filesystems'] : []),
    ...(stateRoot === undefined ? [] : ['--root', resolve(stateRoot)]),
    dir,
  ]
    .map(quote)
    .join(' ');
}
