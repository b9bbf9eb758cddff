/**
 * Checks for named namespaces: whether this kernel has nsfs file handles (joins by handle,
 * `--hold none`) and pidfds (joins through a keeper), whether `--hold mount` is available to
 * this caller, and how each named namespace of the caller is held and whether it is alive. The
 * kernel's rules behind each message: docs/nsfs-handles.md sections 8 and 10.
 */
import { statSync } from 'node:fs';
import { handlesDisabled, listNamespaces, type NamespaceInfo } from '../namespaces/index.js';
import { probeNsfs } from '../native/nsfs.js';
import { hasSysAdmin } from '../system/self.js';
import { type Check, check, type DoctorContext } from './types.js';

/** The initial mount namespace's inode (fixed: PROC_MNT_INIT_INO). */
const INITIAL_MOUNT_NAMESPACE = 0xeffffff8;

function handleCheck(probe: ReturnType<typeof probeNsfs> | Error, disabled: boolean): Check {
  const title = 'nsfs file handles';
  if (probe instanceof Error)
    return check(
      'namespaces',
      'nsfs_handles',
      title,
      'warning',
      `cannot ask the kernel: ${probe.message}`,
      {},
      'run userns doctor again; the helper may be missing',
    );
  const evidence = { encode: probe.encode, decode: probe.decode };
  if (disabled)
    return check(
      'namespaces',
      'nsfs_handles',
      title,
      'warning',
      'switched off by USERNS_NSFS_HANDLES=0: named namespaces are joined through their keeper or bind mounts, and --hold none is refused',
      { ...evidence, value: 'disabled' },
      'unset USERNS_NSFS_HANDLES',
    );
  if (probe.encode === null && probe.decode === null)
    return check(
      'namespaces',
      'nsfs_handles',
      title,
      'ok',
      'supported: named namespaces are joined by nsfs handle (a gone namespace is told apart from a reused PID), and --hold none is available',
      { ...evidence, value: 'supported' },
    );
  const tooOld = probe.encode === 'EOPNOTSUPP' || probe.decode === 'EBADF';
  return check(
    'namespaces',
    'nsfs_handles',
    title,
    'warning',
    tooOld
      ? `not supported by this kernel (name_to_handle_at: ${probe.encode ?? 'ok'}, open_by_handle_at: ${probe.decode ?? 'ok'}; Linux 6.18+ has them): named namespaces are joined through their keeper's pidfd or bind mounts; --hold none is unavailable`
      : `blocked (name_to_handle_at: ${probe.encode ?? 'ok'}, open_by_handle_at: ${probe.decode ?? 'ok'}): a seccomp filter, or a kernel without CONFIG_FHANDLE; --hold none is unavailable`,
    { ...evidence, value: tooOld ? 'kernel too old' : 'blocked' },
    tooOld
      ? 'nothing to do for keeper and mount holds; --hold none needs Linux 6.18 or later'
      : 'allow name_to_handle_at and open_by_handle_at in the seccomp profile, or set USERNS_NSFS_HANDLES=0',
  );
}

function pidfdCheck(probe: ReturnType<typeof probeNsfs> | Error): Check {
  if (probe instanceof Error)
    return check(
      'namespaces',
      'pidfd',
      'pidfd joins',
      'skipped',
      'not checked: the helper did not answer',
      {},
    );
  return probe.pidfd === null
    ? check(
        'namespaces',
        'pidfd',
        'pidfd joins',
        'ok',
        'pidfd_open works: joins through a keeper cannot hit a reused PID',
        { value: true },
      )
    : check(
        'namespaces',
        'pidfd',
        'pidfd joins',
        'warning',
        `pidfd_open failed (${probe.pidfd}; Linux 5.3+): joins through a keeper fall back to /proc/PID/ns with a start-time check`,
        { value: probe.pidfd },
        'a kernel of Linux 5.8 or later (setns on a pidfd)',
      );
}

function mountHoldCheck(ctx: DoctorContext): Check {
  const title = '--hold mount';
  if (ctx.targetIsSelf ? !hasSysAdmin() : !ctx.targetIsRoot)
    return check(
      'namespaces',
      'mount_hold',
      title,
      'skipped',
      'needs CAP_SYS_ADMIN over the mount namespace userns runs in (root): use --hold keeper, or --hold none with a command',
      { value: false },
    );
  let mnt: number | undefined;
  try {
    mnt = statSync('/proc/self/ns/mnt').ino;
  } catch {
    // unknown
  }
  if (mnt !== INITIAL_MOUNT_NAMESPACE)
    return check(
      'namespaces',
      'mount_hold',
      title,
      'warning',
      `available, but userns runs in a mount namespace other than the initial one (mnt:[${mnt ?? '?'}]): binding a new mount namespace there fails at random (EINVAL, the kernel's ns_id order), so --hold mount with a mount namespace may be refused`,
      { value: true, mountNamespace: mnt ?? null },
      'leave out the mount namespace with --hold mount, or use --hold keeper',
    );
  return check('namespaces', 'mount_hold', title, 'ok', 'available (root in the initial mount namespace)', {
    value: true,
  });
}

function namedCheck(entries: NamespaceInfo[] | Error): Check {
  const title = 'named namespaces';
  if (entries instanceof Error)
    return check(
      'namespaces',
      'named',
      title,
      'warning',
      `cannot list them: ${entries.message}`,
      {},
      'see the message',
    );
  if (entries.length === 0) return check('namespaces', 'named', title, 'ok', 'none', { value: [] });
  const value = entries.map((e) => ({
    name: e.name,
    hold: e.state?.hold ?? null,
    status: e.status,
    ...(e.reason === undefined ? {} : { reason: e.reason }),
    ...(e.state?.keeperPid === undefined ? {} : { keeperPid: e.state.keeperPid }),
  }));
  const bad = entries.filter((e) => e.status !== 'running' && e.status !== 'creating');
  const message = value
    .map((v) => `${v.name}: ${v.hold ?? '?'}, ${v.status}${v.reason ? ` (${v.reason})` : ''}`)
    .join('; ');
  if (bad.length === 0) return check('namespaces', 'named', title, 'ok', message, { value });
  const force = bad.some((e) => e.status === 'broken' || e.status === 'unsafe');
  const removable = bad.filter((e) => e.status !== 'unknown').map((e) => e.name);
  return check(
    'namespaces',
    'named',
    title,
    'warning',
    message,
    { value },
    removable.length > 0
      ? `userns rm ${force ? '--force ' : ''}${removable.join(' ')}`
      : 'check them from where they were created (the PID namespace of their keeper)',
  );
}

/** The checks of the `namespaces` group (they start the helper: only with the live probe). */
export async function namespaceChecks(ctx: DoctorContext): Promise<Check[]> {
  const disabled = handlesDisabled();
  let probe: ReturnType<typeof probeNsfs> | Error;
  try {
    probe = probeNsfs([], {
      ...(ctx.options.helperPath === undefined ? {} : { helperPath: ctx.options.helperPath }),
    });
  } catch (error) {
    probe = error as Error;
  }
  const checks = [handleCheck(probe, disabled), pidfdCheck(probe), mountHoldCheck(ctx)];
  if (ctx.targetIsSelf) {
    let entries: NamespaceInfo[] | Error;
    try {
      entries = await listNamespaces({
        clean: false,
        ...(ctx.options.stateRoot === undefined ? {} : { root: ctx.options.stateRoot }),
      });
    } catch (error) {
      entries = error as Error;
    }
    checks.push(namedCheck(entries));
  }
  return checks;
}
