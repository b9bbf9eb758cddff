/**
 * What a failure of the helper means for the command being started, in words: the helper reports
 * a step and an errno (src/native/helper.ts HelperFailure); this says which of the caller's
 * choices caused it and what to do. Mount steps are explained by src/mount/errors.ts.
 */
import { DOCTOR_HINT, SpawnError } from '../errors/index.js';
import { explainMountFailure } from '../mount/errors.js';
import { type HelperFailure, type HelperOptions, plainFailure } from '../native/helper.js';

/**
 * The error for a failure of a run, join or hold (the helper's `explain` option): SpawnError
 * COMMAND_NOT_FOUND, COMMAND_NOT_EXECUTABLE, EXEC_FAILED, UNSHARE_FAILED, ID_NOT_MAPPED,
 * SETID_FAILED, NS_STALE, JOIN_FAILED, SETGROUPS_FAILED, CWD_FAILED, SETUP_FAILED (and the
 * others of plainFailure), or a MountError for the mount steps.
 */
export function explainSpawnFailure(
  failure: HelperFailure,
  options: Pick<HelperOptions, 'command' | 'cwd' | 'mounts'>,
): SpawnError {
  const { step, errno, detail } = failure;
  const d = { step, errno, data: { report: failure.report } };
  const name = options.command[0] ?? '';
  switch (step) {
    case 'exec':
      if (errno === 'ENOENT') {
        return name.includes('/')
          ? new SpawnError('COMMAND_NOT_FOUND', `command not found: ${name} (no such file)`, {
              ...d,
              hint: 'check the path (it is resolved after switching IDs and directory inside the namespace)',
            })
          : new SpawnError('COMMAND_NOT_FOUND', `command not found: ${name}`, {
              ...d,
              hint: 'check the name and PATH, or give the full path',
            });
      }
      if (errno === 'EACCES' || errno === 'ENOEXEC') {
        return new SpawnError('COMMAND_NOT_EXECUTABLE', `cannot execute ${name}: ${detail}`, {
          ...d,
          hint: 'the file must be executable by the user inside the namespace',
        });
      }
      return new SpawnError('EXEC_FAILED', `cannot execute ${name}: ${detail}`, d);
    case 'unshare':
      return new SpawnError('UNSHARE_FAILED', `cannot create the namespaces (unshare: ${detail})`, {
        ...d,
        hint:
          errno === 'ENOSPC'
            ? `too many user namespaces (user.max_user_namespaces) or nested deeper than 32 levels; ${DOCTOR_HINT}`
            : errno === 'EPERM'
              ? `user namespaces may be disabled or restricted (sysctls, AppArmor, seccomp, a chroot); ${DOCTOR_HINT}`
              : DOCTOR_HINT,
      });
    case 'setresuid':
    case 'setresgid':
      if (errno === 'EINVAL') {
        const kind = step === 'setresuid' ? 'uid' : 'gid';
        return new SpawnError(
          'ID_NOT_MAPPED',
          `cannot become ${detail.replace(/^.*: /, '')} inside: that ${kind} is not in the namespace's ${kind}_map`,
          {
            ...d,
            hint: `choose a ${kind} the map contains (--user), or map it; ${DOCTOR_HINT}`,
          },
        );
      }
      return new SpawnError('SETID_FAILED', `cannot switch IDs inside (${step}: ${detail})`, {
        ...d,
        hint: DOCTOR_HINT,
      });
    case 'join':
    case 'setns':
      return new SpawnError(
        errno === 'ESTALE' || errno === 'ESRCH' ? 'NS_STALE' : 'JOIN_FAILED',
        errno === 'ESTALE' || errno === 'ESRCH'
          ? `the namespaces to enter are gone (${step}: ${detail})`
          : `cannot enter the namespaces (${step}: ${detail})`,
        { ...d, hint: DOCTOR_HINT },
      );
    case 'mount-userns':
    case 'mount-open':
    case 'mount-idmap':
    case 'mount-setattr':
    case 'mount-ns':
    case 'mount-attach':
      return explainMountFailure(failure, options.mounts ?? []);
    case 'setgroups':
      return new SpawnError('SETGROUPS_FAILED', `cannot drop supplementary groups (setgroups: ${detail})`, {
        ...d,
        hint: "setgroups is denied in this namespace; use setgroups 'allow' with a gid map that allows it",
      });
    case 'chdir':
      return new SpawnError('CWD_FAILED', `cannot change to directory ${options.cwd ?? detail}: ${detail}`, {
        ...d,
        hint: 'the directory must exist and be searchable by the user inside the namespace',
      });
    default:
      return plainFailure(failure);
  }
}
