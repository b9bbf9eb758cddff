import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  linkSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { LockTimeoutError } from '../errors/index.js';
import { runningStartTime } from '../system/proc.js';

/**
 * A cross-process lock that survives SIGKILL of its holder, without native code.
 *
 * Node has no flock(), so a lock is a file created atomically (written under a temp name, then
 * link()ed into place: link fails with EEXIST if anyone holds it, and the file is never seen
 * half-written). It names its holder by PID and process start time (field 22 of /proc/PID/stat),
 * so a holder that died, or whose PID was reused, is recognised as stale and the lock is broken.
 * Breaking is itself guarded by a second lock file so two processes cannot both break the same
 * stale lock and then steal each other's fresh one.
 */

const { O_CREAT, O_EXCL, O_WRONLY, O_NOFOLLOW } = constants;

let selfStart: string | undefined;
/** "PID START TOKEN": the token tells apart two holders in one process (one after the other). */
function ownIdentity(): string {
  selfStart ??= runningStartTime('self') ?? '0';
  return `${process.pid} ${selfStart} ${randomBytes(6).toString('hex')}\n`;
}

/** True when the holder recorded in a lock file's content no longer runs. */
export function holderIsGone(content: string): boolean {
  const [pid, start] = content.trim().split(' ');
  if (!pid || !/^\d+$/.test(pid)) return true; // unreadable or half-written: treat as stale
  const current = runningStartTime(Number(pid));
  return current === undefined || (start !== undefined && start !== '0' && current !== start);
}

function createExclusive(path: string, content: string): boolean {
  const temp = `${path}.new-${process.pid}-${randomBytes(4).toString('hex')}`;
  const fd = openSync(temp, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW, 0o600);
  try {
    writeSync(fd, content);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(temp, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    unlinkSync(temp);
  }
}

function readOrUndefined(path: string): string | undefined {
  try {
    return readFileSync(path, 'latin1');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Removes `path` if it still holds exactly `content` (a stale lock), under the breaker guard. */
function breakStale(path: string, content: string): void {
  const guard = `${path}.break`;
  if (!createExclusive(guard, ownIdentity())) {
    const holder = readOrUndefined(guard);
    if (holder !== undefined && holderIsGone(holder)) {
      // A breaker died mid-way; its guard is stale. Move it aside (only one mover succeeds).
      const aside = `${guard}.stale-${randomBytes(4).toString('hex')}`;
      try {
        renameSync(guard, aside);
        unlinkSync(aside);
      } catch {
        /* someone else did */
      }
    }
    return;
  }
  try {
    if (readOrUndefined(path) === content) unlinkSync(path);
  } finally {
    unlinkSync(guard);
  }
}

export interface LockOptions {
  /** Give up after this long (default 10 s). */
  timeoutMs?: number;
  /** What is being locked, for the error message. */
  what?: string;
}

/** Takes the lock at `path`, waiting (with backoff) while a live process holds it. */
export async function acquireLock(path: string, options: LockOptions = {}): Promise<() => void> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  const identity = ownIdentity();
  let wait = 1;
  for (;;) {
    if (createExclusive(path, identity)) {
      let released = false;
      return () => {
        if (released) return;
        released = true;
        if (readOrUndefined(path) === identity) unlinkSync(path);
      };
    }
    const holder = readOrUndefined(path);
    if (holder !== undefined && holderIsGone(holder)) {
      breakStale(path, holder);
      continue;
    }
    if (Date.now() > deadline) {
      throw new LockTimeoutError(
        'LOCK_TIMEOUT',
        `timed out waiting for the lock on ${options.what ?? path} (held by process ${holder?.split(' ')[0] ?? '?'})`,
        {
          hint: 'another userns process is working on it; try again, or check that process',
        },
      );
    }
    await sleep(wait);
    wait = Math.min(wait * 2, 5);
  }
}

/** Runs `fn` holding the lock at `path`. */
export async function withLock<T>(
  path: string,
  fn: () => Promise<T> | T,
  options: LockOptions = {},
): Promise<T> {
  const release = await acquireLock(path, options);
  try {
    return await fn();
  } finally {
    release();
  }
}
