/** `userns exec`: commands in a named namespace (the helper joins the keeper's namespaces). */
import type { ChildProcess, StdioOptions } from 'node:child_process';
import { NamespaceError, SpawnError } from '../errors/index.js';
import { startHelper } from '../native/helper.js';
import { explainSpawnFailure } from '../spawn/explain.js';
import { closed, promiseChild } from '../spawn/promise-child.js';
import { explainUnreachableIn } from '../spawn/unreachable.js';
import { validateName } from '../state/names.js';
import { namespaceRoot, pathsFor, type RootOption } from './paths.js';
import { examineForExec, notFound, unusable } from './state.js';

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
  if (info.status !== 'running' || info.state === null) throw unusable(info, false);
  const state = info.state;
  const joinsMount = state.namespaces.some((n) => n.type === 'mount');
  const cwd = options.cwd ?? (joinsMount ? process.cwd() : undefined);
  const argv = [command, ...args];
  const user = { uid: options.user ?? state.user.uid, gid: options.group ?? options.user ?? state.user.gid };
  const { child, ready } = startHelper({
    mode: 'join',
    namespaces: [],
    command: argv,
    explain: explainSpawnFailure,
    join: { pid: state.keeperPid, namespaces: state.namespaces },
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
      if (error instanceof SpawnError && error.code === 'NS_STALE') {
        throw new NamespaceError('NS_STALE', `namespace ${name} is stale: ${error.message}`, {
          hint: `remove it with 'userns rm ${name}' and create it again`,
          data: { name, ...error.data },
          cause: error,
        });
      }
      throw explainUnreachableIn(error, state.keeperPid, {
        command: argv,
        ...(cwd === undefined ? {} : { cwd }),
        ...(options.env === undefined ? {} : { env: options.env }),
        user,
      });
    }
    const { code, signal } = await done;
    return { exitCode: code, signal, pid: child.pid ?? -1 };
  })();
  return promiseChild(child, result);
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
