/**
 * The environment: XDG_RUNTIME_DIR (rootless podman, buildah and systemd --user keep their
 * runtime state there), whether `/` is a shared mount, and no_new_privs.
 */
import { statSync } from 'node:fs';
import { processRestrictions, rootMountPropagation } from '../system/knobs.js';
import { type Check, check, type DoctorContext } from './types.js';

function xdgRuntimeDir(ctx: DoctorContext): Check {
  const user = ctx.target;
  const title = 'XDG_RUNTIME_DIR';
  const expected = `/run/user/${user.uid}`;
  const lingerFix =
    `loginctl enable-linger ${user.name}   # systemd creates ${expected} and keeps it\n` +
    `then log in with a real session (ssh, machinectl shell ${user.name}@) rather than su/sudo, or export XDG_RUNTIME_DIR=${expected}`;
  if (ctx.targetIsRoot) {
    return check(
      'environment',
      'xdg_runtime_dir',
      title,
      'ok',
      'root does not need XDG_RUNTIME_DIR (rootful tools keep their state under /run)',
      { value: (ctx.options.env ?? process.env).XDG_RUNTIME_DIR ?? null },
    );
  }
  const env = ctx.options.env ?? (ctx.targetIsSelf ? process.env : undefined);
  const value = env?.XDG_RUNTIME_DIR;
  if (env !== undefined && (value === undefined || value === '')) {
    return check(
      'environment',
      'xdg_runtime_dir',
      title,
      'warning',
      `XDG_RUNTIME_DIR is not set: rootless podman and buildah keep their runtime state there (and fall back to /tmp, with warnings); this happens after su/sudo, which do not start a login session`,
      { value: null, expected },
      lingerFix,
    );
  }
  const dir = value ?? expected;
  let st: ReturnType<typeof statSync> | undefined;
  try {
    st = statSync(dir);
  } catch (error) {
    return check(
      'environment',
      'xdg_runtime_dir',
      title,
      'warning',
      `${value === undefined ? `${user.name}'s runtime directory ${dir}` : `XDG_RUNTIME_DIR=${dir}`} does not exist (${(error as NodeJS.ErrnoException).code ?? 'error'}): ${user.name} has no login session and no lingering`,
      { value: value ?? null, file: dir },
      lingerFix,
    );
  }
  const mode = Number(st.mode) & 0o777;
  if (!st.isDirectory() || Number(st.uid) !== user.uid || (mode & 0o077) !== 0) {
    return check(
      'environment',
      'xdg_runtime_dir',
      title,
      'warning',
      `${dir} must be a directory owned by ${user.name} (uid ${user.uid}) with mode 0700; it is ${st.isDirectory() ? 'a directory' : 'not a directory'} owned by uid ${st.uid}, mode ${mode.toString(8).padStart(4, '0')}`,
      { value: dir, file: dir, owner: Number(st.uid), mode: mode.toString(8).padStart(4, '0') },
      `chown ${user.name}: ${dir} && chmod 700 ${dir}, or let systemd-logind create it: ${lingerFix}`,
    );
  }
  return check(
    'environment',
    'xdg_runtime_dir',
    title,
    'ok',
    `${value === undefined ? `${dir} (no environment to read: the runtime directory systemd-logind makes)` : `XDG_RUNTIME_DIR=${dir}`} exists, owned by ${user.name}, mode 0700`,
    { value: dir, file: dir },
  );
}

function rootShared(ctx: DoctorContext): Check {
  const p = rootMountPropagation(
    ctx.options.procRoot === undefined ? {} : { procRoot: ctx.options.procRoot },
  );
  const evidence = {
    value: p.optional.length === 0 ? 'private' : p.optional.join(' '),
    file: p.file,
    ...(p.line === undefined ? {} : { line: p.line }),
  };
  const title = "propagation of '/'";
  if (p.line === undefined) {
    return check('environment', 'root_shared', title, 'skipped', `no mount at / in ${p.file}`, evidence);
  }
  if (p.shared) {
    return check(
      'environment',
      'root_shared',
      title,
      'ok',
      `/ is a shared mount (${p.optional.join(' ')} at ${p.file}:${p.line})`,
      evidence,
    );
  }
  return check(
    'environment',
    'root_shared',
    title,
    'warning',
    `/ is not a shared mount (${p.file}:${p.line} has ${p.optional.length === 0 ? 'no propagation fields: private' : p.optional.join(' ')}): mounts made on the host later do not propagate into namespaces, and rootless podman warns "'/' is not a shared mount"`,
    evidence,
    "mount --make-rshared /   (systemd does this at boot; inside a container, start it with '/' rshared)",
  );
}

function noNewPrivs(ctx: DoctorContext): Check {
  const r = processRestrictions(ctx.options.procRoot === undefined ? {} : { procRoot: ctx.options.procRoot });
  const evidence = {
    value: r.noNewPrivs ? 1 : 0,
    file: r.file,
    ...(r.noNewPrivsLine === undefined ? {} : { line: r.noNewPrivsLine }),
  };
  if (!r.noNewPrivs) {
    return check(
      'environment',
      'no_new_privs',
      'no_new_privs',
      'ok',
      'this process does not run with no_new_privs',
      evidence,
    );
  }
  return check(
    'environment',
    'no_new_privs',
    'no_new_privs',
    ctx.targetIsRoot || !ctx.targetIsSelf ? 'warning' : 'error',
    `this process runs with no_new_privs (NoNewPrivs: 1 at ${r.file}:${r.noNewPrivsLine ?? '?'}): setuid newuidmap/newgidmap started from it get no privileges, so unprivileged users cannot map their subordinate IDs from here`,
    evidence,
    'start it without no_new_privs (no --security-opt no-new-privileges, NoNewPrivileges=yes, or setpriv --no-new-privs)',
  );
}

/**
 * The environment checks of `userns doctor`: XDG_RUNTIME_DIR, whether / is a shared mount,
 * no_new_privs.
 */
export function environmentChecks(ctx: DoctorContext): Check[] {
  return [xdgRuntimeDir(ctx), rootShared(ctx), noNewPrivs(ctx)];
}
