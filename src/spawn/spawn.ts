/**
 * spawn(): child_process.spawn in new user (and other) namespaces.
 *
 *   const child = spawn('id', ['-u'], { uidMap: '0:100000:65536', stdio: 'inherit' });
 *   const { exitCode, uidMap } = await child;   // a ChildProcess that is also a promise
 *
 * The ChildProcess is the native helper, which becomes the command (same PID without a PID
 * namespace). The promise resolves when the command has exited (after its stdio closed) and
 * rejects with a typed error (SpawnError, NewIdmapError, MapError, ParseError) when setup fails.
 */
import type { ChildProcess, StdioOptions } from 'node:child_process';
import { statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join, resolve } from 'node:path';
import { SpawnError, UsageError } from '../errors/index.js';
import type { IdMap } from '../idmap/idmap.js';
import {
  type MapSpec,
  modeContext,
  needsSubordinate,
  parseModeSpec,
  resolveMapSpec,
  type UsernsModeSpec,
} from '../maps/modes.js';
import {
  type MapPlan,
  type MapWriteOptions,
  planMaps,
  predictToolFailures,
  writeMaps,
  writeProcFile,
} from '../maps/write-maps.js';
import { helperMountsFor, mountNamespacePaths, type PlannedMount, planMountMaps } from '../mount/prepare.js';
import type { MountSpec } from '../mount/spec.js';
import {
  type HelperHandle,
  type HelperOptions,
  helperArgs,
  type Namespace,
  type NamespaceId,
  startHelper,
} from '../native/helper.js';
import { isPrivileged } from '../system/self.js';
import { explainSpawnFailure } from './explain.js';
import { closed, promiseChild } from './promise-child.js';
import { explainUnreachable, type Reach, unreachableError } from './unreachable.js';

/**
 * Options of {@link spawn}, {@link run} and {@link planSpawn}: the maps (a mode, maps, or an
 * allocation), the other namespaces, the IDs inside, mounts, and child_process options.
 */
export interface SpawnOptions extends MapWriteOptions {
  /**
   * How to map IDs when uidMap/gidMap are not given (default 'auto'). spawn() allocates nothing:
   * for a fresh range from the allocation registry (`auto:size=N`, podman's --userns=auto),
   * get the maps with withAutoUserns() from userns/alloc and pass them here.
   */
  userns?: UsernsModeSpec;
  /** The uid map: an IdMap, a mode, or podman --uidmap syntax. Outside IDs = current namespace. */
  uidMap?: MapSpec;
  /** The gid map; defaults to the uid map's spec when only that is given (as podman does). */
  gidMap?: MapSpec;
  /** Namespaces besides the user namespace: 'mount', 'pid', 'uts', 'ipc', 'net', 'cgroup'. */
  namespaces?: readonly Namespace[];
  /** uid and gid to run as inside. Default 0, or the caller's own IDs in keep-id mode. */
  user?: number;
  group?: number;
  /** Mount a fresh /proc; default true when a PID namespace is requested. */
  mountProc?: boolean;
  /**
   * Bind mounts (read-only, idmapped) made in the new mount namespace before the command starts
   * (adds 'mount'; see src/mount/). Relative paths: resolve them first (parseMountSpec does).
   */
  mounts?: readonly MountSpec[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** As child_process.spawn (default 'pipe'); entries after the third become fds 3, 4, … */
  stdio?: StdioOptions;
  keepFds?: readonly number[];
  /** Runs after the maps are written, before the command starts (e.g. to set up cgroups). */
  beforeExec?: (pid: number) => void | Promise<void>;
  /**
   * Paths the command needs inside and for what (e.g. `[{ path: process.execPath, need:
   * 'execute' }]`): checked as the namespace's IDs would reach them once the maps are written;
   * a blocked one fails the spawn with PATH_UNREACHABLE (nothing ran) naming the component that
   * blocks, its mode and owner, and the IDs inside and outside. See src/system/reachability.ts.
   */
  mustReach?: readonly Reach[];
  /** Written to /proc/PID/oom_score_adj before the command starts. */
  oomScoreAdj?: number;
  /**
   * Runs once the command was executed, with the identities of its new namespaces (inode and
   * nsfs handle of each; the PID namespace's too) and the maps in force: how a named namespace
   * without a holder (`userns create --hold none`) records itself. A rejection kills the command
   * (SIGKILL) and fails the spawn with that error.
   */
  afterStart?: (started: StartedNamespaces) => void | Promise<void>;
  /** Act as a kernel without nsfs file handles (no handles reported; USERNS_NSFS_HANDLES=0). */
  noHandles?: boolean;
  helperPath?: string;
}

/** How a command ended, and the maps that were in force. */
export interface SpawnResult {
  /** Exit status, or null when killed by a signal. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** The maps in force (read back from /proc/PID/… before the command started). */
  uidMap: IdMap;
  gidMap: IdMap;
  setgroups: 'allow' | 'deny';
  /** The PID of the process this returned (the command's, or its supervisor's with a PID namespace). */
  pid: number;
  warnings: string[];
}

/** What {@link spawn} returns: a ChildProcess that is also a promise of its {@link SpawnResult}. */
export type UsernsChildProcess = ChildProcess & Promise<SpawnResult>;

/** What afterStart receives. */
export interface StartedNamespaces {
  /** The helper's PID (the command's, or its supervisor's with a PID namespace). */
  pid: number;
  /** Every new namespace, the user namespace first. */
  namespaces: NamespaceId[];
  uidMap: IdMap;
  gidMap: IdMap;
  setgroups: 'allow' | 'deny';
  warnings: string[];
}

/**
 * Everything {@link spawn} would do: the maps and how they are written, the namespaces, the IDs
 * inside, the mounts and the helper's arguments.
 */
export interface SpawnPlan extends MapPlan {
  command: string[];
  namespaces: Namespace[];
  user: number;
  group: number;
  mountProc: boolean;
  /** setgroups(0, NULL) before exec: 'try' ignores a denied setgroups. */
  setgroupsCall: boolean | 'try';
  /** The helper's argv (after the binary). */
  helperArgv: string[];
  /** The mounts, with the maps of each idmapped one's user namespace. */
  mounts: PlannedMount[];
}

export function helperOptionsFor(
  command: string[],
  options: SpawnOptions,
  privileged: boolean,
): HelperOptions {
  const namespaces = new Set<Namespace>(['user', ...(options.namespaces ?? [])]);
  const mountProc = options.mountProc ?? namespaces.has('pid');
  if (mountProc) namespaces.add('mount');
  const mounts = options.mounts?.length ? helperMountsFor(options.mounts) : undefined;
  if (mounts !== undefined) namespaces.add('mount');
  // keep-id runs as the kept IDs: the caller's (unprivileged), or keep-id:uid=N,gid=N's.
  const parsed = options.userns === undefined ? undefined : parseModeSpec(options.userns);
  const keepId =
    parsed?.mode === 'keep-id' && options.uidMap === undefined ? (parsed.keepId ?? {}) : undefined;
  const own = (id: number | undefined) => (privileged ? 0 : (id ?? 0));
  const uid = options.user ?? (keepId ? (keepId.uid ?? own(process.geteuid?.())) : 0);
  const gid = options.group ?? (keepId ? (keepId.gid ?? own(process.getegid?.())) : 0);
  return {
    namespaces: [...namespaces],
    command,
    explain: explainSpawnFailure,
    user: { uid, gid },
    setgroupsCall: options.setgroups === 'deny' ? false : 'try',
    mountProc,
    ...(mounts === undefined ? {} : { mounts }),
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    ...(options.env === undefined ? {} : { env: options.env }),
    stdio: options.stdio ?? 'pipe',
    ...(options.keepFds === undefined ? {} : { keepFds: options.keepFds }),
    ...(options.helperPath === undefined ? {} : { helperPath: options.helperPath }),
    ...(options.afterStart === undefined ? {} : { reportNamespaces: true }),
    ...(options.noHandles ? { noHandles: true } : {}),
  };
}

/**
 * Plans of requests that do not depend on /etc/subuid (root, explicit string maps, 'self') are a
 * pure function of the options and of this process's own maps, which never change: cached, so
 * that spawning the same thing many times costs one plan.
 */
const planCache = new Map<string, MapPlan>();

function cacheKey(options: SpawnOptions, privileged: boolean, subordinate: boolean): string | undefined {
  if (subordinate) return undefined;
  const spec = (s: MapSpec | undefined) =>
    s === undefined ? '' : typeof s === 'string' ? `s${s}` : undefined;
  const u = spec(options.uidMap);
  const g = spec(options.gidMap);
  if (u === undefined || g === undefined) return undefined;
  return JSON.stringify([
    u,
    g,
    options.userns ?? '',
    privileged,
    options.noSplit === true,
    options.setgroups ?? '',
    options.newuidmap ?? '',
    options.newgidmap ?? '',
  ]);
}

/** spawn() and planSpawn() map by modes and maps only; an `auto:…` mode (JavaScript callers) is refused. */
function refuseAllocation(options: SpawnOptions): void {
  const mode = options.userns as string | undefined;
  if (mode?.startsWith('auto:')) {
    throw new UsageError(`userns ${mode}: spawn() does not allocate ID ranges`, {
      hint: "get the maps from the allocation registry first: withAutoUserns() in 'userns/alloc'",
    });
  }
}

async function resolveMaps(options: SpawnOptions): Promise<MapPlan> {
  const privileged = options.privileged ?? isPrivileged();
  const uidSpec = options.uidMap;
  const gidSpec = options.gidMap ?? options.uidMap;
  const subordinate = needsSubordinate([uidSpec, gidSpec], privileged);
  const key = cacheKey(options, privileged, subordinate);
  const cached = key === undefined ? undefined : planCache.get(key);
  if (cached !== undefined) return cached;
  const plan = await computePlan(options, privileged, uidSpec, gidSpec, subordinate);
  if (key !== undefined) {
    if (planCache.size >= 64) planCache.delete(planCache.keys().next().value!);
    planCache.set(key, plan);
  }
  return plan;
}

async function computePlan(
  options: SpawnOptions,
  privileged: boolean,
  uidSpec: MapSpec | undefined,
  gidSpec: MapSpec | undefined,
  subordinate: boolean,
): Promise<MapPlan> {
  const ctx = await modeContext({ subordinate });
  ctx.privileged = privileged;
  ctx.fallback = options.fallback ?? 'none';
  ctx.warnings = [];
  const parsed = options.userns === undefined ? undefined : parseModeSpec(options.userns);
  const mode = parsed?.mode ?? 'auto';
  const [uid, gid] = await Promise.all([
    resolveMapSpec(uidSpec, 'uid', ctx, mode, parsed?.keepId),
    resolveMapSpec(gidSpec, 'gid', ctx, mode, parsed?.keepId),
  ]);
  const plan = await planMaps(uid, gid, { ...options, privileged });
  return ctx.warnings.length === 0 ? plan : { ...plan, warnings: ctx.warnings };
}

/**
 * Everything {@link spawn} would do for `command args`, without doing it (`userns run
 * --dry-run`): the maps as they would be written (cut at the current namespace's extents,
 * validated, and whether directly or by newuidmap/newgidmap with which arguments), the
 * namespaces, the IDs the command would run as, the mounts and the helper's arguments.
 * Takes the arguments of {@link spawn} and {@link run}, in the same shape.
 *
 * Nothing is started, allocated or written: an `auto:…` mode is a UsageError, as for spawn()
 * (allocate first with withAutoUserns() from `userns/alloc`).
 *
 * @param command The program, as for spawn(): a name looked up in PATH, or a path.
 * @param args Its arguments (without the program itself).
 * @param options As for spawn(); `stdio`, `beforeExec` and the like are ignored.
 * @returns The plan; `command` is the full argv (`[command, ...args]`).
 * @throws Whatever spawn() would reject with before it starts anything: `SpawnError`
 *   (`NO_SUBORDINATE_IDS`, …), `UsageError` (an `auto:…` mode), `NewIdmapError`
 *   (`NEWUIDMAP_MISSING`, `RANGE_NOT_ALLOWED`, …), `MapError` (a map the kernel would refuse),
 *   `ParseError`.
 */
export function planSpawn(
  command: string,
  args?: readonly string[],
  options?: SpawnOptions,
): Promise<SpawnPlan>;
/**
 * The form of userns 0.1: the whole argv in one array. Use `planSpawn(command, args, options)`,
 * the shape of spawn() and run().
 *
 * @deprecated since 0.2; still accepted.
 */
export function planSpawn(argv: readonly string[], options?: SpawnOptions): Promise<SpawnPlan>;
export function planSpawn(
  commandOrArgv: string | readonly string[],
  argsOrOptions?: readonly string[] | SpawnOptions,
  options?: SpawnOptions,
): Promise<SpawnPlan> {
  if (typeof commandOrArgv === 'string') {
    return planArgv([commandOrArgv, ...((argsOrOptions as readonly string[] | undefined) ?? [])], options);
  }
  return planArgv(commandOrArgv, argsOrOptions as SpawnOptions | undefined);
}

/**
 * {@link planSpawn} for a whole argv, which may be empty: then only the maps, namespaces and
 * mounts are planned (the keeper of `userns create` runs no command). No side effects.
 */
export async function planArgv(argv: readonly string[], options: SpawnOptions = {}): Promise<SpawnPlan> {
  const command = [...argv];
  refuseAllocation(options);
  const maps = await resolveMaps(options);
  const helper = helperOptionsFor(command, options, maps.privileged);
  return {
    ...maps,
    command,
    namespaces: [...helper.namespaces],
    user: helper.user!.uid,
    group: helper.user!.gid,
    mountProc: helper.mountProc ?? false,
    setgroupsCall: helper.setgroupsCall ?? 'try',
    helperArgv: helperArgs(helper, process.pid),
    mounts: options.mounts?.length ? planMountMaps(options.mounts, maps.uidMap, maps.gidMap) : [],
  };
}

/**
 * What `userns run --dry-run` shows: {@link planSpawn}, plus every check the run would make that
 * needs no process, failing with the error the run would fail with: newuidmap/newgidmap
 * missing, a range they refuse (or, with `fallback: 'single'`, the plan the run falls back to),
 * a command that is not there (COMMAND_NOT_FOUND; not predicted with `mounts`, which change what
 * the command sees). What only a process can tell (the kernel's answer to unshare, the tool's
 * setuid bit, the command's permissions inside) is left to the run.
 *
 * @param command The program, as for spawn(): a name looked up in PATH, or a path.
 * @param args Its arguments (without the program itself).
 * @param options As for spawn().
 * @returns The plan, as planSpawn's (with the fallback plan when the run would fall back).
 * @throws What the run would fail with before its command starts: planSpawn's errors,
 *   `NewIdmapError` (`NEWUIDMAP_MISSING`, `RANGE_NOT_ALLOWED`, …), `SpawnError`
 *   (`COMMAND_NOT_FOUND`).
 */
export async function dryRunSpawn(
  command: string,
  args: readonly string[] = [],
  options: SpawnOptions = {},
): Promise<SpawnPlan> {
  const argv = [command, ...args];
  const plan = await planArgv(argv, options);
  const maps = await predictToolFailures(plan, options);
  if (!options.mounts?.length && !commandExists(command, options))
    // The failure the helper would report at exec (src/native/protocol.md), explained the same way.
    throw explainSpawnFailure(
      {
        step: 'exec',
        errno: 'ENOENT',
        detail: `No such file or directory: ${command}`,
        report: `error exec ${ENOENT} No such file or directory: ${command}`,
      },
      { command: argv },
    );
  return { ...plan, ...maps };
}

const { ENOENT } = osConstants.errno;

/** Whether execvp(3) would find `name` (PATH of the command's environment, or its default). */
function commandExists(name: string, options: SpawnOptions): boolean {
  const exists = (path: string) => {
    try {
      statSync(path);
      return true;
    } catch {
      return false;
    }
  };
  if (name.includes('/')) return exists(resolve(options.cwd ?? process.cwd(), name));
  const path = (options.env ?? process.env).PATH ?? '/bin:/usr/bin';
  return path.split(':').some((dir) => exists(join(dir === '' ? '.' : dir, name)));
}

function deferred<T>(): { promise: Promise<T>; resolve(value: T): void; reject(error: unknown): void } {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {});
  return { promise, resolve, reject };
}

/**
 * Starts `command` in a new user namespace (and the other namespaces of `options.namespaces`)
 * with the maps of `options`: cut at the current namespace's extents, validated as the kernel
 * would, and written in one write each, directly as root or through newuidmap/newgidmap.
 *
 * Returns the ChildProcess at once (its stdio can be used immediately): the native helper,
 * which becomes the command (same PID without a PID namespace). It is also a promise of the
 * {@link SpawnResult}, which resolves once the command has exited and its stdio closed, and
 * rejects when setup fails (also an `'error'` event when someone listens).
 *
 * @param command The program: a name looked up in PATH (inside the new namespaces), or a path.
 * @param args Its arguments (without the program itself).
 * @param options The maps (`userns` mode, `uidMap`/`gidMap`), namespaces, IDs inside, mounts,
 *   and child_process options (`cwd`, `env`, `stdio`). spawn() allocates nothing: for an
 *   `auto:…` range, get the maps with withAutoUserns() from `userns/alloc` first.
 * @throws SpawnError synchronously only when there is no helper for this machine
 *   (`HELPER_MISSING`, `PLATFORM_UNSUPPORTED`), UsageError for an `auto:…` mode. The promise
 *   rejects with `SpawnError` (`COMMAND_NOT_FOUND`, `COMMAND_NOT_EXECUTABLE`, `UNSHARE_FAILED`,
 *   `NO_SUBORDINATE_IDS`, …), `NewIdmapError` (`NEWUIDMAP_MISSING`, `NEWUIDMAP_NOT_SETUID`,
 *   `RANGE_NOT_ALLOWED`, `MAP_WRITE_FAILED`, …), `MapError`/`ParseError` (a map the kernel
 *   would refuse or cannot read), `MountError` for `mounts`, each with a hint.
 */
export function spawn(
  command: string,
  args: readonly string[] = [],
  options: SpawnOptions = {},
): UsernsChildProcess {
  refuseAllocation(options);
  const privileged = options.privileged ?? isPrivileged();
  const argv = [command, ...args];
  // Idmapped mounts: their user namespaces are known once the maps are planned; the helper waits.
  const namespacesForMounts = deferred<readonly string[]>();
  let mountFailure: unknown;
  const helperOptions = helperOptionsFor(argv, options, privileged);
  const helperUser = helperOptions.user ?? { uid: 0, gid: 0 };
  const { child, ready } = startHelper({
    ...helperOptions,
    ...(options.mounts?.length ? { mountNamespaces: namespacesForMounts.promise } : {}),
  });
  const done = closed(child);
  const setup = async (): Promise<SpawnResult> => {
    const planning = resolveMaps({ ...options, privileged });
    // Planning runs while the helper starts; its failure is handled below, after `ready`.
    planning.catch(() => {});
    let releaseMountNamespaces = () => {};
    // Set once the helper has opened the namespaces or the start failed: leases that arrive
    // later are released at once (else they would pin their cache entries for ever).
    let mountNamespacesDone = false;
    if (options.mounts?.length) {
      const mounts = options.mounts;
      planning
        .then(async (plan) => {
          const planned = planMountMaps(mounts, plan.uidMap, plan.gidMap);
          const { paths, release } = await mountNamespacePaths(planned, {
            privileged,
            ...(options.helperPath === undefined ? {} : { helperPath: options.helperPath }),
          });
          if (mountNamespacesDone) release();
          else releaseMountNamespaces = release;
          namespacesForMounts.resolve(paths);
        })
        .catch((error: unknown) => {
          mountFailure = error;
          namespacesForMounts.reject(error);
        });
    }
    let handle: HelperHandle;
    try {
      handle = await ready;
    } catch (error) {
      // The helper was killed because planning or the mounts' namespaces failed: say why.
      throw mountFailure ?? error;
    } finally {
      mountNamespacesDone = true;
      releaseMountNamespaces();
    }
    let applied: Awaited<ReturnType<typeof writeMaps>>;
    try {
      const plan = await planning;
      applied = await writeMaps(handle.pid, plan, options);
      if (options.oomScoreAdj !== undefined) {
        const errno = writeProcFile(`/proc/${handle.pid}/oom_score_adj`, `${options.oomScoreAdj}\n`);
        if (errno !== null) {
          throw new SpawnError(
            'SETUP_FAILED',
            `writing ${options.oomScoreAdj} to /proc/${handle.pid}/oom_score_adj failed (${errno})`,
            {
              hint: 'lowering oom_score_adj needs CAP_SYS_RESOURCE',
              errno,
            },
          );
        }
      }
      if (options.mustReach !== undefined) {
        const unreachable = unreachableError(options.mustReach, {
          uidMap: applied.uidMap,
          gidMap: applied.gidMap,
          user: helperUser,
          setgroups: applied.setgroups,
        });
        if (unreachable !== undefined) throw unreachable;
      }
      if (options.beforeExec !== undefined) {
        try {
          await options.beforeExec(handle.pid);
        } catch (error) {
          throw new SpawnError('HOOK_FAILED', `beforeExec failed: ${(error as Error)?.message ?? error}`, {
            cause: error,
          });
        }
      }
    } catch (error) {
      await handle.abort(String((error as Error)?.message ?? error));
      throw error;
    }
    try {
      await handle.go();
    } catch (error) {
      // "Permission denied" from exec/chdir inside: name the directory that blocks, and why.
      throw explainUnreachable(error, {
        command: argv,
        ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
        ...(options.env === undefined ? {} : { env: options.env }),
        uidMap: applied.uidMap,
        gidMap: applied.gidMap,
        user: helperUser,
        setgroups: applied.setgroups,
      });
    }
    if (options.afterStart !== undefined) {
      try {
        await options.afterStart({
          pid: handle.pid,
          namespaces: [...handle.namespaceIds],
          uidMap: applied.uidMap,
          gidMap: applied.gidMap,
          setgroups: applied.setgroups,
          warnings: applied.warnings,
        });
      } catch (error) {
        child.kill('SIGKILL');
        await done;
        throw error;
      }
    }
    const { code, signal } = await done;
    return {
      exitCode: code,
      signal,
      uidMap: applied.uidMap,
      gidMap: applied.gidMap,
      setgroups: applied.setgroups,
      pid: handle.pid,
      warnings: applied.warnings,
    };
  };
  return promiseChild(child, setup(), 'UsernsChildProcess');
}

/** What {@link run} resolves to: the {@link SpawnResult} and the captured output. */
export interface RunResult extends SpawnResult {
  /** Captured output (when stdout/stderr are pipes, the default). */
  stdout: string;
  stderr: string;
}

/**
 * Runs `command` as {@link spawn} does and waits for it, capturing its output: stdout and stderr
 * are pipes read as UTF-8 text, stdin is empty (`options.stdio` overrides).
 *
 * @param command The program: a name looked up in PATH, or a path.
 * @param args Its arguments (without the program itself).
 * @param options As for {@link spawn}.
 * @returns The {@link SpawnResult} (exit status or signal, the maps in force) with `stdout` and
 *   `stderr`. A command that exits non-zero resolves; only setup failures reject.
 * @throws The errors of {@link spawn}, as a rejection.
 */
export async function run(
  command: string,
  args: readonly string[] = [],
  options: SpawnOptions = {},
): Promise<RunResult> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (d: string) => {
    stdout += d;
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    stderr += d;
  });
  const result = await child;
  return { ...result, stdout, stderr };
}
