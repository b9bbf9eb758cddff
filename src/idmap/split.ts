import { MapError } from '../errors/index.js';
import { type Extent, extent, formatRange, formatTriple, type IdKind } from './extent.js';
import { extentsOf, IdMap, type MapLike } from './idmap.js';
import { containingExtent, piecesAcrossParent, sortParent } from './parent-walk.js';
import { insideRanges } from './ranges.js';

/**
 * Splits a requested map so the kernel accepts it in a nested namespace.
 *
 * `request`'s outside IDs are IDs of the current namespace, whose own map is `parent` (as read
 * from /proc/self/uid_map inside it: column 1 = the current namespace's IDs). The kernel requires
 * every line of the request to lie inside ONE line of the parent map and will not split it
 * (docs/kernel-rules.md, "Lines inside the parent's lines"), so each requested extent is cut at
 * every parent-extent boundary.
 * Pieces keep the request's order and are never merged, even when contiguous.
 *
 * Throws MapError NOT_MAPPED_IN_PARENT naming the first requested range the parent does not map.
 */
export function splitAcrossParent(request: MapLike, parent: MapLike, kind: IdKind = 'uid'): IdMap {
  const sorted = sortParent(parent);
  const out: Extent[] = [];
  for (const e of extentsOf(request)) {
    // Fast path: the whole line lies in one parent extent (the common case).
    if (containingExtent(sorted, e.outside, e.count) !== undefined) {
      out.push(e);
      continue;
    }
    for (const piece of piecesAcrossParent(e, sorted)) {
      if (piece.parent === undefined) {
        const available = insideRanges(parent)
          .map((r) => formatRange(r.start, r.count))
          .join(', ');
        throw new MapError(
          'NOT_MAPPED_IN_PARENT',
          `${kind} ${formatRange(piece.outside, piece.count)} (requested by ${formatTriple(e)}) is not mapped in the current user namespace; ` +
            `it has ${kind}s ${available || 'none'}`,
          {
            hint: `request only ${kind}s the current namespace maps (see /proc/self/${kind}_map), or run from a namespace that maps them`,
            data: {
              kind,
              missing: { start: piece.outside, count: piece.count },
              request: [e.inside, e.outside, e.count],
              available: insideRanges(parent).map((r) => [r.start, r.count]),
            },
          },
        );
      }
      out.push(extent(piece.inside, piece.outside, piece.count));
    }
  }
  return new IdMap(out);
}
