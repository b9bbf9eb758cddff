/**
 * Kernel support and limits: user namespaces compiled in, user.max_user_namespaces, Debian's
 * kernel.unprivileged_userns_clone, Ubuntu's kernel.apparmor_restrict_unprivileged_userns (and
 * whether an AppArmor profile lets our helper create namespaces), nesting, overflow IDs, seccomp.
 */
import { helperPath } from '../native/helper.js';
import {
  appArmor,
  apparmorRestrictUnprivilegedUserns,
  INIT_USER_NS_INODE,
  type Knob,
  type KnobOptions,
  maxUserNamespaces,
  nesting,
  overflowIds,
  processRestrictions,
  sysctlSettings,
  threadsMax,
  unprivilegedUsernsClone,
  userNamespaceSupport,
} from '../system/knobs.js';
import { type Check, check, type DoctorContext } from './types.js';

function knobOptions(ctx: DoctorContext): KnobOptions {
  const o = ctx.options;
  return {
    ...(o.procRoot === undefined ? {} : { procRoot: o.procRoot }),
    ...(o.sysRoot === undefined ? {} : { sysRoot: o.sysRoot }),
    ...(o.apparmorDir === undefined ? {} : { apparmorDir: o.apparmorDir }),
  };
}

function knobEvidence(k: Knob): Record<string, unknown> {
  return {
    value: k.value ?? k.raw ?? null,
    file: k.file,
    ...(k.errno === undefined ? {} : { errno: k.errno }),
  };
}

/** How to set a sysctl now and for every boot, with a sysctl.d file that sorts late. */
function sysctlFix(name: string, value: string | number, why = ''): string {
  return (
    `sysctl -w ${name}=${value}${why}\n` +
    `and to keep it after a reboot: echo '${name} = ${value}' > /etc/sysctl.d/90-userns.conf`
  );
}

/** Boot-time settings of a sysctl, for evidence and to warn that a file would undo the fix. */
function configured(name: string): { evidence: Record<string, unknown>; note: string } {
  const settings = sysctlSettings(name);
  if (settings.length === 0) return { evidence: {}, note: '' };
  const last = settings[settings.length - 1]!;
  return {
    evidence: { configured: settings },
    note: ` (set to ${last.value} at boot by ${last.file}:${last.line})`,
  };
}

function userNsSupport(ctx: DoctorContext): Check {
  const s = userNamespaceSupport(knobOptions(ctx));
  const config = s.config;
  const evidence = {
    value: s.link ?? null,
    file: s.file,
    ...(config === undefined
      ? {}
      : { config: { file: config.file, line: config.line, CONFIG_USER_NS: config.value } }),
    ...(s.errno === undefined ? {} : { errno: s.errno }),
  };
  const where =
    config === undefined ? '' : `; CONFIG_USER_NS=${config.value} (${config.file}:${config.line})`;
  if (s.supported) {
    return check(
      'kernel',
      'user_namespaces',
      'user namespaces in the kernel',
      'ok',
      `the kernel has user namespaces (${s.file} -> ${s.link ?? 'present'}${where})`,
      evidence,
    );
  }
  return check(
    'kernel',
    'user_namespaces',
    'user namespaces in the kernel',
    'error',
    `this kernel has no user namespaces: ${s.file} does not exist (${s.errno ?? 'missing'})${where}`,
    evidence,
    'boot a kernel built with CONFIG_USER_NS=y (every major distribution kernel has it)',
  );
}

function maxUserNs(ctx: DoctorContext, nested: boolean): Check {
  const k = maxUserNamespaces(knobOptions(ctx));
  const name = 'user.max_user_namespaces';
  const title = name;
  const ancestors = nested
    ? ' This process runs in a nested user namespace: the limits of the namespaces above it apply too, and cannot be read from here.'
    : '';
  if (!k.exists) {
    return check(
      'kernel',
      'max_user_namespaces',
      title,
      'skipped',
      `${k.file} does not exist (kernels before 4.9 have no such limit)`,
      knobEvidence(k),
    );
  }
  if (k.value === undefined) {
    return check(
      'kernel',
      'max_user_namespaces',
      title,
      'warning',
      `cannot read ${k.file} (${k.errno ?? `unexpected content ${JSON.stringify(k.raw)}`})`,
      knobEvidence(k),
    );
  }
  const half = threadsMax(knobOptions(ctx)).value;
  const suggested = half !== undefined && half >= 2 ? Math.floor(half / 2) : 15000;
  const { evidence: conf, note } = configured(name);
  const evidence = { ...knobEvidence(k), ...conf, suggested };
  const fix = sysctlFix(
    name,
    suggested,
    half !== undefined ? `   # the kernel's default: half of kernel.threads-max (${half})` : '',
  );
  if (k.value <= 0) {
    return check(
      'kernel',
      'max_user_namespaces',
      title,
      'error',
      `${name} is ${k.value}${note}: nobody, not even root, can create a user namespace (unshare and clone fail with ENOSPC).${ancestors}`,
      evidence,
      fix,
    );
  }
  if (k.value < 100) {
    return check(
      'kernel',
      'max_user_namespaces',
      title,
      'warning',
      `${name} is only ${k.value}${note}: each user may own at most ${k.value} user namespaces at a time (every container, pod and sandbox uses at least one).${ancestors}`,
      evidence,
      fix,
    );
  }
  return check(
    'kernel',
    'max_user_namespaces',
    title,
    'ok',
    `${name} is ${k.value}${note}.${ancestors}`,
    evidence,
  );
}

function unprivilegedClone(ctx: DoctorContext): Check {
  const k = unprivilegedUsernsClone(knobOptions(ctx));
  const name = 'kernel.unprivileged_userns_clone';
  if (!k.exists) {
    return check(
      'kernel',
      'unprivileged_userns_clone',
      name,
      'skipped',
      `${k.file} does not exist: this kernel has no such switch (it is a Debian/Ubuntu patch)`,
      knobEvidence(k),
    );
  }
  const { evidence: conf, note } = configured(name);
  if (k.value === 0) {
    return check(
      'kernel',
      'unprivileged_userns_clone',
      name,
      ctx.targetIsRoot ? 'warning' : 'error',
      `${name} is 0${note}: only processes with CAP_SYS_ADMIN may create user namespaces` +
        (ctx.targetIsRoot
          ? ' (root is not affected; every other user is)'
          : `, so ${ctx.target.name} cannot (unshare fails with EPERM)`),
      { ...knobEvidence(k), ...conf },
      sysctlFix(name, 1),
    );
  }
  return check(
    'kernel',
    'unprivileged_userns_clone',
    name,
    k.value === 1 ? 'ok' : 'warning',
    `${name} is ${k.value ?? k.raw ?? 'unreadable'}${note}`,
    { ...knobEvidence(k), ...conf },
  );
}

function apparmorProfileText(helper: string): string {
  return (
    `cat > /etc/apparmor.d/userns-helper <<'EOF'\n` +
    `abi <abi/4.0>,\n` +
    `include <tunables/global>\n` +
    `profile userns-helper ${helper} flags=(unconfined) {\n` +
    `  userns,\n` +
    `  include if exists <local/userns-helper>\n` +
    `}\n` +
    `EOF\n` +
    `apparmor_parser -r /etc/apparmor.d/userns-helper`
  );
}

function apparmorRestrict(ctx: DoctorContext): Check {
  const o = knobOptions(ctx);
  const k = apparmorRestrictUnprivilegedUserns(o);
  const name = 'kernel.apparmor_restrict_unprivileged_userns';
  let helper: string | undefined;
  try {
    helper = helperPath(ctx.options.helperPath);
  } catch {
    helper = ctx.options.helperPath;
  }
  const aa = appArmor(helper, o);
  const evidence = {
    ...knobEvidence(k),
    apparmor: { enabled: aa.enabled, securityfs: aa.securityDir },
    helper: helper ?? null,
    profiles: aa.usernsProfiles.map((p) => ({
      file: p.file,
      line: p.line,
      attachments: p.attachments,
      matchesHelper: p.matchesProgram,
    })),
  };
  if (!k.exists) {
    return check(
      'kernel',
      'apparmor_userns',
      name,
      'skipped',
      `${k.file} does not exist: no AppArmor user-namespace restriction on this kernel` +
        (aa.enabled ? ' (AppArmor is enabled)' : ' (AppArmor is not enabled)'),
      evidence,
    );
  }
  if (k.value !== 1) {
    return check(
      'kernel',
      'apparmor_userns',
      name,
      'ok',
      `${name} is ${k.value ?? k.raw ?? 'unreadable'}: AppArmor does not restrict user namespaces`,
      evidence,
    );
  }
  const matching = aa.usernsProfiles.find((p) => p.matchesProgram);
  if (matching !== undefined) {
    return check(
      'kernel',
      'apparmor_userns',
      name,
      'ok',
      `${name} is 1, and the profile in ${matching.file} (userns rule at line ${matching.line}) allows the userns helper ${helper}`,
      { ...evidence, file: matching.file, line: matching.line },
    );
  }
  const { note } = configured(name);
  return check(
    'kernel',
    'apparmor_userns',
    name,
    ctx.targetIsRoot ? 'ok' : 'error',
    `${name} is 1${note}, and no profile in ${aa.profileDir} with a 'userns' rule attaches to the userns helper ${helper ?? '(not built)'}: ` +
      (ctx.targetIsRoot
        ? 'root is not restricted (it has CAP_SYS_ADMIN), unprivileged users are'
        : `${ctx.target.name} gets user namespaces without any capability inside (the maps cannot be used, mounts and setgroups fail with EPERM)`),
    evidence,
    helper === undefined
      ? sysctlFix(name, 0)
      : `allow the helper with an AppArmor profile:\n${apparmorProfileText(helper)}\nor lift the restriction for every program: ${sysctlFix(name, 0)}`,
  );
}

function nestingCheck(ctx: DoctorContext): { check: Check; nested: boolean } {
  const n = nesting(knobOptions(ctx));
  const evidence = {
    value: n.uidMapText?.trim() ?? null,
    file: n.uidMapFile,
    gidMap: n.gidMapText?.trim() ?? null,
    namespaceInode: n.inode ?? null,
    initialNamespaceInode: INIT_USER_NS_INODE,
    nested: n.nested,
    uids: n.uidCount,
    gids: n.gidCount,
  };
  const title = 'nesting and IDs available here';
  if (!n.nested) {
    return {
      nested: false,
      check: check(
        'kernel',
        'nesting',
        title,
        'ok',
        `this is the initial user namespace (user:[${n.inode ?? INIT_USER_NS_INODE}]); all IDs are available`,
        evidence,
      ),
    };
  }
  const few = Math.min(n.uidCount, n.gidCount);
  const base = `this process runs in a nested user namespace (user:[${n.inode ?? '?'}], a container or sandbox) that maps ${n.uidCount} uids and ${n.gidCount} gids (${n.uidMapFile}: ${n.uidMapText?.trim().replace(/\s+/g, ' ') ?? 'unreadable'}); user namespaces can nest 32 levels deep, and a namespace created here can only map IDs this one maps`;
  if (few >= 65537) {
    return { nested: true, check: check('kernel', 'nesting', title, 'ok', base, evidence) };
  }
  return {
    nested: true,
    check: check(
      'kernel',
      'nesting',
      title,
      'warning',
      `${base}: too few for a container that needs 65536 IDs (0-65535, e.g. nobody 65534)`,
      evidence,
      'give this container more IDs: start it with a larger map (e.g. podman --userns=auto:size=200000, or a uid_map/gid_map of at least 65537 IDs), ' +
        "or use single-ID namespaces here ('userns run --userns self')",
    ),
  };
}

function overflow(ctx: DoctorContext): Check {
  const { uid, gid } = overflowIds(knobOptions(ctx));
  const evidence = {
    value: { overflowuid: uid.value ?? null, overflowgid: gid.value ?? null },
    file: uid.file,
    gidFile: gid.file,
  };
  if (uid.value === undefined || gid.value === undefined) {
    return check(
      'kernel',
      'overflow_ids',
      'kernel.overflowuid / overflowgid',
      'skipped',
      `cannot read ${uid.file} or ${gid.file}`,
      evidence,
    );
  }
  return check(
    'kernel',
    'overflow_ids',
    'kernel.overflowuid / overflowgid',
    'ok',
    `IDs that are not mapped in a namespace appear there as uid ${uid.value} and gid ${gid.value}` +
      (uid.value === 65534 && gid.value === 65534 ? ' (nobody/nogroup, the default)' : ''),
    evidence,
  );
}

function seccomp(ctx: DoctorContext): Check {
  const r = processRestrictions(knobOptions(ctx));
  const evidence = {
    value: r.seccomp ?? null,
    file: r.file,
    ...(r.seccompLine === undefined ? {} : { line: r.seccompLine }),
  };
  if (r.seccomp === 2) {
    return check(
      'kernel',
      'seccomp',
      'seccomp filter',
      'warning',
      `this process runs under a seccomp filter (Seccomp: 2 in ${r.file}), as in most containers; if it forbids unshare/clone with CLONE_NEWUSER, creating a user namespace fails with EPERM (the live probe tells)`,
      evidence,
      "if the probe fails at unshare: run the container with a seccomp profile that allows unshare and clone with CLONE_NEWUSER (e.g. podman/docker --security-opt seccomp=unconfined, or the runtime's default profile which allows it with CAP_SYS_ADMIN)",
    );
  }
  return check(
    'kernel',
    'seccomp',
    'seccomp filter',
    'ok',
    r.seccomp === undefined
      ? `cannot tell (no Seccomp line in ${r.file})`
      : `no seccomp filter (Seccomp: ${r.seccomp})`,
    evidence,
  );
}

/**
 * The kernel checks of `userns doctor`: user namespaces built in, user.max_user_namespaces,
 * kernel.unprivileged_userns_clone, AppArmor's restriction, nesting, overflow IDs, seccomp.
 */
export function kernelChecks(ctx: DoctorContext): Check[] {
  const nest = nestingCheck(ctx);
  return [
    userNsSupport(ctx),
    maxUserNs(ctx, nest.nested),
    unprivilegedClone(ctx),
    apparmorRestrict(ctx),
    nest.check,
    overflow(ctx),
    seccomp(ctx),
  ];
}
