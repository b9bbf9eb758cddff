/**
 * Driver of the userns-helper executable (src/native/userns-helper.c; protocol in src/native/protocol.md).
 *
 * `launchHelper()` starts the helper, which creates the namespaces and stops; the caller writes
 * the maps to /proc/<pid>/… (it knows the PID from `handle.pid`), then `go()` lets the helper
 * switch IDs and exec the command, or `abort()` makes it exit. The ChildProcess is the helper,
 * which becomes the command (same PID, unless a PID namespace was requested: then the helper
 * stays as a small supervisor that forwards signals and exits like the command).
 *
 * The driver speaks the protocol and nothing more: a failure the helper reports is a plain
 * HelperFailure ({step, errno, detail}); the caller's `explain` (src/spawn/explain.ts,
 * src/mount/errors.ts) turns it into an error that says what went wrong and what to do.
 */
import { type ChildProcess, type StdioOptions, spawn as spawnChild } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import type { Duplex, Writable } from 'node:stream';
import { getSystemErrorName } from 'node:util';
import { DOCTOR_HINT, type ErrorCode, SpawnError } from '../errors/index.js';
import { resolveHelperBinary } from './helper-binary.js';

/** A namespace the helper can create or join (names as in `--unshare`). */
export type Namespace = 'user' | 'mount' | 'pid' | 'uts' | 'ipc' | 'net' | 'cgroup';
/** Every {@link Namespace}. */
export const NAMESPACES: readonly Namespace[] = ['user', 'mount', 'pid', 'uts', 'ipc', 'net', 'cgroup'];

type StdioEntry = Exclude<StdioOptions, string>[number];

/** A namespace as the helper reports it ("ns <type> <inode> <handle>"). */
export interface NamespaceId {
  type: Namespace;
  /** Inode number of /proc/PID/ns/<type>: the namespace's identity while it lives. */
  inode: number;
  /** nsfs file handle as "<handle_type hex>:<payload hex>" (Linux 6.18+), or null. */
  handle: string | null;
}

/**
 * What the helper does (protocol.md "Modes"): run a command in new namespaces, hold new
 * namespaces with a keeper, join a keeper's namespaces and run a command there, make detached
 * mounts, or walk a tree.
 */
export type HelperMode = 'run' | 'hold' | 'join' | 'mount' | 'walk' | 'bind' | 'probe';

/**
 * Where join mode takes existing namespaces from (protocol.md "Join mode"): `pid` — the
 * namespaces of a process, pinned by a pidfd and checked by start time and inodes; `handle` —
 * nsfs file handles reopened with open_by_handle_at (Linux 6.18+); `file` — bind-mounted
 * namespace files (the `mount` hold).
 */
export type JoinSource =
  | { via: 'pid'; pid: number; startTime?: string }
  | { via: 'handle' }
  | { via: 'file' };

/** One namespace to join: its recorded identity, and its handle or file for those sources. */
export interface JoinNamespace {
  type: Namespace;
  inode: number;
  /** With via 'handle'. */
  handle?: string;
  /** With via 'file': the bind-mounted namespace file. */
  file?: string;
}

/** A failure the helper reported ("error <step> <errno> <text>"), as plain facts. */
export interface HelperFailure {
  /** The step that failed: usage, prctl, unshare, join, setns, exec, mount-open, … (protocol.md). */
  step: string;
  /** The errno's name (EPERM, ENOENT, …; util.getSystemErrorName), or its number when unknown. */
  errno: string;
  /** strerror's text, then ": " and what the step was about (a path, an ID, "#<mount index> <path>"). */
  detail: string;
  /** The report line as the helper wrote it. */
  report: string;
}

/** Turns a helper's failure into the error the caller throws (src/spawn/explain.ts, src/mount/errors.ts). */
export type ExplainFailure = (failure: HelperFailure, options: HelperOptions) => Error;

/**
 * How to start the native helper (src/native/protocol.md): the namespaces, the command and IDs
 * inside, mounts, stdio; the low-level interface under spawn() (src/spawn/spawn.ts).
 */
export interface HelperOptions {
  /**
   * Default 'run'; 'join' with `join`. 'hold': no command; after go() the helper forks a detached
   * keeper that holds the namespaces (protocol.md); go() resolves once the keeper reported
   * "held", commit() lets it detach. 'walk' (src/shift/tree-walk.ts): no command; after go() the
   * helper itself walks a tree (job on its stdin, records on its stdout); go() resolves when the
   * walk starts. ('mount' is driven by src/mount/detached.ts with helperArgs.)
   */
  mode?: HelperMode;
  /** Namespaces to create; 'user' is always created. Ignored with `join`. */
  namespaces: readonly Namespace[];
  /** The command and its arguments (looked up in PATH of `env` when it has no '/'); [] without one. */
  command: readonly string[];
  /** With mode 'walk': create no namespace at all (a read-only scan in the caller's view). */
  noUserns?: boolean;
  /** Report the new namespaces' inodes and nsfs handles before "ready" (handle.namespaceIds). */
  reportNamespaces?: boolean;
  /**
   * Enter these existing namespaces instead of creating new ones (mode 'join'): of process `pid`
   * (a plain `{ pid, namespaces }` is a pid join), or by nsfs handle or bind-mounted file
   * (`source`); each is checked against its inode before any is entered.
   */
  join?:
    | { pid: number; startTime?: string; namespaces: readonly JoinNamespace[] }
    | { source: JoinSource; namespaces: readonly JoinNamespace[] };
  /** Act as a kernel without nsfs file handles (run, hold, join; tests of the fallbacks). */
  noHandles?: boolean;
  /**
   * Hold mode: no keeper; the helper holds the namespaces itself until commit() (the caller
   * makes its own references meanwhile, e.g. bind mounts), then exits.
   */
  noKeeper?: boolean;
  /** Explains a reported failure; default: plainFailure (a SpawnError coded by step). */
  explain?: ExplainFailure;
  /** With `cwd`: the directory to use when `cwd` cannot be entered. */
  cwdFallback?: string;
  /** Send "go" at once, without waiting for "ready" (nothing to write in between: join mode). */
  goAtOnce?: boolean;
  /** IDs to switch to inside after "go" (default 0:0); null = keep the helper's IDs. */
  user?: { uid: number; gid: number } | null;
  /**
   * Call setgroups(0, NULL) before switching IDs: true = must succeed, 'try' (default) = ignore
   * EPERM (setgroups is denied in the namespace), false = never.
   */
  setgroupsCall?: boolean | 'try';
  /** Directory to chdir to inside, after switching IDs. Default: inherit the current one. */
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /**
   * Like child_process.spawn's stdio. Default 'inherit'. Entries after the third become the
   * command's fds 3, 4, … (the helper receives them at 5, 6, … and moves them into place).
   */
  stdio?: StdioOptions;
  /** Mount a fresh /proc for the new PID namespace (adds 'mount' and needs 'pid'). */
  mountProc?: boolean;
  /**
   * Bind mounts (read-only, idmapped) made before the user namespace is created and attached in
   * the new mount namespace (adds 'mount'); see protocol.md "Mounts" and src/mount/.
   */
  mounts?: readonly HelperMount[];
  /**
   * Paths of the user namespaces that mounts[].userns index (e.g. /proc/<our pid>/fd/<n>), sent
   * on the control fd before the helper unshares; may resolve later (a rejection kills the helper).
   */
  mountNamespaces?: readonly string[] | Promise<readonly string[]>;
  /** File descriptors of this process that the command gets at the same numbers. */
  keepFds?: readonly number[];
  /** Path of the helper binary (default: $USERNS_HELPER, else the package's own for this platform). */
  helperPath?: string;
}

/** One --mount of the helper (src/mount/ computes these from MountSpecs). */
export interface HelperMount {
  /** Absolute path; with `detached`, a /proc/PID/fd/N link to a detached mount. */
  source: string;
  /** Absolute path in the new mount namespace. */
  target: string;
  readOnly?: boolean;
  /** Submounts too (rbind). */
  recursive?: boolean;
  /** The source is a detached mount: cloned (or attached itself on kernels before 6.15). */
  detached?: boolean;
  /** Index into mountNamespaces: idmap the mount with that user namespace. */
  userns?: number;
}

/** The helper's `--mount=FLAGS:NS:SRCLEN:SRC:DST` argument. */
export function mountArg(m: HelperMount): string {
  const flags = `${m.readOnly ? 'r' : ''}${m.recursive ? 'R' : ''}${m.detached ? 'd' : ''}` || '-';
  const ns = m.userns === undefined ? '-' : `@${m.userns}`;
  return `--mount=${flags}:${ns}:${Buffer.byteLength(m.source)}:${m.source}:${m.target}`;
}

/** A started helper waiting for its maps: its PID, then `go()` to run the command or `abort()`. */
export interface HelperHandle {
  /** The helper's PID = the command's PID (without a PID namespace). */
  pid: number;
  /** The namespaces reported before "ready" (with reportNamespaces). */
  namespaceIds: NamespaceId[];
  /** Every report line other than "ready" and "error", in order (e.g. "keeper <pid>", "held"). */
  reports: string[];
  /** Hold mode, after go(): tells the keeper to detach; resolves when it closed the report fd. */
  commit(): Promise<void>;
  /** The helper process, which becomes the command. */
  child: ChildProcess;
  /** Lets the helper go on; resolves once the command was executed, rejects with the explained failure. */
  go(): Promise<void>;
  /** Tells the helper to exit (or kills it after go) and reaps it. Never rejects. */
  abort(message?: string): Promise<void>;
}

let resolvedHelper: string | undefined;

/** The helper binary (src/native/helper-binary.ts chooses it), checked once per process. */
export function helperPath(explicit?: string): string {
  if (explicit === undefined && resolvedHelper !== undefined) return resolvedHelper;
  const path = resolveHelperBinary({ explicit });
  if (explicit === undefined) resolvedHelper = path;
  return path;
}

/**
 * Whether the helper takes "go" on its report socket (`--one-socket`): run mode without mounts.
 * Then there is no control socket: one socketpair less per spawn, 0.6 of 10 ms measured (the
 * mounts' user namespaces need the control socket while the report socket is being written).
 */
export function usesOneSocket(options: Pick<HelperOptions, 'mode' | 'join' | 'mounts'>): boolean {
  return modeOf(options) === 'run' && (options.mounts?.length ?? 0) === 0;
}

/** The mode the options ask for: `mode`, else 'join' with `join`, else 'run'. */
export function modeOf(options: Pick<HelperOptions, 'mode' | 'join'>): HelperMode {
  return options.mode ?? (options.join === undefined ? 'run' : 'join');
}

/**
 * Builds the helper's argv (without the binary), `--mode=MODE` first. Exported for --dry-run
 * and tests. Throws SpawnError USAGE for options the mode cannot take.
 */
export function helperArgs(
  options: Omit<HelperOptions, 'command' | 'namespaces'> &
    Partial<Pick<HelperOptions, 'command' | 'namespaces'>>,
  ppid = process.pid,
  extraFdBase = 5,
): string[] {
  const mode = modeOf(options);
  if ((mode === 'join') !== (options.join !== undefined))
    throw new SpawnError(
      'USAGE',
      `helper mode ${mode} ${mode === 'join' ? 'needs' : 'cannot take'} namespaces to join`,
    );
  if (mode === 'join' && (options.mounts?.length ?? 0) > 0)
    throw new SpawnError(
      'USAGE',
      'mounts cannot be made when joining existing namespaces (--mount with --join)',
      {
        hint: 'give the mounts when the namespaces are created',
      },
    );
  const args = [`--mode=${mode}`, `--ppid=${ppid}`];
  if (options.join !== undefined) {
    const join = options.join;
    const source: JoinSource =
      'source' in join
        ? join.source
        : { via: 'pid', pid: join.pid, ...(join.startTime ? { startTime: join.startTime } : {}) };
    const byType = new Map(join.namespaces.map((n) => [n.type, n]));
    const ordered = NAMESPACES.filter((n) => byType.has(n)).map((n) => byType.get(n)!);
    if (source.via === 'pid') {
      args.push(`--target=${source.pid}`);
      if (source.startTime !== undefined) args.push(`--start-time=${source.startTime}`);
    }
    const missing = ordered.find((n) =>
      source.via === 'handle' ? !n.handle : source.via === 'file' ? !n.file : false,
    );
    if (missing !== undefined)
      throw new SpawnError('USAGE', `joining by ${source.via} needs one for the ${missing.type} namespace`);
    args.push(
      `--ns=${ordered.map((n) => `${n.type}:${n.inode}${source.via === 'handle' ? `:${n.handle}` : ''}`).join(',')}`,
    );
    if (source.via === 'file') for (const n of ordered) args.push(`--ns-file=${n.type}:${n.file}`);
  } else if (mode === 'run' || mode === 'hold') {
    const ns = new Set<Namespace>(['user', ...(options.namespaces ?? [])]);
    if (options.mountProc || (options.mounts?.length ?? 0) > 0) ns.add('mount');
    args.push(`--unshare=${NAMESPACES.filter((n) => ns.has(n)).join(',')}`);
  }
  if (options.goAtOnce && mode === 'join') args.push('--no-wait');
  if (options.noHandles && (mode === 'run' || mode === 'hold' || mode === 'join')) args.push('--no-handles');
  if (options.noKeeper && mode === 'hold') args.push('--no-keeper');
  if (mode === 'walk' && options.noUserns) args.push('--no-userns');
  if (options.reportNamespaces && (mode === 'run' || mode === 'hold')) args.push('--report-ns');
  if (mode === 'run' || mode === 'join') {
    const user = options.user === undefined ? { uid: 0, gid: 0 } : options.user;
    if (user !== null) args.push(`--uid=${user.uid}`, `--gid=${user.gid}`);
    const sg = options.setgroupsCall ?? 'try';
    if (sg !== false) args.push(sg === true ? '--setgroups=must' : '--setgroups=try');
    if (options.cwd !== undefined) args.push(`--cwd=${options.cwd}`);
    if (options.cwdFallback !== undefined) args.push(`--cwd-fallback=${options.cwdFallback}`);
  }
  if (options.mountProc && (mode === 'run' || mode === 'hold')) args.push('--mount-proc');
  if (usesOneSocket(options)) args.push('--one-socket');
  for (const m of options.mounts ?? []) args.push(mountArg(m));
  if (mode === 'run' || mode === 'join') {
    const stdio = normalizeStdio(options.stdio);
    let source = extraFdBase;
    for (let target = 3; target < stdio.length; target++, source++) {
      if (stdio[target] === null || stdio[target] === undefined || stdio[target] === 'ignore') continue;
      args.push(`--fd=${target}:${source}`);
    }
    for (const fd of options.keepFds ?? []) args.push(`--fd=${fd}:${source++}`);
    args.push('--', ...(options.command ?? []));
  }
  return args;
}

function normalizeStdio(stdio: StdioOptions | undefined): StdioEntry[] {
  if (stdio === undefined) return ['inherit', 'inherit', 'inherit'];
  if (typeof stdio === 'string') return [stdio, stdio, stdio];
  const out = [...stdio];
  while (out.length < 3) out.push(undefined);
  return out;
}

/** The code of a failure at each step when nobody explains it better. */
const STEP_CODES: Record<string, ErrorCode> = {
  exec: 'EXEC_FAILED',
  unshare: 'UNSHARE_FAILED',
  setgroups: 'SETGROUPS_FAILED',
  setresuid: 'SETID_FAILED',
  setresgid: 'SETID_FAILED',
  'mount-proc': 'MOUNT_PROC_FAILED',
  'mount-private': 'MOUNT_PROC_FAILED',
  chdir: 'CWD_FAILED',
  join: 'JOIN_FAILED',
  setns: 'JOIN_FAILED',
  keeper: 'KEEPER_FAILED',
};

/** Errno names by number, for those libuv has no name for (ESTALE, EUSERS, …): the first of aliases. */
const ERRNO_NAMES = new Map<number, string>();
for (const [name, value] of Object.entries(osConstants.errno))
  if (!ERRNO_NAMES.has(value)) ERRNO_NAMES.set(value, name);

/**
 * The name of an errno number the helper sent (EPERM for 1): util.getSystemErrorName, else
 * os.constants.errno (libuv does not name every Linux errno, e.g. ESTALE); the number as text
 * when neither knows it.
 */
export function errnoName(errno: number): string {
  let name: string | undefined;
  try {
    name = getSystemErrorName(-errno);
  } catch {
    // not a valid errno number
  }
  if (name !== undefined && !name.startsWith('Unknown')) return name;
  return ERRNO_NAMES.get(errno) ?? String(errno);
}

/** Parses one "error <step> <errno> <text>" report line; undefined when it is not one. */
export function parseFailure(line: string): HelperFailure | undefined {
  const m = /^error (\S+) (\d+) (.*)$/.exec(line);
  if (m === null) return undefined;
  return { step: m[1]!, errno: errnoName(Number(m[2])), detail: m[3]!, report: line };
}

/**
 * A helper failure as a SpawnError coded by its step (EXEC_FAILED, UNSHARE_FAILED, …;
 * SETUP_FAILED for the others), for callers that have nothing better to say.
 */
export function plainFailure(failure: HelperFailure): SpawnError {
  return new SpawnError(
    STEP_CODES[failure.step] ?? 'SETUP_FAILED',
    `setting up the namespace failed at ${failure.step}: ${failure.detail}`,
    { step: failure.step, errno: failure.errno, hint: DOCTOR_HINT, data: { report: failure.report } },
  );
}

/** The error for a report line: the caller's explanation of the failure, or a protocol error. */
function failureOf(line: string, options: HelperOptions): Error {
  const failure = parseFailure(line);
  if (failure === undefined)
    return new SpawnError('HELPER_PROTOCOL', `unexpected report from the helper: ${JSON.stringify(line)}`);
  return (options.explain ?? plainFailure)(failure, options);
}

/** Resolves once the child has exited, or could not be started ('error' and no 'exit' then). */
function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
}

/**
 * Starts the helper and resolves when it has created the namespaces and waits for "go".
 * Rejects with a SpawnError when the helper is missing or cannot create the namespaces.
 */
export function launchHelper(options: HelperOptions): Promise<HelperHandle> {
  try {
    return startHelper(options).ready;
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * Like launchHelper, but returns the ChildProcess synchronously (spawn() needs it before the
 * helper is ready). Throws a SpawnError HELPER_MISSING synchronously.
 */
export function startHelper(options: HelperOptions): { child: ChildProcess; ready: Promise<HelperHandle> } {
  const binary = helperPath(options.helperPath);
  const stdio = normalizeStdio(options.stdio);
  const extras = stdio.slice(3);
  const oneSocket = usesOneSocket(options);
  const childStdio: StdioEntry[] = [
    stdio[0],
    stdio[1],
    stdio[2],
    'pipe',
    // No control fd at all: goAtOnce in join mode (--no-wait), and run mode, whose "go" comes on
    // the report socket (--one-socket). Fd 4 stays unused so that the extra fds keep their numbers.
    (options.goAtOnce && modeOf(options) === 'join') || oneSocket ? 'ignore' : 'pipe',
    ...extras,
    ...(options.keepFds ?? []),
  ];
  const args = helperArgs(options);
  const child = spawnChild(binary, args, {
    stdio: childStdio as StdioOptions,
    env: options.env,
  });
  const report = child.stdio[3] as Duplex;
  const control = child.stdio[4] as Writable | null;
  /**
   * "go" (protocol.md, step 4): EOF without bytes on the control socket, closed at once (end()
   * would defer a shutdown()); with --one-socket the line "go\n" on the report socket, which a
   * socket with nothing queued writes at once (a shutdown would wait for a turn of the loop).
   */
  const sendGo = () => {
    if (oneSocket) report.write('go\n');
    else control?.destroy();
  };
  /**
   * Abort: any bytes and EOF on the control socket; on the report socket, anything but "go", so
   * the message is sent after a word of its own (a message "go" must not start the command).
   */
  const sendAbort = (message: string) => {
    if (oneSocket) report.end(`abort ${message}\n`);
    else control?.end(`${message}\n`);
  };
  if (options.goAtOnce) sendGo();
  // Mounts with user namespaces: the helper waits for their paths before it unshares.
  if (modeOf(options) !== 'join' && options.mounts?.some((m) => m.userns !== undefined)) {
    Promise.resolve(options.mountNamespaces ?? []).then(
      (paths) => {
        control?.write(`userns ${paths.join(' ')}\n`);
      },
      () => {
        child.kill('SIGKILL');
      },
    );
  }
  const mode = modeOf(options);

  const ready = new Promise<HelperHandle>((resolve, reject) => {
    let buffered = '';
    let state: 'starting' | 'ready' | 'going' | 'done' = 'starting';
    let failure: Error | undefined;
    let settleGo: ((error?: Error) => void) | undefined;
    let settleCommit: (() => void) | undefined;
    // goAtOnce: the outcome of "go" when it arrived before go() was called.
    let early: { error: Error | undefined } | undefined;
    const lines: string[] = [];

    const onLine = (line: string) => {
      if (state === 'starting' && line.startsWith('ready ')) {
        state = options.goAtOnce ? 'going' : 'ready';
        resolve(handle);
        return;
      }
      lines.push(line);
      if (line.startsWith('error ')) {
        if (failure === undefined) failure = failureOf(line, options);
        return;
      }
      handle.reports.push(line);
      const ns = /^ns (\S+) (\d+) (\S+)$/.exec(line);
      if (ns !== null) {
        handle.namespaceIds.push({
          type: ns[1] as Namespace,
          inode: Number(ns[2]),
          handle: ns[3] === '-' ? null : ns[3]!,
        });
      }
      // Hold mode: the keeper is set up once "held" (written by the keeper) and "keeper <pid>"
      // (written by the helper after its fork) both arrived: the two processes race, so either
      // may come first. Only failures before then fail go().
      if (
        mode === 'hold' &&
        state === 'going' &&
        (line === 'held' || line.startsWith('keeper ')) &&
        handle.reports.includes('held') &&
        (options.noKeeper || handle.reports.some((l) => l.startsWith('keeper ')))
      ) {
        const settle = settleGo;
        settleGo = undefined;
        settle?.(failure);
      }
    };
    report.setEncoding('utf8');
    report.on('data', (chunk: string) => {
      buffered += chunk;
      let nl = buffered.indexOf('\n');
      while (nl >= 0) {
        onLine(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
        nl = buffered.indexOf('\n');
      }
    });
    report.on('error', () => {});
    control?.on('error', () => {});
    // EOF on the report fd: exec happened (close-on-exec), or the helper exited.
    const onEnd = () => {
      const previous = state;
      state = 'done';
      if (previous === 'starting') {
        const error =
          failure ??
          new SpawnError('HELPER_DIED', 'the userns helper exited before creating the namespaces', {
            hint: DOCTOR_HINT,
            data: { report: lines },
          });
        // Reap it before rejecting, so that no zombie outlives a failed launch.
        void exited(child).then(() => reject(error));
        return;
      }
      if (previous === 'going') {
        const error =
          failure ??
          (mode === 'hold' && !handle.reports.includes('held')
            ? new SpawnError('HELPER_DIED', 'the keeper exited before holding the namespaces', {
                hint: DOCTOR_HINT,
                data: { report: lines },
              })
            : undefined);
        if (settleGo !== undefined) settleGo(error);
        else if (options.goAtOnce) early = { error };
      }
      settleCommit?.();
    };
    report.on('end', onEnd);
    // A socket destroyed without an EOF read: writing "go" to a helper that died in the meantime
    // fails (EPIPE) and destroys it. Its end is the same news.
    report.on('close', () => {
      if (state !== 'done') onEnd();
    });
    child.on('error', (error) => {
      if (state === 'starting') {
        state = 'done';
        reject(
          new SpawnError('HELPER_DIED', `cannot start the userns helper ${binary}: ${error.message}`, {
            cause: error,
          }),
        );
      }
    });

    const handle: HelperHandle = {
      pid: child.pid ?? -1,
      namespaceIds: [],
      reports: [],
      child,
      commit() {
        return new Promise<void>((res) => {
          if (report.readableEnded || report.destroyed) {
            res();
            return;
          }
          settleCommit = res;
          report.write('commit\n');
        });
      },
      go() {
        if (options.goAtOnce && early !== undefined) {
          const { error } = early;
          return error === undefined ? Promise.resolve() : exited(child).then(() => Promise.reject(error));
        }
        if (options.goAtOnce && state === 'going' && settleGo === undefined) {
          return new Promise<void>((res, rej) => {
            settleGo = (error) => {
              if (error === undefined) res();
              else void exited(child).then(() => rej(error));
            };
          });
        }
        if (state !== 'ready') {
          return Promise.reject(
            new SpawnError('HELPER_PROTOCOL', `go() called in state ${state === 'done' ? 'exited' : state}`, {
              data: { report: lines },
            }),
          );
        }
        state = 'going';
        return new Promise<void>((res, rej) => {
          settleGo = (error) => {
            if (error === undefined) {
              res();
            } else {
              // The helper exits 127 after reporting; reap it so nothing is left behind.
              void exited(child).then(() => rej(error));
            }
          };
          sendGo();
        });
      },
      async abort(message = 'abort') {
        if (state === 'ready') {
          state = 'done';
          sendAbort(message);
          const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
          await exited(child);
          clearTimeout(timer);
        } else if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGKILL');
          await exited(child);
        }
        report.destroy();
        control?.destroy();
      },
    };
  });
  return { child, ready };
}
