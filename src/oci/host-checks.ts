/**
 * What the runtime would refuse about a bundle on this machine, beyond its maps: who may make
 * its idmapped mounts, and whether the container's root can reach `root.path`. The rules, and
 * where they come from (the kernel's fs/namespace.c and fs/namei.c, runc's validator and its
 * init process), are in docs/oci-runtime-rules.md.
 *
 * Nothing here follows a symbolic link: runc refuses a root.path that goes through one, so the
 * walk to it stops there and says so; every directory on the way is pinned by an O_PATH
 * descriptor and its owner, mode and access ACL read from that descriptor.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readlinkSync, type Stats } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { OciError, type OciErrorCode } from '../errors/index.js';
import { MAX_MAPPABLE_ID } from '../idmap/extent.js';
import { IdMap } from '../idmap/idmap.js';
import { type AccessAclRead, readAccessAcls } from '../native/nsfs.js';
import { mountOf } from '../system/mounts.js';
import { O_PATH } from '../system/open-flags.js';
import { type AclEntry, aclDecision, decodeAccessAcl, formatAclEntry } from '../system/posix-acl.js';
import { formatMode, namespaceAccessor, permits } from '../system/reachability.js';
import { hasSysAdmin, ownMap } from '../system/self.js';
import { type BundleFormat, type ConfigView, type MountView, readConfigView } from './config.js';

/** Who runs the runtime, as the host checks need to know it. */
export interface HostEnvironment {
  /** The caller runs in the initial user namespace (its uid map is the identity of every ID). */
  initialNamespace: boolean;
  /** CAP_SYS_ADMIN in the caller's effective set. */
  sysAdmin: boolean;
  /** The runtime runs as root (CAP_SETUID and CAP_SETGID): it drops the supplementary groups. */
  privileged: boolean;
  /** The caller's effective uid (runc is "rootless" when it is not 0). */
  uid: number;
  /** The caller's supplementary groups: a rootless runtime cannot drop them (setgroups is denied). */
  groups: readonly number[];
  /** The filesystem type of a path ("ext4", "tmpfs", …), undefined when unknown. */
  fsTypeOf: (path: string) => string | undefined;
  /** The system.posix_acl_access xattr of each path (src/native/nsfs.ts readAccessAcls). */
  readAcls: (paths: readonly string[]) => AccessAclRead[];
}

/** What the host checks found: refusals (first one first) and warnings. */
export interface HostCheckResult {
  refusals: OciError[];
  warnings: string[];
}

/** The environment of this process. */
export function hostEnvironment(privileged: boolean): HostEnvironment {
  const own = ownMap('uid').extents;
  return {
    initialNamespace:
      own.length === 1 &&
      own[0]!.inside === 0 &&
      own[0]!.outside === 0 &&
      own[0]!.count === MAX_MAPPABLE_ID + 1,
    sysAdmin: hasSysAdmin(),
    privileged,
    uid: process.geteuid?.() ?? 0,
    groups: process.getgroups?.() ?? [],
    fsTypeOf: (path) => mountOf(path)?.fsType,
    readAcls: (paths) => readAccessAcls(paths),
  };
}

/**
 * Filesystem types whose superblock a user namespace other than the initial one can own
 * (mountable inside one: FS_USERNS_MOUNT). Any other filesystem was mounted from the initial
 * user namespace, so only its root may idmap it.
 */
function mountableInUserNamespace(fsType: string): boolean {
  return (
    [
      'tmpfs',
      'ramfs',
      'overlay',
      'proc',
      'sysfs',
      'devpts',
      'mqueue',
      'cgroup',
      'cgroup2',
      'binder',
      'fuse',
    ].includes(fsType) || fsType.startsWith('fuse.')
  );
}

function refusal(code: OciErrorCode, message: string, hint: string, data: Record<string, unknown>): OciError {
  return new OciError(code, message, { hint, data });
}

/**
 * The kernel's rule for making an idmapped mount (mount_setattr with MOUNT_ATTR_IDMAP): the
 * caller needs CAP_SYS_ADMIN in the user namespace that owns the mount's filesystem (its
 * superblock), whoever owns the directory; and runc refuses idmapped mounts in a rootless
 * container (effective uid not 0) before it tries.
 */
function idmapPermission(
  m: MountView,
  file: string,
  bundleDir: string,
  env: HostEnvironment,
): OciError | undefined {
  if (env.initialNamespace && env.sysAdmin) return undefined;
  const source =
    m.source === undefined ? undefined : isAbsolute(m.source) ? m.source : join(bundleDir, m.source);
  const fsType = source === undefined ? undefined : env.fsTypeOf(source);
  const ownerUnknown = !env.initialNamespace && (fsType === undefined || mountableInUserNamespace(fsType));
  const rootless = env.uid !== 0;
  // Root of a nested namespace may own a filesystem its namespace mounted (a tmpfs): unknown here.
  if (!rootless && ownerUnknown) return undefined;
  const where = `mounts[${m.index}] (${m.destination ?? 'no destination'}${source === undefined ? '' : `, source ${source}`}${fsType === undefined ? '' : ` on ${fsType}`})`;
  const owner = env.initialNamespace
    ? 'here the initial user namespace, where you are not root'
    : ownerUnknown
      ? 'a user namespace above yours unless your own namespace mounted it'
      : 'a user namespace above yours (a filesystem of this type is mounted only from the initial one)';
  const kernel = `the kernel idmaps a mount (mount_setattr with MOUNT_ATTR_IDMAP) only for a caller with CAP_SYS_ADMIN in the user namespace that owns its filesystem, ${owner}, so it fails with EPERM whether or not you own ${source ?? 'the source'}`;
  const message = rootless
    ? `${file}: ${where}: a rootless runtime (uid ${env.uid}) cannot make this idmapped mount: runc refuses idmapped mounts in every rootless container ("id-mapped mounts are not supported for rootless containers"), and ${kernel}`
    : `${file}: ${where}: the runtime cannot make this idmapped mount: ${kernel}`;
  return refusal(
    'OCI_IDMAP_NOT_PRIVILEGED',
    message,
    "run the container as root of the initial user namespace, or remove this mount's uidMappings, gidMappings and \"idmap\" and give the files the container's IDs instead ('userns shift')",
    {
      file,
      path: `mounts[${m.index}]`,
      destination: m.destination ?? null,
      source: source ?? null,
      fsType: fsType ?? null,
      uid: env.uid,
      initialNamespace: env.initialNamespace,
    },
  );
}

const DIRECTORY = O_PATH | constants.O_DIRECTORY | constants.O_NOFOLLOW;

/** A directory on the way to root.path, pinned by an O_PATH descriptor. */
interface Step {
  dir: string;
  st: Stats;
  fd: number;
}

/** A directory's access ACL for the check: absent, decoded, or not evaluated (and why). */
type StepAcl = { entries: AclEntry[] | undefined } | { unknown: string };

/**
 * The access ACLs of the directories, read through the helper (Node has no getxattr) by their
 * pinned descriptors. ENODATA and EOPNOTSUPP mean none; anything else, or bytes that are not an
 * ACL, is "unknown" with the reason, and so is every directory when the helper cannot run.
 */
function readStepAcls(steps: readonly Step[], readAcls: HostEnvironment['readAcls']): StepAcl[] {
  let reads: AccessAclRead[];
  try {
    reads = readAcls(steps.map((s) => `/proc/${process.pid}/fd/${s.fd}`));
  } catch (error) {
    return steps.map(() => ({ unknown: `its POSIX ACL could not be read (${(error as Error).message})` }));
  }
  return steps.map((_, i) => {
    const read = reads[i];
    if (read === undefined) return { unknown: 'its POSIX ACL could not be read' };
    if ('errno' in read)
      return read.errno === 'ENODATA' || read.errno === 'EOPNOTSUPP'
        ? { entries: undefined }
        : { unknown: `its POSIX ACL could not be read (${read.errno})` };
    const entries = decodeAccessAcl(read.bytes);
    return entries === undefined
      ? {
          unknown: `its system.posix_acl_access xattr (${read.bytes.length} bytes) is not an ACL userns can decode`,
        }
      : { entries };
  });
}

/**
 * Walks from `/` to root.path (relative: to the real bundle directory, as runc resolves it
 * after it changes into the bundle) as the container's root would: every directory on the way
 * and root.path itself must be searchable, by mode bits and POSIX ACL (fs/namei.c
 * acl_permission_check, fs/posix_acl.c posix_acl_permission) or by root's capabilities in the
 * container, which apply only to directories whose owner and group are both mapped into it
 * (docs/oci-runtime-rules.md). A symbolic link on the way is a refusal of its own (runc refuses
 * such a root.path); a path that does not exist (yet), or that this process cannot look at, is
 * a warning; so is a directory whose ACL could not be read, when its mode bits would let root in.
 */
function rootReachability(
  view: ConfigView,
  file: string,
  bundleDir: string,
  env: HostEnvironment,
  result: HostCheckResult,
): void {
  const rootPath = view.rootPath;
  if (rootPath === undefined || rootPath === '') return;
  if (view.userNamespace === undefined || view.userNamespace.path !== null) return;
  if (view.uid === undefined || view.gid === undefined) return;
  const maps = { uidMap: new IdMap(view.uid.extents), gidMap: new IdMap(view.gid.extents) };
  // As root, runc's init drops the supplementary groups (setgroups(0, NULL)); rootless, it cannot.
  const accessor = namespaceAccessor(maps, { uid: 0, gid: 0 }, env.privileged ? [] : env.groups);
  if (accessor === undefined) return; // no container root: refused elsewhere
  const full = isAbsolute(rootPath) ? resolve(rootPath) : resolve(bundleDir, rootPath);
  const parts = full.split('/').filter((p) => p !== '');
  const groups =
    accessor.groups.length === 0 ? 'no supplementary groups' : `groups ${accessor.groups.join(',')}`;
  const who = `the container's root (uid ${accessor.uid}, gid ${accessor.gid} on the host, ${groups})`;
  const blocked = (dir: string, st: Stats, acl: StepAcl): OciError => {
    const entries = 'entries' in acl ? acl.entries : undefined;
    const decision = aclDecision(st, entries, accessor, 1);
    const unmapped = [
      ...(maps.uidMap.toInside(st.uid) === undefined ? [`uid ${st.uid}`] : []),
      ...(maps.gidMap.toInside(st.gid) === undefined ? [`gid ${st.gid}`] : []),
    ];
    const klass = decision.by === 'owner' ? 'u' : decision.by === 'group' ? 'g' : 'o';
    let why: string;
    let fix: string;
    if (decision.by === 'owner' || decision.by === 'group' || decision.by === 'other') {
      why = `the bits for ${decision.by === 'other' ? 'others' : decision.by} do not allow search`;
      if (decision.by !== 'owner' && entries !== undefined)
        why += ' (its POSIX ACL is not consulted: the group bits, its mask, are all clear)';
      fix = `chmod ${klass}+x ${dir}`;
    } else {
      const listed = decision.entries.map(formatAclEntry).join(', ');
      why =
        decision.mask !== undefined
          ? `its POSIX ACL entry ${listed} allows search, but the ACL's mask (${formatAclEntry({ tag: 'mask', perm: decision.mask })}) does not`
          : decision.by === 'acl-user'
            ? `its POSIX ACL entry ${listed} for that uid does not allow search`
            : decision.by === 'acl-group'
              ? `its POSIX ACL's entries for the groups it is in (${listed}) do not allow search`
              : `its POSIX ACL's entry for others (${listed}) does not allow search`;
      fix = decision.mask !== undefined ? `setfacl -m m::x ${dir}` : `setfacl -m u:${accessor.uid}:x ${dir}`;
    }
    const unknown = 'unknown' in acl ? ` (mode bits only: ${acl.unknown}, and it may still allow it)` : '';
    return refusal(
      'OCI_ROOT_UNREACHABLE',
      `${file}: root.path (${rootPath}): runc would fail to start the container with "permission denied" (error preparing rootfs): ${dir} (mode ${formatMode(st.mode)}, owner ${st.uid}:${st.gid}) is not searchable by ${who}: ${why}, and root's capabilities in the container do not apply to it because its ${unmapped.join(' and ')} ${unmapped.length > 1 ? 'are' : 'is'} not mapped into the container${unknown}`,
      `move the bundle under directories the container's root can search, or let it through: ${fix}`,
      {
        file,
        path: 'root.path',
        rootfs: full,
        directory: dir,
        mode: formatMode(st.mode),
        owner: { uid: st.uid, gid: st.gid },
        ...(entries === undefined ? {} : { acl: entries.map(formatAclEntry) }),
        errno: 'EACCES',
        hostRoot: { uid: accessor.uid, gid: accessor.gid, groups: [...accessor.groups] },
      },
    );
  };
  // First pin every directory (as this process), then read their ACLs in one helper run, then
  // decide in order: the first directory the container's root cannot search is the answer, and
  // what stopped the walk (a link, a missing directory) counts only when root gets that far.
  const steps: Step[] = [];
  let end: (() => void) | undefined;
  let fd = openSync('/', DIRECTORY);
  steps.push({ dir: '/', st: fstatSync(fd), fd });
  try {
    for (const name of parts) {
      const dir = steps[steps.length - 1]!.dir;
      const path = join(dir, name);
      const at = `/proc/self/fd/${fd}/${name}`;
      let lst: Stats;
      try {
        lst = lstatSync(at);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        end = () =>
          result.warnings.push(
            code === 'ENOENT'
              ? `root.path ${full} does not exist (${path} is missing): runc refuses a bundle without its root filesystem; checked up to ${dir}`
              : `cannot look at ${path} (${code}) as uid ${env.uid}: whether the container's root can reach root.path ${full} is not checked past ${dir}`,
          );
        break;
      }
      if (lst.isSymbolicLink()) {
        let target = '?';
        try {
          target = readlinkSync(at);
        } catch {
          // gone meanwhile: the link is what counts
        }
        end = () =>
          result.refusals.push(
            refusal(
              'OCI_ROOT_SYMLINK',
              `${file}: root.path (${rootPath}) goes through the symbolic link ${path} (to ${target}): runc refuses it ("invalid rootfs: not an absolute path, or a symlink")`,
              `give root.path as the real directory, without links: ${resolve(dirname(path), target)}${full === path ? '' : full.slice(path.length)}`,
              { file, path: 'root.path', rootfs: full, link: path, target },
            ),
          );
        break;
      }
      if (!lst.isDirectory()) {
        end = () => result.warnings.push(`root.path ${full}: ${path} is not a directory (runc refuses it)`);
        break;
      }
      try {
        fd = openSync(at, DIRECTORY);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        end = () =>
          result.warnings.push(
            `cannot open ${path} (${code}) as uid ${env.uid}: whether the container's root can reach root.path ${full} is not checked past ${dir}`,
          );
        break;
      }
      steps.push({ dir: path, st: fstatSync(fd), fd });
    }
    // Every pinned directory is searched: those on the way to look a name up, root.path itself
    // because runc enters it (the bind mount onto itself, then pivot_root).
    const acls = readStepAcls(steps, env.readAcls);
    for (const [i, step] of steps.entries()) {
      const acl = acls[i]!;
      if (!permits(step.st, accessor, 'search', 'entries' in acl ? acl.entries : undefined)) {
        result.refusals.push(blocked(step.dir, step.st, acl));
        return;
      }
      const capable =
        maps.uidMap.toInside(step.st.uid) !== undefined && maps.gidMap.toInside(step.st.gid) !== undefined;
      if ('unknown' in acl && !capable)
        result.warnings.push(
          `whether ${who} can search ${step.dir} (mode ${formatMode(step.st.mode)}, owner ${step.st.uid}:${step.st.gid}) is not known: ${acl.unknown}; its mode bits allow it, an ACL entry may deny it (runc would then fail with "permission denied")`,
        );
    }
    end?.();
  } finally {
    for (const step of steps) closeSync(step.fd);
  }
}

/**
 * The host checks of an OCI bundle (docs/oci-runtime-rules.md): every idmapped mount must be one
 * the runtime may make here (OCI_IDMAP_NOT_PRIVILEGED), and the container's root must reach
 * root.path without a symbolic link (OCI_ROOT_UNREACHABLE, OCI_ROOT_SYMLINK). `bundleDir` is the
 * bundle directory's real path (runc resolves relative paths from it). Kubernetes records have
 * neither mounts nor a root: nothing to check.
 */
export function checkBundleOnHost(
  view: ConfigView,
  file: string,
  bundleDir: string,
  env: HostEnvironment,
): HostCheckResult {
  const result: HostCheckResult = { refusals: [], warnings: [] };
  if (view.format !== 'oci') return result;
  for (const m of view.mounts) {
    if ((m.uid?.extents.length ?? 0) === 0 && (m.gid?.extents.length ?? 0) === 0) continue;
    const refused = idmapPermission(m, file, bundleDir, env);
    if (refused !== undefined) result.refusals.push(refused);
  }
  rootReachability(view, file, bundleDir, env, result);
  return result;
}

/**
 * Runs the host checks on a document read through the pinned bundle directory `pinnedDir`
 * (`/proc/self/fd/N`): throws the first refusal when `strict` (a check), else returns every
 * finding as a warning (a fill writes the maps and says what the runtime will refuse).
 */
export function hostChecks(
  text: string,
  file: string,
  pinnedDir: string,
  privileged: boolean,
  options: { strict: boolean; format?: BundleFormat | undefined },
): string[] {
  const view = readConfigView(text, file, options.format);
  if (view.format !== 'oci') return [];
  const bundleDir = readlinkSync(pinnedDir);
  const { refusals, warnings } = checkBundleOnHost(view, file, bundleDir, hostEnvironment(privileged));
  if (options.strict && refusals.length > 0) throw refusals[0]!;
  return [...refusals.map((r) => `${r.message} (${r.hint})`), ...warnings];
}
