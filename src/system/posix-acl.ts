/**
 * POSIX access ACLs (the `system.posix_acl_access` xattr) and who they let in, the way the
 * kernel decides it: the xattr's layout (include/uapi/linux/posix_acl_xattr.h) and the POSIX.1e
 * check of fs/posix_acl.c posix_acl_permission(), as fs/namei.c acl_permission_check() calls it.
 * Pure: the bytes are read elsewhere (src/native/nsfs.ts readAccessAcls, through the helper).
 * The rules, with the cases measured against the kernel, are in docs/oci-runtime-rules.md.
 */

/** Entry tags (ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER). */
export type AclTag = 'user_obj' | 'user' | 'group_obj' | 'group' | 'mask' | 'other';

/** One entry: its tag, its permission bits (4 read, 2 write, 1 execute/search), its ID (user, group only). */
export interface AclEntry {
  tag: AclTag;
  perm: number;
  id?: number;
}

const TAGS: Record<number, AclTag> = {
  1: 'user_obj',
  2: 'user',
  4: 'group_obj',
  8: 'group',
  16: 'mask',
  32: 'other',
};

/** The only xattr format version (POSIX_ACL_XATTR_VERSION). */
const XATTR_VERSION = 2;

/**
 * Decodes the xattr: a little-endian u32 version (2), then 8-byte entries (u16 tag, u16 perm,
 * u32 id). Undefined when the bytes are not such an ACL (wrong version or size, unknown tag), so
 * the caller can say it could not evaluate it rather than guess.
 */
export function decodeAccessAcl(bytes: Uint8Array): AclEntry[] | undefined {
  if (bytes.length < 4 || (bytes.length - 4) % 8 !== 0) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== XATTR_VERSION) return undefined;
  const entries: AclEntry[] = [];
  for (let at = 4; at < bytes.length; at += 8) {
    const tag = TAGS[view.getUint16(at, true)];
    if (tag === undefined) return undefined;
    const perm = view.getUint16(at + 2, true) & 7;
    entries.push(
      tag === 'user' || tag === 'group' ? { tag, perm, id: view.getUint32(at + 4, true) } : { tag, perm },
    );
  }
  return entries;
}

/** Who asks: filesystem uid, gid and supplementary groups (as stat() shows owners here). */
export interface AclSubject {
  uid: number;
  gid: number;
  groups: readonly number[];
}

/**
 * What decided an answer: a class of mode bits (`owner`, `group`, `other`: no ACL consulted), or
 * the ACL: `acl-user` (a named user entry), `acl-group` (the matching group entries: owning group
 * and named groups), `acl-other` (its other entry). `entries` are the deciding entries, `mask`
 * the mask entry's bits when it cut a named user or group entry.
 */
export interface AclDecision {
  allowed: boolean;
  by: 'owner' | 'group' | 'other' | 'acl-user' | 'acl-group' | 'acl-other';
  entries: AclEntry[];
  mask?: number;
}

/**
 * What the kernel's mode and ACL check (without capabilities) answers for `want` (permission
 * bits: 1 search/execute, 4 read, 2 write) on an inode with `mode`, owner `uid:gid` and access
 * ACL `acl` (undefined: none), and what decided it. fs/namei.c acl_permission_check(): the owner
 * gets the owner bits, ACL or not; else, when the inode has an ACL and its group bits (the mask)
 * are not all clear, posix_acl_permission() decides: the named user entry of the uid (limited by
 * the mask); else the owning group and named group entries that match (the first that grants,
 * limited by the mask; if some match and none grants: denied); else the other entry. Without an
 * ACL (or with group bits 0) the group bits apply to members of the owning group, the other bits
 * to everyone else. An ACL without an other entry is malformed (the kernel's -EIO): denied.
 */
export function aclDecision(
  st: { mode: number; uid: number; gid: number },
  acl: readonly AclEntry[] | undefined,
  who: AclSubject,
  want: number,
): AclDecision {
  const inGroup = (gid: number) => who.gid === gid || who.groups.includes(gid);
  const mode = st.mode & 0o777;
  const grants = (perm: number) => (perm & want) === want;
  if (who.uid === st.uid) return { allowed: grants(mode >> 6), by: 'owner', entries: [] };
  if (acl !== undefined && (mode & 0o070) !== 0) {
    const maskEntry = acl.find((e) => e.tag === 'mask');
    const masked = (e: AclEntry, by: 'acl-user' | 'acl-group', entries: AclEntry[]): AclDecision => {
      const allowed = grants(e.perm & (maskEntry?.perm ?? 7));
      return {
        allowed,
        by,
        entries,
        ...(grants(e.perm) && !allowed && maskEntry !== undefined ? { mask: maskEntry.perm } : {}),
      };
    };
    const matched: AclEntry[] = [];
    for (const e of acl) {
      if (e.tag === 'user' && e.id === who.uid) return masked(e, 'acl-user', [e]);
      if ((e.tag === 'group_obj' && inGroup(st.gid)) || (e.tag === 'group' && inGroup(e.id!))) {
        matched.push(e);
        if (grants(e.perm)) return masked(e, 'acl-group', [e]);
      }
      if (e.tag === 'other') {
        if (matched.length > 0) return { allowed: false, by: 'acl-group', entries: matched };
        return { allowed: grants(e.perm), by: 'acl-other', entries: [e] };
      }
    }
    return { allowed: false, by: 'acl-other', entries: [] };
  }
  // Group membership matters only where the group and other bits differ (acl_permission_check).
  if ((want & (mode ^ (mode >> 3))) !== 0 && inGroup(st.gid))
    return { allowed: grants(mode >> 3), by: 'group', entries: [] };
  return {
    allowed: grants(mode),
    by: (want & (mode ^ (mode >> 3))) === 0 && inGroup(st.gid) ? 'group' : 'other',
    entries: [],
  };
}

/** "user:100000:--x", "group::r-x", "mask::r-x", "other::---" (getfacl's spelling). */
export function formatAclEntry(e: AclEntry): string {
  const perm = `${e.perm & 4 ? 'r' : '-'}${e.perm & 2 ? 'w' : '-'}${e.perm & 1 ? 'x' : '-'}`;
  const tag = e.tag === 'user_obj' ? 'user' : e.tag === 'group_obj' ? 'group' : e.tag;
  return `${tag}:${e.id ?? ''}:${perm}`;
}
