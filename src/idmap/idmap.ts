import { type Extent, extent, formatTriple } from './extent.js';
import { StartIndex } from './start-index.js';

/** Anything the algebra accepts as a map: an IdMap or a plain list of extents. */
export type MapLike = IdMap | readonly Extent[];

/** The extents of an IdMap or an extent list, in written order. */
export function extentsOf(map: MapLike): readonly Extent[] {
  return map instanceof IdMap ? map.extents : map;
}

/**
 * One side's lookup index: extents sorted by that side's start, as parallel typed arrays so a
 * search touches only numbers, with a StartIndex (O(1) for spread-out maps). `overlapping` maps
 * (which the kernel rejects) fall back to a linear scan in written order, which is what the
 * kernel itself does for small maps.
 */
class SideIndex {
  constructor(
    readonly index: StartIndex,
    readonly starts: Float64Array,
    readonly ends: Float64Array, // exclusive
    readonly targets: Float64Array, // the other side's start
    readonly overlapping: boolean,
  ) {}

  static build(extents: readonly Extent[], side: 'inside' | 'outside'): SideIndex {
    const other = side === 'inside' ? 'outside' : 'inside';
    const order = extents.map((_, i) => i).sort((a, b) => extents[a]![side] - extents[b]![side]);
    const n = extents.length;
    const starts = new Float64Array(n);
    const ends = new Float64Array(n);
    const targets = new Float64Array(n);
    let overlapping = false;
    let high = 0;
    for (let k = 0; k < n; k++) {
      const e = extents[order[k]!]!;
      starts[k] = e[side];
      ends[k] = e[side] + e.count;
      targets[k] = e[other];
      if (k > 0 && starts[k]! < ends[k - 1]!) overlapping = true;
      high = Math.max(high, ends[k]!);
    }
    return new SideIndex(new StartIndex(starts, high), starts, ends, targets, overlapping);
  }

  find(id: number): number | undefined {
    const k = this.index.lastAtOrBefore(id);
    if (k < 0 || id >= this.ends[k]!) return undefined;
    return this.targets[k]! + (id - this.starts[k]!);
  }
}

function linearLookup(
  extents: readonly Extent[],
  side: 'inside' | 'outside',
  id: number,
): number | undefined {
  const other = side === 'inside' ? 'outside' : 'inside';
  for (const e of extents) {
    if (id >= e[side] && id < e[side] + e.count) return e[other] + (id - e[side]);
  }
  return undefined;
}

/**
 * An ID map: an ordered list of extents, exactly as written (order matters to the kernel for
 * reading back and for error reporting). The constructor does not validate: invalid maps must be
 * representable so that they can be validated and explained. Lookups are O(log n).
 */
export class IdMap {
  readonly extents: readonly Extent[];
  // Built on first lookup: many maps (split results, parsed input) are never looked up.
  #insideIndex: SideIndex | undefined;
  #outsideIndex: SideIndex | undefined;

  constructor(extents: Iterable<Extent>) {
    const copy: Extent[] = [];
    for (const e of extents) copy.push({ inside: e.inside, outside: e.outside, count: e.count });
    this.extents = Object.freeze(copy);
  }

  /** `map` as an IdMap (itself when it is one). */
  static of(map: MapLike): IdMap {
    return map instanceof IdMap ? map : new IdMap(map);
  }

  /** The identity map of IDs [start, start+count). */
  static identity(start = 0, count = 4294967295 - start): IdMap {
    return new IdMap([extent(start, start, count)]);
  }

  get length(): number {
    return this.extents.length;
  }

  /** Number of IDs mapped (the sum of counts). */
  get size(): number {
    let total = 0;
    for (const e of this.extents) total += e.count;
    return total;
  }

  /** The outside (parent) ID of inside ID `id`, or undefined when `id` is not mapped. */
  toOutside(id: number): number | undefined {
    const index = this.#insideIndex ?? this.#buildIndex('inside');
    return index.overlapping ? linearLookup(this.extents, 'inside', id) : index.find(id);
  }

  /** The inside ID that outside (parent) ID `id` appears as, or undefined when it is not mapped. */
  toInside(id: number): number | undefined {
    const index = this.#outsideIndex ?? this.#buildIndex('outside');
    return index.overlapping ? linearLookup(this.extents, 'outside', id) : index.find(id);
  }

  #buildIndex(side: 'inside' | 'outside'): SideIndex {
    const index = SideIndex.build(this.extents, side);
    if (side === 'inside') this.#insideIndex = index;
    else this.#outsideIndex = index;
    return index;
  }

  /** The same pairs seen from the other side: inside and outside swapped. */
  invert(): IdMap {
    return new IdMap(this.extents.map((e) => extent(e.outside, e.inside, e.count)));
  }

  /** `0:1000:1,1:100000:65536` */
  toString(): string {
    return this.extents.map(formatTriple).join(',');
  }

  /** The extents as `[inside, outside, count]` triples, in written order. */
  toJSON(): [number, number, number][] {
    return this.extents.map((e) => [e.inside, e.outside, e.count]);
  }
}
