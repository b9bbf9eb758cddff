/**
 * `userns create`: named namespaces recorded on disk (see paths.ts), held by a keeper process,
 * by bind mounts of their namespace files, or by nothing but the command started in them.
 */
import type { StdioOptions } from 'node:child_process';
import {
  closeSync,
  constants,
  lstatSync,
  mkdirSync,
  openSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { withAutoUserns } from '../alloc/auto.js';
import { DOCTOR_HINT, NamespaceError } from '../errors/index.js';
import { IdMap } from '../idmap/idmap.js';
import type { UsernsModeSpec } from '../maps/modes.js';
import { formatMountSpec } from '../mount/spec.js';
import { type HelperHandle, NAMESPACES, type Namespace } from '../native/helper.js';
import { bindNamespaceFiles } from '../native/nsfs.js';
import { closed, promiseChild } from '../spawn/promise-child.js';
import { type SpawnOptions, type StartedNamespaces, spawn } from '../spawn/spawn.js';
import { fsyncDirectory, writeFileAtomic } from '../state/atomic.js';
import type { FileLock } from '../state/lock.js';
import { validateName } from '../state/names.js';
import { bootId, procPidNamespace } from '../system/proc.js';
import { hasSysAdmin, isPrivileged } from '../system/self.js';
import type { NamespaceChildProcess } from './exec.js';
import { handlesDisabled } from './handles.js';
import {
  cleanAbandoned,
  currentSubids,
  lockFor,
  releaseAllocationOf,
  releaseBinds,
  startKeeper,
} from './keeper.js';
import { holdFile, holdProblem, stopKeeper } from './liveness.js';
import { namespaceRoot, type Paths, pathsFor, type RootOption, removeEntry } from './paths.js';
import {
  examine,
  type HoldMode,
  type NamespaceState,
  notFound,
  type StoredOptions,
  unusable,
} from './state.js';

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
  /**
   * How the namespaces are kept alive (default 'keeper'): 'keeper' — a keeper process;
   * 'mount' — bind mounts of the namespace files under the entry, no process (needs
   * CAP_SYS_ADMIN over the mount namespace userns runs in, i.e. root; no PID namespace);
   * 'none' — only by the command createNamespaceWithCommand starts (needs nsfs handles, Linux
   * 6.18+). See README "Named namespaces: how they are held".
   */
  hold?: HoldMode;
}

/** Options of createNamespaceWithCommand (`--hold none`): those of create, and the command's. */
export interface CreateWithCommandOptions extends Omit<CreateOptions, 'hold'> {
  /** As child_process.spawn (default 'pipe'). */
  stdio?: StdioOptions;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
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

function holdUnsupported(message: string, hint: string, data: Record<string, unknown> = {}): NamespaceError {
  return new NamespaceError('NS_HOLD_UNSUPPORTED', message, { hint, data });
}

/**
 * Refuses, before anything is made, a hold mode this caller, these namespaces or this kernel
 * cannot use (the rules of docs/nsfs-handles.md sections 5 and 7).
 */
function checkHold(hold: HoldMode, options: CreateOptions): void {
  const pid = options.namespaces?.includes('pid') ?? false;
  if (hold === 'mount') {
    if (pid || options.mountProc)
      throw holdUnsupported(
        '--hold mount cannot hold a PID namespace: a PID namespace dies with its first process, whatever holds it',
        "use '--hold keeper' (its keeper is the PID namespace's first process), or leave out pid",
      );
    if (!hasSysAdmin())
      throw holdUnsupported(
        '--hold mount needs CAP_SYS_ADMIN over the mount namespace userns runs in (root): an unprivileged user cannot bind-mount namespace files where they outlive a process',
        "use '--hold keeper' (the default), or '--hold none -- COMMAND' to keep the namespace only while COMMAND runs",
      );
  }
  if (hold === 'none' && handlesDisabled())
    throw holdUnsupported(
      '--hold none needs nsfs file handles, and USERNS_NSFS_HANDLES=0 switches them off',
      "unset USERNS_NSFS_HANDLES, or use '--hold keeper'",
    );
}

/**
 * Starts the keeper (or, hold mount, the helper that holds the namespaces until they are bound);
 * `--userns auto:…` first takes a range from the registry, owned by this namespace (released by
 * rm, or by `userns alloc gc` once it is gone), and released again here when the start fails.
 */
async function startKeeperWithAllocation(
  name: string,
  requested: CreateOptions,
  root: string,
  hold: 'keeper' | 'mount',
): Promise<{ handle: HelperHandle; state: NamespaceState }> {
  const { root: _root, hold: _hold, ...mapping } = requested;
  const auto = await withAutoUserns(mapping, { namespace: name, stateRoot: root });
  try {
    const started = await startKeeper(name, { ...auto.options, stored: storedOptions(requested), hold });
    if (auto.allocation !== null) started.state.allocation = auto.allocation.id;
    return started;
  } catch (error) {
    if (auto.allocation !== null) await releaseAllocationOf(auto.allocation.id, root);
    throw error;
  }
}

/**
 * Takes the entry's lock and makes the entry with its "creating" marker. Throws NS_EXISTS when
 * the name is taken (a stale entry too: remove it first); an abandoned entry is cleaned first.
 */
async function beginEntry(name: string, root: string): Promise<{ paths: Paths; lock: FileLock }> {
  const paths = pathsFor(name, root);
  const lock = await lockFor(paths, name, 30_000);
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
    return { paths, lock };
  } catch (error) {
    lock.release({ remove: lstatSync(paths.entry, { throwIfNoEntry: false }) === undefined });
    throw error;
  }
}

/** The commit point: the entry stops being "creating". */
function commitEntry(paths: Paths): void {
  unlinkSync(paths.marker);
  fsyncDirectory(paths.entry);
}

/** Why a bind of a namespace file failed, in words, as an error (the helper's errno). */
function bindError(type: Namespace, errno: string, detail: string): NamespaceError {
  const why =
    errno === 'EPERM' || errno === 'EACCES'
      ? 'this process may not mount in its mount namespace'
      : errno === 'EINVAL' && type === 'mount'
        ? 'the kernel binds a mount-namespace file only into an older mount namespace, and userns runs in a mount namespace made after it (inside a container: see docs/nsfs-handles.md section 7.3)'
        : `the kernel said ${errno}`;
  return holdUnsupported(
    `--hold mount: bind-mounting the ${type} namespace failed: ${why} (${detail})`,
    "use '--hold keeper'",
    {
      errno,
      type,
    },
  );
}

/**
 * Bind-mounts each namespace of the holding helper onto an empty file `hold/<type>` of the entry
 * (created O_EXCL|O_NOFOLLOW, 0600). On failure the binds made are undone and it throws.
 */
function bindHold(
  paths: Paths,
  pid: number,
  namespaces: readonly { type: Namespace }[],
  helperPath?: string,
): void {
  mkdirSync(paths.hold, { mode: 0o700 });
  const binds = namespaces.map((n) => ({ type: n.type, file: holdFile(paths, n.type) }));
  for (const b of binds) closeSync(openSync(b.file, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW, 0o600));
  const { failure } = bindNamespaceFiles(pid, binds, helperPath === undefined ? {} : { helperPath });
  if (failure !== undefined) {
    releaseBinds(paths);
    const type = (binds.find((b) => failure.detail.includes(` on ${b.file}`))?.type ?? 'user') as Namespace;
    throw bindError(type, failure.errno, failure.detail);
  }
}

/**
 * Creates the namespaces `name`, keeps them alive and records them: with a keeper process
 * (hold 'keeper', the default) or bind mounts (hold 'mount'). For hold 'none' use
 * createNamespaceWithCommand. Throws NS_EXISTS when the name is taken (a stale entry too: remove
 * it first), NS_HOLD_UNSUPPORTED for a hold this caller or these namespaces cannot use,
 * INVALID_NAME, NS_UNSAFE, and the errors of spawn() for namespaces or maps that cannot be made.
 */
export async function createNamespace(name: string, options: CreateOptions = {}): Promise<NamespaceState> {
  validateName(name, 'namespace name');
  const hold = options.hold ?? 'keeper';
  if (hold === 'none')
    throw new NamespaceError(
      'USAGE',
      '--hold none needs a command: the namespace lives as long as its processes',
      {
        hint: 'userns create --hold none NAME -- COMMAND (createNamespaceWithCommand from the API)',
      },
    );
  checkHold(hold, options);
  const root = namespaceRoot(options, true)!;
  const { paths, lock } = await beginEntry(name, root);
  let created = false;
  try {
    let state: NamespaceState | undefined;
    let started: { handle: HelperHandle; state: NamespaceState } | undefined;
    try {
      started = await startKeeperWithAllocation(name, options, root, hold);
      state = started.state;
      if (hold === 'mount') bindHold(paths, started.handle.pid, state.namespaces, options.helperPath);
      writeFileAtomic(paths.state, `${JSON.stringify(state, null, 2)}\n`);
      await started.handle.commit();
      await new Promise<void>((resolve) => {
        const child = started!.handle.child;
        if (child.exitCode !== null || child.signalCode !== null) resolve();
        else child.once('exit', () => resolve());
      });
      const problem = holdProblem(state, paths);
      if (problem !== undefined) {
        throw new NamespaceError(
          'NS_KEEPER_FAILED',
          `the ${hold === 'mount' ? 'bind mounts did' : 'keeper did'} not stay: ${problem.reason}`,
          {
            hint: DOCTOR_HINT,
          },
        );
      }
      commitEntry(paths);
      created = true;
      return state;
    } catch (error) {
      if (started !== undefined && hold === 'mount')
        await started.handle.abort(String((error as Error)?.message ?? error));
      if (state?.keeperPid !== undefined && state.keeperStartTime !== undefined)
        await stopKeeper(state.keeperPid, state.keeperStartTime);
      releaseBinds(paths);
      if (state?.allocation !== undefined) await releaseAllocationOf(state.allocation, root);
      removeEntry(paths);
      throw error;
    }
  } finally {
    // A failed create leaves no entry: its lock file goes too.
    lock.release({ remove: !created && lstatSync(paths.entry, { throwIfNoEntry: false }) === undefined });
  }
}

/** A named namespace started with its command (createNamespaceWithCommand). */
export interface CreatedWithCommand {
  /** What was recorded (hold 'none'). */
  state: NamespaceState;
  /** The command (its supervisor with a PID namespace); also the promise of its exit status. */
  child: NamespaceChildProcess;
}

/**
 * `userns create --hold none NAME -- COMMAND`: creates the namespaces with COMMAND as their
 * first process (PID 1 of the new PID namespace, if there is one) and records their nsfs
 * handles, holding nothing: they live as long as some process in them does, and
 * exec/spawnInNamespace joins them by handle while they do (NS_GONE after). Resolves once the
 * command runs and the entry is committed. Throws as createNamespace does, and
 * NS_HOLD_UNSUPPORTED when the kernel has no nsfs handles (Linux before 6.18) or they are
 * switched off (USERNS_NSFS_HANDLES=0); the errors of spawn() for a command that cannot start.
 */
export async function createNamespaceWithCommand(
  name: string,
  argv: readonly string[],
  options: CreateWithCommandOptions = {},
): Promise<CreatedWithCommand> {
  validateName(name, 'namespace name');
  if (argv.length === 0)
    throw new NamespaceError('USAGE', 'no command given', {
      hint: 'userns create --hold none NAME -- COMMAND',
    });
  checkHold('none', options);
  const root = namespaceRoot(options, true)!;
  const { paths, lock } = await beginEntry(name, root);
  let committed = false;
  let allocation: string | undefined;
  try {
    const { root: _root, stdio, env, cwd, ...mapping } = options;
    const auto = await withAutoUserns(mapping, { namespace: name, stateRoot: root });
    if (auto.allocation !== null) allocation = auto.allocation.id;
    const privileged = auto.options.privileged ?? isPrivileged();
    const subids = privileged ? Promise.resolve(null) : currentSubids();
    subids.catch(() => {});
    let recorded: NamespaceState | undefined;
    let markCommitted!: () => void;
    const committedNow = new Promise<void>((resolve) => {
      markCommitted = resolve;
    });
    const record = async (started: StartedNamespaces) => {
      if (started.namespaces.some((n) => n.handle === null)) {
        throw holdUnsupported(
          '--hold none needs nsfs file handles, which this kernel does not make (Linux 6.18+)',
          "use '--hold keeper'; 'userns doctor' shows what the kernel supports",
        );
      }
      const state: NamespaceState = {
        version: 2,
        name,
        hold: 'none',
        namespaces: started.namespaces
          .map((n) => ({ type: n.type, inode: n.inode, handle: n.handle }))
          .sort((x, y) => NAMESPACES.indexOf(x.type) - NAMESPACES.indexOf(y.type)),
        creatorUserNamespace: statSync('/proc/self/ns/user').ino,
        uidMap: started.uidMap.toJSON(),
        gidMap: started.gidMap.toJSON(),
        setgroups: started.setgroups,
        mountProc: options.mountProc ?? options.namespaces?.includes('pid') ?? false,
        user: {
          uid: options.user ?? (options.userns === 'keep-id' && !privileged ? (process.geteuid?.() ?? 0) : 0),
          gid:
            options.group ?? (options.userns === 'keep-id' && !privileged ? (process.getegid?.() ?? 0) : 0),
        },
        createdAt: new Date().toISOString(),
        creator: { uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 },
        options: storedOptions(options),
        subids: await subids.catch(() => null),
        warnings: started.warnings,
        ...(allocation === undefined ? {} : { allocation }),
      };
      const boot = bootId();
      if (boot !== undefined) state.bootId = boot;
      writeFileAtomic(paths.state, `${JSON.stringify(state, null, 2)}\n`);
      commitEntry(paths);
      committed = true;
      recorded = state;
      markCommitted();
    };
    const spawned = spawn(argv[0]!, argv.slice(1), {
      ...auto.options,
      namespaces: options.namespaces ?? [],
      ...(stdio === undefined ? {} : { stdio }),
      ...(env === undefined ? {} : { env }),
      ...(cwd === undefined ? {} : { cwd }),
      afterStart: record,
    });
    const done = closed(spawned);
    // Resolves once the state is committed (or the spawn failed before).
    const outcome = await Promise.race([
      spawned.then(
        () => undefined,
        (error: unknown) => ({ error }),
      ),
      committedNow.then(() => undefined),
    ]);
    if (outcome !== undefined && !committed) throw outcome.error;
    const result = (async () => {
      const r = await spawned;
      await done;
      return { exitCode: r.exitCode, signal: r.signal, pid: r.pid };
    })();
    return { state: recorded!, child: promiseChild(spawned, result) as NamespaceChildProcess };
  } catch (error) {
    if (!committed) {
      if (allocation !== undefined) await releaseAllocationOf(allocation, root);
      removeEntry(paths);
    }
    throw error;
  } finally {
    lock.release({ remove: !committed && lstatSync(paths.entry, { throwIfNoEntry: false }) === undefined });
  }
}
