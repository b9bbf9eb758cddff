/**
 * Mount errors, in words: what the kernel's errno means for this mount (docs/kernel-rules.md,
 * "Idmapped mounts"). The codes are MountError's (src/errors/classes.ts).
 */
import { release } from 'node:os';
import { type ErrorCode, MountError } from '../errors/index.js';
import { type HelperFailure, type HelperMount, plainFailure } from '../native/helper.js';
import { type MountInfo, mountOf } from '../system/mounts.js';

/** The mount `path` is on (this process's view of /proc/self/mountinfo; symbolic links resolved), or undefined. */
export function mountInfoOf(path: string): MountInfo | undefined {
  return mountOf(path);
}

/** The filesystem type of `path` ("ext4", "tmpfs", …), or "unknown". */
export function fsTypeOf(path: string): string {
  return mountInfoOf(path)?.fsType ?? 'unknown';
}

const KERNEL_HINT = 'idmapped mounts need Linux 5.12 or later (open_tree 5.2, mount_setattr 5.12)';

/**
 * Explains a failure of the helper's mount steps (the detail ends in ": #<index> <path>").
 * `mounts` are the helper's mounts in order.
 */
export function explainMountFailure(failure: HelperFailure, mounts: readonly HelperMount[]): MountError {
  const { step, errno, detail: text, report } = failure;
  const m = /: #(\d+) (.*)$/.exec(text);
  const index = m === null ? -1 : Number(m[1]);
  const mount = mounts[index];
  const source = mount?.source ?? m?.[2] ?? '?';
  const target = mount?.target ?? '?';
  const strerror = text.replace(/: #\d+ .*$/, '');
  const what = mount === undefined ? 'the mount' : `--mount ${mount.source}:${mount.target}`;
  const fsType = mount?.detached ? 'detached mount' : fsTypeOf(source);
  const data = { source, target, fsType, report };
  const err = (code: ErrorCode, message: string, hint?: string) =>
    new MountError(code, message, { step, errno, data, ...(hint === undefined ? {} : { hint }) });
  if (errno === 'ENOSYS') {
    return err(
      'IDMAP_KERNEL_TOO_OLD',
      `this kernel (${release()}) cannot make ${what}: ${step} is not implemented`,
      KERNEL_HINT,
    );
  }
  switch (step) {
    case 'mount-open':
      if (errno === 'ENOENT' || errno === 'ENOTDIR')
        return err(
          'MOUNT_SOURCE_MISSING',
          `mount source ${source} does not exist`,
          'create it, or fix the path',
        );
      if (errno === 'EPERM')
        return err(
          'MOUNT_NOT_PRIVILEGED',
          `not privileged to copy the mount of ${source}: cloning a mount needs CAP_SYS_ADMIN over the current mount namespace`,
          "run as root, or inside a user and mount namespace of your own (e.g. 'userns run --unshare mount -- …')",
        );
      break;
    case 'mount-idmap':
      if (errno === 'EINVAL')
        return err(
          'IDMAP_UNSUPPORTED_FS',
          `filesystem ${fsType} (${source}) does not support idmapped mounts`,
          'use a filesystem that does (ext4, xfs, btrfs, tmpfs ≥ 6.3, …; probeIdmapSupport() tells), ' +
            'without rbind if a filesystem mounted below the source is the one that does not; or chown the files instead',
        );
      if (errno === 'EPERM') {
        const info = mount?.detached ? undefined : mountInfoOf(source);
        if (info?.options.includes('idmapped'))
          return err(
            'IDMAP_ALREADY_IDMAPPED',
            `${source} is already on an idmapped mount (${info.mountPoint}); a mount is idmapped only once`,
            'idmap the original directory instead of the idmapped mount',
          );
        return err(
          'IDMAP_NOT_PRIVILEGED',
          `not privileged over the filesystem of ${source} (${fsType}): idmapping needs CAP_SYS_ADMIN in the user namespace that mounted it`,
          'as root this works for host filesystems; rootless users can idmap only filesystems their own namespace mounted ' +
            "(e.g. a tmpfs mounted inside 'userns run --unshare mount')",
        );
      }
      return err('IDMAP_FAILED', `idmapping ${source} failed (${errno}: ${strerror})`);
    case 'mount-attach':
      if (errno === 'ENOENT')
        return err(
          'MOUNT_TARGET_MISSING',
          `mount target ${target} does not exist`,
          'create the directory (or file) first',
        );
      if (errno === 'ENOTDIR' || errno === 'EISDIR')
        return err(
          'MOUNT_TYPE_MISMATCH',
          `cannot mount ${source} on ${target}: one is a directory and the other is not`,
          'mount a directory on a directory, a file on a file',
        );
      break;
    case 'mount-userns':
      return err(
        'IDMAP_FAILED',
        `the user namespace for idmapping ${source} is gone (${errno}: ${strerror})`,
      );
  }
  return err('MOUNT_FAILED', `${what} failed at ${step} (${errno}: ${strerror})`);
}

/**
 * The helper's `explain` for the mount layer's own launches (user-namespace fds, detached
 * mounts): the mount steps in words, the others as plain failures.
 */
export function explainMountLaunch(
  failure: HelperFailure,
  options: { mounts?: readonly HelperMount[] },
): Error {
  return failure.step.startsWith('mount-')
    ? explainMountFailure(failure, options.mounts ?? [])
    : plainFailure(failure);
}
