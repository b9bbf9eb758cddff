import { type Extent, extent } from './extent.js';
import { extentsOf, IdMap, type MapLike } from './idmap.js';

/** The parts of `e` whose IDs on `side` fall outside [start, start+count). */
function cutSide(e: Extent, side: 'inside' | 'outside', start: number, count: number): Extent[] {
  const end = start + count;
  const eStart = e[side];
  const eEnd = eStart + e.count;
  if (end <= eStart || start >= eEnd) return [e];
  const parts: Extent[] = [];
  if (start > eStart) parts.push(extent(e.inside, e.outside, start - eStart));
  if (end < eEnd) {
    const offset = end - eStart;
    parts.push(extent(e.inside + offset, e.outside + offset, eEnd - end));
  }
  return parts;
}

/**
 * Hole punching (podman's `+`, Incus's add-safe): adds `hole` to the map and removes its inside
 * IDs and its outside IDs from every other extent, splitting them as needed, so the result maps
 * `hole` exactly and stays free of overlaps. The other extents keep their order; `hole` is last.
 */
export function punchHole(map: MapLike, hole: Extent): IdMap {
  const out: Extent[] = [];
  for (const e of extentsOf(map)) {
    for (const part of cutSide(e, 'inside', hole.inside, hole.count)) {
      out.push(...cutSide(part, 'outside', hole.outside, hole.count));
    }
  }
  out.push(extent(hole.inside, hole.outside, hole.count));
  return new IdMap(out);
}
