/**
 * Opening a directory path without following a symbolic link someone else could have placed.
 *
 * Node has no openat(2), so the path is walked one component at a time through the descriptor
 * of the directory reached so far (`/proc/self/fd/N/NAME` with O_NOFOLLOW): every component is
 * pinned by a descriptor, and nothing can be swapped between a check and its use. A symbolic
 * link on the way is followed only when nobody but root and the caller can have placed it there
 * (its directory is owned by root or the caller and writable by nobody else; or sticky, and
 * the link itself is owned by root or the caller: the kernel's fs.protected_symlinks rule). The
 * last component, the directory asked for, is never a link.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readlinkSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { SymlinkRefusedError } from '../errors/index.js';
import { O_PATH } from './open-flags.js';

const MAX_LINKS = 40; // the kernel's limit of links followed in one lookup

/**
 * Each directory is opened O_PATH (see open-flags.ts): a walk with O_RDONLY would fail with
 * EACCES on a directory the caller may pass through but not list (mode 0711).
 */
const DIRECTORY = O_PATH | constants.O_DIRECTORY;

function fdPath(fd: number, name: string): string {
  return `/proc/self/fd/${fd}/${name}`;
}

/**
 * Opens directory `path` (O_PATH|O_DIRECTORY: usable as the base of `/proc/self/fd/N/NAME`
 * and with fstat, not for reading the directory) as described above and returns its descriptor
 * (the caller closes it). Throws SymlinkRefusedError `PATH_SYMLINK` for a link that is refused,
 * and the system error (ENOENT, ENOTDIR, EACCES…) otherwise.
 */
export function openDirectoryNoFollow(path: string): number {
  const euid = process.geteuid?.() ?? 0;
  let parts = resolve(path)
    .split('/')
    .filter((p) => p !== '');
  let fd = openSync('/', DIRECTORY);
  let followed = 0;
  try {
    for (let i = 0; i < parts.length; i++) {
      const name = parts[i]!;
      const at = fdPath(fd, name);
      const st = lstatSync(at);
      if (st.isSymbolicLink()) {
        const dir = fstatSync(fd);
        const trusted =
          i < parts.length - 1 &&
          followed < MAX_LINKS &&
          (dir.uid === 0 || dir.uid === euid) &&
          ((dir.mode & 0o022) === 0 || ((dir.mode & 0o1000) !== 0 && (st.uid === 0 || st.uid === euid)));
        const link = `/${parts.slice(0, i + 1).join('/')}`;
        if (!trusted) {
          throw new SymlinkRefusedError(
            'PATH_SYMLINK',
            i === parts.length - 1
              ? `${path} is a symbolic link (to ${readlinkSync(at)}): give the directory itself`
              : `${path}: ${link} is a symbolic link that others could have placed (its directory is writable by others)`,
            {
              hint: 'give the real path (userns never follows a link that another user could have placed)',
              data: { path, link },
            },
          );
        }
        // Resolve the trusted link and walk its target from the start.
        const target = readlinkSync(at);
        const base = isAbsolute(target) ? target : `/${parts.slice(0, i).join('/')}/${target}`;
        parts = resolve(base, ...parts.slice(i + 1))
          .split('/')
          .filter((p) => p !== '');
        closeSync(fd);
        fd = openSync('/', DIRECTORY);
        followed++;
        i = -1;
        continue;
      }
      const next = openSync(at, DIRECTORY | constants.O_NOFOLLOW);
      closeSync(fd);
      fd = next;
    }
    return fd;
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}
