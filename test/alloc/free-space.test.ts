import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { FreeSpace } from '../../src/alloc/free-space.js';
import { blockShape, type Policy, parsePolicy, pickBlock } from '../../src/alloc/policy.js';
import { type IdRange, normalizeRanges, rangesSize, subtractRanges } from '../../src/idmap/ranges.js';

/** A model allocator on plain sorted arrays: obviously right, linear. */
function modelFit(free: IdRange[], size: number, align: number): number | undefined {
  for (const g of free) {
    const c = Math.ceil(g.start / align) * align;
    if (c + size <= g.start + g.count) return c;
  }
  return undefined;
}

const pools = fc
  .array(
    fc.record({ start: fc.integer({ min: 0, max: 2_000_000 }), count: fc.integer({ min: 1, max: 400_000 }) }),
    {
      minLength: 1,
      maxLength: 4,
    },
  )
  .map((rs) => normalizeRanges(rs));

const policies: fc.Arbitrary<Policy> = fc.oneof(
  fc.constant<Policy>({ kind: 'first-fit' }),
  fc.constantFrom<Policy>({ kind: 'slot', slotSize: 65536 }, { kind: 'slot', slotSize: 131072 }),
  fc.integer({ min: 0, max: 2_400_000 }).map<Policy>((base) => ({ kind: 'base', base })),
);

type Op = { op: 'alloc'; size: number; policy: Policy } | { op: 'release'; pick: number };

const ops: fc.Arbitrary<Op[]> = fc.array(
  fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({
        op: fc.constant('alloc' as const),
        size: fc.integer({ min: 1, max: 150_000 }),
        policy: policies,
      }),
    },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('release' as const), pick: fc.nat() }) },
  ),
  { maxLength: 60 },
);

interface Live {
  start: number;
  count: number;
}

function checkInvariants(pool: IdRange[], free: FreeSpace, live: Live[]): void {
  // No two live allocations overlap.
  const sorted = [...live].sort((a, b) => a.start - b.start);
  for (let i = 1; i < sorted.length; i++) {
    assert.ok(sorted[i]!.start >= sorted[i - 1]!.start + sorted[i - 1]!.count, 'live allocations overlap');
  }
  // Every live allocation lies in the pool.
  assert.deepEqual(subtractRanges(live, pool), []);
  // free + used = pool, and free is exactly pool − used.
  const used = rangesSize(live);
  assert.equal(free.total + used, rangesSize(pool));
  assert.deepEqual(free.ranges(), subtractRanges(pool, live));
  assert.equal(free.largest, Math.max(0, ...free.ranges().map((r) => r.count)));
}

describe('FreeSpace + policies (model-checked)', () => {
  test('random allocate/release sequences: no overlap, free + used = pool, same answers as a linear model', () => {
    fc.assert(
      fc.property(pools, ops, (pool, sequence) => {
        const free = new FreeSpace(pool);
        const live: Live[] = [];
        for (const step of sequence) {
          if (step.op === 'alloc') {
            const { reserve, align } = blockShape(step.policy, step.size);
            const start = pickBlock(free, step.policy, step.size);
            const model = subtractRanges(pool, live);
            let expected: number | undefined;
            if (step.policy.kind === 'base') {
              const b = step.policy.base;
              expected = model.some((g) => g.start <= b && b + reserve <= g.start + g.count) ? b : undefined;
            } else expected = modelFit(model, reserve, align);
            assert.equal(start, expected);
            if (start === undefined) continue;
            assert.equal(start % align, 0, 'aligned');
            free.carve(start, reserve);
            live.push({ start, count: reserve });
          } else if (live.length > 0) {
            const [gone] = live.splice(step.pick % live.length, 1);
            free.release(gone!.start, gone!.count);
          }
          checkInvariants(pool, free, live);
        }
      }),
      { numRuns: 300 },
    );
  });

  test('release then allocate the same size reuses the space (first fit takes the lowest)', () => {
    fc.assert(
      fc.property(
        pools,
        fc.array(fc.integer({ min: 1, max: 50_000 }), { minLength: 1, maxLength: 20 }),
        fc.nat(),
        (pool, sizes, pick) => {
          const free = new FreeSpace(pool);
          const live: Live[] = [];
          for (const size of sizes) {
            const start = free.findFit({ size });
            if (start === undefined) break;
            free.carve(start, size);
            live.push({ start, count: size });
          }
          if (live.length === 0) return;
          const [gone] = live.splice(pick % live.length, 1);
          free.release(gone!.start, gone!.count);
          const again = free.findFit({ size: gone!.count });
          assert.ok(again !== undefined && again <= gone!.start, `reused: ${again} ≤ ${gone!.start}`);
          checkInvariants(pool, free, live);
        },
      ),
      { numRuns: 300 },
    );
  });

  test('carving ranges that reach outside the free space ignores what is not free', () => {
    fc.assert(
      fc.property(
        pools,
        fc.array(
          fc.record({
            start: fc.integer({ min: 0, max: 2_500_000 }),
            count: fc.integer({ min: 1, max: 300_000 }),
          }),
          {
            maxLength: 12,
          },
        ),
        (pool, cuts) => {
          const free = new FreeSpace(pool);
          for (const c of cuts) free.carve(c.start, c.count);
          assert.deepEqual(free.ranges(), subtractRanges(pool, cuts));
          assert.equal(free.total, rangesSize(subtractRanges(pool, cuts)));
        },
      ),
      { numRuns: 300 },
    );
  });

  test('first fit over 10,000 allocations does not scan them (timing sanity)', () => {
    const free = new FreeSpace([{ start: 0x80000, count: 0x6ff80000 }]);
    for (let i = 0; i < 10_000; i++) free.carve(0x80000 + i * 100_000, 65536);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 10_000; i++) free.findFit({ size: 100_000 });
    const perSearchUs = Number(process.hrtime.bigint() - t0) / 10_000 / 1000;
    assert.ok(perSearchUs < 200, `${perSearchUs} µs per search`);
  });

  test('policy parsing', () => {
    assert.deepEqual(parsePolicy('first-fit'), { kind: 'first-fit' });
    assert.deepEqual(parsePolicy('slot'), { kind: 'slot', slotSize: 65536 });
    assert.deepEqual(parsePolicy('slot:131072'), { kind: 'slot', slotSize: 131072 });
    assert.deepEqual(parsePolicy('base:0x80000'), { kind: 'base', base: 0x80000 });
    for (const bad of ['slot:1000', 'slot:0', 'base:x', 'random', 'base:4294967295']) {
      assert.throws(() => parsePolicy(bad), { code: 'USAGE' }, bad);
    }
    assert.deepEqual(blockShape({ kind: 'slot', slotSize: 65536 }, 70000), { reserve: 131072, align: 65536 });
  });
});
