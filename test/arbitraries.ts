import fc from 'fast-check';
import type { Extent } from '../src/idmap/extent.js';

const LIMIT = 4294967295; // exclusive end of every valid range

/**
 * A valid map (what the kernel accepts, ignoring the parent): disjoint inside ranges, disjoint
 * outside ranges, in random written order. `scale` keeps IDs small (so ranges collide often in
 * other generators) or spreads them over the whole u32 space.
 */
export function validExtents(
  options: { maxLength?: number; scale?: 'small' | 'full' } = {},
): fc.Arbitrary<Extent[]> {
  const maxLength = options.maxLength ?? 12;
  const maxGap = options.scale === 'small' ? 50 : 400_000_000;
  const maxCount = options.scale === 'small' ? 50 : 100_000_000;
  return fc
    .array(
      fc.record({
        count: fc.integer({ min: 1, max: maxCount }),
        gapIn: fc.integer({ min: 0, max: maxGap }),
        gapOut: fc.integer({ min: 0, max: maxGap }),
      }),
      { minLength: 1, maxLength },
    )
    .chain((parts) =>
      fc.tuple(
        fc.constant(parts),
        fc.shuffledSubarray([...parts.keys()], { minLength: parts.length, maxLength: parts.length }),
        fc.shuffledSubarray([...parts.keys()], { minLength: parts.length, maxLength: parts.length }),
      ),
    )
    .map(([parts, outsideOrder, writtenOrder]) => {
      // Lay the inside ranges out in order, the outside ranges in a shuffled order.
      const insideStart: number[] = [];
      let pos = 0;
      for (const p of parts) {
        pos += p.gapIn;
        insideStart.push(pos);
        pos += p.count;
      }
      const outsideStart: number[] = new Array(parts.length);
      pos = 0;
      for (const i of outsideOrder) {
        pos += parts[i]!.gapIn > 0 ? parts[i]!.gapOut : 0;
        outsideStart[i] = pos;
        pos += parts[i]!.count;
      }
      const extents = parts.map((p, i) => ({
        inside: insideStart[i]!,
        outside: outsideStart[i]!,
        count: p.count,
      }));
      return writtenOrder
        .map((i) => extents[i]!)
        .filter((e) => e.inside + e.count <= LIMIT && e.outside + e.count <= LIMIT);
    })
    .filter((extents) => extents.length > 0);
}

/** Any extents at all (may overlap, may be invalid): for the validator and the normal form. */
export function anyExtents(maxLength = 10): fc.Arbitrary<Extent[]> {
  return fc.array(
    fc.record({
      inside: fc.integer({ min: 0, max: 200 }),
      outside: fc.integer({ min: 0, max: 200 }),
      count: fc.integer({ min: 1, max: 40 }),
    }),
    { minLength: 0, maxLength },
  );
}

/** Reference lookup: first extent in written order containing `id` (what the kernel does). */
export function linearLookup(
  extents: readonly Extent[],
  id: number,
  side: 'inside' | 'outside',
): number | undefined {
  const other = side === 'inside' ? 'outside' : 'inside';
  for (const e of extents) if (id >= e[side] && id < e[side] + e.count) return e[other] + (id - e[side]);
  return undefined;
}

/** IDs worth probing for a map: every boundary and its neighbours. */
export function probeIds(extents: readonly Extent[], side: 'inside' | 'outside'): number[] {
  const ids = new Set<number>([0, 4294967294]);
  for (const e of extents) {
    for (const d of [-1, 0, 1]) {
      ids.add(e[side] + d);
      ids.add(e[side] + e.count - 1 + d);
    }
  }
  return [...ids].filter((id) => id >= 0 && id <= 4294967295);
}

/** All (inside, outside) pairs of a small map, as "i:o" strings. */
export function pairs(extents: readonly Extent[]): Set<string> {
  const out = new Set<string>();
  for (const e of extents) for (let k = 0; k < e.count; k++) out.add(`${e.inside + k}:${e.outside + k}`);
  return out;
}
