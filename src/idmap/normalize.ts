import { type Extent, extent } from './extent.js';
import { extentsOf, IdMap, type MapLike } from './idmap.js';

/**
 * The normal form of a map: the canonical list of extents for its set of (inside, outside) pairs.
 * Sorted by inside (then outside) with extents merged when they are contiguous on both sides.
 *
 * Pairs on one extent all share the diagonal `outside - inside`; two extents can only merge when
 * they share a diagonal. So the normal form groups by diagonal, unions the inside intervals of
 * each group (overlapping or adjacent), and sorts the result. This makes it canonical for any
 * relation, even an overlapping (invalid) map, so `equals` is exact set equality.
 */
export function normalize(map: MapLike): IdMap {
  const byDiagonal = [...extentsOf(map)]
    .filter((e) => e.count > 0)
    .sort((a, b) => a.outside - a.inside - (b.outside - b.inside) || a.inside - b.inside);
  const merged: Extent[] = [];
  let current: { inside: number; outside: number; end: number } | undefined;
  for (const e of byDiagonal) {
    const end = e.inside + e.count;
    if (current && current.outside - current.inside === e.outside - e.inside && e.inside <= current.end) {
      current.end = Math.max(current.end, end);
      continue;
    }
    if (current) merged.push(extent(current.inside, current.outside, current.end - current.inside));
    current = { inside: e.inside, outside: e.outside, end };
  }
  if (current) merged.push(extent(current.inside, current.outside, current.end - current.inside));
  merged.sort((a, b) => a.inside - b.inside || a.outside - b.outside);
  return new IdMap(merged);
}

/** True when both maps contain exactly the same (inside, outside) pairs. */
export function mapsEqual(a: MapLike, b: MapLike): boolean {
  const x = normalize(a).extents;
  const y = normalize(b).extents;
  return (
    x.length === y.length &&
    x.every((e, i) => e.inside === y[i]!.inside && e.outside === y[i]!.outside && e.count === y[i]!.count)
  );
}
