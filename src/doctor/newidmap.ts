/**
 * newuidmap / newgidmap: present, setuid root or file capabilities (the `security.capability`
 * xattr, read through libcap's getcap), owner, mode, package version, nosuid mounts,
 * no_new_privs, and whether the user being diagnosed may execute it.
 */
import { inspectNewIdmap, type NewIdmapInfo, type NewIdmapTool } from '../system/newidmap.js';
import { type Check, check, type DoctorContext } from './types.js';

const CAP: Record<NewIdmapTool, string> = { newuidmap: 'cap_setuid', newgidmap: 'cap_setgid' };
const INSTALL =
  'apt-get install uidmap (Debian/Ubuntu), dnf install shadow-utils (Fedora), apk add shadow-uidmap (Alpine)';

function octal(mode: number | undefined): string {
  return mode === undefined ? '?' : mode.toString(8).padStart(4, '0');
}

function evidenceOf(info: NewIdmapInfo): Record<string, unknown> {
  return {
    value: info.exists ? octal(info.mode) : null,
    file: info.path ?? null,
    owner: info.owner ?? null,
    setuidRoot: info.setuidRoot,
    'security.capability': info.getcapAvailable
      ? (info.fileCaps ?? null)
      : 'unknown (getcap is not installed)',
    version: info.version ?? null,
    nosuidMount: info.nosuidMount ?? null,
    noNewPrivs: info.noNewPrivs,
  };
}

/** Why the target user cannot execute the file at all (no x bit for it), or undefined. */
function notExecutableBy(info: NewIdmapInfo, ctx: DoctorContext): string | undefined {
  if (info.mode === undefined || ctx.targetIsRoot) return undefined;
  const user = ctx.target;
  const bits = info.owner === user.uid ? (info.mode >> 6) & 1 : info.mode & 1;
  // Group membership is not resolved here: only "others" is checked for a non-owner.
  if (bits === 1 || (info.owner !== user.uid && ((info.mode >> 3) & 1) === 1)) return undefined;
  return `${user.name} may not execute ${info.path} (mode ${octal(info.mode)})`;
}

function toolCheck(ctx: DoctorContext, which: NewIdmapTool, info: NewIdmapInfo): Check {
  const cap = CAP[which];
  const path = info.path ?? which;
  const title = which;
  const evidence = evidenceOf(info);
  // Root writes its maps directly: a broken tool blocks every other user, not root.
  const bad = ctx.targetIsRoot ? 'warning' : 'error';
  const rootNote = ctx.targetIsRoot
    ? ' (root writes maps directly and does not need it; every other user does)'
    : '';
  const privilege = info.setuidRoot
    ? `setuid root (mode ${octal(info.mode)}, owner uid 0)`
    : `file capabilities ${info.fileCaps} (mode ${octal(info.mode)}, owner uid ${info.owner})`;
  const version = info.version === undefined ? '' : `, package version ${info.version}`;
  const fixPrivilege = `chown root:root ${path} && chmod u+s ${path}\n(or, with file capabilities instead: setcap ${cap}+ep ${path}; or reinstall: ${INSTALL.split(' (')[0]} --reinstall)`;

  if (info.path === undefined || !info.exists) {
    return check(
      'newidmap',
      which,
      title,
      bad,
      `${info.path === undefined ? `${which} is not installed (not in PATH, /usr/bin, /usr/sbin or /bin)` : `${info.path} does not exist`}: without it only one's own ID can be mapped${rootNote}`,
      evidence,
      INSTALL,
    );
  }
  if (info.mode !== undefined && (info.mode & 0o111) === 0) {
    return check(
      'newidmap',
      which,
      title,
      bad,
      `${path} is not executable (mode ${octal(info.mode)})${rootNote}`,
      evidence,
      `chmod 4755 ${path} (owned by root) or chmod 755 ${path} && setcap ${cap}+ep ${path}`,
    );
  }
  if (!info.setuidRoot && !info.hasNeededCap) {
    let why: string;
    if ((info.mode! & 0o4000) !== 0) why = `has the setuid bit but is owned by uid ${info.owner}, not root`;
    else if (info.fileCaps !== undefined)
      why = `has no setuid bit, and its file capabilities (security.capability: ${info.fileCaps}) lack ${cap} in the permitted and effective sets`;
    else if (!info.getcapAvailable)
      why =
        'has no setuid bit, and its file capabilities cannot be read (getcap is not installed: apt-get install libcap2-bin)';
    else why = 'is neither setuid root nor has file capabilities (no security.capability xattr)';
    return check(
      'newidmap',
      which,
      title,
      bad,
      `${path} ${why} (mode ${octal(info.mode)}, owner uid ${info.owner}): run by an unprivileged user it cannot write /proc/PID/${which === 'newuidmap' ? 'uid' : 'gid'}_map ("Operation not permitted")${rootNote}`,
      evidence,
      fixPrivilege,
    );
  }
  if (info.nosuidMount !== undefined) {
    return check(
      'newidmap',
      which,
      title,
      bad,
      `${path} is ${privilege}, but on a filesystem mounted nosuid (${info.nosuidMount}), so the kernel ignores its setuid bit and file capabilities${rootNote}`,
      evidence,
      `mount -o remount,suid ${info.nosuidMount}, or install ${which} on a filesystem without nosuid`,
    );
  }
  if (info.noNewPrivs && ctx.targetIsSelf && !ctx.targetIsRoot) {
    return check(
      'newidmap',
      which,
      title,
      'error',
      `${path} is ${privilege}, but this process runs with no_new_privs (NoNewPrivs: 1 in /proc/self/status), so ${which} cannot gain privileges when run from it`,
      evidence,
      'start userns without no_new_privs (e.g. without --security-opt no-new-privileges, NoNewPrivileges=yes, or setpriv --no-new-privs)',
    );
  }
  const noExec = notExecutableBy(info, ctx);
  if (noExec !== undefined) {
    return check('newidmap', which, title, 'error', noExec, evidence, `chmod o+x ${path}`);
  }
  return check(
    'newidmap',
    which,
    title,
    'ok',
    `${path} is ${privilege}${info.fileCaps !== undefined && info.setuidRoot ? `, file capabilities ${info.fileCaps}` : ''}${version}`,
    evidence,
  );
}

/**
 * The newuidmap/newgidmap checks of `userns doctor`: present, setuid root or file capabilities,
 * owner and mode, nosuid mounts.
 */
export async function newidmapChecks(ctx: DoctorContext): Promise<Check[]> {
  const [u, g] = await Promise.all([
    inspectNewIdmap('newuidmap', ctx.options.newuidmap === undefined ? {} : { path: ctx.options.newuidmap }),
    inspectNewIdmap('newgidmap', ctx.options.newgidmap === undefined ? {} : { path: ctx.options.newgidmap }),
  ]);
  return [toolCheck(ctx, 'newuidmap', u), toolCheck(ctx, 'newgidmap', g)];
}
