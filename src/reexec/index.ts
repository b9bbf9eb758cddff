/**
 * Re-executing the running Node program inside a user namespace (buildah's
 * `MaybeReexecUsingUserNamespace`), so that the whole program runs as root over the caller's
 * subordinate IDs:
 *
 *   import { reexecInUserNamespace } from 'userns/reexec';
 *   const ns = await reexecInUserNamespace();   // outside: never returns (exits like the child)
 *   // from here on: inside, uid 0, ns.uidMap = the maps in force
 *
 * Outside, the program is run again — `process.execPath` with the same `execArgv`, arguments,
 * environment, working directory and stdio — by `spawn()` in a new user and mount namespace (or,
 * with `namespace`, by joining a named namespace), signals are forwarded, and the process exits
 * like the child. Inside, the call returns at once.
 *
 * "Inside" is told by an environment marker AND the namespace itself: the marker records the
 * inode of the user namespace the program was re-executed FROM, so a marker that leaked into a
 * process outside (same user namespace as the one it names) is ignored and the program is
 * re-executed again. A program in the named namespace it asks to join is inside too.
 *
 * @module userns/reexec
 */
import type { ChildProcess } from 'node:child_process';
import { readlinkSync, statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withAutoUserns } from '../alloc/auto.js';
import { ReexecError } from '../errors/index.js';
import { IdMap } from '../idmap/idmap.js';
import type { MapSpec } from '../maps/modes.js';
import { inspectNamespace, spawnInNamespace } from '../namespaces/index.js';
import type { Namespace } from '../native/helper.js';
import type { SpawnOptions } from '../spawn/spawn.js';
import { spawn } from '../spawn/spawn.js';
import { type Reach, unreachableError } from '../spawn/unreachable.js';
import { readIdMapSync, readSetgroupsSync } from '../system/proc.js';
import { isPrivileged } from '../system/self.js';
import { FORWARDED_SIGNALS, forwardSignals, signalNumber } from '../system/signals.js';

/** The environment variable that marks a re-executed program. */
export const REEXEC_ENV = 'USERNS_REEXEC';

/** Signals forwarded to the re-executed program (as `userns run` does). */
export { FORWARDED_SIGNALS, ReexecError };

/** Options of {@link reexecInUserNamespace}. */
export interface ReexecOptions {
  /**
   * How to map IDs (as `spawn()`): 'auto' (default; root: every ID, others: 0 = you, 1… = your
   * subordinate ranges), 'self', 'keep-id', 'identity', or 'auto:size=N[,…]' for a range from the
   * allocation registry (released when the program ends).
   */
  userns?: SpawnOptions['userns'] | `auto:${string}`;
  uidMap?: MapSpec;
  gidMap?: MapSpec;
  /** Namespaces created besides the user namespace (default ['mount']; [] for none). */
  namespaces?: readonly Exclude<Namespace, 'user'>[];
  setgroups?: 'allow' | 'deny';
  noSplit?: boolean;
  fallback?: 'none' | 'single';
  newuidmap?: string;
  newgidmap?: string;
  /** State root of the allocation registry (auto:…) or of the named namespace (`namespace`). */
  stateRoot?: string;
  /** Join this named namespace (`userns create NAME`) instead of creating one. */
  namespace?: string;
  /**
   * What the launcher does when the program is killed by a signal: 'exit' (default) exits with
   * 128 + the signal number, as shells and `userns run` report it; 'reraise' kills itself with
   * the same signal (default action), so that its own parent sees the signal, falling back to
   * 128 + N for signals Node keeps for itself (SIGUSR1 would open the inspector, SIGPIPE is
   * ignored).
   */
  onSignal?: 'exit' | 'reraise';
  /** As root, run on in place (no user namespace) instead of re-executing. Default false. */
  skipIfPrivileged?: boolean;
  /** Extra environment for the re-executed program (added to process.env). */
  env?: NodeJS.ProcessEnv;
  /** Called with each warning of the map setup (fallbacks); default: printed to stderr. */
  onWarning?: (message: string) => void;
  /**
   * Called in the launcher once the child ended, before exiting; default process.exit. The
   * launcher's promise never settles when exit returns (tests pass a recorder).
   */
  exit?: (code: number, signal: NodeJS.Signals | null) => void;
  helperPath?: string;
}

/** What the program knows once inside. */
export interface ReexecInfo {
  /** True: this process runs in the user namespace it was re-executed into. */
  inside: boolean;
  /** False when `skipIfPrivileged` let a privileged program run on without a namespace. */
  reexecuted: boolean;
  /** The maps in force (/proc/self/{uid,gid}_map: outside = IDs of the launcher's namespace). */
  uidMap: IdMap;
  gidMap: IdMap;
  setgroups: 'allow' | 'deny';
  /** The launcher ran without CAP_SETUID/CAP_SETGID (maps came through newuidmap/newgidmap). */
  rootless: boolean;
  /** The launcher's effective uid and gid (IDs of its namespace; buildah's GetRootlessUID). */
  launcherUid: number;
  launcherGid: number;
  /** The launcher's PID (in its namespace), or null when unknown. */
  launcherPid: number | null;
  /** The named namespace joined, or null. */
  namespace: string | null;
  /** Inode of the user namespace this process runs in. */
  userNamespace: number;
}

/** The marker's content (JSON in $USERNS_REEXEC). */
interface Marker {
  v: 1;
  /** Inode of the launcher's user namespace. */
  from: number;
  uid: number;
  gid: number;
  rootless: boolean;
  pid: number;
  ns: string | null;
}

function userNamespaceInode(): number {
  return statSync('/proc/self/ns/user').ino;
}

function parseMarker(text: string | undefined): Marker | undefined {
  if (text === undefined || text === '') return undefined;
  try {
    const m = JSON.parse(text) as Partial<Marker>;
    if (
      m.v === 1 &&
      typeof m.from === 'number' &&
      typeof m.uid === 'number' &&
      typeof m.gid === 'number' &&
      typeof m.rootless === 'boolean' &&
      typeof m.pid === 'number' &&
      (m.ns === null || typeof m.ns === 'string')
    )
      return m as Marker;
  } catch {
    // not ours: treated as absent
  }
  return undefined;
}

function info(marker: Marker | undefined, inode: number, reexecuted: boolean): ReexecInfo {
  const euid = process.geteuid?.() ?? 0;
  const egid = process.getegid?.() ?? 0;
  return {
    inside: reexecuted,
    reexecuted,
    uidMap: readIdMapSync('self', 'uid'),
    gidMap: readIdMapSync('self', 'gid'),
    setgroups: readSetgroupsSync('self'),
    rootless: marker?.rootless ?? !isPrivileged(),
    launcherUid: marker?.uid ?? euid,
    launcherGid: marker?.gid ?? egid,
    launcherPid: marker?.pid ?? null,
    namespace: marker?.ns ?? null,
    userNamespace: inode,
  };
}

/**
 * Whether this process already runs inside (a re-executed program): its marker, checked
 * against the user namespace it runs in. Undefined outside. Synchronous and cheap (one stat,
 * and the maps read only when inside).
 */
export function reexecInfo(env: NodeJS.ProcessEnv = process.env): ReexecInfo | undefined {
  const marker = parseMarker(env[REEXEC_ENV]);
  if (marker === undefined) return undefined;
  const inode = userNamespaceInode();
  // The marker names the namespace we were launched FROM: still being there means it leaked.
  if (inode === marker.from) return undefined;
  return info(marker, inode, true);
}

/** The command line that runs this program again: node, its flags, the script and its arguments. */
export function reexecArgv(): string[] {
  const script = process.argv[1];
  const evaluated = process.execArgv.some((a) => /^(-e|--eval|-p|--print)(=|$)/.test(a));
  if (!evaluated && (script === undefined || script === '-')) {
    throw new ReexecError(
      'REEXEC_UNSUPPORTED',
      'this program was read from standard input and cannot be run again',
      {
        hint: 'run it from a file (node program.js) or with -e',
      },
    );
  }
  return [...process.execArgv, ...process.argv.slice(1)];
}

/**
 * Signals the launcher never raises on itself: SIGKILL/SIGSTOP (handled apart), and those Node
 * intercepts instead of dying: SIGUSR1 would open the inspector's debugging port, SIGPIPE is
 * ignored. For these the launcher exits with 128 + N.
 */
const NOT_RERAISED = new Set<NodeJS.Signals>(['SIGKILL', 'SIGSTOP', 'SIGUSR1', 'SIGPIPE']);

/** The launcher's exit: the child's status, or 128 + N / the same signal when it was killed. */
function finish(
  options: ReexecOptions,
  exitCode: number | null,
  signal: NodeJS.Signals | null,
  stopForwarding: () => void,
): void {
  stopForwarding();
  const code = signal === null ? (exitCode ?? 1) : 128 + signalNumber(signal);
  if (options.exit !== undefined) {
    options.exit(code, signal);
    return;
  }
  if (signal !== null && options.onSignal === 'reraise' && !NOT_RERAISED.has(signal)) {
    // Default action restored by removing our handlers above; Node keeps SIGPIPE ignored.
    try {
      process.kill(process.pid, signal);
    } catch {
      // fall through to the exit status
    }
    // A terminating signal is delivered before kill() returns to us; if we are still here, it did not.
  } else if (signal === 'SIGKILL' && options.onSignal === 'reraise') {
    process.kill(process.pid, 'SIGKILL');
  }
  process.exit(code);
}

async function namedUserNamespace(name: string, root: string | undefined): Promise<number | undefined> {
  const state = (await inspectNamespace(name, root === undefined ? {} : { root })).state;
  return state?.namespaces.find((n) => n.type === 'user')?.inode;
}

type Child = ChildProcess & Promise<{ exitCode: number | null; signal: NodeJS.Signals | null }>;

/**
 * Starts the program again: in a named namespace, or by spawn() in new namespaces (an `auto:…`
 * range is allocated for this process first; `release` gives it back once the program ended).
 */
async function startChild(
  options: ReexecOptions,
  argv: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ child: Child; release: () => Promise<void> }> {
  if (options.namespace !== undefined) {
    const root = options.stateRoot === undefined ? {} : { root: options.stateRoot };
    const state = (await inspectNamespace(options.namespace, root).catch(() => undefined))?.state;
    if (state) {
      let unreachable: Error | undefined;
      try {
        // The recorded maps are those in force (a map is written once), whatever holds it.
        const toMap = (m: [number, number, number][]) =>
          IdMap.of(m.map(([inside, outside, count]) => ({ inside, outside, count })));
        unreachable = unreachableError(reexecNeeds(argv), {
          uidMap: toMap(state.uidMap),
          gidMap: toMap(state.gidMap),
          user: state.user,
          setgroups: state.setgroups,
        });
      } catch {
        // a damaged state: spawnInNamespace says so
      }
      if (unreachable !== undefined) throw unreachable;
    }
    const child = spawnInNamespace(options.namespace, process.execPath, argv, {
      env,
      stdio: 'inherit',
      ...(options.stateRoot === undefined ? {} : { root: options.stateRoot }),
      ...(options.helperPath === undefined ? {} : { helperPath: options.helperPath }),
    });
    return { child, release: async () => {} };
  }
  const spawnOptions: SpawnOptions & { userns?: ReexecOptions['userns'] } = {
    namespaces: options.namespaces ?? ['mount'],
    env,
    stdio: 'inherit',
    onWarning: options.onWarning ?? ((m) => process.stderr.write(`userns: warning: ${m}\n`)),
    mustReach: reexecNeeds(argv),
  };
  for (const key of PASSED_ON) {
    if (options[key] !== undefined) (spawnOptions as Record<string, unknown>)[key] = options[key];
  }
  const auto = await withAutoUserns(
    spawnOptions,
    options.stateRoot === undefined ? {} : { stateRoot: options.stateRoot },
  );
  try {
    return { child: spawn(process.execPath, argv, auto.options), release: auto.release };
  } catch (error) {
    await auto.release().catch(() => {});
    throw error;
  }
}

/**
 * What the program needs inside, as the namespace's IDs: node itself, the script, and this
 * package (which the script imports). A private install (a checkout under /root, mode 0700) run
 * with maps that do not map its owner fails here with PATH_UNREACHABLE, before anything ran.
 */
function reexecNeeds(argv: readonly string[]): Reach[] {
  const needs: Reach[] = [{ path: process.execPath, need: 'execute' }];
  const evaluated = process.execArgv.some((a) => /^(-e|--eval|-p|--print)(=|$)/.test(a));
  const script = process.argv[1];
  if (!evaluated && script !== undefined && argv.includes(script) && isAbsolute(script))
    needs.push({ path: script, need: 'read' });
  needs.push({ path: fileURLToPath(import.meta.url), need: 'read' });
  return needs;
}

/** ReexecOptions handed to spawn() unchanged. */
const PASSED_ON = [
  'userns',
  'uidMap',
  'gidMap',
  'setgroups',
  'noSplit',
  'fallback',
  'newuidmap',
  'newgidmap',
  'helperPath',
] as const;

/**
 * Runs this Node program again inside a user namespace, unless it already is there.
 *
 * Inside (a re-executed program, or one already in the named namespace `namespace`): resolves
 * at once with what it knows. Outside: starts the program again in a new user (and mount)
 * namespace with the `auto` maps or the given ones (or in the named namespace), forwards
 * SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH, and exits with the child's
 * status (128 + N when killed by signal N, or the same signal with `onSignal: 'reraise'`); the
 * returned promise then never settles. Rejects with the typed error of the setup (SpawnError,
 * NewIdmapError, MapError, NamespaceError, AllocError, each with its stable code) when the
 * namespace cannot be set up; nothing has run then, and the program may carry on without it.
 */
export async function reexecInUserNamespace(options: ReexecOptions = {}): Promise<ReexecInfo> {
  const inside = reexecInfo();
  if (inside !== undefined) return inside;
  const inode = userNamespaceInode();
  const privileged = isPrivileged();
  if (options.namespace !== undefined) {
    const target = await namedUserNamespace(options.namespace, options.stateRoot).catch(() => undefined);
    if (target === inode) {
      // Already in it (e.g. started by `userns exec NAME`): nothing to do.
      return { ...info(undefined, inode, true), namespace: options.namespace };
    }
  } else if (privileged && options.skipIfPrivileged) {
    return info(undefined, inode, false);
  }

  const marker: Marker = {
    v: 1,
    from: inode,
    uid: process.geteuid?.() ?? 0,
    gid: process.getegid?.() ?? 0,
    rootless: !privileged,
    pid: process.pid,
    ns: options.namespace ?? null,
  };
  const env = { ...process.env, ...options.env, [REEXEC_ENV]: JSON.stringify(marker) };
  const argv = reexecArgv();
  // Wrapped: the ChildProcess is itself a promise, which `await` would unwrap.
  const { child, release } = await startChild(options, argv, env);
  const received: { signal: NodeJS.Signals | null } = { signal: null };
  const stopForwarding = forwardSignals(child, (signal) => {
    received.signal = signal;
  });
  let result: { exitCode: number | null; signal: NodeJS.Signals | null };
  try {
    result = await child;
  } catch (error) {
    await release().catch(() => {});
    if (received.signal !== null) {
      // Killed during setup by a signal we forwarded: exit as if the program had been.
      finish(options, null, received.signal, stopForwarding);
      return new Promise<never>(() => {});
    }
    stopForwarding();
    throw error;
  }
  await release().catch(() => {});
  finish(options, result.exitCode, result.signal, stopForwarding);
  return new Promise<never>(() => {});
}

/** For diagnostics: the user namespace of a process as `user:[INODE]`. */
export function userNamespaceOf(pid: number | 'self' = 'self'): string {
  return readlinkSync(`/proc/${pid}/ns/user`);
}
