/**
 * The tests' oracle for the xattr codecs: the helper's tree walk (src/native/tree-walk.c) owns
 * the real ones; this TypeScript copy builds fixtures and checks what the walk wrote.
 */
import { INVALID_ID } from '../../../src/idmap/extent.js';
import type { IdMap } from '../../../src/idmap/idmap.js';

/**
 * The on-disk form of a POSIX ACL, as the kernel stores it in the `system.posix_acl_access` and
 * `system.posix_acl_default` xattrs (include/uapi/linux/posix_acl_xattr.h): a little-endian
 * u32 version (2), then entries of { u16 tag, u16 perm, u32 id }. Only ACL_USER and ACL_GROUP
 * entries carry an ID; the others hold (u32)-1.
 */
export const ACL_XATTR_VERSION = 2;
export const ACL_UNDEFINED_ID = INVALID_ID;

/** ACL entry tags (ACL_USER_OBJ … ACL_OTHER); only USER and GROUP entries carry an ID. */
export const AclTag = {
  USER_OBJ: 0x01,
  USER: 0x02,
  GROUP_OBJ: 0x04,
  GROUP: 0x08,
  MASK: 0x10,
  OTHER: 0x20,
} as const;

/**
 * One ACL entry: tag ({@link AclTag}), permission bits (rwx = 4|2|1) and ID (uid or gid, or
 * {@link ACL_UNDEFINED_ID}).
 */
export interface AclEntry {
  tag: number;
  perm: number;
  id: number;
}

/** A malformed xattr value (the oracle's own error: userns itself has no TypeScript codec). */
export class AclFormatError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Decodes a `system.posix_acl_access`/`_default` xattr value into its entries, in stored order.
 *
 * @throws AclFormatError for a wrong version or a size that is not 4 + 8 × entries.
 */
export function decodeAcl(bytes: Uint8Array): AclEntry[] {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.length < 4 || (view.length - 4) % 8 !== 0) {
    throw new AclFormatError('ACL_XATTR_SIZE', `a POSIX ACL xattr of ${view.length} bytes is not 4 + 8·n`);
  }
  const version = view.readUInt32LE(0);
  if (version !== ACL_XATTR_VERSION) {
    throw new AclFormatError(
      'ACL_XATTR_VERSION',
      `POSIX ACL xattr version ${version}, expected ${ACL_XATTR_VERSION}`,
    );
  }
  const entries: AclEntry[] = [];
  for (let off = 4; off < view.length; off += 8) {
    entries.push({
      tag: view.readUInt16LE(off),
      perm: view.readUInt16LE(off + 2),
      id: view.readUInt32LE(off + 4),
    });
  }
  return entries;
}

/** Encodes ACL entries as the kernel stores them (version 2, little-endian). */
export function encodeAcl(entries: readonly AclEntry[]): Buffer {
  const out = Buffer.alloc(4 + 8 * entries.length);
  out.writeUInt32LE(ACL_XATTR_VERSION, 0);
  entries.forEach((e, i) => {
    out.writeUInt16LE(e.tag, 4 + i * 8);
    out.writeUInt16LE(e.perm, 6 + i * 8);
    out.writeUInt32LE(e.id, 8 + i * 8);
  });
  return out;
}

/** An ID in an ACL entry that the shift cannot represent. */
export interface UnmappedAclId {
  kind: 'uid' | 'gid';
  id: number;
}

/**
 * The ACL with its named user and group entries moved from `from`'s outside IDs to `to`'s: each
 * ID is looked up outside→inside in `from`, then inside→outside in `to`. Entries whose ID does
 * not map are reported in `unmapped` and left unchanged (the caller decides: error, skip, or the
 * overflow ID).
 */
export function shiftAcl(
  entries: readonly AclEntry[],
  maps: { fromUid: IdMap; toUid: IdMap; fromGid: IdMap; toGid: IdMap },
): { entries: AclEntry[]; unmapped: UnmappedAclId[]; changed: boolean } {
  const unmapped: UnmappedAclId[] = [];
  let changed = false;
  const out = entries.map((e) => {
    const kind = e.tag === AclTag.USER ? 'uid' : e.tag === AclTag.GROUP ? 'gid' : undefined;
    if (kind === undefined) return e;
    const [from, to] = kind === 'uid' ? [maps.fromUid, maps.toUid] : [maps.fromGid, maps.toGid];
    const inside = from.toInside(e.id);
    const shifted = inside === undefined ? undefined : to.toOutside(inside);
    if (shifted === undefined) {
      unmapped.push({ kind, id: e.id });
      return e;
    }
    if (shifted !== e.id) changed = true;
    return { ...e, id: shifted };
  });
  return { entries: out, unmapped, changed };
}
