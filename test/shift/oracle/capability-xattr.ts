/**
 * The tests' oracle for the xattr codecs: the helper's tree walk (src/native/tree-walk.c) owns
 * the real ones; this TypeScript copy builds fixtures and checks what the walk wrote.
 */
import type { IdMap } from '../../../src/idmap/idmap.js';

/**
 * File capabilities as stored in the `security.capability` xattr (include/uapi/linux/capability.h,
 * struct vfs_cap_data / vfs_ns_cap_data), little-endian:
 *   u32 magic_etc  = revision (high byte) | VFS_CAP_FLAGS_EFFECTIVE (bit 0)
 *   revision 1: one {permitted, inheritable} pair (12 bytes)
 *   revision 2: two pairs, for capabilities 0-31 and 32-63 (20 bytes)
 *   revision 3: revision 2 + u32 rootid (24 bytes): the capabilities apply only in user
 *               namespaces whose root is `rootid` (a uid of the filesystem's namespace).
 * A revision 1 or 2 xattr behaves as rootid 0.
 */
export const VFS_CAP_REVISION_1 = 0x01000000;
export const VFS_CAP_REVISION_2 = 0x02000000;
export const VFS_CAP_REVISION_3 = 0x03000000;
const REVISION_MASK = 0xff000000;
export const VFS_CAP_FLAGS_EFFECTIVE = 0x000001;

/**
 * A decoded security.capability xattr: revision, effective bit, permitted and inheritable sets,
 * and (revision 3) the root uid of the namespace it belongs to.
 */
export interface FileCapability {
  revision: 1 | 2 | 3;
  effective: boolean;
  /** permitted and inheritable, as [low 32, high 32] words (revision 1 has only the low word). */
  permitted: [number, number];
  inheritable: [number, number];
  /** The uid that is root where these capabilities apply (0 for revisions 1 and 2). */
  rootid: number;
}

/** A malformed xattr value (the oracle's own error: userns itself has no TypeScript codec). */
export class CapabilityFormatError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Decodes a security.capability xattr value (little-endian `vfs_ns_cap_data`).
 *
 * @throws CapabilityFormatError for a value of the wrong size or an unknown revision.
 */
export function decodeCapability(bytes: Uint8Array): FileCapability {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.length < 4)
    throw new CapabilityFormatError(
      'CAP_XATTR_SIZE',
      `security.capability of ${view.length} bytes is too short`,
    );
  const magic = view.readUInt32LE(0);
  const revision = (magic & REVISION_MASK) >>> 0;
  const effective = (magic & VFS_CAP_FLAGS_EFFECTIVE) !== 0;
  const expected =
    revision === VFS_CAP_REVISION_1
      ? 12
      : revision === VFS_CAP_REVISION_2
        ? 20
        : revision === VFS_CAP_REVISION_3
          ? 24
          : -1;
  if (expected < 0)
    throw new CapabilityFormatError(
      'CAP_XATTR_REVISION',
      `unknown security.capability revision 0x${revision.toString(16)}`,
    );
  if (view.length !== expected) {
    throw new CapabilityFormatError(
      'CAP_XATTR_SIZE',
      `security.capability revision ${revision >>> 24} must be ${expected} bytes, not ${view.length}`,
    );
  }
  const permitted: [number, number] = [
    view.readUInt32LE(4),
    revision === VFS_CAP_REVISION_1 ? 0 : view.readUInt32LE(12),
  ];
  const inheritable: [number, number] = [
    view.readUInt32LE(8),
    revision === VFS_CAP_REVISION_1 ? 0 : view.readUInt32LE(16),
  ];
  return {
    revision: (revision >>> 24) as 1 | 2 | 3,
    effective,
    permitted,
    inheritable,
    rootid: revision === VFS_CAP_REVISION_3 ? view.readUInt32LE(20) : 0,
  };
}

/** Encodes a capability as the kernel stores it (12, 20 or 24 bytes by revision). */
export function encodeCapability(cap: FileCapability): Buffer {
  const revision =
    cap.revision === 1 ? VFS_CAP_REVISION_1 : cap.revision === 2 ? VFS_CAP_REVISION_2 : VFS_CAP_REVISION_3;
  const size = cap.revision === 1 ? 12 : cap.revision === 2 ? 20 : 24;
  const out = Buffer.alloc(size);
  out.writeUInt32LE((revision | (cap.effective ? VFS_CAP_FLAGS_EFFECTIVE : 0)) >>> 0, 0);
  out.writeUInt32LE(cap.permitted[0] >>> 0, 4);
  out.writeUInt32LE(cap.inheritable[0] >>> 0, 8);
  if (cap.revision !== 1) {
    out.writeUInt32LE(cap.permitted[1] >>> 0, 12);
    out.writeUInt32LE(cap.inheritable[1] >>> 0, 16);
  }
  if (cap.revision === 3) out.writeUInt32LE(cap.rootid >>> 0, 20);
  return out;
}

/**
 * Moves file capabilities from `from`'s ownership to `to`'s: the root they apply to (rootid, 0
 * for revisions 1 and 2) is looked up outside→inside in `from`, then inside→outside in `to`.
 * A result of 0 is written as revision 2 (valid everywhere, as before); anything else as
 * revision 3 with that rootid, so the capabilities work only for the container's own root.
 * undefined when the root ID does not map.
 */
export function shiftCapability(
  cap: FileCapability,
  fromUid: IdMap,
  toUid: IdMap,
): FileCapability | undefined {
  const inside = fromUid.toInside(cap.rootid);
  const rootid = inside === undefined ? undefined : toUid.toOutside(inside);
  if (rootid === undefined) return undefined;
  if (rootid === 0) return { ...cap, revision: cap.revision === 1 ? 1 : 2, rootid: 0 };
  return { ...cap, revision: 3, rootid };
}
