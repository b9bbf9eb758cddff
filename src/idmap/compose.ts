import { type Extent, extent } from './extent.js';
import { extentsOf, IdMap, type MapLike } from './idmap.js';
import { piecesAcrossParent, sortParent } from './parent-walk.js';

/**
 * Composes a child map with its parent's map: the child's outside IDs are the parent's inside
 * IDs; the result maps the child's inside IDs straight to the parent's outside IDs (for a parent
 * directly under the initial namespace: host IDs). IDs the parent does not map have no host ID
 * and are dropped (relational composition), so `compose(c, p).toOutside(x)` equals
 * `p.toOutside(c.toOutside(x))` for every x. The child's order is kept; pieces are not merged.
 */
export function compose(child: MapLike, parent: MapLike): IdMap {
  const sorted = sortParent(parent);
  const out: Extent[] = [];
  for (const e of extentsOf(child)) {
    for (const piece of piecesAcrossParent(e, sorted)) {
      const p = piece.parent;
      if (p === undefined) continue;
      out.push(extent(piece.inside, p.outside + (piece.outside - p.inside), piece.count));
    }
  }
  return new IdMap(out);
}
