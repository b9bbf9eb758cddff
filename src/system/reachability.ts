import { lstatSync, readlinkSync, type Stats } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type { IdMap } from '../idmap/idmap.js';
import { type AclEntry, aclDecision } from './posix-acl.js';

/**
 * Path reachability: could a process with given IDs reach a path, the way the kernel decides
 * it? Every directory on the way must be searchable, symbolic links are followed (their targets
 * are walked the same way), and the last inode must allow what is asked (read, execute, search).
 *
 * Rules (Linux fs/namei.c generic_permission() and may_open/exec checks):
 * - exactly one class of mode bits applies: owner when the fsuid owns the inode, else group when
 *   the fsgid or a supplementary group is the inode's group, else other;
 * - capabilities (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) override that, but inside a user
 *   namespace only for inodes whose owner uid AND group gid are both mapped into the namespace
 *   (capable_wrt_inode_uidgid()); a regular file is executable only when at least one x bit is
 *   set, whatever the capabilities; only a regular file can be executed.
 *
 * What is not modelled: POSIX ACLs in findUnreachable (Node cannot read xattrs: a path blocked
 * by its mode bits may still be allowed, or one they allow denied, by an ACL entry; `permits`
 * evaluates an ACL the caller read through the helper, as src/oci/host-checks.ts does), LSMs,
 * noexec mounts. Use the answer to explain a refusal the
 * kernel made, or to decide to stage a copy where it is reachable; never as the only gate.
 *
 * IDs are those of this process's namespace (what stat() shows as owners): `uid`/`gid` of an
 * accessor running inside a user namespace are its OUTSIDE IDs.
 */

/** Who tries: filesystem IDs, supplementary groups, and the inodes capabilities apply to. */
export interface Accessor {
  uid: number;
  gid: number;
  groups: readonly number[];
  /**
   * Capabilities that bypass permission bits: 'all' (root of the initial namespace), or only
   * for inodes whose owner and group are mapped into these outside ranges (root inside a user
   * namespace), or none (default).
   */
  capabilities?: 'all' | { uidMap: IdMap; gidMap: IdMap };
  /** How messages name it, e.g. "uid 0 inside the namespace (uid 100000 outside)". */
  label?: string;
}

export type Need = 'read' | 'execute' | 'search';

/** Why a path cannot be reached: the first component that blocks it. */
export interface Unreachable {
  /** The path asked about. */
  target: string;
  /** The component that blocks (a directory on the way, or the target itself). */
  path: string;
  /** What was needed on `path`: search (a directory on the way), or the final access. */
  need: Need;
  /** The errno the kernel would return. */
  errno: 'EACCES' | 'ENOENT' | 'ENOTDIR' | 'ELOOP';
  /** Mode bits (permission bits only) and owner of `path`; null when it does not exist. */
  mode: number | null;
  owner: { uid: number; gid: number } | null;
  /** One sentence: what blocks, and why the capabilities do not help. */
  reason: string;
}

const MAX_LINKS = 40;

/** "0755". */
export function formatMode(mode: number): string {
  return `0${(mode & 0o7777).toString(8).padStart(3, '0')}`;
}

function inGroup(who: Accessor, gid: number): boolean {
  return who.gid === gid || who.groups.includes(gid);
}

/** Whether the accessor's capabilities apply to an inode owned by uid:gid. */
function capableOver(who: Accessor, uid: number, gid: number): boolean {
  const caps = who.capabilities;
  if (caps === undefined) return false;
  if (caps === 'all') return true;
  return caps.uidMap.toInside(uid) !== undefined && caps.gidMap.toInside(gid) !== undefined;
}

const BITS: Record<Need, number> = { read: 4, execute: 1, search: 1 };

/**
 * The kernel's answer for one inode: mode bits, its access ACL when given (`acl`, decoded by
 * src/system/posix-acl.ts; undefined = none, mode bits only), then capabilities (fs/namei.c
 * generic_permission()).
 */
export function permits(
  st: Pick<Stats, 'mode' | 'uid' | 'gid'> & { isDirectory(): boolean; isFile(): boolean },
  who: Accessor,
  need: Need,
  acl?: readonly AclEntry[],
): boolean {
  if (need === 'execute' && !st.isFile()) return false;
  const mask = BITS[need];
  if (aclDecision(st, acl, who, mask).allowed) return true;
  if (!capableOver(who, st.uid, st.gid)) return false;
  if (need === 'execute') return (st.mode & 0o111) !== 0;
  return true;
}

function who(accessor: Accessor): string {
  return accessor.label ?? `uid ${accessor.uid} (gid ${accessor.gid})`;
}

function describeBlock(st: Stats, accessor: Accessor, need: Need, path: string): string {
  const verb = need === 'search' ? 'searchable' : need === 'read' ? 'readable' : 'executable';
  const klass = accessor.uid === st.uid ? 'its owner' : inGroup(accessor, st.gid) ? 'its group' : 'others';
  let why = `${path} (mode ${formatMode(st.mode)}, owner ${st.uid}:${st.gid}) is not ${verb} by ${who(accessor)}: the bits for ${klass} do not allow it`;
  if (need === 'execute' && !st.isFile()) {
    why = `${path} is not a regular file, so it cannot be executed`;
  } else if (need === 'execute' && (st.mode & 0o111) === 0) {
    why = `${path} (mode ${formatMode(st.mode)}) has no execute bit at all`;
  } else if (accessor.capabilities !== undefined && accessor.capabilities !== 'all') {
    const caps = accessor.capabilities;
    const missing = [
      ...(caps.uidMap.toInside(st.uid) === undefined ? [`uid ${st.uid}`] : []),
      ...(caps.gidMap.toInside(st.gid) === undefined ? [`gid ${st.gid}`] : []),
    ];
    if (missing.length > 0)
      why += `, and its owner ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not mapped into the namespace, so root's capabilities there do not apply to it`;
  }
  return why;
}

/**
 * The first component that keeps `accessor` from doing `need` on `target` (relative paths are
 * resolved against `cwd`), or undefined when every check passes. Looks only with lstat/readlink
 * as this process (which must itself be able to see the path: run it as root for others).
 */
export function findUnreachable(
  target: string,
  accessor: Accessor,
  need: Need,
  cwd: string = process.cwd(),
): Unreachable | undefined {
  const absolute = isAbsolute(target) ? target : resolve(cwd, target);
  const blocked = (
    path: string,
    st: Stats | undefined,
    n: Need,
    errno: Unreachable['errno'],
    reason: string,
  ): Unreachable => ({
    target,
    path,
    need: n,
    errno,
    mode: st === undefined ? null : st.mode & 0o7777,
    owner: st === undefined ? null : { uid: st.uid, gid: st.gid },
    reason,
  });
  let pending = absolute.split('/').filter((c) => c !== '');
  let dir = '/';
  let links = 0;
  let dirStat = lstatSync('/');
  while (pending.length > 0) {
    const name = pending.shift()!;
    // Looking anything up in a directory needs search permission on it.
    if (!permits(dirStat, accessor, 'search'))
      return blocked(dir, dirStat, 'search', 'EACCES', describeBlock(dirStat, accessor, 'search', dir));
    if (name === '.') continue;
    if (name === '..') {
      dir = dirname(dir);
      dirStat = lstatSync(dir);
      continue;
    }
    const path = join(dir, name);
    let st: Stats;
    try {
      st = lstatSync(path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOTDIR') return blocked(dir, dirStat, 'search', 'ENOTDIR', `${dir} is not a directory`);
      return blocked(path, undefined, need, 'ENOENT', `${path} does not exist`);
    }
    if (st.isSymbolicLink()) {
      if (++links > MAX_LINKS)
        return blocked(path, st, need, 'ELOOP', `too many symbolic links on the way to ${target}`);
      const link = readlinkSync(path);
      pending = [...link.split('/').filter((c) => c !== ''), ...pending];
      if (isAbsolute(link)) {
        dir = '/';
        dirStat = lstatSync('/');
      }
      continue;
    }
    if (pending.length > 0) {
      if (!st.isDirectory()) return blocked(path, st, 'search', 'ENOTDIR', `${path} is not a directory`);
      dir = path;
      dirStat = st;
      continue;
    }
    if (!permits(st, accessor, need))
      return blocked(path, st, need, 'EACCES', describeBlock(st, accessor, need, path));
    return undefined;
  }
  // The target resolved to a directory already walked (e.g. "/" or "a/.."): check it.
  if (!permits(dirStat, accessor, need))
    return blocked(dir, dirStat, need, 'EACCES', describeBlock(dirStat, accessor, need, dir));
  return undefined;
}

/**
 * The accessor of a process inside a user namespace: inside IDs `uid`/`gid` translated through
 * the maps (undefined when either is not mapped), capabilities over mapped inodes when it is root
 * inside, and `groups` (outside gids) it keeps: none after setgroups(0, NULL), the creator's
 * when setgroups was denied.
 */
export function namespaceAccessor(
  maps: { uidMap: IdMap; gidMap: IdMap },
  inside: { uid: number; gid: number },
  groups: readonly number[] = [],
): Accessor | undefined {
  const uid = maps.uidMap.toOutside(inside.uid);
  const gid = maps.gidMap.toOutside(inside.gid);
  if (uid === undefined || gid === undefined) return undefined;
  return {
    uid,
    gid,
    groups,
    ...(inside.uid === 0 ? { capabilities: { uidMap: maps.uidMap, gidMap: maps.gidMap } } : {}),
    label: `uid ${inside.uid} inside the namespace (uid ${uid}, gid ${gid} outside)`,
  };
}

/** The same facts as plain JSON (for `data` of errors and `evidence` of doctor findings). */
export function unreachableData(u: Unreachable, accessor: Accessor, inside?: { uid: number; gid: number }) {
  return {
    target: u.target,
    path: u.path,
    need: u.need,
    errno: u.errno,
    mode: u.mode === null ? null : formatMode(u.mode),
    owner: u.owner,
    outside: { uid: accessor.uid, gid: accessor.gid, groups: [...accessor.groups] },
    ...(inside === undefined ? {} : { inside }),
  };
}

/**
 * The first of `needs` that `accessor` cannot reach, or undefined. A path the walk itself cannot
 * look at (this process lacks permission) is passed over: the kernel will say.
 */
export function firstUnreachable(
  needs: readonly { path: string; need: Need }[],
  accessor: Accessor,
): Unreachable | undefined {
  for (const { path, need } of needs) {
    try {
      const blocked = findUnreachable(path, accessor, need);
      if (blocked !== undefined) return blocked;
    } catch {
      // cannot look: leave it to the kernel
    }
  }
  return undefined;
}
