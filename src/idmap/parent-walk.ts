import type { Extent } from './extent.js';
import { extentsOf, IdMap, type MapLike } from './idmap.js';
import { StartIndex } from './start-index.js';

/**
 * A parent map's extents sorted by their inside start, for cutting requests at parent-extent
 * boundaries. The parent is a map the kernel accepted, so its inside ranges do not overlap.
 */
export interface SortedParent {
  readonly extents: readonly Extent[];
  readonly starts: Float64Array;
  readonly ends: Float64Array; // exclusive
  readonly index: StartIndex;
  /** Some extents intersect (not a map the kernel accepted). */
  readonly overlapping: boolean;
}

const sortedCache = new WeakMap<IdMap, SortedParent>();

function buildSorted(parent: readonly Extent[]): SortedParent {
  let sorted = true;
  for (let i = 1; i < parent.length && sorted; i++) sorted = parent[i - 1]!.inside <= parent[i]!.inside;
  const extents = sorted ? parent : [...parent].sort((a, b) => a.inside - b.inside);
  const starts = Float64Array.from(extents, (e) => e.inside);
  const ends = Float64Array.from(extents, (e) => e.inside + e.count);
  let overlapping = false;
  let high = 0;
  for (let k = 0; k < starts.length; k++) {
    if (starts[k]! < high) overlapping = true;
    high = Math.max(high, ends[k]!);
  }
  return { extents, starts, ends, index: new StartIndex(starts, high), overlapping };
}

/** The sorted form of a parent map; built once per IdMap (parents are reused across requests). */
export function sortParent(parent: MapLike): SortedParent {
  if (!(parent instanceof IdMap)) return buildSorted(extentsOf(parent));
  let sorted = sortedCache.get(parent);
  if (sorted === undefined) {
    sorted = buildSorted(parent.extents);
    sortedCache.set(parent, sorted);
  }
  return sorted;
}

/** Index of the last parent extent starting at or before `id` (-1 if none). */
export function lastStartingAtOrBefore(parent: SortedParent, id: number): number {
  return parent.index.lastAtOrBefore(id);
}

/** The parent extent that contains all of [start, start+count), or undefined. O(log n). */
export function containingExtent(parent: SortedParent, start: number, count: number): Extent | undefined {
  const i = lastStartingAtOrBefore(parent, start);
  return i >= 0 && start + count <= parent.ends[i]! ? parent.extents[i] : undefined;
}

/** One piece of a requested extent: either inside one parent extent, or not mapped by the parent. */
export interface ParentPiece {
  /** Inside ID of the piece (in the requested map's own namespace). */
  readonly inside: number;
  /** Outside ID of the piece, in the parent namespace (the request's own outside column). */
  readonly outside: number;
  readonly count: number;
  /** The parent extent that contains the piece, or undefined for an unmapped gap. */
  readonly parent: Extent | undefined;
}

/**
 * Cuts `request` at every boundary of the parent's extents, in ascending order of outside IDs.
 * Every ID of the request lands in exactly one piece. O(log n + pieces).
 */
export function piecesAcrossParent(request: Extent, parent: SortedParent): ParentPiece[] {
  const pieces: ParentPiece[] = [];
  const end = request.outside + request.count;
  const { extents } = parent;
  let pos = request.outside;
  // Invariant: index is the last parent extent starting at or before pos (-1 if none).
  let index = lastStartingAtOrBefore(parent, pos);
  while (pos < end) {
    const p = index >= 0 ? extents[index] : undefined;
    if (p !== undefined && pos < p.inside + p.count) {
      const count = Math.min(end, p.inside + p.count) - pos;
      pieces.push({ inside: request.inside + (pos - request.outside), outside: pos, count, parent: p });
      pos += count;
    } else {
      // pos is in a gap: it runs until the next parent extent starts (or the request ends).
      const next = extents[index + 1];
      const gapEnd = next === undefined ? end : Math.min(end, next.inside);
      pieces.push({
        inside: request.inside + (pos - request.outside),
        outside: pos,
        count: gapEnd - pos,
        parent: undefined,
      });
      pos = gapEnd;
    }
    while (index + 1 < extents.length && extents[index + 1]!.inside <= pos) index++;
  }
  return pieces;
}
