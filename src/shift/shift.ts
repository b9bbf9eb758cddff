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
import { ShiftError, SpawnError } from '../errors/index.js';
import { type IdKind, MAX_MAPPABLE_ID } from '../idmap/extent.js';
import type { IdMap } from '../idmap/idmap.js';
import { type IdRange, outsideRanges, unionRanges } from '../idmap/ranges.js';
import { requireValidMap } from '../idmap/validate.js';
import type { MapWriteOptions } from '../maps/write-maps.js';
import { overflowIds } from '../system/knobs.js';
import { pageSize } from '../system/proc.js';
import { getSubordinateRanges } from '../system/subordinate.js';
import { currentUser } from '../system/users.js';
import {
  isPending,
  lockTree,
  pendingNested,
  readRecord,
  removeRecord,
  type ShiftIntent,
  type ShiftRecord,
  sameShift,
  shiftCommand,
  type TreeIdentity,
  treeIdentity,
  writeRecord,
} from './record.js';
import {
  doneRanges,
  intermediateRange,
  outsideRangesOverlap,
  protectiveMap,
  rangesInView,
  shiftTranslation,
  tableOf,
  touchedRanges,
  twoPhaseTranslations,
  viewTranslation,
} from './translation.js';
import {
  defaultWorkers,
  runCheckedWalk,
  runWalk,
  type Translation,
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
  /**
   * State root that holds the progress record of an unfinished shift (default: src/state/
   * state-root.ts defaultStateRoot; see src/shift/record.ts).
   */
  stateRoot?: string;
  /**
   * Ignore the record of an interrupted shift of this tree, or of a completed two-phase shift,
   * and shift as asked (after the tree was restored from a backup): this shift's own record
   * replaces it before the first change; a shift refused before any change keeps it. Default
   * false: a pending record of another shift is SHIFT_PENDING_OTHER, a completed record of this
   * same shift, of this tree or of one inside or around it, is SHIFT_ALREADY_DONE (also set aside
   * by this option).
   */
  forgetInterrupted?: boolean;
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
   * Whether running the same shift again finishes it after an interruption: always true (kept
   * for scripts). When the maps' outside ranges do not overlap an ID already shifted is never one
   * still to shift; when they do, the shift goes through an intermediate range (see `method`).
   */
  resumable: boolean;
  /**
   * 'direct': one walk, old IDs to new. 'two-phase': the outside ranges overlap, so every ID
   * first goes to an intermediate range that overlaps neither map, then to its new ID; the
   * record under the state root says which phase an interrupted shift reached.
   */
  method: 'direct' | 'two-phase';
  /** The intermediate ranges of a two-phase shift (caller's IDs; count 0: none needed), else null. */
  intermediate: { uid: IdRange; gid: IdRange } | null;
  /** Whether this run continued an interrupted shift of the same maps (its record was found). */
  continued: boolean;
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
 * Interruptions: before the first change a record is written under the state root (see
 * src/shift/record.ts) and it is removed once the shift completed; the same shift, run again,
 * finishes the job. Between maps whose outside ranges overlap, every ID goes through an
 * intermediate range (`method: 'two-phase'`), so that each phase alone moves IDs between
 * disjoint ranges and the record says which phase was reached; once such a shift completed its
 * record is kept, marked completed, and the same shift run again is refused (it would shift
 * every entry a second time). A shift with other maps or options is not blocked by it.
 *
 * Throws MapError MAP_INVALID (a map the kernel would refuse, before anything is read);
 * ShiftError (result = what the walk did): SHIFT_NOT_A_DIRECTORY, SHIFT_DIR_UNREADABLE,
 * SHIFT_PREFLIGHT_FAILED (unreadable entries, nothing changed), SHIFT_UNMAPPED_IDS (nothing
 * changed), SHIFT_INCOMPLETE (some entries left as they were), SHIFT_ALREADY_DONE (this same
 * two-phase shift of the tree has completed; nothing changed), SHIFT_PENDING_OTHER (the tree,
 * or a tree inside it or around it, has the record of another, interrupted shift), SHIFT_BUSY (another shift of the tree is
 * running), SHIFT_INTERMEDIATE_IN_USE / SHIFT_NO_INTERMEDIATE_RANGE (overlapping ranges and no
 * usable intermediate range; nothing changed), SHIFT_RECORD_UNREADABLE; StateRootError when the
 * record cannot be written (nothing changed); ShiftPlanError when the maps do not fit one
 * namespace; NewIdmapError / SpawnError when the walk cannot start.
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
  const intent: ShiftIntent = {
    from,
    to,
    unmapped: policy,
    crossFilesystems: options.crossFilesystems ?? false,
  };
  const identity = treeIdentity(root);
  // A dry run reads the record but never locks or writes anything under the state root.
  const lock = options.dryRun ? null : await lockTree(options.stateRoot, identity, root);
  try {
    let pending = readRecord(options.stateRoot, identity, lock !== null);
    // A forgotten record is replaced only when this shift writes its own, before its first
    // change: a shift refused before that (intermediate IDs in the tree, untranslated IDs) keeps
    // it, so the interrupted shift can still be finished.
    let forgotten: ShiftRecord | null = null;
    if (pending !== null && !isPending(pending)) {
      // A completed two-phase shift: the same shift again would shift every entry a second time
      // (its ranges overlap, so no ID says whether it is done). Another shift is not blocked;
      // its record replaces this one at its first change (a run that changes nothing keeps it).
      const done = pending;
      pending = null;
      if (sameShift(done, intent) && !options.forgetInterrupted) {
        const command = shiftCommand(done, root, options.stateRoot);
        throw new ShiftError(
          'SHIFT_ALREADY_DONE',
          `nothing was changed: ${root} was already shifted by this shift, which completed at ${done.completed} ` +
            '(its ranges overlap, so running it again would shift every entry a second time)',
          {
            hint:
              'nothing to do; if the tree has been restored from a backup since (or must really be shifted again), ' +
              'add --forget-interrupted (API: forgetInterrupted)',
            data: {
              completed: { command, started: done.started, completed: done.completed, dir: root },
            },
          },
        );
      }
      forgotten = done;
    }
    if (pending !== null && options.forgetInterrupted) {
      forgotten = pending;
      pending = null;
    }
    if (pending !== null && !sameShift(pending, intent)) {
      const command = shiftCommand(pending, root, options.stateRoot);
      throw new ShiftError(
        'SHIFT_PENDING_OTHER',
        `${root} is half shifted by another shift, interrupted (started ${pending.started}): ${command}`,
        {
          hint:
            'finish that shift first: run that command again; if the tree has been restored from a backup ' +
            'since, add --forget-interrupted (API: forgetInterrupted) to this shift',
          data: {
            pending: { command, started: pending.started, phase: pending.phase },
          },
        },
      );
    }
    const found = pendingNested(options.stateRoot, root, identity);
    if (found !== null) {
      const nested = found.record;
      const command = shiftCommand(nested, nested.tree.path, options.stateRoot);
      const inside = found.where === 'inside';
      throw new ShiftError(
        'SHIFT_PENDING_OTHER',
        `${inside ? `${nested.tree.path}, inside ${root},` : `${root} is inside ${nested.tree.path}, which`} is half shifted by an interrupted shift (started ${nested.started}): ${command}`,
        {
          hint:
            'finish that shift first: run that command again (a shift of a tree inside another, or around it, ' +
            'would handle some entries twice); if that tree has been restored from a backup since, shift it ' +
            'with --forget-interrupted',
          data: {
            pending: { command, started: nested.started, phase: nested.phase, dir: nested.tree.path },
          },
        },
      );
    }
    // A completed two-phase shift of a tree inside this one, or around it, by these same maps:
    // this shift would shift that tree's entries a second time.
    const done = options.forgetInterrupted
      ? null
      : pendingNested(options.stateRoot, root, identity, (r) => !isPending(r) && sameShift(r, intent));
    if (done !== null) {
      const nested = done.record;
      const inside = done.where === 'inside';
      throw new ShiftError(
        'SHIFT_ALREADY_DONE',
        `nothing was changed: ${inside ? `${nested.tree.path}, inside ${root},` : `${root} is inside ${nested.tree.path}, which`} was already shifted by this shift, which completed at ${nested.completed} ` +
          `(its ranges overlap, so this shift would shift ${inside ? "that tree's" : 'these'} entries a second time)`,
        {
          hint: inside
            ? `shift the other directories of ${root} one by one instead; if that tree has been restored from a backup since, add --forget-interrupted (API: forgetInterrupted)`
            : 'nothing to do; if this tree has been restored from a backup since, add --forget-interrupted (API: forgetInterrupted)',
          data: {
            completed: {
              command: shiftCommand(nested, nested.tree.path, options.stateRoot),
              started: nested.started,
              completed: nested.completed,
              dir: nested.tree.path,
            },
          },
        },
      );
    }
    return await shiftPlanned(root, identity, intent, pending, forgotten, { ...options, reverse }, started);
  } finally {
    lock?.release({ remove: true });
  }
}

/** The test hook USERNS_TEST_SHIFT_STOP_AFTER=[PHASE:]N: the walk stops itself after N changes of that phase. */
function stopAfter(phase: 1 | 2): number | undefined {
  const m = /^(?:([12]):)?([1-9]\d*)$/.exec(process.env.USERNS_TEST_SHIFT_STOP_AFTER ?? '');
  return m !== null && Number(m[1] ?? 1) === phase ? Number(m[2]) : undefined;
}

/** The intermediate range of one kind: `count` IDs outside both maps that the walk may write. */
async function chooseIntermediate(
  kind: IdKind,
  count: number,
  avoid: IdRange[],
  useNamespace: boolean,
): Promise<IdRange> {
  if (count === 0) return { start: 0, count: 0 };
  const privileged = !useNamespace || (process.geteuid?.() ?? 0) === 0;
  // Rootless: newuidmap maps only the caller's subordinate IDs into the protective namespace.
  const allowed = privileged
    ? [{ start: 0, count: MAX_MAPPABLE_ID }]
    : (await getSubordinateRanges(await currentUser(), kind)).ranges;
  const found = intermediateRange(count, allowed, avoid);
  if (found === null) {
    throw new ShiftError(
      'SHIFT_NO_INTERMEDIATE_RANGE',
      `the --from and --to ${kind} ranges overlap, and no ${count} ${kind}s outside both are free ${privileged ? 'below 4294967294' : 'in your subordinate IDs'} to shift through (a shift between overlapping ranges goes through such a range so that an interruption can be finished)`,
      {
        hint: privileged
          ? 'use smaller ranges'
          : `ask for more subordinate ${kind}s (/etc/sub${kind}), or shift as root`,
      },
    );
  }
  return found;
}

type KindRanges = { uid: IdRange[]; gid: IdRange[] };

/** The shift itself, under the tree's lock, once the pending record (if any) is known to be this shift's. */
async function shiftPlanned(
  root: string,
  identity: TreeIdentity,
  intent: ShiftIntent,
  pending: ShiftRecord | null,
  forgotten: ShiftRecord | null,
  options: ShiftOptions & { reverse: boolean },
  started: number,
): Promise<ShiftResult> {
  const { from, to, unmapped: policy } = intent;
  const reverse = options.reverse;
  const useNamespace = options.userns ?? true;
  const kinds = ['uid', 'gid'] as const;
  const translation = { uid: shiftTranslation(from.uid, to.uid), gid: shiftTranslation(from.gid, to.gid) };
  const method: 'direct' | 'two-phase' = kinds.some((k) => outsideRangesOverlap(from[k], to[k]))
    ? 'two-phase'
    : 'direct';
  const ids = overflowIds();
  const overflow = { uid: ids.uid.value ?? 65534, gid: ids.gid.value ?? 65534 };
  const intermediate =
    method === 'direct'
      ? null
      : (pending?.intermediate ?? {
          uid: await chooseIntermediate(
            'uid',
            translation.uid.size,
            touchedRanges(from.uid, to.uid, [overflow.uid]),
            useNamespace,
          ),
          gid: await chooseIntermediate(
            'gid',
            translation.gid.size,
            touchedRanges(from.gid, to.gid, [overflow.gid]),
            useNamespace,
          ),
        });
  const part: KindRanges = {
    uid: intermediate && intermediate.uid.count > 0 ? [intermediate.uid] : [],
    gid: intermediate && intermediate.gid.count > 0 ? [intermediate.gid] : [],
  };
  const phases = intermediate && {
    uid: twoPhaseTranslations(translation.uid, intermediate.uid.start),
    gid: twoPhaseTranslations(translation.gid, intermediate.gid.start),
  };
  const kept: KindRanges = { uid: doneRanges(from.uid, to.uid), gid: doneRanges(from.gid, to.gid) };
  const inTo: KindRanges = { uid: outsideRanges(to.uid), gid: outsideRanges(to.gid) };
  const none: KindRanges = { uid: [], gid: [] };

  let view: KindMaps | null = null;
  let namespace: WalkNamespace | null = null;
  let overflowInWalk = overflow;
  if (useNamespace) {
    const extra = (id: number) => (policy === 'overflow' ? [id] : []);
    view = {
      uid: protectiveMap(unionRanges(touchedRanges(from.uid, to.uid, extra(overflow.uid)), part.uid), [
        overflow.uid,
      ]),
      gid: protectiveMap(unionRanges(touchedRanges(from.gid, to.gid, extra(overflow.gid)), part.gid), [
        overflow.gid,
      ]),
    };
    namespace = {
      uid: view.uid,
      gid: view.gid,
      ...(options.mapWrite === undefined ? {} : { mapWrite: options.mapWrite }),
    };
    overflowInWalk = {
      uid: view.uid.toInside(overflow.uid) ?? overflow.uid,
      gid: view.gid.toInside(overflow.gid) ?? overflow.gid,
    };
  }
  const inView = (k: IdKind, ranges: IdRange[]) => (view === null ? ranges : rangesInView(ranges, view[k]));
  const tablesOf = (k: IdKind, maps: IdMap[]): Translation[] =>
    maps.flatMap((m) => tableOf(view === null ? m : viewTranslation(m, view[k])));

  /** A walk job: the translations (caller IDs; several are concatenated), the kept ranges, the policy. */
  const jobFor = (
    maps: { uid: IdMap[]; gid: IdMap[] },
    keep: KindRanges,
    written: KindRanges,
    unmapped: UnmappedPolicy,
  ): WalkJob => ({
    root,
    apply: false,
    list: false,
    uid: tablesOf('uid', maps.uid),
    gid: tablesOf('gid', maps.gid),
    uidDone: inView('uid', keep.uid),
    gidDone: inView('gid', keep.gid),
    uidPart: inView('uid', written.uid),
    gidPart: inView('gid', written.gid),
    unmapped,
    ...(unmapped === 'overflow' ? { overflow: overflowInWalk } : {}),
    // The protective namespace never maps the overflow IDs: an owner shown as one is outside it.
    ...(useNamespace ? { outside: overflow } : {}),
    // In the protective namespace nothing maps to inside 0, so a v1/v2 capability's root is unmapped.
    v2root: useNamespace ? null : 0,
    crossFilesystems: intent.crossFilesystems,
    progress: options.onProgress ? (options.progressEvery ?? 4096) : 0,
    count: false,
    workers: options.workers ?? defaultWorkers(),
  });
  const walkOptions = {
    namespace,
    ...(options.helperPath === undefined ? {} : { helperPath: options.helperPath }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  };
  const examples = options.examples ?? 3;
  /** Turns a change record into the caller's IDs; `back` undoes the first phase (intermediate → original ID). */
  const changeOf = (record: Extract<WalkRecord, { type: 'change' }>, back: KindMaps | null): ShiftChange => {
    const id = (k: IdKind, v: number) => {
      const caller = callerId(view, k, v);
      return caller === null || back === null ? caller : (back[k].toOutside(caller) ?? caller);
    };
    return {
      path: record.path === '' ? '.' : record.path,
      fileType: record.fileType,
      old: { uid: id('uid', record.old.uid), gid: id('gid', record.old.gid) },
      new: { uid: callerId(view, 'uid', record.new.uid), gid: callerId(view, 'gid', record.new.gid) },
      what: record.what,
    };
  };
  const inPart = (k: IdKind, id: number | null) =>
    id !== null && part[k].some((r) => id >= r.start && id < r.start + r.count);
  /**
   * Listing: each entry once, with its original and final IDs. The first phase's changes that
   * reach the intermediate range are listed by the second phase (its old IDs taken back through
   * the first phase); the others (an overflow ID written) by the first.
   */
  const listed = (which: 'only' | 'first' | 'second') => (change: ShiftChange) =>
    which !== 'first' || !(inPart('uid', change.new.uid) || inPart('gid', change.new.gid));
  const back: KindMaps | null = phases && { uid: phases.uid.first.invert(), gid: phases.gid.first.invert() };
  const onRecord =
    (
      collector: Collector,
      total: number | null,
      report: boolean,
      which: 'only' | 'first' | 'second',
      offset = 0,
    ) =>
    (record: WalkRecord): void => {
      if (record.type === 'progress')
        options.onProgress?.({ seen: record.seen + offset, changed: record.changed, total });
      else if (record.type === 'total') total = record.total;
      else if (record.type === 'change') {
        if (!report || options.onChange === undefined) return;
        const change = changeOf(record, which === 'second' ? back : null);
        if (listed(which)(change)) options.onChange(change);
      } else collector.add(record);
    };
  const result = (summary: WalkSummary, collector: Collector, dryRun: boolean): ShiftResult => ({
    dir: root,
    dryRun,
    reverse,
    protectiveNamespace: useNamespace,
    resumable: true,
    method,
    intermediate,
    continued: pending !== null,
    seen: summary.seen,
    changed: summary.changed + summary.resumed,
    skipped: summary.skipped,
    alreadyShifted: summary.already,
    hardlinks: summary.hardlinks,
    mountpoints: collector.mountpoints,
    unmapped: collector.sortedUnmapped(),
    errors: collector.errors,
    errorCount: summary.errors,
    elapsedMs: Math.round(performance.now() - started),
  });
  const walk = async (
    job: WalkJob,
    total: number | null,
    report: boolean,
    which: 'only' | 'first' | 'second',
    offset = 0,
  ): Promise<ShiftResult> => {
    const collector = new Collector(root, view, examples);
    const summary = await runWalk(job, {
      ...walkOptions,
      onRecord: onRecord(collector, total, report, which, offset),
    });
    return result(summary, collector, !job.apply);
  };

  // What the tree needs, as one read-only walk with the tables of the whole job: fresh, or the
  // rest of an interrupted shift (phase 1: the original IDs and the intermediate ones both go to
  // their final IDs; phase 2: the intermediate ones do).
  const phase = pending?.phase ?? 1;
  const whole =
    phases === null
      ? jobFor({ uid: [translation.uid], gid: [translation.gid] }, kept, none, policy)
      : pending === null
        ? jobFor({ uid: [translation.uid], gid: [translation.gid] }, kept, none, policy)
        : phase === 1
          ? jobFor(
              { uid: [translation.uid, phases.uid.second], gid: [translation.gid, phases.gid.second] },
              kept,
              none,
              policy,
            )
          : jobFor({ uid: [phases.uid.second], gid: [phases.gid.second] }, inTo, none, policy);

  /** Why a read-only pass forbids any change (errors, or IDs without translation), or undefined. */
  const refusal = (first: ShiftResult): ShiftError | undefined => {
    if (first.errorCount > 0) {
      const e = first.errors[0];
      return new ShiftError(
        'SHIFT_PREFLIGHT_FAILED',
        `nothing was changed: ${first.errorCount} entr${first.errorCount === 1 ? 'y' : 'ies'} could not be read (first: ${e?.op} ${e?.path || '.'}: ${e?.errno})`,
        { hint: 'fix the access problem, or shift as root', data: { errors: first.errors }, result: first },
      );
    }
    if (policy === 'error' && first.unmapped.length > 0) {
      return new ShiftError(
        'SHIFT_UNMAPPED_IDS',
        `nothing was changed: the ${reverse ? '--to map (reversed)' : '--from map'} does not translate ${describeUnmapped(first.unmapped)}`,
        {
          hint: "extend the maps (see 'userns fit'), or choose --unmapped skip or --unmapped overflow",
          data: { unmapped: first.unmapped },
          result: first,
        },
      );
    }
    return undefined;
  };

  // A one-phase shift with unmapped=error (the default) runs its read-only pass and its apply
  // pass in one helper (runCheckedWalk): the apply pass starts only when the read-only pass
  // found nothing to refuse and the record is written, and it skips the xattrs the read-only
  // pass proved absent.
  const checked = !options.dryRun && policy === 'error' && phases === null;

  // First pass (read-only), as a walk of its own: for a dry run (which is only this pass), with
  // unmapped=error when not checked, and before a fresh two-phase shift (no entry may hold an ID
  // of the intermediate range).
  let total: number | null = null;
  if (!checked && (options.dryRun || policy === 'error' || (phases !== null && pending === null))) {
    const first = await walk(
      { ...whole, list: options.dryRun === true && options.onChange !== undefined },
      null,
      options.dryRun === true,
      'only',
    );
    if (phases !== null && pending === null) {
      const used = first.unmapped.filter((u) => inPart(u.kind, u.id));
      if (used.length > 0) {
        throw new ShiftError(
          'SHIFT_INTERMEDIATE_IN_USE',
          `nothing was changed: the --from and --to ranges overlap, so the shift goes through intermediate IDs (uid ${describeRange(part.uid)}, gid ${describeRange(part.gid)}), and the tree already holds some: ${describeUnmapped(used)}`,
          {
            hint:
              'if a shift between these maps was interrupted before the machine restarted (its record is gone), ' +
              'a rerun cannot tell which entries are done: restore the tree from a backup. Otherwise shift in two ' +
              'steps through a range of your choice that overlaps neither (--to it, then --from it)',
            data: { unmapped: used, intermediate },
            result: first,
          },
        );
      }
    }
    if (options.dryRun) return first;
    const refused = refusal(first);
    if (refused !== undefined) throw refused;
    total = first.seen;
  }

  // The record, before the first change.
  let record: ShiftRecord =
    pending ??
    ({
      ...intent,
      tree: { ...identity, path: root },
      method,
      intermediate,
      phase: 1,
      started: new Date().toISOString(),
      completed: null,
    } satisfies ShiftRecord);
  // (A checked walk writes it once its read-only pass has passed: see below.)
  if (pending === null && !checked) writeRecord(options.stateRoot, record);
  /**
   * A first run that changed nothing: no record of its own (a record it replaced comes back; a
   * completed one still describes the tree).
   */
  const dropRecord = () =>
    forgotten === null
      ? removeRecord(options.stateRoot, identity)
      : writeRecord(options.stateRoot, forgotten);
  const stopWhen = (p: 1 | 2) => {
    const n = stopAfter(p);
    return n === undefined ? {} : { stopAfter: n };
  };
  const incompleteError = (done: ShiftResult, reason: string, hint: string) =>
    new ShiftError('SHIFT_INCOMPLETE', `the shift of ${root} is incomplete: ${reason}`, {
      hint,
      data: { errors: done.errors, unmapped: done.unmapped, result: done },
      result: done,
    });

  let done: ShiftResult;
  if (checked) {
    const checkCollector = new Collector(root, view, examples);
    const collector = new Collector(root, view, examples);
    let first: ShiftResult | undefined;
    let refused: ShiftError | undefined;
    let recordError: { error: unknown } | undefined;
    let applyRecord: ((record: WalkRecord) => void) | undefined;
    const walked = await runCheckedWalk(
      { ...whole, apply: true, list: options.onChange !== undefined, ...stopWhen(1) },
      {
        ...walkOptions,
        onCheckRecord: onRecord(checkCollector, null, false, 'only'),
        onRecord: (r) => applyRecord?.(r),
        decide: (summary) => {
          first = result(summary, checkCollector, true);
          refused = refusal(first);
          if (refused !== undefined) return false;
          // The record, before the first change.
          if (pending === null) {
            try {
              writeRecord(options.stateRoot, record);
            } catch (error) {
              recordError = { error };
              return false;
            }
          }
          applyRecord = onRecord(collector, first.seen, true, 'only');
          return true;
        },
      },
    );
    if (recordError !== undefined) throw recordError.error;
    if (refused !== undefined) throw refused;
    if (walked.applied === null) {
      throw (
        refusal(first ?? result(walked.check, checkCollector, true)) ??
        new SpawnError(
          'WALK_FAILED',
          `the tree walk of ${root} stopped after its read-only pass; nothing was changed`,
        )
      );
    }
    done = result(walked.applied, collector, false);
  } else if (phases === null) {
    done = await walk(
      {
        ...whole,
        apply: true,
        list: options.onChange !== undefined,
        count: total === null && options.countFirst === true,
        ...stopWhen(1),
      },
      total,
      true,
      'only',
    );
  } else {
    const twice = total === null ? null : total * 2;
    let p1: ShiftResult | null = null;
    if (record.phase === 1) {
      p1 = await walk(
        {
          ...jobFor({ uid: [phases.uid.first], gid: [phases.gid.first] }, kept, part, policy),
          apply: true,
          list: options.onChange !== undefined,
          ...stopWhen(1),
        },
        twice,
        true,
        'first',
      );
      // The second phase may start only once every entry has left the source range.
      const left = shiftIncomplete(p1, policy);
      if (p1.errorCount > 0 || (policy === 'error' && p1.unmapped.length > 0)) {
        // A first run that changed nothing leaves nothing half done.
        if (pending === null && p1.changed === 0) dropRecord();
        throw incompleteError(
          p1,
          left?.reason ?? 'entries left as they were',
          'fix the cause and run the same shift again: it finishes where this one stopped (the shift between overlapping ranges goes through intermediate IDs, and its record says how far it got)',
        );
      }
      record = { ...record, phase: 2 };
      writeRecord(options.stateRoot, record);
    }
    const p2 = await walk(
      {
        ...jobFor(
          { uid: [phases.uid.second], gid: [phases.gid.second] },
          inTo,
          none,
          policy === 'error' ? 'error' : 'skip',
        ),
        apply: true,
        list: options.onChange !== undefined,
        ...stopWhen(2),
      },
      twice,
      true,
      'second',
      p1?.seen ?? 0,
    );
    done =
      p1 === null
        ? p2
        : {
            ...p1,
            errors: [...p1.errors, ...p2.errors].slice(0, MAX_ERRORS_KEPT),
            errorCount: p1.errorCount + p2.errorCount,
            elapsedMs: p2.elapsedMs,
          };
    if (p2.errorCount > 0 || (policy === 'error' && p2.unmapped.length > 0)) {
      const left = shiftIncomplete(p2, policy === 'error' ? 'error' : 'skip');
      throw incompleteError(
        done,
        left?.reason ?? 'entries left as they were',
        'fix the cause and run the same shift again: it finishes the second phase where this one stopped',
      );
    }
  }
  const incomplete = shiftIncomplete(done, policy);
  // Errors leave the record (the same shift, run again, finishes the job), unless this was the
  // first run and it changed nothing. Once complete, a direct shift needs no record (a rerun
  // finds every ID in --to and leaves it); a two-phase one keeps its record, marked completed,
  // so that a rerun is refused instead of shifting every entry again. A run that changed nothing
  // in place of a completed record puts that record back: the tree is still as it describes.
  if (done.errorCount === 0) {
    if (pending === null && done.changed === 0 && forgotten !== null && !isPending(forgotten)) dropRecord();
    else if (method === 'two-phase')
      writeRecord(options.stateRoot, { ...record, phase: 2, completed: new Date().toISOString() });
    else removeRecord(options.stateRoot, identity);
  } else if (pending === null && done.changed === 0) dropRecord();
  if (incomplete !== null) throw incompleteError(done, incomplete.reason, incomplete.hint);
  return done;
}

/** "4294901758-4294967293", or "none". */
function describeRange(ranges: readonly IdRange[]): string {
  return ranges.length === 0 ? 'none' : ranges.map((r) => `${r.start}-${r.start + r.count - 1}`).join(', ');
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
  let hint =
    'the entries listed were left as they were; fix the cause and run the same shift again (it finishes where this one stopped: entries already shifted count as done)';
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
      r.method === 'two-phase'
        ? 'the other entries are shifted; to write the overflow ID on these, chown them as root (this shift is complete: its ranges overlap, so running it again is refused, as it would shift the other entries twice)'
        : 'to write the overflow ID on them, shift with --no-userns (as root; userns: false), or add their IDs to --from';
  }
  return parts.length === 0 ? null : { reason: parts.join('; '), hint };
}
