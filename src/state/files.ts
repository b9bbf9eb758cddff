/**
 * Typed errors for the files of the state root. Everything under the state root is private to
 * its owner (ensurePrivateDir), yet a file there may still be a planted symbolic link, a
 * directory where a file belongs, or sit on a full file system: each becomes a StateFileError
 * naming the path and what to do, never an internal error.
 */
import { lstatSync } from 'node:fs';
import { StateFileError } from '../errors/index.js';

/** True for errno codes of a full file system or an exhausted quota. */
export function isNoSpace(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** The error for a full file system while writing `path`. */
export function noSpaceError(path: string, what: string, extraHint = '', cause?: unknown): StateFileError {
  return new StateFileError('NO_SPACE', `no space left to write ${what} ${path}`, {
    hint: `free space on the file system that holds it (df ${path})${extraHint}`,
    data: { path, errno: 'ENOSPC' },
    cause,
  });
}

/**
 * Translates a failed system call on `path` into a typed error: ELOOP (a symbolic link where
 * userns opens with O_NOFOLLOW), EISDIR/ENOTDIR (a directory where a file belongs, or the
 * reverse), ENOSPC/EDQUOT (full), anything else with its errno. Errors that are already typed
 * pass through.
 */
export function stateFileError(error: unknown, path: string, what: string): Error {
  if (error instanceof StateFileError) return error;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ELOOP') {
    return new StateFileError(
      'STATE_FILE_UNSAFE',
      `${what} ${path} is a symbolic link; userns refuses to follow it`,
      {
        hint: `remove the link (rm ${path}); userns creates the file itself`,
        data: { path, errno: code },
        cause: error,
      },
    );
  }
  if (code === 'EISDIR' || code === 'ENOTDIR') {
    return new StateFileError('STATE_FILE_NOT_A_FILE', `${what} ${path} is not a regular file`, {
      hint: `something else is in its place: move it away (mv ${path} ${path}.aside); userns creates the file itself`,
      data: { path, errno: code },
      cause: error,
    });
  }
  if (isNoSpace(error)) return noSpaceError(path, what, '', error);
  if (typeof code === 'string') {
    return new StateFileError('STATE_FILE_ERROR', `cannot use ${what} ${path}: ${(error as Error).message}`, {
      data: { path, errno: code },
      cause: error,
    });
  }
  return error as Error;
}

/**
 * Checks, without following links, that `path` is a regular file or does not exist (a database
 * library or another process will open it by name). Throws STATE_FILE_UNSAFE for a symbolic
 * link and STATE_FILE_NOT_A_FILE for anything but a regular file.
 */
export function checkFileOrMissing(path: string, what: string): void {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(path, { throwIfNoEntry: false });
  } catch (error) {
    throw stateFileError(error, path, what);
  }
  if (st === undefined || st.isFile()) return;
  const error = Object.assign(new Error(st.isSymbolicLink() ? 'symbolic link' : 'not a regular file'), {
    code: st.isSymbolicLink() ? 'ELOOP' : 'EISDIR',
  });
  throw stateFileError(error, path, what);
}
