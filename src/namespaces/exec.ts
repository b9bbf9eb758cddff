/**
 * `userns exec`: commands in a named namespace. The helper joins by nsfs handle when the state
 * has one for every namespace (Linux 6.18+), else through the holder: the keeper's pidfd (checked
 * by start time and inodes) or the bind-mounted files. A stale handle is "gone", never a reason
 * to try a PID.
 */
import type { ChildProcess, StdioOptions } from 'node:child_process';
import { NamespaceError, SpawnError } from '../errors/index.js';
import { IdMap } from '../idmap/idmap.js';
import { type HelperFailure, type HelperOptions, startHelper } from '../native/helper.js';
import { explainSpawnFailure } from '../spawn/explain.js';
import { closed, promiseChild } from '../spawn/promise-child.js';
import { explainUnreachable } from '../spawn/unreachable.js';
import { validateName } from '../state/names.js';
import { handlesDisabled, joinSource, staleMeansGone } from './handles.js';
import { namespaceRoot, pathsFor, type RootOption } from './paths.js';
import { examineForExec, goneError, type NamespaceState, notFound, unusable } from './state.js';

/** Options of {@link execInNamespace} and {@link spawnInNamespace}. */
export interface ExecOptions extends RootOption {
  /** IDs inside (default: the namespace's, see NamespaceState.user). */
  user?: number;
  group?: number;
  /**
   * Working directory inside. Default: unchanged, or with a mount namespace the current
   * directory when it can be entered inside, else /.
   */
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** As child_process.spawn; default 'pipe' (execInNamespace: stdin ignored, output captured). */
  stdio?: StdioOptions;
  helperPath?: string;
  /**
   * How to join (default: by handle when recorded, else by holder). 'holder' forces the keeper's
   * pidfd or the bind files (benchmarks and tests compare the two).
   */
  joinBy?: 'handle' | 'holder';
}

/** How a command run in a named namespace ended (and its output, for execInNamespace). */
export interface ExecResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** The helper's PID (the command's, unless the namespaces include a PID namespace). */
  pid: number;
  stdout: string;
  stderr: string;
}

/** What {@link spawnInNamespace} returns: a ChildProcess that is also a promise of how it ended. */
export type NamespaceChildProcess = ChildProcess & Promise<Omit<ExecResult, 'stdout' | 'stderr'>>;

/**
 * Starts a command in the namespaces `name` (the helper joins them: user first). Throws
 * synchronously (NS_NOT_FOUND, NS_STALE with a hint to `userns rm`, NS_CREATING, NS_BROKEN,
 * NS_UNSAFE, INVALID_NAME) when the entry cannot be used. The ChildProcess is also a promise of
 * the exit status; it rejects with NS_STALE when the namespaces vanish between the check and
 * the join (the helper checks the inodes itself), or with SpawnError codes as spawn() does.
 */
export function spawnInNamespace(
  name: string,
  command: string,
  args: readonly string[] = [],
  options: ExecOptions = {},
): NamespaceChildProcess {
  validateName(name, 'namespace name');
  const root = namespaceRoot(options, false);
  if (root === undefined) throw notFound(name);
  const paths = pathsFor(name, root);
  const info = examineForExec(name, paths);
  if (info === undefined) throw notFound(name);
  const state = info.state;
  // A keeper this /proc cannot check (another PID namespace) is still joined by handle.
  const join = state === null ? undefined : joinSource(state, paths, options.joinBy);
  const usable = info.status === 'running' || (info.status === 'unknown' && join?.source.via === 'handle');
  if (!usable || state === null) throw unusable(info, false);
  if (join === undefined) {
    throw new NamespaceError(
      'NS_HANDLES_UNAVAILABLE',
      `namespace ${name} has no holder and can only be joined by nsfs handle${handlesDisabled() ? ', which USERNS_NSFS_HANDLES=0 switches off' : ''}`,
      { hint: 'unset USERNS_NSFS_HANDLES', data: { name, hold: state.hold } },
    );
  }
  const joinsMount = state.namespaces.some((n) => n.type === 'mount');
  const cwd = options.cwd ?? (joinsMount ? process.cwd() : undefined);
  const argv = [command, ...args];
  const user = { uid: options.user ?? state.user.uid, gid: options.group ?? options.user ?? state.user.gid };
  const { child, ready } = startHelper({
    mode: 'join',
    namespaces: [],
    command: argv,
    explain: (failure, helperOptions) => explainJoinFailure(name, state, failure, helperOptions),
    join,
    user,
    setgroupsCall: 'try',
    ...(cwd === undefined ? {} : { cwd }),
    ...(options.cwd === undefined && joinsMount ? { cwdFallback: '/' } : {}),
    ...(options.env === undefined ? {} : { env: options.env }),
    stdio: options.stdio ?? 'pipe',
    goAtOnce: true,
    ...(options.helperPath === undefined ? {} : { helperPath: options.helperPath }),
  });
  const done = closed(child);
  const result = (async () => {
    try {
      const handle = await ready;
      await handle.go();
    } catch (error) {
      if (error instanceof NamespaceError) throw error;
      if (error instanceof SpawnError && error.code === 'NS_STALE') {
        throw new NamespaceError('NS_STALE', `namespace ${name} is stale: ${error.message}`, {
          hint: `remove it with 'userns rm ${name}' and create it again`,
          data: { name, ...error.data },
          cause: error,
        });
      }
      if (!(error instanceof SpawnError) || error.errno !== 'EACCES') throw error;
      // Maps are written once: the recorded ones are those in force.
      throw explainUnreachable(error, {
        command: argv,
        ...(cwd === undefined ? {} : { cwd }),
        ...(options.env === undefined ? {} : { env: options.env }),
        user,
        uidMap: IdMap.of(state.uidMap.map(([inside, outside, count]) => ({ inside, outside, count }))),
        gidMap: IdMap.of(state.gidMap.map(([inside, outside, count]) => ({ inside, outside, count }))),
        setgroups: state.setgroups,
      });
    }
    const { code, signal } = await done;
    return { exitCode: code, signal, pid: child.pid ?? -1 };
  })();
  return promiseChild(child, result);
}

/**
 * The error for a failed join: a handle that does not reopen (ESTALE/ENOENT) is NS_GONE when the
 * kernel would have let this caller in (else it may also be "not permitted": NS_GONE says both);
 * a kernel or filter without handles is NS_HANDLES_UNAVAILABLE; a PID namespace whose first
 * process died (fork: ENOMEM) is NS_GONE; the rest as for any start (explainSpawnFailure).
 */
function explainJoinFailure(
  name: string,
  state: NamespaceState,
  failure: HelperFailure,
  helperOptions: HelperOptions,
): Error {
  const data = { name, hold: state.hold, step: failure.step, errno: failure.errno, report: failure.report };
  if (failure.step === 'join-handle') {
    if (failure.errno === 'ESTALE' || failure.errno === 'ENOENT') {
      const type = failure.detail.split(': ').pop();
      const why =
        state.hold === 'none'
          ? 'all its processes exited'
          : state.hold === 'mount'
            ? 'its bind mounts were removed'
            : 'its keeper is gone';
      return goneError(
        name,
        staleMeansGone(state)
          ? `its ${type} namespace no longer exists (${why})`
          : `its ${type} namespace cannot be reopened from here: it no longer exists, or this process is not permitted to enter it`,
        data,
      );
    }
    if (failure.errno === 'EINVAL') {
      return new NamespaceError(
        'NS_BROKEN',
        `namespace ${name} has a malformed nsfs handle: ${failure.detail}`,
        {
          hint: `remove it with 'userns rm --force ${name}'`,
          data,
        },
      );
    }
    return new NamespaceError(
      'NS_HANDLES_UNAVAILABLE',
      `namespace ${name}: nsfs handles cannot be reopened here (${failure.errno}: ${failure.detail}); a kernel before Linux 6.18, or a seccomp filter`,
      {
        hint:
          state.hold === 'none'
            ? 'a namespace created with --hold none can only be joined by handle'
            : 'USERNS_NSFS_HANDLES=0 makes userns join through the keeper or the bind mounts instead',
        data,
      },
    );
  }
  if (failure.step === 'fork' && failure.errno === 'ENOMEM' && state.namespaces.some((n) => n.type === 'pid'))
    return goneError(name, 'its PID namespace has no first process any more', data);
  return explainSpawnFailure(failure, helperOptions);
}

/**
 * Runs `argv` in the namespaces `name` to completion, stdin empty, stdout and stderr captured
 * as UTF-8 text. Throws as spawnInNamespace does, and NamespaceError USAGE for an empty argv.
 */
export async function execInNamespace(
  name: string,
  argv: readonly string[],
  options: ExecOptions = {},
): Promise<ExecResult> {
  if (argv.length === 0) throw new NamespaceError('USAGE', 'no command given');
  const child = spawnInNamespace(name, argv[0]!, argv.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...options,
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const r = await child;
  return { ...r, stdout, stderr };
}
