import { lstatSync, opendirSync } from 'node:fs';
import { join } from 'node:path';
import { UsernsError } from '../errors/index.js';
import { MAX_MAPPABLE_ID } from '../idmap/extent.js';
import { readInside } from '../system/rootfs.js';
import { parseGroupLine, parsePasswdLine } from '../system/users.js';

/**
 * How many IDs a root filesystem needs (podman's estimate for --userns=auto): the highest UID
 * and GID owning any file of the tree and named in its /etc/passwd and /etc/group, ignoring
 * 65534 and the nobody/nogroup entries (mapped to the overflow ID anyway), plus one; at least
 * `minimum` (1024). The walk never follows symbolic links, and /etc/passwd and /etc/group are
 * resolved inside the tree (an absolute link in an image points into the image, not the host).
 */

export const NOBODY_ID = 65534;
/** The smallest size `--for-rootfs` suggests, whatever the image uses (IDs). */
export const MIN_ROOTFS_SIZE = 1024;

/**
 * The size an image needs: the highest uid and gid it uses (and where: a file path or
 * /etc/passwd, /etc/group), the number of files walked, and `size` = max(highest + 1, minimum).
 */
export interface RootfsEstimate {
  /** The number of IDs to allocate: max(highest + 1, minimum). */
  size: number;
  uid: { highest: number; where: string | null };
  gid: { highest: number; where: string | null };
  files: number;
}

/** Options of {@link estimateRootfsSize}: `minimum` size (default {@link MIN_ROOTFS_SIZE}). */
export interface RootfsOptions {
  minimum?: number;
}

const IGNORED_NAMES = new Set(['nobody', 'nogroup', 'nfsnobody']);

/**
 * How many IDs an unpacked image needs: the highest uid/gid owning a file or named in its
 * /etc/passwd and /etc/group (65534, nobody, nogroup ignored), plus one, at least `minimum`.
 * Symbolic links are never followed out of the tree.
 *
 * @param root The image's root directory.
 * @throws UsernsError `ROOTFS_UNREADABLE` when `root` cannot be read.
 */
export function estimateRootfsSize(root: string, options: RootfsOptions = {}): RootfsEstimate {
  let top: ReturnType<typeof lstatSync>;
  try {
    top = lstatSync(root);
  } catch (error) {
    throw new UsernsError(
      'ROOTFS_UNREADABLE',
      `cannot read the root filesystem ${root}: ${(error as Error).message}`,
      {
        hint: 'give the directory of an unpacked image with --for-rootfs DIR',
        data: { root },
        cause: error,
      },
    );
  }
  if (!top.isDirectory()) {
    throw new UsernsError('ROOTFS_UNREADABLE', `the root filesystem ${root} is not a directory`, {
      data: { root },
    });
  }
  const uid = { highest: -1, where: null as string | null };
  const gid = { highest: -1, where: null as string | null };
  const see = (slot: typeof uid, id: number, where: string) => {
    if (id === NOBODY_ID || id > MAX_MAPPABLE_ID) return;
    if (id > slot.highest) {
      slot.highest = id;
      slot.where = where;
    }
  };
  let files = 0;
  const stack: string[] = [root];
  see(uid, top.uid, root);
  see(gid, top.gid, root);
  while (stack.length > 0) {
    const dir = stack.pop()!;
    let handle: ReturnType<typeof opendirSync>;
    try {
      handle = opendirSync(dir);
    } catch {
      continue; // unreadable directory: its owner was counted already
    }
    try {
      for (let entry = handle.readSync(); entry !== null; entry = handle.readSync()) {
        const path = join(dir, entry.name);
        let st: ReturnType<typeof lstatSync>;
        try {
          st = lstatSync(path);
        } catch {
          continue;
        }
        files++;
        see(uid, st.uid, path);
        see(gid, st.gid, path);
        if (st.isDirectory()) stack.push(path);
      }
    } finally {
      handle.closeSync();
    }
  }
  for (const line of readInside(root, 'etc/passwd').split('\n')) {
    const u = parsePasswdLine(line);
    if (u === undefined || IGNORED_NAMES.has(u.name)) continue;
    see(uid, u.uid, `${root}/etc/passwd (${u.name})`);
    see(gid, u.gid, `${root}/etc/passwd (${u.name})`);
  }
  for (const line of readInside(root, 'etc/group').split('\n')) {
    const g = parseGroupLine(line);
    if (g === undefined || IGNORED_NAMES.has(g.name)) continue;
    see(gid, g.gid, `${root}/etc/group (${g.name})`);
  }
  const minimum = options.minimum ?? MIN_ROOTFS_SIZE;
  return { size: Math.max(minimum, uid.highest + 1, gid.highest + 1), uid, gid, files };
}
