// node:fs's `promises`, reached when first used: importing node:fs/promises loads ten more of
// Node's modules (readline among them) on every start-up of the CLI (issue 18).
import {
  closeSync,
  promises as fsp,
  openSync,
  readFileSync,
  readlinkSync,
  readSync,
  statSync,
} from 'node:fs';
import { ParseError, UsernsError } from '../errors/index.js';
import type { IdKind } from '../idmap/extent.js';
import { parseKernelMap } from '../idmap/formats/kernel.js';
import { IdMap } from '../idmap/idmap.js';

/**
 * Readers for /proc. Error codes: PROC_NO_SUCH_PROCESS (the process is gone or never existed),
 * PROC_READ_FAILED (any other I/O error), PROC_BAD_PID, and ParseError PROC_STAT_SYNTAX /
 * PROC_SETGROUPS_SYNTAX for content we do not understand (map syntax errors keep the kernel
 * parser's codes).
 *
 * The files are tiny and generated whole by the kernel on the first read, so they are read
 * synchronously, in one read() where they fit (the spawn path stays on one event-loop turn); the
 * promise-returning readers of the public API are the same readers.
 */

export type ProcPid = number | 'self';
/** A namespace type as /proc/PID/ns/ names it. */
export type NamespaceType =
  | 'user'
  | 'mnt'
  | 'pid'
  | 'net'
  | 'ipc'
  | 'uts'
  | 'cgroup'
  | 'time'
  | 'pid_for_children'
  | 'time_for_children';

function procPath(pid: ProcPid, file: string): string {
  if (pid !== 'self' && !(Number.isInteger(pid) && pid > 0 && pid <= 4194304)) {
    throw new UsernsError('PROC_BAD_PID', `not a process ID: ${String(pid)}`, { data: { pid } });
  }
  return `/proc/${pid}/${file}`;
}

function isGone(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ESRCH';
}

function readError(path: string, pid: ProcPid, error: unknown): UsernsError {
  if (isGone(error)) {
    return new UsernsError('PROC_NO_SUCH_PROCESS', `no process ${pid} (${path} does not exist)`, {
      hint: 'the process may have exited',
      data: { pid, path },
      cause: error,
    });
  }
  return new UsernsError('PROC_READ_FAILED', `cannot read ${path}: ${(error as Error).message}`, {
    data: { pid, path, errno: (error as NodeJS.ErrnoException).code ?? null },
    cause: error,
  });
}

const scratch = Buffer.allocUnsafe(8192);

/** A small /proc file, latin1, in one read() when it fits 8 KiB. Throws the fs error. */
function readSmallFile(path: string): string {
  const fd = openSync(path, 'r');
  try {
    let length = 0;
    for (;;) {
      const n = readSync(fd, scratch, length, scratch.length - length, null);
      if (n === 0) break;
      length += n;
      if (length === scratch.length)
        return scratch.toString('latin1', 0, length) + readFileSync(fd, 'latin1');
    }
    return scratch.toString('latin1', 0, length);
  } finally {
    closeSync(fd);
  }
}

/** /proc/PID/FILE as text; typed errors (PROC_BAD_PID, PROC_NO_SUCH_PROCESS, PROC_READ_FAILED). */
function readProc(pid: ProcPid, file: string): { path: string; text: string } {
  const path = procPath(pid, file);
  try {
    return { path, text: readSmallFile(path) };
  } catch (error) {
    throw readError(path, pid, error);
  }
}

/**
 * The UID or GID map of a process's user namespace, as THIS process sees it: column 2 is in the
 * reader's namespace (or the parent's, when the reader is inside the target namespace), and
 * 4294967295 there means "not mappable from here" — kept as is (docs/kernel-rules.md, "Reading a
 * map back").
 * An empty map (not written yet) gives an IdMap with no extents.
 */
export function readIdMapSync(pid: ProcPid, kind: IdKind): IdMap {
  const { path, text } = readProc(pid, `${kind}_map`);
  return new IdMap(parseKernelMap(text, { source: path }));
}

/** readIdMapSync as a promise (the public API's form). */
export async function readIdMap(pid: ProcPid, kind: IdKind): Promise<IdMap> {
  return readIdMapSync(pid, kind);
}

/** /proc/PID/setgroups: whether setgroups(2) is allowed in the process's user namespace. */
export function readSetgroupsSync(pid: ProcPid): 'allow' | 'deny' {
  const { path, text } = readProc(pid, 'setgroups');
  const value = text.trim();
  if (value === 'allow' || value === 'deny') return value;
  throw new ParseError('PROC_SETGROUPS_SYNTAX', 'expected "allow" or "deny"', {
    source: path,
    line: 1,
    column: 1,
    text: value,
  });
}

/** readSetgroupsSync as a promise (the public API's form). */
export async function readSetgroups(pid: ProcPid): Promise<'allow' | 'deny'> {
  return readSetgroupsSync(pid);
}

/**
 * The fields of /proc/PID/stat after the command name, numbered as in proc(5): the result's
 * index 0 is field 3 (state). The command name (field 2) can contain spaces and parentheses, so
 * the text is cut after its LAST ')'.
 */
export function parseProcStat(
  text: string,
  source = 'stat',
): { pid: number; comm: string; fields: string[] } {
  const open = text.indexOf(' (');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open || !/^[0-9]+$/.test(text.slice(0, open))) {
    throw new ParseError('PROC_STAT_SYNTAX', 'expected "PID (COMM) STATE ..."', {
      source,
      line: 1,
      column: 1,
      text: text.slice(0, 64),
    });
  }
  const rest = text.slice(close + 1).trim();
  return {
    pid: Number(text.slice(0, open)),
    comm: text.slice(open + 2, close),
    fields: rest === '' ? [] : rest.split(/\s+/),
  };
}

/** What identifies a process across PID reuse, from one read of /proc/PID/stat. */
export interface ProcessIdentity {
  pid: number;
  /** Field 22 of /proc/PID/stat: clock ticks after boot, as decimal text (exact, any size). */
  startTime: string;
  /** Field 3: R, S, D, Z (zombie), X (dead), … */
  state: string;
  /** Neither a zombie nor dead: the process still runs (an orphan's zombie may linger unreaped). */
  running: boolean;
}

/**
 * The identity of process `pid` (its start time and state), or undefined when it does not exist.
 * PID + start time name one process for good: a reused PID has another start time. Synchronous
 * (the liveness checks of locks, keepers and allocations run on hot paths). Throws ParseError
 * PROC_STAT_SYNTAX when the file does not say what proc(5) says.
 */
export function readProcessIdentity(pid: ProcPid): ProcessIdentity | undefined {
  let path: string;
  let text: string;
  try {
    ({ path, text } = readProc(pid, 'stat'));
  } catch (error) {
    if (error instanceof UsernsError && error.code === 'PROC_NO_SUCH_PROCESS') return undefined;
    throw error;
  }
  const parsed = parseProcStat(text, path);
  const state = parsed.fields[0] ?? '?';
  const startTime = parsed.fields[22 - 3];
  if (startTime === undefined || !/^[0-9]+$/.test(startTime)) {
    throw new ParseError('PROC_STAT_SYNTAX', 'field 22 (starttime) is missing or not a number', {
      source: path,
      line: 1,
      column: 1,
      text: startTime ?? '',
    });
  }
  return { pid: parsed.pid, startTime, state, running: state !== 'Z' && state !== 'X' && state !== 'x' };
}

/**
 * The start time of a process that still runs, for liveness checks: undefined when it does not
 * exist, is not a valid PID, or is a zombie (which must not count as alive).
 */
export function runningStartTime(pid: ProcPid): string | undefined {
  if (pid !== 'self' && !(Number.isInteger(pid) && pid > 0 && pid <= 4194304)) return undefined;
  let identity: ProcessIdentity | undefined;
  try {
    identity = readProcessIdentity(pid);
  } catch (error) {
    // Unreadable: gone between the open and the read, or not ours to see; not alive for us.
    if (error instanceof UsernsError && error.code === 'PROC_READ_FAILED') return undefined;
    throw error;
  }
  return identity?.running ? identity.startTime : undefined;
}

/** Whether the process `pid` that started at `startTime` still runs (a zombie does not). */
export function isRunning(pid: number, startTime: string): boolean {
  return runningStartTime(pid) === startTime;
}

/**
 * The process's start time (field 22 of /proc/PID/stat: clock ticks since boot). Together with
 * the PID it identifies a process across PID reuse. undefined when the process does not exist.
 */
export async function readProcessStartTime(pid: ProcPid): Promise<bigint | undefined> {
  const identity = readProcessIdentity(pid);
  return identity === undefined ? undefined : BigInt(identity.startTime);
}

/**
 * The inode number of /proc/PID/ns/NS: the namespace's identity (two processes are in the same
 * namespace iff these are equal; the device is always nsfs). Needs ptrace-read access to PID.
 */
export async function readNamespaceInode(pid: ProcPid, ns: NamespaceType): Promise<number> {
  const path = procPath(pid, `ns/${ns}`);
  try {
    return (await fsp.stat(path)).ino;
  } catch (error) {
    // /proc/PID exists but not this ns file: a namespace type this kernel does not have.
    if (isGone(error)) {
      try {
        await fsp.stat(procPath(pid, ''));
      } catch {
        throw readError(path, pid, error);
      }
      throw new UsernsError(
        'PROC_READ_FAILED',
        `this kernel has no ${ns} namespaces (${path} does not exist)`,
        {
          data: { pid, path },
          cause: error,
        },
      );
    }
    throw readError(path, pid, error);
  }
}

let cachedPageSize: number | undefined;

/**
 * The kernel's page size (a map write must be shorter than one page): AT_PAGESZ from the
 * process's ELF auxiliary vector (/proc/self/auxv), read once; 4096 when it cannot be read.
 * (Not `getconf PAGESIZE`: a whole process, too slow on the spawn path.)
 */
export function pageSize(): number {
  if (cachedPageSize !== undefined) return cachedPageSize;
  let size = 4096;
  try {
    const auxv = readFileSync('/proc/self/auxv');
    // Entries are (type, value) pairs of native words: 8 bytes each on 64-bit, 4 on 32-bit.
    const wide = /64|s390x/.test(process.arch);
    // The host's byte order, without node:os (a module load on every start-up: issue 18).
    const le = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
    const step = wide ? 16 : 8;
    const word = (off: number) =>
      wide
        ? Number(le ? auxv.readBigUInt64LE(off) : auxv.readBigUInt64BE(off))
        : le
          ? auxv.readUInt32LE(off)
          : auxv.readUInt32BE(off);
    for (let off = 0; off + step <= auxv.length; off += step) {
      const type = word(off);
      if (type === 0 /* AT_NULL */) break;
      if (type === 6 /* AT_PAGESZ */) {
        const value = word(off + step / 2);
        if (value >= 4096 && (value & (value - 1)) === 0) size = value;
        break;
      }
    }
  } catch {
    // no /proc/self/auxv: keep 4096
  }
  cachedPageSize = size;
  return size;
}

/**
 * The PID namespace whose PIDs this mount namespace's /proc shows, as the inode number of its
 * nsfs file; undefined when that cannot be told from here. A PID read from /proc (or recorded by
 * a process that read it there) means something only in that namespace: records that name a
 * process keep this beside the PID, and a check from another namespace is "cannot check from
 * here", never "gone".
 *
 * /proc/self resolves only when this process is visible in the namespace of /proc; the `NSpid`
 * line of its status then lists this process's PID in that namespace first and in each nested
 * one after it. One entry: /proc is of this process's own PID namespace (/proc/self/ns/pid).
 * More: /proc is of an ancestor. Its inode is that of the first process up our chain of parents
 * that /proc shows with a one-entry NSpid (so a member of that namespace) and whose ns/pid we may
 * read (ptrace access: our own parent usually; its init /proc/1 needs privilege over it).
 */
export function procPidNamespace(): number | undefined {
  const nspidOf = (pid: string) =>
    /^NSpid:\s*(.*)$/m
      .exec(readFileSync(`/proc/${pid}/status`, 'latin1'))?.[1]
      ?.trim()
      .split(/\s+/) ?? [];
  try {
    const own = nspidOf('self');
    if (own.length === 1) return statSync('/proc/self/ns/pid').ino;
    if (own.length === 0) return undefined;
  } catch {
    return undefined; // /proc of an unrelated PID namespace, or none
  }
  let pid = 'self';
  for (let depth = 0; depth < 64; depth++) {
    let ppid: string;
    try {
      ppid = parseProcStat(readFileSync(`/proc/${pid}/stat`, 'latin1')).fields[4 - 3] ?? '0';
    } catch {
      return undefined;
    }
    if (!/^[1-9][0-9]*$/.test(ppid)) break;
    pid = ppid;
    try {
      if (nspidOf(pid).length === 1) return statSync(`/proc/${pid}/ns/pid`).ino;
    } catch {
      // gone or not readable: try its parent
    }
  }
  try {
    return statSync('/proc/1/ns/pid').ino;
  } catch {
    return undefined;
  }
}

/**
 * This process as /proc shows it: its PID there (which differs from process.pid when /proc is
 * of an ancestor PID namespace), its start time and the PID namespace of /proc
 * (procPidNamespace). Undefined when this process is not visible in this /proc.
 */
export function selfInProc(): { pid: number; startTime: string; pidNamespace: number } | undefined {
  try {
    const pid = Number(readlinkSync('/proc/self'));
    const startTime = runningStartTime(pid);
    const pidNamespace = procPidNamespace();
    if (!Number.isInteger(pid) || startTime === undefined || pidNamespace === undefined) return undefined;
    return { pid, startTime, pidNamespace };
  } catch {
    return undefined;
  }
}

/**
 * Whether the process `pid`, started at `startTime` (field 22 of its stat), still runs, as far
 * as this /proc can tell: 'dead' only when /proc says there is no such process or the PID now
 * belongs to a process that started at another time (a zombie counts as dead); 'unknown' when
 * /proc cannot be read for another reason (hidepid, permissions). The caller must have checked
 * that /proc is of the PID namespace the PID belongs to (procPidNamespace).
 */
export function processLiveness(pid: number, startTime: string): 'alive' | 'dead' | 'unknown' {
  if (!Number.isInteger(pid) || pid <= 0) return 'unknown';
  if (pid > 4194304) return 'dead'; // above PID_MAX_LIMIT: no such process can exist
  let identity: ProcessIdentity | undefined;
  try {
    identity = readProcessIdentity(pid);
  } catch (error) {
    if (error instanceof UsernsError && error.code === 'PROC_READ_FAILED') return 'unknown';
    throw error;
  }
  if (identity === undefined || !identity.running) return 'dead';
  return identity.startTime === startTime ? 'alive' : 'dead';
}

let cachedBootId: string | undefined;
/**
 * This boot's random id (/proc/sys/kernel/random/boot_id; the same in every namespace). A record
 * of a process made during another boot names a process that is certainly gone.
 */
export function bootId(): string | undefined {
  if (cachedBootId === undefined) {
    try {
      cachedBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim() || undefined;
    } catch {
      return undefined;
    }
  }
  return cachedBootId;
}
