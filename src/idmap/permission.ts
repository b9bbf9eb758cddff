import { type Extent, formatTriple, type IdKind } from './extent.js';

/**
 * Who writes a map, as far as the kernel's new_idmap_permitted() cares (docs/kernel-rules.md,
 * "Who may write a map"). All IDs are values in the PARENT namespace of the target (what column 2
 * means).
 */
export interface WriterSituation {
  /**
   * The writing task and the opener of the map file both hold CAP_SETUID (for uid_map) or
   * CAP_SETGID (for gid_map) in the parent namespace. True for root in the initial namespace.
   */
  capSetid: boolean;
  /**
   * For a uid_map line whose outside ID is 0: the opener holds CAP_SETFCAP in the parent
   * namespace (or, when the namespace writes its own map, its creator had CAP_SETFCAP).
   */
  capSetfcap: boolean;
  /** The writer's effective uid and gid, as IDs of the parent namespace. */
  euid: number;
  egid: number;
  /** The writer's euid is the owner of the target namespace (its creator's euid). */
  isOwner: boolean;
  /** The target namespace's setgroups flag at the time of the write. */
  setgroups: 'allow' | 'deny';
}

/** The situation of root in the initial namespace: everything is allowed. */
export const PRIVILEGED_WRITER: WriterSituation = {
  capSetid: true,
  capSetfcap: true,
  euid: 0,
  egid: 0,
  isOwner: true,
  setgroups: 'allow',
};

/** Whether the kernel would let the writer install a map, and if not, why and on which line. */
export type PermissionVerdict =
  | { allowed: true; reason: null }
  | { allowed: false; reason: string; line: number };

/**
 * Predicts whether the kernel lets `writer` install `extents` as the uid or gid map of a new
 * namespace (the EPERM checks of map_write, in the kernel's order; syntax and overlap come first
 * and are checked by validateMap).
 */
export function predictPermission(
  extents: readonly Extent[],
  kind: IdKind,
  writer: WriterSituation,
): PermissionVerdict {
  // verify_root_map(): mapping the parent's uid 0 needs CAP_SETFCAP (Linux 5.12+).
  if (kind === 'uid') {
    const rootLine = extents.findIndex((e) => e.outside === 0);
    if (rootLine >= 0 && !writer.capSetfcap) {
      return {
        allowed: false,
        line: rootLine + 1,
        reason: `line ${rootLine + 1} (${formatTriple(extents[rootLine]!)}) maps the parent namespace's uid 0, which needs CAP_SETFCAP in the parent namespace`,
      };
    }
  }
  // The unprivileged rule: one line of one ID, the writer's own euid/egid, written by the owner.
  if (extents.length === 1 && extents[0]!.count === 1 && writer.isOwner) {
    const id = extents[0]!.outside;
    if (kind === 'uid' && id === writer.euid) return { allowed: true, reason: null };
    if (kind === 'gid' && id === writer.egid && writer.setgroups === 'deny')
      return { allowed: true, reason: null };
  }
  if (writer.capSetid) return { allowed: true, reason: null };
  const cap = kind === 'uid' ? 'CAP_SETUID' : 'CAP_SETGID';
  const own = kind === 'uid' ? `uid ${writer.euid}` : `gid ${writer.egid}`;
  let why: string;
  if (extents.length !== 1 || extents[0]!.count !== 1) {
    why = `without ${cap} in the parent namespace only a single line mapping a single ID (your own ${own}) is allowed, and this map has ${extents.length} line(s) covering ${extents.reduce((s, e) => s + e.count, 0)} ID(s)`;
  } else if (!writer.isOwner) {
    why = `without ${cap} in the parent namespace only the namespace's owner may write a single-ID map`;
  } else if (extents[0]!.outside !== (kind === 'uid' ? writer.euid : writer.egid)) {
    why = `without ${cap} in the parent namespace you may only map your own ${own}, not ${kind} ${extents[0]!.outside}`;
  } else {
    why = `an unprivileged gid_map needs setgroups set to "deny" first (it is "${writer.setgroups}")`;
  }
  return { allowed: false, line: 1, reason: why };
}
