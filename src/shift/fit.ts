/**
 * `fitTree()`: which IDs used in a tree a map cannot represent — the answer to rootless
 * "potentially insufficient UIDs or GIDs available in user namespace (requested 0:42 for
 * /etc/shadow)". The tree's IDs are the IDs a namespace with MAP would see (inside IDs): file
 * owners, ACL entries, file-capability root IDs, and the users and groups of the tree's own
 * /etc/passwd and /etc/group. A read-only walk by the helper, in the caller's view.
 */
import { readInside } from '../alloc/rootfs-size.js';
import type { IdMap } from '../idmap/idmap.js';
import { insideRanges } from '../idmap/ranges.js';
import { parseGroupLine, parsePasswdLine } from '../system/users.js';
import { requireValidKindMaps, treeRoot } from './shift.js';
import { defaultWorkers, runWalk, type Translation, UNMAPPED_KINDS, type WalkRecord } from './tree-walk.js';

/** Users and groups every image has, that a namespace shows as the overflow ID when unmapped. */
const IGNORABLE_NAMES = new Set(['nobody', 'nogroup', 'nfsnobody']);
const NOBODY_ID = 65534;

export type FitSource = 'owner' | 'acl' | 'capability' | 'passwd' | 'group';

export interface UnfitId {
  kind: 'uid' | 'gid';
  id: number;
  /** Where the ID is used. */
  sources: FitSource[];
  /** Entries of the tree using it (passwd/group lines not counted). */
  count: number;
  /** A few paths (or "etc/passwd:LINE (name)"). */
  examples: string[];
}

export interface FitResult {
  dir: string;
  fits: boolean;
  /** Entries walked. */
  seen: number;
  /** IDs MAP cannot represent (nobody/nogroup passwd and group entries are in `ignored`). */
  missing: UnfitId[];
  /** passwd/group entries for nobody/nogroup (or ID 65534) MAP cannot represent: harmless. */
  ignored: UnfitId[];
  /** The highest UID and GID used (null: none). */
  highest: { uid: number | null; gid: number | null };
  /** The smallest count of a map from 0 (0:X:count) that represents every ID that matters. */
  smallestSize: number;
  /** Entries the walk could not read (then the answer may be incomplete). */
  errors: { op: string; errno: string; path: string }[];
  errorCount: number;
}

export interface FitOptions {
  /** The gid map (default: the same map as for uids). */
  gid?: IdMap;
  examples?: number;
  crossFilesystems?: boolean;
  /** Processes walking in parallel (default: the CPUs, at most 4). */
  workers?: number;
  helperPath?: string;
}

/** A table that maps every inside ID of `map` to itself: membership is all the walk needs. */
function membershipTable(map: IdMap): Translation[] {
  return insideRanges(map).map((r) => ({ from: r.start, to: r.start, count: r.count }));
}

export async function fitTree(dir: string, map: IdMap, options: FitOptions = {}): Promise<FitResult> {
  const maps = { uid: map, gid: options.gid ?? map };
  requireValidKindMaps(maps, 'map');
  const root = treeRoot(dir, 'FIT');
  const examples = options.examples ?? 3;
  const found = new Map<string, UnfitId>();
  const note = (kind: 'uid' | 'gid', id: number, source: FitSource, example: string, counts: boolean) => {
    const key = `${kind}:${id}`;
    let entry = found.get(key);
    if (entry === undefined) {
      entry = { kind, id, sources: [], count: 0, examples: [] };
      found.set(key, entry);
    }
    if (!entry.sources.includes(source)) entry.sources.push(source);
    if (counts) entry.count++;
    if (entry.examples.length < examples) entry.examples.push(example);
  };
  const errors: FitResult['errors'] = [];
  const summary = await runWalk(
    {
      root,
      apply: false,
      list: false,
      uid: membershipTable(maps.uid),
      gid: membershipTable(maps.gid),
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
          // A v1/v2 capability's root is ID 0.
          note(kind, record.id ?? 0, source, record.path === '' ? '.' : record.path, true);
        } else if (record.type === 'error' && errors.length < 100) {
          errors.push({ op: record.op, errno: record.errno, path: record.path });
        }
      },
    },
  );

  // The tree's own users and groups (resolved inside the tree, never through a host link).
  const ignored = new Set<string>();
  let highestListed = -1;
  const listed = (kind: 'uid' | 'gid', id: number, name: string, where: string) => {
    const ignorable = IGNORABLE_NAMES.has(name) || id === NOBODY_ID;
    if (!ignorable) highestListed = Math.max(highestListed, id);
    if (maps[kind].toOutside(id) !== undefined) return;
    note(kind, id, kind === 'uid' ? 'passwd' : 'group', `${where} (${name})`, false);
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

  for (const u of found.values()) u.examples.sort();
  const all = [...found.values()].sort((a, b) => b.kind.localeCompare(a.kind) || a.id - b.id);
  // An ID only listed in passwd/group as nobody is harmless; used by a file it is not.
  const isIgnored = (u: UnfitId) => ignored.has(`${u.kind}:${u.id}`) && u.count === 0;
  const missing = all.filter((u) => !isIgnored(u));
  const highest = { uid: summary.maxUid, gid: summary.maxGid };
  const top1 = Math.max(highest.uid ?? -1, highest.gid ?? -1, highestListed);
  return {
    dir: root,
    fits: missing.length === 0,
    seen: summary.seen,
    missing,
    ignored: all.filter(isIgnored),
    highest,
    smallestSize: top1 + 1,
    errors,
    errorCount: summary.errors,
  };
}
