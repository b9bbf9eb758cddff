/**
 * The unit of every ID map: `count` consecutive IDs starting at `inside` (in the namespace the map
 * belongs to) correspond to `count` consecutive IDs starting at `outside` (in its parent).
 *
 * All three are unsigned 32-bit values held in JS numbers (exact up to 2^53, so sums never lose
 * precision). 4294967295 = (u32)-1 is the kernel's "no ID" and can never be mapped.
 */
export interface Extent {
  readonly inside: number;
  readonly outside: number;
  readonly count: number;
}

/** User IDs or group IDs: which of a namespace's two maps (uid_map, gid_map) something is about. */
export type IdKind = 'uid' | 'gid';

/** Which IDs an entry of a kind-carrying format (LXC, Incus, podman `u`/`g`) applies to. */
export type ExtentKind = IdKind | 'both';

/** An extent tagged with the kind of IDs it maps. */
export interface KindedExtent extends Extent {
  readonly kind: ExtentKind;
}

/**
 * (u32)-1 = 4294967295: the kernel's invalid ID and the largest value a u32 field may hold; never
 * a valid start, and the exclusive upper bound of any range.
 */
export const INVALID_ID = 4294967295;
/** The largest ID that can be mapped. */
export const MAX_MAPPABLE_ID = 4294967294;
/** The kernel's limit on lines in one map (UID_GID_MAP_MAX_EXTENTS). */
export const MAX_EXTENTS = 340;

/** An extent `{inside, outside, count}`: IDs inside..inside+count-1 map to outside..outside+count-1. */
export function extent(inside: number, outside: number, count: number): Extent {
  return { inside, outside, count };
}

/** True when `value` is an integer in [0, 4294967295]. */
export function isU32(value: number): boolean {
  return Number.isInteger(value) && value >= 0 && value <= INVALID_ID;
}

/** Inclusive last inside ID of an extent. */
export function insideLast(e: Extent): number {
  return e.inside + e.count - 1;
}

/** Inclusive last outside ID of an extent. */
export function outsideLast(e: Extent): number {
  return e.outside + e.count - 1;
}

/** Whether two extents are the same three numbers. */
export function sameExtent(a: Extent, b: Extent): boolean {
  return a.inside === b.inside && a.outside === b.outside && a.count === b.count;
}

/** `0:100000:65536` — the triple notation used in messages and by `--uidmap`. */
export function formatTriple(e: Extent): string {
  return `${e.inside}:${e.outside}:${e.count}`;
}

/** `[100000-165535]` — an inclusive range, for messages. */
export function formatRange(start: number, count: number): string {
  return count === 1 ? `${start}` : `${start}-${start + count - 1}`;
}
