/**
 * `fitTree()`: which IDs used in a tree a map cannot represent — the answer to rootless
 * "potentially insufficient UIDs or GIDs available in user namespace (requested 0:42 for
 * /etc/shadow)". The tree's IDs are the IDs a namespace with MAP would see (inside IDs): file
 * owners, ACL entries, file-capability root IDs, and the users and groups of the tree's own
 * /etc/passwd and /etc/group. A read-only walk by the helper, in the caller's view.
 */
import { compose } from '../idmap/compose.js';
import { extent, formatTriple, type IdKind, MAX_MAPPABLE_ID } from '../idmap/extent.js';
import { IdMap } from '../idmap/idmap.js';
import { normalize } from '../idmap/normalize.js';
import { insideRanges } from '../idmap/ranges.js';
import { validateMap } from '../idmap/validate.js';
import { readInside } from '../system/rootfs.js';
import { parseGroupLine, parsePasswdLine } from '../system/users.js';
import { requireValidKindMaps, treeRoot } from './shift.js';
import { tableOf } from './translation.js';
import { defaultWorkers, runWalk, type Translation, UNMAPPED_KINDS, type WalkRecord } from './tree-walk.js';

/** Users and groups every image has, that a namespace shows as the overflow ID when unmapped. */
const IGNORABLE_NAMES = new Set(['nobody', 'nogroup', 'nfsnobody']);
const NOBODY_ID = 65534;

/**
 * Where an ID of a tree is used: a file owner, an ACL entry, a file capability's root ID, the
 * tree's /etc/passwd or /etc/group.
 */
export type FitSource = 'owner' | 'acl' | 'capability' | 'passwd' | 'group';

/** An ID the map cannot represent, where it is used and a few example paths. */
export interface UnfitId {
  kind: IdKind;
  id: number;
  /** Where the ID is used. */
  sources: FitSource[];
  /** Entries of the tree using it (passwd/group lines not counted). */
  count: number;
  /** A few paths (or "etc/passwd:LINE (name)"). */
  examples: string[];
}

/**
 * The answer of {@link fitTree}: whether the map fits, every ID it cannot represent, and the
 * smallest map from 0 that would fit.
 */
export interface FitResult {
  dir: string;
  fits: boolean;
  /** Entries walked. */
  seen: number;
  /** IDs MAP cannot represent (nobody/nogroup passwd and group entries are in `ignored`). */
  missing: UnfitId[];
  /** passwd/group entries for nobody/nogroup (or ID 65534) MAP cannot represent: harmless. */
  ignored: UnfitId[];
  /**
   * With `from`: on-disk IDs of the tree that `from` does not map (`id` is the on-disk ID): no
   * map can represent them until the tree is shifted (or `from` extended).
   */
  outsideFrom: UnfitId[];
  /** The highest UID and GID that matter (files and the tree's passwd/group; null: none). */
  highest: { uid: number | null; gid: number | null };
  /** Where each highest ID comes from: `files` or a passwd/group line, e.g. `etc/passwd:3 (app)`. */
  highestFrom: { uid: string | null; gid: string | null };
  /**
   * The smallest count of a map from 0 (0:X:count) that represents every ID that matters; null
   * when no map can (an ID of 4294967295, which is (u32)-1, never an ID).
   */
  smallestSize: number | null;
  /** An example of such a map, checked by validateMap (null when there is none). */
  suggestion: string | null;
  /** IDs no map can represent, with where they are named. */
  unrepresentable: UnfitId[];
  /** Entries the walk could not read (then the answer may be incomplete). */
  errors: { op: string; errno: string; path: string }[];
  errorCount: number;
}

/** Options of {@link fitTree}. */
export interface FitOptions {
  /** The gid map (default: the same map as for uids). */
  gid?: IdMap;
  /**
   * The maps the tree's on-disk IDs are in now (a tree already shifted, e.g. 0:100000:65536):
   * every on-disk ID is read through it (outside → inside) before it is checked against MAP.
   * Default: on-disk IDs are the inside IDs (an image unpacked by root).
   */
  from?: { uid: IdMap; gid: IdMap };
  examples?: number;
  crossFilesystems?: boolean;
  /** Processes walking in parallel (default: the CPUs, at most 4). */
  workers?: number;
  helperPath?: string;
}

const IDENTITY = new IdMap([{ inside: 0, outside: 0, count: MAX_MAPPABLE_ID + 1 }]);
/** The outside ID an example map starts at, when the count leaves room for it (podman's default). */
const EXAMPLE_BASE = 100000;

/**
 * The walk's table: on-disk ID → inside ID (through `from`), only for inside IDs `map` has. An
 * on-disk ID without an entry does not fit (or is not in `from` at all).
 */
function fitTable(from: IdMap, map: IdMap): Translation[] {
  const membership = new IdMap(insideRanges(map).map((r) => extent(r.start, r.start, r.count)));
  return tableOf(normalize(compose(from.invert(), membership)));
}

/** The smallest map from 0 that fits `top` (the highest inside ID), checked as the kernel would. */
export function smallestFit(top: number): { size: number; suggestion: string } | null {
  const size = top + 1;
  if (top > MAX_MAPPABLE_ID) return null;
  const base = Math.min(EXAMPLE_BASE, MAX_MAPPABLE_ID + 1 - size);
  const map = [extent(0, base, size)];
  if (!validateMap(map).ok) return null;
  return { size, suggestion: formatTriple(map[0]!) };
}

/**
 * Which IDs used by the tree `dir` (owners, ACL entries, capability root IDs, its /etc/passwd and
 * /etc/group) the map (inside IDs = the IDs the tree uses) cannot represent, and the smallest map
 * from 0 that would. Reads only; no namespace. Throws ShiftError FIT_NOT_A_DIRECTORY or
 * FIT_DIR_UNREADABLE, SpawnError when the walk cannot start.
 */
export async function fitTree(dir: string, map: IdMap, options: FitOptions = {}): Promise<FitResult> {
  const maps = { uid: map, gid: options.gid ?? map };
  requireValidKindMaps(maps, 'map');
  if (options.from) requireValidKindMaps(options.from, 'from');
  const from = options.from ?? { uid: IDENTITY, gid: IDENTITY };
  const root = treeRoot(dir, 'FIT');
  const examples = options.examples ?? 3;
  const found = new Map<string, UnfitId>();
  const note = (
    table: Map<string, UnfitId>,
    kind: IdKind,
    id: number,
    source: FitSource,
    example: string,
    counts: boolean,
  ) => {
    const key = `${kind}:${id}`;
    let entry = table.get(key);
    if (entry === undefined) {
      entry = { kind, id, sources: [], count: 0, examples: [] };
      table.set(key, entry);
    }
    if (!entry.sources.includes(source)) entry.sources.push(source);
    if (counts) entry.count++;
    if (entry.examples.length < examples) entry.examples.push(example);
  };
  const notInFrom = new Map<string, UnfitId>();
  const errors: FitResult['errors'] = [];
  const summary = await runWalk(
    {
      root,
      apply: false,
      list: false,
      uid: fitTable(from.uid, maps.uid),
      gid: fitTable(from.gid, maps.gid),
      unmapped: 'skip',
      v2root: 0,
      crossFilesystems: options.crossFilesystems ?? false,
      progress: 0,
      count: false,
      workers: options.workers ?? defaultWorkers(),
    },
    {
      namespace: null,
      ...(options.helperPath === undefined ? {} : { helperPath: options.helperPath }),
      onRecord: (record: WalkRecord) => {
        if (record.type === 'unmapped') {
          const { kind, where: source } = UNMAPPED_KINDS[record.kind];
          const path = record.path === '' ? '.' : record.path;
          // A v1/v2 capability's root is on-disk ID 0.
          const onDisk = record.id ?? 0;
          const inside = from[kind].toInside(onDisk);
          if (inside === undefined) note(notInFrom, kind, onDisk, source, path, true);
          else note(found, kind, inside, source, path, true);
        } else if (record.type === 'error' && errors.length < 100) {
          errors.push({ op: record.op, errno: record.errno, path: record.path });
        }
      },
    },
  );

  // The highest inside ID that matters, and where it comes from.
  const highest: FitResult['highest'] = { uid: summary.maxNewUid, gid: summary.maxNewGid };
  const highestFrom: FitResult['highestFrom'] = {
    uid: summary.maxNewUid === null ? null : 'files',
    gid: summary.maxNewGid === null ? null : 'files',
  };
  const raise = (kind: IdKind, id: number, where: string) => {
    const top = highest[kind];
    if (top === null || id > top) {
      highest[kind] = id;
      highestFrom[kind] = where;
    }
  };
  for (const u of found.values()) raise(u.kind, u.id, 'files');

  // The tree's own users and groups (resolved inside the tree, never through a host link).
  const ignored = new Set<string>();
  const listed = (kind: IdKind, id: number, name: string, where: string) => {
    const ignorable = IGNORABLE_NAMES.has(name) || id === NOBODY_ID;
    if (!ignorable && id <= MAX_MAPPABLE_ID) raise(kind, id, `${where} (${name})`);
    if (maps[kind].toOutside(id) !== undefined) return;
    note(found, kind, id, kind === 'uid' ? 'passwd' : 'group', `${where} (${name})`, false);
    if (ignorable) ignored.add(`${kind}:${id}`);
  };
  readInside(root, 'etc/passwd')
    .split('\n')
    .forEach((line, i) => {
      const user = parsePasswdLine(line);
      if (user) listed('uid', user.uid, user.name, `etc/passwd:${i + 1}`);
    });
  readInside(root, 'etc/group')
    .split('\n')
    .forEach((line, i) => {
      const group = parseGroupLine(line);
      if (group) listed('gid', group.gid, group.name, `etc/group:${i + 1}`);
    });

  const sorted = (table: Map<string, UnfitId>) => {
    for (const u of table.values()) u.examples.sort();
    return [...table.values()].sort((a, b) => b.kind.localeCompare(a.kind) || a.id - b.id);
  };
  const all = sorted(found);
  // An ID only listed in passwd/group as nobody is harmless; used by a file it is not.
  const isIgnored = (u: UnfitId) => ignored.has(`${u.kind}:${u.id}`) && u.count === 0;
  const missing = all.filter((u) => !isIgnored(u));
  const outsideFrom = sorted(notInFrom);
  const unrepresentable = missing.filter((u) => u.id > MAX_MAPPABLE_ID);
  const top = Math.max(highest.uid ?? -1, highest.gid ?? -1);
  const fit = unrepresentable.length === 0 ? smallestFit(Math.max(top, 0)) : null;
  return {
    dir: root,
    fits: missing.length === 0 && outsideFrom.length === 0,
    seen: summary.seen,
    missing,
    ignored: all.filter(isIgnored),
    outsideFrom,
    highest,
    highestFrom,
    smallestSize: fit?.size ?? null,
    suggestion: fit?.suggestion ?? null,
    unrepresentable,
    errors,
    errorCount: summary.errors,
  };
}
