import { randomBytes } from 'node:crypto';
import { closeSync, constants, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { isNoSpace, noSpaceError, stateFileError } from './files.js';

const { O_CREAT, O_EXCL, O_WRONLY, O_NOFOLLOW, O_RDONLY, O_DIRECTORY } = constants;

/** fsync a directory so a rename or create in it survives a crash. */
export function fsyncDirectory(path: string): void {
  const fd = openSync(path, O_RDONLY | O_DIRECTORY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export interface WriteFileAtomicOptions {
  /**
   * Called with the temp file's fd after the data is written and before the fsync and the
   * rename: set its mode or owner here (fchmod, fchown), never by path. A throw removes the
   * temp file and leaves the target as it was.
   */
  beforeRename?: (fd: number) => void;
}

/**
 * Writes a file atomically: a fresh temp file beside it (created exclusively, never through a
 * link), written, fsynced, renamed over the target, and the directory fsynced. A reader sees the
 * old content or the new, never a mix; a crash leaves at most a stray temp file. A full file
 * system is NO_SPACE (the target unchanged), a directory or link in the way a StateFileError.
 */
export function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  mode = 0o600,
  options: WriteFileAtomicOptions = {},
): void {
  // A random name, never one derived from the PID: PIDs of other PID namespaces collide.
  const temp = `${path}.tmp-${randomBytes(8).toString('hex')}`;
  let fd: number;
  try {
    fd = openSync(temp, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW, mode);
  } catch (error) {
    throw stateFileError(error, path, 'the file');
  }
  try {
    const buffer = typeof data === 'string' ? Buffer.from(data) : data;
    let offset = 0;
    while (offset < buffer.length) offset += writeSync(fd, buffer, offset, buffer.length - offset);
    options.beforeRename?.(fd);
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    unlinkSync(temp);
    throw isNoSpace(error) ? noSpaceError(path, 'the file', '', error) : error;
  }
  closeSync(fd);
  try {
    renameSync(temp, path);
  } catch (error) {
    unlinkSync(temp);
    throw stateFileError(error, path, 'the file');
  }
  fsyncDirectory(dirname(path));
}
