/** `userns create`: named namespaces kept alive by a keeper, recorded on disk (see paths.ts). */
import { closeSync, constants, lstatSync, mkdirSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { withAutoUserns } from '../alloc/auto.js';
import { DOCTOR_HINT, NamespaceError } from '../errors/index.js';
import { IdMap } from '../idmap/idmap.js';
import type { UsernsModeSpec } from '../maps/modes.js';
import { formatMountSpec } from '../mount/spec.js';
import type { HelperHandle, Namespace } from '../native/helper.js';
import type { SpawnOptions } from '../spawn/spawn.js';
import { fsyncDirectory, writeFileAtomic } from '../state/atomic.js';
import { validateName } from '../state/names.js';
import { procPidNamespace } from '../system/proc.js';
import { cleanAbandoned, lockFor, releaseAllocationOf, startKeeper } from './keeper.js';
import { staleReason, stopKeeper } from './liveness.js';
import { namespaceRoot, pathsFor, type RootOption, removeEntry } from './paths.js';
import { examine, type NamespaceState, notFound, type StoredOptions, unusable } from './state.js';

const { O_CREAT, O_EXCL, O_WRONLY, O_NOFOLLOW } = constants;

/** Options of {@link createNamespace}: the mapping and namespace options of spawn(), and the state root. */
export interface CreateOptions
  extends RootOption,
    Pick<
      SpawnOptions,
      | 'setgroups'
      | 'user'
      | 'group'
      | 'noSplit'
      | 'fallback'
      | 'newuidmap'
      | 'newgidmap'
      | 'privileged'
      | 'onWarning'
      | 'helperPath'
      | 'mounts'
    > {
  /**
   * As SpawnOptions.userns, or `auto:size=N[,…]`: a fresh range from the allocation registry,
   * owned by the namespace (released by removeNamespace, or by gcAllocations once it is gone).
   */
  userns?: UsernsModeSpec | `auto:${string}`;
  /** As SpawnOptions.uidMap (an IdMap is stored as its text). */
  uidMap?: SpawnOptions['uidMap'];
  gidMap?: SpawnOptions['gidMap'];
  /** Namespaces besides the user namespace. */
  namespaces?: readonly Exclude<Namespace, 'user'>[];
  /** Mount a fresh /proc (default: with a PID namespace). */
  mountProc?: boolean;
}

function storedOptions(options: CreateOptions): StoredOptions {
  const spec = (s: SpawnOptions['uidMap']) => (s instanceof IdMap ? s.toString() : s);
  const uid = spec(options.uidMap);
  const gid = spec(options.gidMap);
  return {
    ...(options.userns === undefined ? {} : { userns: options.userns }),
    ...(uid === undefined ? {} : { uidMap: uid }),
    ...(gid === undefined ? {} : { gidMap: gid }),
    namespaces: [...new Set(options.namespaces ?? [])],
    ...(options.setgroups === undefined ? {} : { setgroups: options.setgroups }),
    ...(options.user === undefined ? {} : { user: options.user }),
    ...(options.group === undefined ? {} : { group: options.group }),
    ...(options.noSplit ? { noSplit: true } : {}),
    ...(options.fallback === undefined ? {} : { fallback: options.fallback }),
    ...(options.mounts?.length ? { mounts: options.mounts.map(formatMountSpec) } : {}),
  };
}

/**
 * Starts the keeper; `--userns auto:…` first takes a range from the registry, owned by this
 * namespace (released by rm, or by `userns alloc gc` once the keeper is gone), and released
 * again here when the keeper cannot be started.
 */
async function startKeeperWithAllocation(
  name: string,
  requested: CreateOptions,
  root: string,
): Promise<{ handle: HelperHandle; state: NamespaceState }> {
  const { root: _root, ...mapping } = requested;
  const auto = await withAutoUserns(mapping, { namespace: name, stateRoot: root });
  try {
    const started = await startKeeper(name, { ...auto.options, stored: storedOptions(requested) });
    if (auto.allocation !== null) started.state.allocation = auto.allocation.id;
    return started;
  } catch (error) {
    if (auto.allocation !== null) await releaseAllocationOf(auto.allocation.id, root);
    throw error;
  }
}

/**
 * Creates the namespaces `name`, keeps them alive with a keeper process and records them.
 * Throws NS_EXISTS when the name is taken (a stale entry too: remove it first), INVALID_NAME,
 * NS_UNSAFE, and the errors of spawn() for namespaces or maps that cannot be made.
 */
export async function createNamespace(name: string, options: CreateOptions = {}): Promise<NamespaceState> {
  validateName(name, 'namespace name');
  const root = namespaceRoot(options, true)!;
  const paths = pathsFor(name, root);
  const lock = await lockFor(paths, name, 30_000);
  let created = false;
  try {
    const existing = examine(name, paths, true);
    if (existing !== undefined) {
      if (existing.status !== 'abandoned') throw unusable(existing, true);
      await cleanAbandoned(existing, paths);
    }
    try {
      mkdirSync(paths.entry, { mode: 0o700 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        const now = examine(name, paths, true);
        throw now === undefined ? notFound(name) : unusable(now, true);
      }
      throw error;
    }
    // The creator's identity, so that a later create/rm/list knows when it died unfinished.
    const fd = openSync(paths.marker, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW, 0o600);
    try {
      // For people only: liveness is the lock, never this PID (it may be of another PID namespace).
      writeSync(
        fd,
        `by process ${process.pid} of pid:[${procPidNamespace() ?? '?'}] since ${new Date().toISOString()}\n`,
      );
    } finally {
      closeSync(fd);
    }
    fsyncDirectory(paths.nsDir);
    let state: NamespaceState | undefined;
    try {
      const started = await startKeeperWithAllocation(name, options, root);
      state = started.state;
      writeFileAtomic(paths.state, `${JSON.stringify(state, null, 2)}\n`);
      await started.handle.commit();
      await new Promise<void>((resolve) => {
        const child = started.handle.child;
        if (child.exitCode !== null || child.signalCode !== null) resolve();
        else child.once('exit', () => resolve());
      });
      const stale = staleReason(state);
      if (stale !== undefined) {
        throw new NamespaceError('NS_KEEPER_FAILED', `the keeper did not stay: ${stale}`, {
          hint: DOCTOR_HINT,
        });
      }
      // Commit point.
      unlinkSync(paths.marker);
      fsyncDirectory(paths.entry);
      created = true;
      return state;
    } catch (error) {
      if (state !== undefined) await stopKeeper(state.keeperPid, state.keeperStartTime);
      if (state?.allocation !== undefined) await releaseAllocationOf(state.allocation, root);
      removeEntry(paths);
      throw error;
    }
  } finally {
    // A failed create leaves no entry: its lock file goes too.
    lock.release({ remove: !created && lstatSync(paths.entry, { throwIfNoEntry: false }) === undefined });
  }
}
