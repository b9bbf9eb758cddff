/**
 * `shiftTree()`: rewrite the owners of a directory tree from one ID map to another (what Incus's
 * fuidshift and containers/storage's chown-by-maps do), with ACL entries and file-capability root
 * IDs, safely on trees a container may be changing while we walk.
 *
 * Every owner is looked up in `from` (outside → inside) and written as `to`'s outside ID of the
 * same inside ID. The walk itself is the helper's walk mode (tree-walk.c); by default it runs in a
 * protective user namespace that maps exactly the IDs of the two ranges, so the kernel refuses
 * to touch any file owned by another ID whatever a racing process does. With the default
 * `unmapped: 'error'` a first read-only pass finds every ID `from` cannot translate, and nothing
 * is changed when there is one.
 */
import { lstatSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ShiftError } from '../errors/index.js';
import type { IdKind } from '../idmap/extent.js';
import type { IdMap } from '../idmap/idmap.js';
import { intersectRanges, outsideRanges } from '../idmap/ranges.js';
import { requireValidMap } from '../idmap/validate.js';
import type { MapWriteOptions } from '../maps/write-maps.js';
import { overflowIds } from '../system/knobs.js';
import { pageSize } from '../system/proc.js';
import {
  doneRanges,
  protectiveMap,
  rangesInView,
  shiftTranslation,
  tableOf,
  touchedRanges,
  viewTranslation,
} from './translation.js';
import {
  defaultWorkers,
  runWalk,
  UNMAPPED_KINDS,
  type UnmappedPolicy,
  type WalkJob,
  type WalkNamespace,
  type WalkRecord,
  type WalkSummary,
} from './tree-walk.js';

/** A uid map and a gid map. */
export interface KindMaps {
  uid: IdMap;
  gid: IdMap;
}

/** Progress of a shift, every `progressEvery` entries. */
export interface ShiftProgress {
  seen: number;
  changed: number;
  /** Entries in the tree, when known (from the first pass or a count). */
  total: number | null;
}

/** One entry a shift changed (or would, in a dry run): old and new owner and what changed. */
export interface ShiftChange {
  path: string;
  fileType: string;
  old: { uid: number | null; gid: number | null };
  new: { uid: number | null; gid: number | null };
  what: string[];
}

/**
 * Options of {@link shiftTree}: the maps, dry run, what to do with untranslated IDs, the
 * protective user namespace, progress.
 */
export interface ShiftOptions {
  /** The map the tree's owners are in now (outside IDs = the caller's IDs). */
  from: KindMaps;
  /** The map the owners must end up in. */
  to: KindMaps;
  /** Shift from `to` back to `from`. */
  reverse?: boolean;
  /** Report what would change; change nothing. */
  dryRun?: boolean;
  /** An ID `from` does not translate: 'error' (default: change nothing at all), 'skip' (keep that ID), 'overflow'. */
  unmapped?: UnmappedPolicy;
  /** Run the walk in a protective user namespace (default true; rootless callers need it). */
  userns?: boolean;
  /** Descend into other filesystems mounted under the tree (default false: report and skip them). */
  crossFilesystems?: boolean;
  /** Called with the progress every `progressEvery` entries. */
  onProgress?: (progress: ShiftProgress) => void;
  /** Progress every N entries (default 4096). */
  progressEvery?: number;
  /** Count the entries before a walk without a first pass (for an estimate of the time left). */
  countFirst?: boolean;
  /** Called for every entry that changes (or would, with dryRun). */
  onChange?: (change: ShiftChange) => void;
  /** Example paths kept per unmapped ID (default 3). */
  examples?: number;
  /** Processes walking in parallel (default: the CPUs, at most 4). */
  workers?: number;
  mapWrite?: MapWriteOptions;
  helperPath?: string;
  signal?: AbortSignal;
}

/** An ID `from` does not translate, where it was found and a few example paths. */
export interface UnmappedId {
  kind: IdKind;
  /** Where the ID was found. */
  where: 'owner' | 'acl' | 'capability';
  /** The ID (caller's view); null when it is outside every range the walk could see. */
  id: number | null;
  count: number;
  examples: string[];
}

/** An entry the walk could not read or change: the operation, errno and path. */
export interface ShiftIssue {
  op: string;
  errno: string;
  path: string;
}

/**
 * What a shift did, counted on disk: entries seen and changed, untranslated IDs, errors, skipped
 * mount points, time taken.
 */
export interface ShiftResult {
  dir: string;
  dryRun: boolean;
  reverse: boolean;
  /** Whether the walk ran in a protective user namespace. */
  protectiveNamespace: boolean;
  /**
   * Whether running the same shift again finishes it after an interruption: the maps' outside
   * ranges do not overlap, so an ID already shifted is never one still to shift.
   */
  resumable: boolean;
  seen: number;
  changed: number;
  /**
   * Entries that kept (some of) their IDs because they had no translation (error or skip; with
   * overflow, entries the protective namespace cannot change).
   */
  skipped: number;
  /** Entries left as they were because they are already shifted (every ID in `to`, not in `from`). */
  alreadyShifted: number;
  hardlinks: number;
  mountpoints: string[];
  unmapped: UnmappedId[];
  errors: ShiftIssue[];
  errorCount: number;
  elapsedMs: number;
}

const MAX_ERRORS_KEPT = 100;
const MAX_MOUNTPOINTS_KEPT = 100;

/** An ID as the walk saw it (in the protective namespace `view`, if any) as the caller's ID. */
function callerId(view: KindMaps | null, kind: IdKind, id: number | null): number | null {
  if (id === null || view === null) return id;
  return view[kind].toOutside(id) ?? null;
}

/** Collects what a walk reports, translating IDs from the walk's view to the caller's. */
class Collector {
  readonly unmapped = new Map<string, UnmappedId>();
  readonly errors: ShiftIssue[] = [];
  readonly mountpoints: string[] = [];
  constructor(
    private readonly dir: string,
    private readonly view: KindMaps | null,
    private readonly examples: number,
  ) {}

  add(record: WalkRecord): void {
    if (record.type === 'unmapped') {
      const { kind, where } = UNMAPPED_KINDS[record.kind];
      let id = callerId(this.view, kind, record.id);
      // Outside the protective namespace's ranges the kernel shows the overflow ID; the real
      // owner can still be read from here (for messages only).
      if (id === null && record.id !== null && where === 'owner') id = this.ownerFromHere(record.path, kind);
      const key = `${kind}:${where}:${id ?? '?'}`;
      let entry = this.unmapped.get(key);
      if (entry === undefined) {
        entry = { kind, where, id, count: 0, examples: [] };
        this.unmapped.set(key, entry);
      }
      entry.count++;
      if (entry.examples.length < this.examples) entry.examples.push(record.path === '' ? '.' : record.path);
    } else if (record.type === 'error') {
      if (this.errors.length < MAX_ERRORS_KEPT)
        this.errors.push({ op: record.op, errno: record.errno, path: record.path });
    } else if (record.type === 'mountpoint') {
      if (this.mountpoints.length < MAX_MOUNTPOINTS_KEPT) this.mountpoints.push(record.path);
    }
  }

  private ownerFromHere(path: string, kind: IdKind): number | null {
    try {
      return lstatSync(join(this.dir, path))[kind];
    } catch {
      return null;
    }
  }

  sortedUnmapped(): UnmappedId[] {
    // Workers report in any order: sorted examples keep the output stable.
    for (const u of this.unmapped.values()) u.examples.sort();
    return [...this.unmapped.values()].sort(
      (a, b) => b.kind.localeCompare(a.kind) || (a.id ?? -1) - (b.id ?? -1) || a.where.localeCompare(b.where),
    );
  }
}

/** "uid 5 (ACL entry; 2 entries, e.g. a/b); gid 0 (1 entry, e.g. .)" — the first few. */
export function describeUnmapped(list: readonly UnmappedId[]): string {
  const shown = list.slice(0, 4).map((u) => {
    const id = u.id === null ? `a ${u.kind} outside the ranges` : `${u.kind} ${u.id}`;
    const where = u.where === 'owner' ? '' : `${u.where === 'acl' ? 'ACL entry' : 'capability root'}; `;
    return `${id} (${where}${u.count} entr${u.count === 1 ? 'y' : 'ies'}, e.g. ${u.examples[0]})`;
  });
  return shown.join('; ') + (list.length > 4 ? `; and ${list.length - 4} more` : '');
}

/**
 * The absolute path of the tree to walk, checked to be a directory itself (not a link to one:
 * links are never followed). Error codes `${prefix}_DIR_UNREADABLE` / `${prefix}_NOT_A_DIRECTORY`.
 */
export function treeRoot(dir: string, prefix: 'SHIFT' | 'FIT'): string {
  const root = resolve(dir);
  let top: ReturnType<typeof lstatSync>;
  try {
    top = lstatSync(root);
  } catch (error) {
    throw new ShiftError(`${prefix}_DIR_UNREADABLE`, `cannot read ${root}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (!top.isDirectory()) {
    throw new ShiftError(
      `${prefix}_NOT_A_DIRECTORY`,
      `${root} is ${top.isSymbolicLink() ? 'a symbolic link' : 'not a directory'}`,
      { hint: 'give the directory itself (links are never followed)' },
    );
  }
  return root;
}

/**
 * Refuses maps the kernel would refuse (MapError MAP_INVALID) before anything is read or
 * changed: an extent running past 4294967294 would wrap in the walk's 32-bit arithmetic (a
 * file shifted to ID 0, set-user-ID bit restored).
 */
export function requireValidKindMaps(maps: KindMaps, name: string): void {
  const page = pageSize();
  requireValidMap(maps.uid, { kind: 'uid', source: `${name} (uid map)`, pageSize: page });
  requireValidMap(maps.gid, { kind: 'gid', source: `${name} (gid map)`, pageSize: page });
}

/**
 * Rewrites the owners, POSIX ACL entries and file-capability root IDs of every entry of the tree
 * `dir` from the map `options.from` to `options.to` (IDs are the caller's: outside IDs of both
 * maps), never following a symbolic link, in a protective user namespace by default. Unless
 * `unmapped` says otherwise, a first pass checks everything and nothing changes when some ID has
 * no translation. Resolves with the counts of what changed (or would, with dryRun).
 *
 * Throws MapError MAP_INVALID (a map the kernel would refuse, before anything is read);
 * ShiftError (result = what the walk did): SHIFT_NOT_A_DIRECTORY, SHIFT_DIR_UNREADABLE,
 * SHIFT_PREFLIGHT_FAILED (unreadable entries, nothing changed), SHIFT_UNMAPPED_IDS (nothing
 * changed), SHIFT_INCOMPLETE (some entries left as they were); ShiftPlanError when the maps do
 * not fit one namespace; NewIdmapError / SpawnError when the walk cannot start.
 */
export async function shiftTree(dir: string, options: ShiftOptions): Promise<ShiftResult> {
  const started = performance.now();
  requireValidKindMaps(options.from, 'from');
  requireValidKindMaps(options.to, 'to');
  const root = treeRoot(dir, 'SHIFT');
  const reverse = options.reverse ?? false;
  const from = reverse ? options.to : options.from;
  const to = reverse ? options.from : options.to;
  const policy = options.unmapped ?? 'error';
  const useNamespace = options.userns ?? true;
  const translation = { uid: shiftTranslation(from.uid, to.uid), gid: shiftTranslation(from.gid, to.gid) };
  const resumable = (['uid', 'gid'] as const).every(
    (kind) => intersectRanges(outsideRanges(from[kind]), outsideRanges(to[kind])).length === 0,
  );
  const ids = overflowIds();
  const overflow = { uid: ids.uid.value ?? 65534, gid: ids.gid.value ?? 65534 };

  let view: KindMaps | null = null;
  let namespace: WalkNamespace | null = null;
  let tables = { uid: tableOf(translation.uid), gid: tableOf(translation.gid) };
  let already = { uid: doneRanges(from.uid, to.uid), gid: doneRanges(from.gid, to.gid) };
  let overflowInWalk = overflow;
  if (useNamespace) {
    const extra = (id: number) => (policy === 'overflow' ? [id] : []);
    view = {
      uid: protectiveMap(touchedRanges(from.uid, to.uid, extra(overflow.uid)), [overflow.uid]),
      gid: protectiveMap(touchedRanges(from.gid, to.gid, extra(overflow.gid)), [overflow.gid]),
    };
    namespace = {
      uid: view.uid,
      gid: view.gid,
      ...(options.mapWrite === undefined ? {} : { mapWrite: options.mapWrite }),
    };
    tables = {
      uid: tableOf(viewTranslation(translation.uid, view.uid)),
      gid: tableOf(viewTranslation(translation.gid, view.gid)),
    };
    already = { uid: rangesInView(already.uid, view.uid), gid: rangesInView(already.gid, view.gid) };
    overflowInWalk = {
      uid: view.uid.toInside(overflow.uid) ?? overflow.uid,
      gid: view.gid.toInside(overflow.gid) ?? overflow.gid,
    };
  }

  const baseJob: WalkJob = {
    root,
    apply: false,
    list: false,
    uid: tables.uid,
    gid: tables.gid,
    uidDone: already.uid,
    gidDone: already.gid,
    unmapped: policy,
    ...(policy === 'overflow' ? { overflow: overflowInWalk } : {}),
    // The protective namespace never maps the overflow IDs: an owner shown as one is outside it.
    ...(useNamespace ? { outside: overflow } : {}),
    // In the protective namespace nothing maps to inside 0, so a v1/v2 capability's root is unmapped.
    v2root: useNamespace ? null : 0,
    crossFilesystems: options.crossFilesystems ?? false,
    progress: options.onProgress ? (options.progressEvery ?? 4096) : 0,
    count: false,
    workers: options.workers ?? defaultWorkers(),
  };
  const walkOptions = {
    namespace,
    ...(options.helperPath === undefined ? {} : { helperPath: options.helperPath }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  };
  const examples = options.examples ?? 3;
  const onRecord =
    (collector: Collector, total: number | null, report: boolean) =>
    (record: WalkRecord): void => {
      if (record.type === 'progress')
        options.onProgress?.({ seen: record.seen, changed: record.changed, total });
      else if (record.type === 'total') total = record.total;
      else if (record.type === 'change') {
        if (report)
          options.onChange?.({
            path: record.path === '' ? '.' : record.path,
            fileType: record.fileType,
            old: { uid: callerId(view, 'uid', record.old.uid), gid: callerId(view, 'gid', record.old.gid) },
            new: { uid: callerId(view, 'uid', record.new.uid), gid: callerId(view, 'gid', record.new.gid) },
            what: record.what,
          });
      } else collector.add(record);
    };
  const result = (summary: WalkSummary, collector: Collector, dryRun: boolean): ShiftResult => ({
    dir: root,
    dryRun,
    reverse,
    protectiveNamespace: useNamespace,
    resumable,
    seen: summary.seen,
    changed: summary.changed,
    skipped: summary.skipped,
    alreadyShifted: summary.already,
    hardlinks: summary.hardlinks,
    mountpoints: collector.mountpoints,
    unmapped: collector.sortedUnmapped(),
    errors: collector.errors,
    errorCount: summary.errors,
    elapsedMs: Math.round(performance.now() - started),
  });

  // First pass (read-only): with unmapped=error, and for a dry run (which is only this pass).
  let total: number | null = null;
  if (options.dryRun || policy === 'error') {
    const collector = new Collector(root, view, examples);
    const summary = await runWalk(
      { ...baseJob, list: options.dryRun === true && options.onChange !== undefined },
      { ...walkOptions, onRecord: onRecord(collector, null, options.dryRun === true) },
    );
    const first = result(summary, collector, true);
    if (options.dryRun) return first;
    if (first.errorCount > 0) {
      const e = first.errors[0];
      throw new ShiftError(
        'SHIFT_PREFLIGHT_FAILED',
        `nothing was changed: ${first.errorCount} entr${first.errorCount === 1 ? 'y' : 'ies'} could not be read (first: ${e?.op} ${e?.path || '.'}: ${e?.errno})`,
        { hint: 'fix the access problem, or shift as root', data: { errors: first.errors }, result: first },
      );
    }
    if (first.unmapped.length > 0) {
      throw new ShiftError(
        'SHIFT_UNMAPPED_IDS',
        `nothing was changed: the ${reverse ? '--to map (reversed)' : '--from map'} does not translate ${describeUnmapped(first.unmapped)}`,
        {
          hint: "extend the maps (see 'userns fit'), or choose --unmapped skip or --unmapped overflow",
          data: { unmapped: first.unmapped },
          result: first,
        },
      );
    }
    total = first.seen;
  }

  const collector = new Collector(root, view, examples);
  const summary = await runWalk(
    {
      ...baseJob,
      apply: true,
      list: options.onChange !== undefined,
      count: total === null && options.countFirst === true,
    },
    { ...walkOptions, onRecord: onRecord(collector, total, true) },
  );
  const done = result(summary, collector, false);
  const incomplete = shiftIncomplete(done, policy);
  if (incomplete !== null) {
    throw new ShiftError('SHIFT_INCOMPLETE', `the shift of ${root} is incomplete: ${incomplete.reason}`, {
      hint: incomplete.hint,
      data: { errors: done.errors, unmapped: done.unmapped, result: done },
      result: done,
    });
  }
  return done;
}

/**
 * Whether a shift's result (or a dry run's: what the run would do) leaves work undone under
 * `policy`, and why: errors; with 'error', IDs without translation; with 'overflow', entries
 * that kept their IDs anyway (owned outside the protective namespace, which cannot change them).
 * With 'skip', kept IDs are what was asked for. null: complete.
 */
export function shiftIncomplete(
  r: ShiftResult,
  policy: UnmappedPolicy,
): { reason: string; hint: string } | null {
  const parts: string[] = [];
  let hint = r.resumable
    ? 'the entries listed were left as they were; fix the cause and run the same shift again (entries already shifted count as done)'
    : 'the entries listed were left as they were; the two ranges overlap, so running the same shift again would shift the entries already done twice: fix the cause and shift only what is left (see the README on interrupted shifts)';
  if (r.errorCount > 0) {
    const e = r.errors[0];
    parts.push(
      `${r.errorCount} error${r.errorCount === 1 ? '' : 's'}${e ? ` (first: ${e.op} ${e.path || '.'}: ${e.errno})` : ''}`,
    );
  }
  if (policy === 'error' && r.unmapped.length > 0)
    parts.push(`untranslated: ${describeUnmapped(r.unmapped)}`);
  if (policy === 'overflow' && r.skipped > 0) {
    parts.push(
      `${r.skipped} entr${r.skipped === 1 ? 'y' : 'ies'} kept ${r.skipped === 1 ? 'its' : 'their'} IDs instead of the overflow ID: ` +
        `the protective user namespace cannot change an entry owned outside the source and target ranges (${describeUnmapped(r.unmapped)})`,
    );
    hint =
      'to write the overflow ID on them, shift with --no-userns (as root; userns: false), or add their IDs to --from';
  }
  return parts.length === 0 ? null : { reason: parts.join('; '), hint };
}
