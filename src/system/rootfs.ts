/**
 * Files of a root filesystem (an unpacked image, a container's tree) read as the tree sees them,
 * never leaving it: used for its /etc/passwd and /etc/group by the allocator's size estimate and
 * by `userns fit`.
 */
import { lstatSync, readFileSync, readlinkSync } from 'node:fs';
import { join, posix } from 'node:path';

/**
 * `rel` (like "etc/passwd") resolved inside the tree `root` as the tree itself sees it: a link
 * is followed within the tree only (an absolute link in an image points into the image, not to
 * the host), at most 40 links. undefined when some component does not exist.
 */
export function resolveInside(root: string, rel: string): string | undefined {
  let parts = rel.split('/').filter((p) => p !== '' && p !== '.');
  const done: string[] = [];
  let hops = 0;
  while (parts.length > 0) {
    const part = parts.shift()!;
    if (part === '..') {
      done.pop();
      continue;
    }
    const path = join(root, ...done, part);
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(path);
    } catch {
      return undefined;
    }
    if (st.isSymbolicLink()) {
      if (++hops > 40) return undefined;
      const target = readlinkSync(path);
      const rest = target.split('/').filter((p) => p !== '' && p !== '.');
      if (posix.isAbsolute(target)) done.length = 0;
      parts = [...rest, ...parts];
      continue;
    }
    done.push(part);
  }
  return join(root, ...done);
}

/** The text of the regular file `rel` inside the tree `root` (resolveInside); '' when there is none. */
export function readInside(root: string, rel: string): string {
  const path = resolveInside(root, rel);
  if (path === undefined) return '';
  try {
    if (!lstatSync(path).isFile()) return '';
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
