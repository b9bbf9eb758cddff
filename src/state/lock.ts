/**
 * Kernel-enforced file locks, without a native addon: flock(2) on an open file description that
 * this process keeps open.
 *
 * Node has no flock(). A lock is taken by a short-lived child, util-linux `flock -x FD`, that
 * inherits our descriptor as its fd 3: flock(2) locks belong to the open file description, not
 * to a process, so the lock stays after the child exits, held by the description our fd refers
 * to. It is released when we close that fd, or by the kernel when this process dies however it
 * dies (SIGKILL included). Nobody ever decides that a holder is gone by looking up a PID, so the
 * lock works the same between processes of different PID namespaces (a PID read in the wrong
 * namespace names another process or none) and between mount namespaces that see the same file.
 * The descriptor is opened O_CLOEXEC (Node's default) and Node passes no other descriptor to the
 * processes it starts, so no child inherits a lock by accident.
 *
 * A lock file may be removed by the holder (`release({ remove: true })`); a waiter that then
 * gets the lock on the removed file notices (its fd no longer matches the path) and starts over.
 */
import { spawn } from 'node:child_process';
import { closeSync, constants, fstatSync, lstatSync, openSync, unlinkSync } from 'node:fs';
import { StateFileError } from '../errors/index.js';
import { findProgram } from '../system/exec.js';
import { stateFileError } from './files.js';

// (libuv opens every file O_CLOEXEC.)
const { O_RDWR, O_CREAT, O_NOFOLLOW } = constants;

export interface FileLock {
  readonly path: string;
  /** Closes the descriptor (which releases the lock); `remove` unlinks the file first. */
  release(options?: { remove?: boolean }): void;
}

export interface FileLockOptions {
  /** Give up after this long (default 10 s); 0 = do not wait. */
  timeoutMs?: number;
  /** What is being locked, for messages. */
  what?: string;
}

let flockProgram: string | undefined;

function flockPath(): string {
  flockProgram ??= findProgram('flock');
  if (flockProgram === undefined) {
    throw new StateFileError(
      'LOCK_UNAVAILABLE',
      'cannot take a file lock: the flock program (util-linux) is not installed',
      {
        hint: 'install util-linux (Debian: apt-get install util-linux)',
      },
    );
  }
  return flockProgram;
}

/** Runs `flock -x (-n | -w SECONDS) 3` on `fd`: true when locked, false when the wait timed out. */
function flockChild(fd: number, waitMs: number, path: string): Promise<boolean> {
  const program = flockPath();
  const wait = waitMs <= 0 ? ['-n'] : ['-w', (waitMs / 1000).toFixed(3)];
  return new Promise((resolve, reject) => {
    const child = spawn(program, ['-x', ...wait, '3'], { stdio: ['ignore', 'ignore', 'pipe', fd] });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.once('error', (error) =>
      reject(
        new StateFileError('LOCK_UNAVAILABLE', `cannot run ${program} to lock ${path}: ${error.message}`, {
          hint: 'install util-linux (it provides flock)',
          data: { path },
          cause: error,
        }),
      ),
    );
    child.once('close', (code) => {
      if (code === 0) resolve(true);
      else if (code === 1) resolve(false);
      else
        reject(
          new StateFileError(
            'LOCK_UNAVAILABLE',
            `cannot lock ${path}: flock exited ${code}: ${stderr.trim()}`,
            {
              data: { path, status: code },
            },
          ),
        );
    });
  });
}

function openLockFile(path: string, what: string): number {
  let fd: number;
  try {
    fd = openSync(path, O_RDWR | O_CREAT | O_NOFOLLOW, 0o600);
  } catch (error) {
    throw stateFileError(error, path, `the lock file of ${what}`);
  }
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw stateFileError(
      Object.assign(new Error('not a file'), { code: 'EISDIR' }),
      path,
      `the lock file of ${what}`,
    );
  }
  return fd;
}

/** Whether `fd` is still the file at `path` (the holder before us may have removed it). */
function stillLinked(fd: number, path: string): boolean {
  const open = fstatSync(fd);
  const now = lstatSync(path, { throwIfNoEntry: false });
  return now !== undefined && now.ino === open.ino && now.dev === open.dev;
}

async function lock(path: string, options: FileLockOptions, wait: boolean): Promise<FileLock | undefined> {
  const what = options.what ?? path;
  const deadline = Date.now() + (wait ? (options.timeoutMs ?? 10_000) : 0);
  for (;;) {
    const fd = openLockFile(path, what);
    let locked = false;
    try {
      locked = await flockChild(fd, wait ? Math.max(0, deadline - Date.now()) : 0, path);
      if (locked && stillLinked(fd, path)) {
        let open = true;
        return {
          path,
          release({ remove = false } = {}) {
            if (!open) return;
            open = false;
            try {
              if (remove && stillLinked(fd, path)) unlinkSync(path);
            } finally {
              closeSync(fd);
            }
          },
        };
      }
    } catch (error) {
      closeSync(fd);
      throw error;
    }
    closeSync(fd);
    if (!locked) {
      if (!wait) return undefined;
      throw new StateFileError('LOCK_TIMEOUT', `timed out waiting for the lock on ${what}`, {
        hint: 'another userns process is working on it; try again in a moment',
        data: { path, timeoutMs: options.timeoutMs ?? 10_000 },
      });
    }
    // Locked a file that its previous holder removed: start over with the one at `path` now.
  }
}

/** Takes the lock on `path` (created 0600 if missing), waiting up to `timeoutMs`: LOCK_TIMEOUT. */
export async function acquireFileLock(path: string, options: FileLockOptions = {}): Promise<FileLock> {
  return (await lock(path, options, true))!;
}

/** Takes the lock on `path` if nobody holds it; undefined when somebody does. */
export async function tryFileLock(
  path: string,
  options: FileLockOptions = {},
): Promise<FileLock | undefined> {
  return lock(path, options, false);
}

/** Runs `fn` holding the lock on `path`. */
export async function withFileLock<T>(
  path: string,
  fn: () => Promise<T> | T,
  options: FileLockOptions = {},
): Promise<T> {
  const held = await acquireFileLock(path, options);
  try {
    return await fn();
  } finally {
    held.release();
  }
}
