import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  freeRanges,
  type IdRange,
  intersectRanges,
  normalizeRanges,
  rangesSize,
  subtractRanges,
  takeFromPool,
  unionRanges,
} from '../../src/idmap/ranges.js';

const ranges = fc.array(
  fc.record({ start: fc.integer({ min: 0, max: 120 }), count: fc.integer({ min: 0, max: 30 }) }),
  { maxLength: 8 },
);

function idSet(rs: readonly IdRange[]): Set<number> {
  const out = new Set<number>();
  for (const r of rs) for (let k = 0; k < r.count; k++) out.add(r.start + k);
  return out;
}

function sortedIds(set: Set<number>): number[] {
  return [...set].sort((a, b) => a - b);
}

describe('range sets agree with set arithmetic', () => {
  test('normalize: same IDs, sorted, disjoint and not adjacent', () => {
    fc.assert(
      fc.property(ranges, (rs) => {
        const n = normalizeRanges(rs);
        assert.deepEqual(sortedIds(idSet(n)), sortedIds(idSet(rs)));
        for (let i = 1; i < n.length; i++) assert.ok(n[i]!.start > n[i - 1]!.start + n[i - 1]!.count);
      }),
    );
  });

  test('union, intersection, difference', () => {
    fc.assert(
      fc.property(ranges, ranges, (a, b) => {
        const A = idSet(a);
        const B = idSet(b);
        assert.deepEqual(sortedIds(idSet(unionRanges(a, b))), sortedIds(new Set([...A, ...B])));
        assert.deepEqual(
          sortedIds(idSet(intersectRanges(a, b))),
          sortedIds(new Set([...A].filter((x) => B.has(x)))),
        );
        assert.deepEqual(
          sortedIds(idSet(subtractRanges(a, b))),
          sortedIds(new Set([...A].filter((x) => !B.has(x)))),
        );
      }),
    );
  });

  test('free + used = pool', () => {
    fc.assert(
      fc.property(
        ranges,
        fc.array(
          fc.record({ inside: fc.nat(100), outside: fc.nat(150), count: fc.integer({ min: 1, max: 20 }) }),
          { maxLength: 4 },
        ),
        (pool, used) => {
          const free = freeRanges(pool, [used]);
          const usedIds = idSet(used.map((e) => ({ start: e.outside, count: e.count })));
          const poolIds = idSet(pool);
          assert.deepEqual(
            sortedIds(idSet(free)),
            sortedIds(new Set([...poolIds].filter((x) => !usedIds.has(x)))),
          );
          assert.equal(
            rangesSize(free) +
              rangesSize(
                intersectRanges(
                  pool,
                  [...usedIds].map((s) => ({ start: s, count: 1 })),
                ),
              ),
            rangesSize(pool),
          );
        },
      ),
    );
  });

  test('takeFromPool takes the lowest IDs, maps them from insideStart, or says there are too few', () => {
    fc.assert(
      fc.property(ranges, fc.integer({ min: 1, max: 200 }), (pool, want) => {
        const taken = takeFromPool(pool, want);
        const available = rangesSize(pool);
        if (want > available) {
          assert.equal(taken, undefined);
          return;
        }
        assert.ok(taken);
        const outside = sortedIds(idSet(taken.map((e) => ({ start: e.outside, count: e.count }))));
        assert.deepEqual(outside, sortedIds(idSet(pool)).slice(0, want));
        assert.deepEqual(
          sortedIds(idSet(taken.map((e) => ({ start: e.inside, count: e.count })))),
          Array.from({ length: want }, (_, i) => i),
        );
      }),
    );
  });

  test('peer vector (podman auto): [1000,100000) with nothing used, size 65536 → 0:1000:65536', () => {
    assert.deepEqual(takeFromPool([{ start: 1000, count: 99000 }], 65536), [
      { inside: 0, outside: 1000, count: 65536 },
    ]);
  });
});
