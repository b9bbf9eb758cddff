/**
 * Named namespaces that outlive a command: `userns create/exec/list/inspect/rm`.
 *
 * A named namespace is a set of namespaces (user, optionally mount, pid, uts, ipc, net, cgroup)
 * kept alive by a keeper process (the native helper in --hold mode: detached, PID 1 of the new
 * PID namespace when there is one) and described on disk, runc-style, by
 *
 *   <root>/ns/<name>/state.json   the state (NamespaceState), written atomically (temp + fsync + rename)
 *   <root>/ns/<name>/creating     present until the create committed (who and when, for people)
 *   <root>/ns/@locks/<name>       the flock(2) lock that serialises create and rm of <name> (src/state/lock.ts)
 *   <root>/ns/@trash.<name>.<hex> an entry being removed (renamed away first, so removal is atomic)
 *
 * ("@" is not allowed in names, so these never collide with an entry.)
 *
 * Safety: names are validated (src/store/names.ts), the root and <root>/ns are private
 * directories of the caller (ensureStateRoot), an entry is created with mkdir (which fails on
 * anything already there, a symlink included) and refused when lstat says it is not a real
 * directory, files are opened with O_NOFOLLOW, so no path derived from a name ever leaves the root.
 *
 * Crash safety: the create holds the lock from start to end; the keeper only detaches once the
 * state is on disk (it exits by itself if the creator dies earlier), and the `creating` marker
 * is removed last. The kernel drops the lock when its holder dies, so an entry that still has
 * its marker when someone else holds the lock lost its creator: it is "abandoned" and removed
 * (with its keeper) by the next create, rm or list: a SIGKILL at any point of a create never
 * blocks a later create of the same name and never leaves a keeper nobody knows about.
 *
 * @module userns/namespaces
 */
import type { ChildProcess, StdioOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ErrorDetails, UsernsError } from '../errors.js';
import { IdMap } from '../idmap/idmap.js';
import type { IdRange } from '../idmap/ranges.js';
import { subtractRanges } from '../idmap/ranges.js';
import { helperMountsFor, mountNamespacePaths } from '../mount/prepare.js';
import { formatMountSpec } from '../mount/spec.js';
import {
  type HelperHandle,
  launchHelper,
  NAMESPACES,
  type Namespace,
  type NamespaceId,
  startHelper,
} from '../native/helper.js';
import { SpawnError } from '../spawn/errors.js';
import { planArgv, type SpawnOptions } from '../spawn/spawn.js';
import { isPrivileged } from '../spawn/system.js';
import { explainUnreachableIn } from '../spawn/unreachable.js';
import { writeMaps } from '../spawn/write-maps.js';
import { acquireFileLock, type FileLock } from '../state/lock.js';
import { fsyncDirectory, writeFileAtomic } from '../store/atomic.js';
import {
  bootId,
  parseProcStat,
  processStartTimeSync as processStartTime,
  procPidNamespace,
} from '../system/proc.js';
import { validateName } from './names.js';
import { defaultStateRoot, ensurePrivateDir, ensureStateRoot } from './state-root.js';

const { O_RDONLY, O_NOFOLLOW, O_CREAT, O_EXCL, O_WRONLY } = constants;

/**
 * Codes: NS_EXISTS, NS_NOT_FOUND, NS_STALE, NS_CREATING, NS_BROKEN, NS_UNSAFE, NS_KEEPER_FAILED.
 * (Invalid names: InvalidNameError INVALID_NAME; state root problems: StateRootError; a lock
 * held too long: LockTimeoutError LOCK_TIMEOUT; setup failures: SpawnError / NewIdmapError.)
 */
export class NamespaceError extends UsernsError {
  constructor(code: string, message: string, details: ErrorDetails = {}) {
    super(code, message, details);
  }
}

/** What `state.json` holds (version 1). */
export interface NamespaceState {
  version: 1;
  name: string;
  /** The keeper: PID and start time (field 22 of /proc/PID/stat, to detect PID reuse). */
  keeperPid: number;
  keeperStartTime: string;
  /** Every namespace held, with its identity (inode of /proc/KEEPER/ns/TYPE, nsfs handle). */
  namespaces: NamespaceId[];
  /** The maps in force, read back from /proc/KEEPER/{uid,gid}_map: [inside, outside, count]. */
  uidMap: [number, number, number][];
  gidMap: [number, number, number][];
  setgroups: 'allow' | 'deny';
  /** Whether the keeper mounted a fresh /proc (PID + mount namespaces). */
  mountProc: boolean;
  /** IDs `exec` runs as by default (as `run` would: 0:0, or your own IDs with keep-id). */
  user: { uid: number; gid: number };
  createdAt: string;
  /** Who created it (IDs of the namespace userns ran in). */
  creator: { uid: number; gid: number };
  /** The options the namespace was created with (maps as strings). */
  options: StoredOptions;
  /** The creator's subordinate ranges at creation (null when privileged: the maps do not depend on them). */
  subids: { uid: IdRange[]; gid: IdRange[] } | null;
  warnings: string[];
  /** The registry allocation the maps came from (`--userns auto:…`), released by rm. */
  allocation?: string;
  /**
   * The PID namespace (nsfs inode) keeperPid belongs to: the one /proc showed at creation. A
   * check from where /proc shows another cannot judge the keeper (alloc gc says so).
   */
  pidNamespace?: number;
  /** The boot it was created in (/proc/sys/kernel/random/boot_id). */
  bootId?: string;
}

/** The options a named namespace was created with, as recorded in its state. */
export interface StoredOptions {
  userns?: string;
  uidMap?: string;
  gidMap?: string;
  namespaces: Namespace[];
  setgroups?: 'allow' | 'deny';
  user?: number;
  group?: number;
  noSplit?: boolean;
  fallback?: 'none' | 'single';
  /** --mount specs (src/mount/spec.ts text form; a detached source is "fd:N"). */
  mounts?: string[];
}

/**
 * running: the keeper lives and holds the recorded namespaces. stale: the keeper is gone, its
 * PID was reused, or a namespace identity changed. creating: a live process is creating it.
 * abandoned: its creator died before committing. broken: state.json is unreadable or invalid.
 * unsafe: the entry is not a real directory (a symlink, a file).
 */
export type NamespaceStatus = 'running' | 'stale' | 'creating' | 'abandoned' | 'broken' | 'unsafe';

/** A named namespace as {@link listNamespaces} sees it: name, status, and its state when readable. */
export interface NamespaceInfo {
  name: string;
  /** The entry directory. */
  path: string;
  status: NamespaceStatus;
  /** Why it is not running. */
  reason?: string;
  state: NamespaceState | null;
}

/** The state root of named namespaces. */
export interface RootOption {
  /** The state root (default: $XDG_RUNTIME_DIR/userns, /run/userns for root). */
  root?: string;
}

/** Options of {@link createNamespace}: the mapping and namespace options of spawn(), and the state root. */
export interface CreateOptions
  extends RootOption,
    Pick<
      SpawnOptions,
      | 'userns'
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
  /** As SpawnOptions.uidMap (an IdMap is stored as its text). */
  uidMap?: SpawnOptions['uidMap'];
  gidMap?: SpawnOptions['gidMap'];
  /** Namespaces besides the user namespace. */
  namespaces?: readonly Exclude<Namespace, 'user'>[];
  /** Mount a fresh /proc (default: with a PID namespace). */
  mountProc?: boolean;
}

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

/** How a user's subordinate ranges changed since a namespace was created. */
export interface SubidChange {
  kind: 'uid' | 'gid';
  /** Ranges that are in the subordinate files now but were not at creation (not mapped). */
  added: IdRange[];
  /** Ranges recorded at creation that are no longer there (still mapped by the namespace). */
  removed: IdRange[];
}

/** What {@link inspectNamespace} shows: the entry, the maps in force, and subordinate-range changes. */
export interface InspectResult extends NamespaceInfo {
  /** The maps in force now (read from /proc/KEEPER) when running. */
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
}

// ---------------------------------------------------------------------------------------------
// Paths

interface Paths {
  root: string;
  nsDir: string;
  entry: string;
  state: string;
  marker: string;
  lock: string;
}

function pathsFor(name: string, root: string): Paths {
  const nsDir = join(root, 'ns');
  const entry = join(nsDir, name);
  return {
    root,
    nsDir,
    entry,
    state: join(entry, 'state.json'),
    marker: join(entry, 'creating'),
    lock: join(nsDir, '@locks', name),
  };
}

/** The root, created (0700) when `create` is true; undefined when missing and not created. */
function stateRoot(options: RootOption, create: boolean): string | undefined {
  const root = options.root ?? defaultStateRoot();
  if (create) {
    const r = ensureStateRoot(root);
    ensurePrivateDir(join(r, 'ns'), 'namespace directory');
    ensurePrivateDir(join(r, 'ns', '@locks'), 'lock directory');
    return r;
  }
  const r = resolve(root);
  // Existing: checked as strictly as create would (a symlinked or foreign root is refused),
  // without creating anything (and without a syscall more than needed: exec is a hot path).
  const euid = process.geteuid?.() ?? 0;
  for (const dir of [r, join(r, 'ns')]) {
    const st = lstatSync(dir, { throwIfNoEntry: false });
    if (st === undefined) return undefined;
    if (st.isSymbolicLink() || !st.isDirectory() || st.uid !== euid || (st.mode & 0o022) !== 0) {
      // Let the full check explain what is wrong.
      ensurePrivateDir(dir, dir === r ? 'state root' : 'namespace directory');
    }
  }
  return r;
}

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Reads a small regular file without following a symlink; undefined when it does not exist. */
function readNoFollow(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, O_RDONLY | O_NOFOLLOW);
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
  try {
    if (!fstatSync(fd).isFile())
      throw Object.assign(new Error(`${path} is not a regular file`), { code: 'EINVAL' });
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------
// Processes

/** State letter and start time of a process, or undefined when it does not exist. */
function processInfo(pid: number): { state: string; start: string } | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  const { fields } = parseProcStat(text);
  return { state: fields[0] ?? '?', start: fields[22 - 3] ?? '' };
}

/** Whether the process `pid` started at `start` still runs (a zombie does not). */
function isAlive(pid: number, start: string): boolean {
  const info = processInfo(pid);
  return info !== undefined && info.start === start && info.state !== 'Z' && info.state !== 'X';
}

const PROC_NS: Record<Namespace, string> = {
  user: 'user',
  mount: 'mnt',
  pid: 'pid',
  uts: 'uts',
  ipc: 'ipc',
  net: 'net',
  cgroup: 'cgroup',
};

/** Why the recorded keeper and namespaces are not (or no longer) what state.json says; undefined = fine. */
function staleReason(state: NamespaceState): string | undefined {
  const info = processInfo(state.keeperPid);
  if (info === undefined || info.state === 'Z' || info.state === 'X')
    return `its keeper (PID ${state.keeperPid}) is gone`;
  if (info.start !== state.keeperStartTime)
    return `its keeper PID ${state.keeperPid} now belongs to another process (start time ${info.start}, recorded ${state.keeperStartTime})`;
  for (const ns of state.namespaces) {
    let inode: number;
    try {
      inode = statSync(`/proc/${state.keeperPid}/ns/${PROC_NS[ns.type]}`).ino;
    } catch (error) {
      if (isMissing(error)) return `its keeper (PID ${state.keeperPid}) is gone`;
      return `cannot check its ${ns.type} namespace: ${(error as Error).message}`;
    }
    if (inode !== ns.inode) return `its ${ns.type} namespace changed (inode ${inode}, recorded ${ns.inode})`;
  }
  return undefined;
}

/** SIGTERM, then SIGKILL, to the keeper, only while it is the recorded process. */
async function stopKeeper(pid: number, start: string): Promise<boolean> {
  if (!isAlive(pid, start)) return false;
  const signal = (sig: NodeJS.Signals) => {
    try {
      if (isAlive(pid, start)) process.kill(pid, sig);
    } catch {
      // gone meanwhile
    }
  };
  const waitGone = async (ms: number) => {
    const deadline = Date.now() + ms;
    while (isAlive(pid, start) && Date.now() < deadline) await sleep(5);
    return !isAlive(pid, start);
  };
  signal('SIGTERM');
  if (await waitGone(2000)) return true;
  signal('SIGKILL');
  await waitGone(2000);
  return true;
}

// ---------------------------------------------------------------------------------------------
// State

const TYPES = new Set<string>(NAMESPACES);

function isTriples(x: unknown): x is [number, number, number][] {
  return (
    Array.isArray(x) &&
    x.every((t) => Array.isArray(t) && t.length === 3 && t.every((n) => Number.isSafeInteger(n) && n >= 0))
  );
}

/** Checks the shape of a parsed state.json; returns what is wrong, or undefined. */
function stateProblem(s: unknown, name: string): string | undefined {
  if (typeof s !== 'object' || s === null) return 'not a JSON object';
  const o = s as Record<string, unknown>;
  if (o.version !== 1) return `unknown version ${JSON.stringify(o.version)}`;
  if (o.name !== name) return `it names ${JSON.stringify(o.name)}`;
  if (!Number.isInteger(o.keeperPid) || (o.keeperPid as number) <= 0) return 'bad keeperPid';
  if (typeof o.keeperStartTime !== 'string' || !/^\d+$/.test(o.keeperStartTime)) return 'bad keeperStartTime';
  if (
    !Array.isArray(o.namespaces) ||
    !o.namespaces.some((n) => n?.type === 'user') ||
    !o.namespaces.every((n) => TYPES.has(n?.type) && Number.isSafeInteger(n?.inode))
  )
    return 'bad namespaces';
  if (!isTriples(o.uidMap) || !isTriples(o.gidMap)) return 'bad maps';
  if (typeof o.user !== 'object' || o.user === null) return 'bad user';
  return undefined;
}

interface Examined extends NamespaceInfo {
  /** The creator's marker content, when present. */
  marker?: string;
}

/**
 * Parsed state files by path, for exec (a hot path): reused while lstat shows the same file
 * (state.json is only ever replaced by rename, so a new write is a new inode). Never handed out
 * to callers that could modify it (list and inspect read the file).
 */
const stateCache = new Map<string, { key: string; state: NamespaceState }>();

/**
 * What an entry is, from disk and /proc. `locked`: the caller holds the entry's lock, so an
 * entry without state and marker cannot be in the middle of a create. `cached`: the state may
 * come from stateCache (read-only use).
 */
function examine(name: string, paths: Paths, locked: boolean, cached = false): Examined | undefined {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(paths.entry);
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
  const base = { name, path: paths.entry, state: null };
  if (st.isSymbolicLink()) return { ...base, status: 'unsafe', reason: 'its entry is a symbolic link' };
  if (!st.isDirectory()) return { ...base, status: 'unsafe', reason: 'its entry is not a directory' };
  let marker: string | undefined;
  let text: string | undefined;
  try {
    // (lstat first: the common case, no marker, then costs no exception.)
    if (lstatSync(paths.marker, { throwIfNoEntry: false }) !== undefined) marker = readNoFollow(paths.marker);
    if (cached && marker === undefined) {
      const sst = lstatSync(paths.state, { throwIfNoEntry: false });
      const key = sst?.isFile() ? `${sst.ino}:${sst.size}:${sst.mtimeMs}:${sst.ctimeMs}` : undefined;
      const hit = stateCache.get(paths.state);
      if (key !== undefined && hit?.key === key) {
        const stale = staleReason(hit.state);
        return stale === undefined
          ? { ...base, state: hit.state, status: 'running' }
          : { ...base, state: hit.state, status: 'stale', reason: stale };
      }
      const fresh = examine(name, paths, locked);
      if (fresh?.state != null && key !== undefined) {
        if (stateCache.size >= 64) stateCache.delete(stateCache.keys().next().value!);
        stateCache.set(paths.state, { key, state: fresh.state });
      }
      return fresh;
    }
    text = readNoFollow(paths.state);
  } catch (error) {
    return { ...base, status: 'broken', reason: `unreadable: ${(error as Error).message}` };
  }
  let state: NamespaceState | null = null;
  let problem: string | undefined;
  if (text !== undefined) {
    try {
      const parsed: unknown = JSON.parse(text);
      problem = stateProblem(parsed, name);
      if (problem === undefined) state = parsed as NamespaceState;
    } catch (error) {
      problem = `invalid JSON (${(error as Error).message})`;
    }
  }
  if (marker !== undefined) {
    // Not committed. A creator holds the entry's lock until it commits: when we hold it, the
    // creator is gone (abandoned); otherwise it may still be at work (creating).
    if (!locked)
      return { ...base, state, status: 'creating', reason: `being created (${marker.trim()})`, marker };
    return { ...base, state, status: 'abandoned', reason: 'its creator died before finishing', marker };
  }
  if (text === undefined) {
    return locked
      ? { ...base, status: 'abandoned', reason: 'it has no state (its creator died)' }
      : { ...base, status: 'creating', reason: 'it has no state yet' };
  }
  if (state === null) return { ...base, status: 'broken', reason: `state.json: ${problem}` };
  const stale = staleReason(state);
  if (stale !== undefined) return { ...base, state, status: 'stale', reason: stale };
  return { ...base, state, status: 'running' };
}

/** Renames the entry away (atomic disappearance), then deletes it; never follows a link. */
function removeEntry(paths: Paths): void {
  const trash = join(paths.nsDir, `@trash.${randomBytes(6).toString('hex')}`);
  try {
    renameSync(paths.entry, trash);
  } catch (error) {
    if (isMissing(error)) return;
    throw error;
  }
  fsyncDirectory(paths.nsDir);
  const st = lstatSync(trash);
  if (st.isDirectory()) rmSync(trash, { recursive: true, force: true });
  else unlinkSync(trash);
}

/** Removes an abandoned entry: stops the keeper it recorded (if that very process still runs). */
async function cleanAbandoned(info: Examined, paths: Paths): Promise<void> {
  if (info.state !== null) await stopKeeper(info.state.keeperPid, info.state.keeperStartTime);
  removeEntry(paths);
  if (info.state?.allocation !== undefined) await releaseAllocationOf(info.state.allocation, paths.root);
}

function lockFor(paths: Paths, name: string, timeoutMs?: number): Promise<FileLock> {
  return acquireFileLock(paths.lock, {
    what: `namespace ${name}`,
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  });
}

function notFound(name: string): NamespaceError {
  return new NamespaceError('NS_NOT_FOUND', `no namespace named ${name}`, {
    hint: "'userns list' shows the named namespaces; 'userns create NAME' makes one",
    data: { name },
  });
}

/** The error for an entry that cannot be used (exec) or created over (create). */
function unusable(info: Examined, forCreate: boolean): NamespaceError {
  const data = { name: info.name, status: info.status, reason: info.reason ?? null, path: info.path };
  switch (info.status) {
    case 'unsafe':
      return new NamespaceError('NS_UNSAFE', `namespace ${info.name}: ${info.reason}; refusing to use it`, {
        hint: `userns never follows links out of its state root; remove it with 'userns rm --force ${info.name}'`,
        data,
      });
    case 'broken':
      return new NamespaceError('NS_BROKEN', `namespace ${info.name} has a broken state: ${info.reason}`, {
        hint: `remove it with 'userns rm --force ${info.name}'`,
        data,
      });
    case 'creating':
      return new NamespaceError('NS_CREATING', `namespace ${info.name} is being created (${info.reason})`, {
        hint: 'try again in a moment',
        data,
      });
    default:
      if (forCreate || info.status === 'running') {
        return new NamespaceError(
          'NS_EXISTS',
          `namespace ${info.name} already exists${info.status === 'running' ? '' : ` (${info.status}: ${info.reason})`}`,
          {
            hint: `use it with 'userns exec ${info.name} -- COMMAND', or remove it first with 'userns rm ${info.name}'`,
            data,
          },
        );
      }
      return new NamespaceError('NS_STALE', `namespace ${info.name} is stale: ${info.reason}`, {
        hint: `remove it with 'userns rm ${info.name}' and create it again`,
        data,
      });
  }
}

// ---------------------------------------------------------------------------------------------
// create

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

async function currentSubids(): Promise<{ uid: IdRange[]; gid: IdRange[] }> {
  const { currentUser, subordinateRanges } = await import('../spawn/system.js');
  const user = await currentUser();
  const [u, g] = await Promise.all([subordinateRanges(user, 'uid'), subordinateRanges(user, 'gid')]);
  return { uid: u.ranges.map((r) => ({ ...r })), gid: g.ranges.map((r) => ({ ...r })) };
}

/** Starts the keeper, writes the maps, and returns the state (the keeper waits for commit). */
async function startKeeper(
  name: string,
  requested: CreateOptions,
  root: string,
): Promise<{ handle: HelperHandle; state: NamespaceState }> {
  // `--userns auto:…`: a range from the registry, owned by this namespace (released by rm, or by
  // `userns alloc gc` once the keeper is gone).
  const allocation = await allocateFor(name, requested, root);
  try {
    const started = await startKeeperWithMaps(name, allocation?.options ?? requested);
    if (allocation !== undefined) {
      started.state.allocation = allocation.id;
      started.state.options = storedOptions(requested);
    }
    return started;
  } catch (error) {
    if (allocation !== undefined) await releaseAllocationOf(allocation.id, root);
    throw error;
  }
}

async function allocateFor(
  name: string,
  options: CreateOptions,
  root: string,
): Promise<{ id: string; options: CreateOptions } | undefined> {
  if (typeof options.userns !== 'string' || !options.userns.startsWith('auto:')) return undefined;
  const alloc = await import('../alloc/index.js');
  const request = alloc.parseAutoUserns(options.userns)!;
  // In a fleet registry ($USERNS_REGISTRY), on the node's lease when its agent runs: a named
  // namespace lives on this machine only.
  const allocation = await alloc.allocate({ ...request, namespace: name, root, lease: 'auto' });
  return {
    id: allocation.id,
    options: {
      ...options,
      userns: 'auto',
      uidMap: new IdMap(allocation.uidMap),
      gidMap: new IdMap(allocation.gidMap),
    },
  };
}

async function releaseAllocationOf(id: string, root: string): Promise<void> {
  const { releaseAllocation } = await import('../alloc/index.js');
  await releaseAllocation(id, { root });
}

async function startKeeperWithMaps(
  name: string,
  options: CreateOptions,
): Promise<{ handle: HelperHandle; state: NamespaceState }> {
  const privileged = options.privileged ?? isPrivileged();
  const spawnOptions: SpawnOptions = { ...options, privileged, namespaces: options.namespaces ?? [] };
  const subids = privileged ? Promise.resolve(null) : currentSubids();
  subids.catch(() => {});
  // The maps (split, validated, method) and the namespaces, exactly as `run` would make them.
  const plan = await planArgv([], spawnOptions);
  // --mount: attached by the helper before it unshares, so the keeper's mount namespace has them.
  const mounts = options.mounts?.length ? helperMountsFor(options.mounts) : undefined;
  const forMounts =
    mounts === undefined
      ? undefined
      : await mountNamespacePaths(plan.mounts, {
          privileged,
          ...(options.helperPath === undefined ? {} : { helperPath: options.helperPath }),
        });
  let handle: HelperHandle;
  try {
    handle = await launchHelper({
      namespaces: plan.namespaces,
      command: [],
      hold: true,
      reportNamespaces: true,
      mountProc: plan.mountProc,
      user: null,
      setgroupsCall: false,
      stdio: 'ignore',
      ...(mounts === undefined ? {} : { mounts, mountNamespaces: forMounts!.paths }),
      ...(options.helperPath === undefined ? {} : { helperPath: options.helperPath }),
    });
  } finally {
    forMounts?.release();
  }
  let keeperPid: number | undefined;
  try {
    const applied = await writeMaps(handle.pid, plan, spawnOptions);
    await handle.go();
    const line = handle.reports.find((l) => l.startsWith('keeper '));
    keeperPid = line === undefined ? undefined : Number(line.slice(7));
    if (keeperPid === undefined || !Number.isInteger(keeperPid)) {
      throw new NamespaceError('NS_KEEPER_FAILED', 'the helper did not report its keeper process', {
        data: { reports: handle.reports },
      });
    }
    const start = processStartTime(keeperPid);
    if (start === undefined) {
      throw new NamespaceError('NS_KEEPER_FAILED', `the keeper (PID ${keeperPid}) exited at once`);
    }
    // The keeper must hold exactly the namespaces the helper created.
    for (const ns of handle.namespaceIds) {
      const inode = statSync(`/proc/${keeperPid}/ns/${PROC_NS[ns.type]}`).ino;
      if (inode !== ns.inode) {
        throw new NamespaceError(
          'NS_KEEPER_FAILED',
          `the keeper's ${ns.type} namespace is ${inode}, the helper created ${ns.inode}`,
        );
      }
    }
    const { readProcMap, readSetgroups } = await import('../spawn/system.js');
    const state: NamespaceState = {
      version: 1,
      name,
      keeperPid,
      keeperStartTime: start,
      namespaces: handle.namespaceIds
        .map((n) => ({ type: n.type, inode: n.inode, handle: n.handle }))
        .sort((x, y) => NAMESPACES.indexOf(x.type) - NAMESPACES.indexOf(y.type)),
      uidMap: readProcMap(keeperPid, 'uid').toJSON(),
      gidMap: readProcMap(keeperPid, 'gid').toJSON(),
      setgroups: readSetgroups(keeperPid),
      mountProc: plan.mountProc,
      user: { uid: plan.user, gid: plan.group },
      createdAt: new Date().toISOString(),
      creator: { uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 },
      options: storedOptions(options),
      subids: await subids.catch(() => null),
      warnings: applied.warnings,
    };
    const pidNamespace = procPidNamespace();
    if (pidNamespace !== undefined) state.pidNamespace = pidNamespace;
    const boot = bootId();
    if (boot !== undefined) state.bootId = boot;
    return { handle, state };
  } catch (error) {
    // Before commit the keeper exits by itself once the report socket closes; make sure.
    await handle.abort(String((error as Error)?.message ?? error));
    if (keeperPid !== undefined) {
      const start = processStartTime(keeperPid);
      if (start !== undefined) await stopKeeper(keeperPid, start);
    }
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
  const root = stateRoot(options, true)!;
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
      const started = await startKeeper(name, options, root);
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
          hint: "run 'userns doctor' for a full diagnosis",
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

// ---------------------------------------------------------------------------------------------
// exec

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
  const root = stateRoot(options, false);
  if (root === undefined) throw notFound(name);
  const paths = pathsFor(name, root);
  const info = examine(name, paths, false, true);
  if (info === undefined) throw notFound(name);
  if (info.status !== 'running' || info.state === null) throw unusable(info, false);
  const state = info.state;
  const joinsMount = state.namespaces.some((n) => n.type === 'mount');
  const cwd = options.cwd ?? (joinsMount ? process.cwd() : undefined);
  const argv = [command, ...args];
  const user = { uid: options.user ?? state.user.uid, gid: options.group ?? options.user ?? state.user.gid };
  const { child, ready } = startHelper({
    namespaces: [],
    command: argv,
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
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal })),
  );
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
    const { code, signal } = await closed;
    return { exitCode: code, signal, pid: child.pid ?? -1 };
  })();
  result.catch((error: unknown) => {
    if (child.listenerCount('error') > 0) child.emit('error', error);
  });
  const thenable = child as NamespaceChildProcess;
  Object.defineProperties(thenable, {
    // biome-ignore lint/suspicious/noThenProperty: the ChildProcess is deliberately a promise too (like spawn())
    then: { value: result.then.bind(result), configurable: true },
    catch: { value: result.catch.bind(result), configurable: true },
    finally: { value: result.finally.bind(result), configurable: true },
  });
  return thenable;
}

/** Runs a command in the namespaces `name` to completion, capturing its output. */
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

// ---------------------------------------------------------------------------------------------
// list, inspect, rm

function publicInfo(info: Examined): NamespaceInfo {
  const { marker: _marker, ...rest } = info;
  return rest;
}

/**
 * Every named namespace with its status. Abandoned entries (creator died) and leftovers of
 * interrupted removals are cleaned on the way (under the entry's lock).
 */
export async function listNamespaces(options: RootOption = {}): Promise<NamespaceInfo[]> {
  const root = stateRoot(options, false);
  if (root === undefined) return [];
  const nsDir = join(root, 'ns');
  const out: NamespaceInfo[] = [];
  for (const entry of readdirSync(nsDir).sort()) {
    if (entry.startsWith('@trash.')) {
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
    let info = examine(entry, paths, false);
    if (info === undefined) continue;
    if (info.status === 'abandoned' || info.status === 'creating') {
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
    out.push(publicInfo(info));
  }
  return out;
}

function rangeChanges(kind: 'uid' | 'gid', before: IdRange[], now: IdRange[]): SubidChange | undefined {
  const added = subtractRanges(now, before);
  const removed = subtractRanges(before, now);
  return added.length === 0 && removed.length === 0 ? undefined : { kind, added, removed };
}

/** One namespace in detail, with the live maps and changes of the subordinate ranges since creation. */
export async function inspectNamespace(name: string, options: RootOption = {}): Promise<InspectResult> {
  validateName(name, 'namespace name');
  const root = stateRoot(options, false);
  if (root === undefined) throw notFound(name);
  const info = examine(name, pathsFor(name, root), false);
  if (info === undefined) throw notFound(name);
  const warnings: string[] = [];
  let live: InspectResult['live'] = null;
  if (info.status === 'running' && info.state !== null) {
    const { readProcMap, readSetgroups } = await import('../spawn/system.js');
    const pid = info.state.keeperPid;
    try {
      live = {
        uidMap: readProcMap(pid, 'uid').toJSON(),
        gidMap: readProcMap(pid, 'gid').toJSON(),
        setgroups: readSetgroups(pid),
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
  if (info.status !== 'running' && info.reason !== undefined) warnings.push(`${info.status}: ${info.reason}`);
  return { ...publicInfo(info), live, subidChanges, warnings };
}

/**
 * Removes a named namespace: stops its keeper (SIGTERM, then SIGKILL) and deletes the entry.
 * Stale and abandoned entries are removed too; broken and unsafe ones (never following a link)
 * and absent names only with `force`.
 */
export async function removeNamespace(name: string, options: RemoveOptions = {}): Promise<RemoveResult> {
  validateName(name, 'namespace name');
  const root = stateRoot(options, false);
  const absent = (): RemoveResult => {
    if (!options.force) throw notFound(name);
    return { name, removed: false, status: 'absent', keeperStopped: false };
  };
  if (root === undefined) return absent();
  ensurePrivateDir(join(root, 'ns', '@locks'), 'lock directory');
  const paths = pathsFor(name, root);
  const lock = await lockFor(paths, name);
  let removed = false;
  try {
    const info = examine(name, paths, true);
    if (info === undefined) return absent();
    let keeperStopped = false;
    switch (info.status) {
      case 'running':
      case 'stale':
      case 'abandoned':
        if (info.state !== null)
          keeperStopped = await stopKeeper(info.state.keeperPid, info.state.keeperStartTime);
        break;
      case 'creating':
        throw unusable(info, false);
      case 'broken':
      case 'unsafe':
        if (!options.force) throw unusable(info, false);
        break;
    }
    removeEntry(paths);
    removed = true;
    if (info.state?.allocation !== undefined) await releaseAllocationOf(info.state.allocation, root);
    return { name, removed: true, status: info.status, keeperStopped };
  } finally {
    lock.release({ remove: removed });
  }
}
