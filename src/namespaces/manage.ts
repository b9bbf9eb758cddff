/** `userns list`, `inspect` and `rm`: named namespaces as they are now. */
import { lstatSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NamespaceError } from '../errors/index.js';
import type { IdKind } from '../idmap/extent.js';
import { type IdRange, subtractRanges } from '../idmap/ranges.js';
import { probeNsfs } from '../native/nsfs.js';
import type { FileLock } from '../state/lock.js';
import { validateName } from '../state/names.js';
import { ensurePrivateDir } from '../state/state-root.js';
import { readIdMapSync, readProcessIdentity, readSetgroupsSync } from '../system/proc.js';
import { hasHandles, settleByHandles, staleMeansGone } from './handles.js';
import { cleanAbandoned, currentSubids, lockFor, releaseAllocationOf, releaseBinds } from './keeper.js';
import { stopKeeper } from './liveness.js';
import { namespaceRoot, type Paths, pathsFor, type RootOption, removeEntry } from './paths.js';
import {
  type Examined,
  examine,
  type NamespaceInfo,
  type NamespaceStatus,
  notFound,
  publicInfo,
  unusable,
} from './state.js';

/** How a user's subordinate ranges changed since a namespace was created. */
export interface SubidChange {
  kind: IdKind;
  /** Ranges that are in the subordinate files now but were not at creation (not mapped). */
  added: IdRange[];
  /** Ranges recorded at creation that are no longer there (still mapped by the namespace). */
  removed: IdRange[];
}

/** What {@link inspectNamespace} shows: the entry, the maps in force, and subordinate-range changes. */
export interface InspectResult extends NamespaceInfo {
  /** The maps in force now (read from /proc/KEEPER: hold keeper, running, keeper visible here). */
  live: { uidMap: [number, number, number][]; gidMap: [number, number, number][]; setgroups: string } | null;
  /** Changes of the subordinate ranges since creation (empty: none, or not applicable). */
  subidChanges: SubidChange[];
  warnings: string[];
}

/** Options of {@link removeNamespace}. */
export interface RemoveOptions extends RootOption {
  /** Also remove broken and unsafe entries (never following a link), and succeed when absent. */
  force?: boolean;
}

/** What {@link removeNamespace} did. */
export interface RemoveResult {
  name: string;
  removed: boolean;
  /** The status the entry had. */
  status: NamespaceStatus | 'absent';
  /** Whether a keeper was signalled (SIGTERM, then SIGKILL when it did not exit). */
  keeperStopped: boolean;
  /** Hold mount: whether bind mounts were removed. */
  unmounted: boolean;
  /**
   * Whether its namespaces still exist after the removal (asked by nsfs handle; null when that
   * cannot be told): other processes, open descriptors or copies of its binds still use them.
   */
  stillInUse: boolean | null;
  warnings: string[];
}

export interface ListOptions extends RootOption {
  /** Clean abandoned entries and leftovers of interrupted removals on the way (default true). */
  clean?: boolean;
}

/**
 * Every named namespace with its status. Abandoned entries (creator died) and leftovers of
 * interrupted removals are cleaned on the way (under the entry's lock), unless `clean` is false.
 */
export async function listNamespaces(options: ListOptions = {}): Promise<NamespaceInfo[]> {
  const clean = options.clean ?? true;
  const root = namespaceRoot(options, false);
  if (root === undefined) return [];
  const nsDir = join(root, 'ns');
  const out: Examined[] = [];
  for (const entry of readdirSync(nsDir).sort()) {
    if (entry.startsWith('@trash.') && clean) {
      rmSync(join(nsDir, entry), { recursive: true, force: true });
      continue;
    }
    if (entry.startsWith('@')) continue;
    let paths: Paths;
    try {
      paths = pathsFor(validateName(entry), root);
    } catch {
      continue; // not a name userns makes
    }
    let info: Examined | undefined = examine(entry, paths, false);
    if (info === undefined) continue;
    if (clean && (info.status === 'abandoned' || info.status === 'creating')) {
      let held: FileLock | undefined;
      try {
        held = await lockFor(paths, entry, 100);
      } catch {
        // someone is working on it: report what we saw
      }
      if (held !== undefined) {
        let gone = false;
        try {
          info = examine(entry, paths, true);
          if (info?.status === 'abandoned') {
            await cleanAbandoned(info, paths);
            gone = true;
          }
        } finally {
          held.release({ remove: gone || info === undefined });
        }
        if (gone) continue;
      }
      if (info === undefined) continue;
    }
    out.push(info);
  }
  return settleByHandles(out as Examined[]).map(publicInfo);
}

function rangeChanges(kind: IdKind, before: IdRange[], now: IdRange[]): SubidChange | undefined {
  const added = subtractRanges(now, before);
  const removed = subtractRanges(before, now);
  return added.length === 0 && removed.length === 0 ? undefined : { kind, added, removed };
}

/**
 * One namespace in detail: its status and recorded state, the maps in force now (from
 * /proc/KEEPER, null unless running), and how the caller's subordinate ranges changed since it
 * was created (the namespace keeps its maps). Throws NamespaceError NS_NOT_FOUND,
 * InvalidNameError INVALID_NAME.
 */
export async function inspectNamespace(name: string, options: RootOption = {}): Promise<InspectResult> {
  validateName(name, 'namespace name');
  const root = namespaceRoot(options, false);
  if (root === undefined) throw notFound(name);
  const examined = examine(name, pathsFor(name, root), false);
  if (examined === undefined) throw notFound(name);
  const info = settleByHandles([examined])[0]!;
  const warnings: string[] = [];
  let live: InspectResult['live'] = null;
  if (info.status === 'running' && info.state?.keeperPid !== undefined && info.reason === undefined) {
    const pid = info.state.keeperPid;
    try {
      live = {
        uidMap: readIdMapSync(pid, 'uid').toJSON(),
        gidMap: readIdMapSync(pid, 'gid').toJSON(),
        setgroups: readSetgroupsSync(pid),
      };
      if (JSON.stringify(live.uidMap) !== JSON.stringify(info.state.uidMap))
        warnings.push('the uid map in force differs from the recorded one');
      if (JSON.stringify(live.gidMap) !== JSON.stringify(info.state.gidMap))
        warnings.push('the gid map in force differs from the recorded one');
    } catch {
      live = null;
    }
  }
  const subidChanges: SubidChange[] = [];
  if (info.state?.subids != null && info.state.creator.uid === (process.geteuid?.() ?? 0)) {
    const now = await currentSubids().catch(() => undefined);
    if (now !== undefined) {
      for (const kind of ['uid', 'gid'] as const) {
        const change = rangeChanges(kind, info.state.subids[kind], now[kind]);
        if (change !== undefined) subidChanges.push(change);
      }
    }
    if (subidChanges.length > 0) {
      warnings.push(
        `your subordinate ${subidChanges.map((c) => `${c.kind}s`).join(' and ')} changed since ${name} was created; ` +
          `the namespace keeps the maps it was created with (a map is written once) — ` +
          `'userns rm ${name}' and create it again to use the new ranges`,
      );
    }
  }
  if (info.reason !== undefined) warnings.push(`${info.status}: ${info.reason}`);
  return { ...publicInfo(info), live, subidChanges, warnings };
}

/**
 * Whether the namespaces of `state` still exist, asked by nsfs handle (the user namespace's);
 * null when that cannot be told from here.
 */
async function stillExists(state: Examined['state'], waitMs: number): Promise<boolean | null> {
  if (state === null || !hasHandles(state)) return null;
  const user = state.namespaces.find((n) => n.type === 'user')!;
  // A user namespace stays reopenable for up to ~0.1 s after its last process was reaped
  // (deferred work in the kernel; docs/nsfs-handles.md section 5): ask again for a moment.
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      const [answer] = probeNsfs([user.handle!]).handles;
      if ((answer?.errno === 'ESTALE' || answer?.errno === 'ENOENT') && staleMeansGone(state)) return false;
      if (!(answer?.errno === null && answer.inode === user.inode)) return null;
    } catch {
      return null; // cannot ask
    }
    if (Date.now() >= deadline) return true;
    await sleep(25);
  }
}

/** Waits until the stopped keeper of `state` is reaped (its PID gone or reused); false at the deadline. */
async function keeperReaped(state: NonNullable<Examined['state']>, waitMs: number): Promise<boolean> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    let identity: ReturnType<typeof readProcessIdentity>;
    try {
      identity = readProcessIdentity(state.keeperPid!);
    } catch {
      return true;
    }
    if (identity === undefined || identity.startTime !== state.keeperStartTime) return true;
    if (Date.now() >= deadline) return false;
    await sleep(20);
  }
}

/**
 * Removes a named namespace: stops its keeper (SIGTERM, then SIGKILL) or removes its bind
 * mounts (hold mount: unmount, then unlink, which also detaches copies in other mount
 * namespaces), and deletes the entry. A `none` namespace still in use keeps living with its
 * processes (stillInUse says so). Stale, gone and abandoned entries are removed too; broken and
 * unsafe ones (never following a link) and absent names only with `force`. An entry whose keeper
 * runs in a PID namespace this process cannot see (status unknown, or running as told by its
 * handles) is never removed from here: its keeper could not be stopped (NS_UNCHECKABLE, also
 * with `force`). A registry allocation it owned is released. Throws NamespaceError NS_NOT_FOUND,
 * NS_CREATING, NS_BROKEN, NS_UNSAFE, NS_UNCHECKABLE; LockTimeoutError LOCK_TIMEOUT.
 */
export async function removeNamespace(name: string, options: RemoveOptions = {}): Promise<RemoveResult> {
  validateName(name, 'namespace name');
  const root = namespaceRoot(options, false);
  const absent = (): RemoveResult => {
    if (!options.force) throw notFound(name);
    return {
      name,
      removed: false,
      status: 'absent',
      keeperStopped: false,
      unmounted: false,
      stillInUse: null,
      warnings: [],
    };
  };
  if (root === undefined) return absent();
  ensurePrivateDir(join(root, 'ns', '@locks'), 'lock directory');
  const paths = pathsFor(name, root);
  const lock = await lockFor(paths, name);
  let removed = false;
  try {
    const examined = examine(name, paths, true);
    if (examined === undefined) return absent();
    const info = settleByHandles([examined])[0]!;
    const warnings: string[] = [];
    let keeperStopped = false;
    let unmounted = false;
    // A keeper in another PID namespace: alive (by handle) or not known: not ours to judge here.
    const keeperElsewhere =
      info.state?.hold === 'keeper' && examined.status === 'unknown' && info.status !== 'stale';
    if (keeperElsewhere) {
      throw new NamespaceError(
        'NS_UNCHECKABLE',
        `namespace ${name} cannot be removed from here: ${info.reason}; its keeper could not be stopped, and removing the record would leave it running unknown`,
        {
          hint: `run 'userns rm ${name}' where /proc shows PID namespace pid:[${info.state?.pidNamespace}] (where it was created)`,
          data: { name, status: info.status, reason: info.reason ?? null, path: info.path },
        },
      );
    }
    switch (info.status) {
      case 'running':
      case 'stale':
      case 'gone':
      case 'unknown':
      case 'abandoned':
        if (
          info.state?.keeperPid !== undefined &&
          info.state.keeperStartTime !== undefined &&
          examined.status !== 'unknown'
        )
          keeperStopped = await stopKeeper(info.state.keeperPid, info.state.keeperStartTime);
        break;
      case 'creating':
        throw unusable(info, false);
      case 'broken':
      case 'unsafe':
        if (!options.force) throw unusable(info, false);
        break;
    }
    if (info.status !== 'unsafe') {
      const hadBinds = lstatSync(paths.hold, { throwIfNoEntry: false })?.isDirectory() ?? false;
      const failed = releaseBinds(paths);
      if (failed.length > 0) {
        throw new NamespaceError(
          'NS_BROKEN',
          `namespace ${name}: cannot unmount ${failed.map((f) => `${f.file} (${f.errno})`).join(', ')}; nothing was removed`,
          { hint: `'userns rm ${name}' as the user (root) who created it`, data: { name, failed } },
        );
      }
      unmounted = hadBinds;
    }
    removeEntry(paths);
    removed = true;
    if (info.state?.allocation !== undefined) await releaseAllocationOf(info.state.allocation, root);
    let stillInUse: boolean | null = null;
    if (info.state !== null && info.status !== 'gone') {
      // A stopped keeper holds its namespaces until it is reaped (by PID 1, which on some
      // machines takes seconds): until then nothing can be told about other users (null).
      const reaped = !keeperStopped || (await keeperReaped(info.state, 0));
      // Something was stopped or unmounted: give the kernel its moment; else ask once.
      stillInUse = reaped ? await stillExists(info.state, keeperStopped || unmounted ? 1000 : 0) : null;
      if (stillInUse === true) {
        warnings.push(
          info.state.hold === 'none'
            ? `the namespaces of ${name} live on while their processes run (--hold none has no holder to stop); only the record was removed`
            : `the namespaces of ${name} are still in use by other processes or open descriptors; they end when those do`,
        );
      }
    } else if (info.status === 'gone') stillInUse = false;
    return { name, removed: true, status: info.status, keeperStopped, unmounted, stillInUse, warnings };
  } finally {
    lock.release({ remove: removed });
  }
}
