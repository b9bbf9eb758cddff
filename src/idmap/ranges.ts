import { type Extent, extent } from './extent.js';
import { extentsOf, type MapLike } from './idmap.js';

/** A run of consecutive IDs: [start, start+count). */
export interface IdRange {
  readonly start: number;
  readonly count: number;
}

/** An ID range `{start, count}`: IDs start..start+count-1. */
export function range(start: number, count: number): IdRange {
  return { start, count };
}

/** Sorted, with overlapping and adjacent ranges merged, empty ranges dropped. */
export function normalizeRanges(ranges: Iterable<IdRange>): IdRange[] {
  const sorted = [...ranges].filter((r) => r.count > 0).sort((a, b) => a.start - b.start);
  const out: IdRange[] = [];
  let start = -1;
  let end = -1;
  for (const r of sorted) {
    if (start >= 0 && r.start <= end) {
      end = Math.max(end, r.start + r.count);
      continue;
    }
    if (start >= 0) out.push(range(start, end - start));
    start = r.start;
    end = r.start + r.count;
  }
  if (start >= 0) out.push(range(start, end - start));
  return out;
}

/** The IDs in any of the sets, normalized (sorted, merged). */
export function unionRanges(...sets: Iterable<IdRange>[]): IdRange[] {
  return normalizeRanges(sets.flatMap((s) => [...s]));
}

/** IDs present in both sets. Linear merge of two normalized lists. */
export function intersectRanges(a: Iterable<IdRange>, b: Iterable<IdRange>): IdRange[] {
  const x = normalizeRanges(a);
  const y = normalizeRanges(b);
  const out: IdRange[] = [];
  let i = 0;
  let j = 0;
  while (i < x.length && j < y.length) {
    const p = x[i]!;
    const q = y[j]!;
    const start = Math.max(p.start, q.start);
    const end = Math.min(p.start + p.count, q.start + q.count);
    if (start < end) out.push(range(start, end - start));
    if (p.start + p.count < q.start + q.count) i++;
    else j++;
  }
  return out;
}

/** IDs in `a` that are not in `b`. */
export function subtractRanges(a: Iterable<IdRange>, b: Iterable<IdRange>): IdRange[] {
  const x = normalizeRanges(a);
  const y = normalizeRanges(b);
  const out: IdRange[] = [];
  let j = 0;
  for (const p of x) {
    let start = p.start;
    const end = p.start + p.count;
    while (j < y.length && y[j]!.start + y[j]!.count <= start) j++;
    let k = j;
    while (k < y.length && y[k]!.start < end) {
      const q = y[k]!;
      if (q.start > start) out.push(range(start, q.start - start));
      start = Math.max(start, q.start + q.count);
      k++;
    }
    if (start < end) out.push(range(start, end - start));
  }
  return out;
}

/** Total number of IDs in a set of ranges (after merging overlaps). */
export function rangesSize(ranges: Iterable<IdRange>): number {
  return normalizeRanges(ranges).reduce((sum, r) => sum + r.count, 0);
}

/** The inside IDs a map covers, as normalized ranges. */
export function insideRanges(map: MapLike): IdRange[] {
  return normalizeRanges(extentsOf(map).map((e) => range(e.inside, e.count)));
}

/** The outside IDs a map covers, as normalized ranges. */
export function outsideRanges(map: MapLike): IdRange[] {
  return normalizeRanges(extentsOf(map).map((e) => range(e.outside, e.count)));
}

/** The IDs of `pool` that no map in `used` covers on its outside side. */
export function freeRanges(pool: Iterable<IdRange>, used: Iterable<MapLike>): IdRange[] {
  return subtractRanges(
    pool,
    [...used].flatMap((m) => outsideRanges(m)),
  );
}

/**
 * Takes `count` IDs from the start of `pool` (lowest IDs first) and maps them to consecutive
 * inside IDs from `insideStart`. Returns undefined when the pool holds fewer than `count` IDs.
 * The result has one extent per pool range used.
 */
export function takeFromPool(pool: Iterable<IdRange>, count: number, insideStart = 0): Extent[] | undefined {
  const out: Extent[] = [];
  let needed = count;
  let inside = insideStart;
  for (const r of normalizeRanges(pool)) {
    if (needed === 0) break;
    const n = Math.min(needed, r.count);
    out.push(extent(inside, r.start, n));
    inside += n;
    needed -= n;
  }
  return needed === 0 ? out : undefined;
}
