import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { compose } from '../../src/idmap/compose.js';
import type { Extent } from '../../src/idmap/extent.js';
import { IdMap } from '../../src/idmap/idmap.js';
import { mapsEqual, normalize } from '../../src/idmap/normalize.js';
import { punchHole } from '../../src/idmap/punch.js';
import { splitAcrossParent } from '../../src/idmap/split.js';
import { validateMap } from '../../src/idmap/validate.js';
import { anyExtents, linearLookup, pairs, probeIds, validExtents } from '../arbitraries.js';

describe('lookup', () => {
  test('agrees with a linear scan in both directions, at every boundary', () => {
    fc.assert(
      fc.property(validExtents(), (extents) => {
        const map = new IdMap(extents);
        for (const id of probeIds(extents, 'inside'))
          assert.equal(map.toOutside(id), linearLookup(extents, id, 'inside'));
        for (const id of probeIds(extents, 'outside'))
          assert.equal(map.toInside(id), linearLookup(extents, id, 'outside'));
      }),
    );
  });

  test('clustered extents (many starting in one bucket of the index) and a span up to 2^32', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 2, maxLength: 300 }),
        fc.integer({ min: 0, max: 4294967294 - 2000 }),
        (counts, far) => {
          // Tiny extents packed at 0…, one more far away: all but the last share a few buckets.
          const extents: Extent[] = [];
          let at = 0;
          counts.forEach((count, i) => {
            extents.push({ inside: at, outside: 4294967295 - 1000 - at - count, count });
            at += count + (i % 2);
          });
          const last = Math.max(at + 1, far);
          extents.push({ inside: last, outside: 5000, count: Math.min(500, 4294967295 - last) });
          const map = new IdMap(extents);
          for (const id of [...probeIds(extents, 'inside'), far, 4294967294, 4294967295]) {
            assert.equal(map.toOutside(id), linearLookup(extents, id, 'inside'));
          }
          for (const id of probeIds(extents, 'outside'))
            assert.equal(map.toInside(id), linearLookup(extents, id, 'outside'));
        },
      ),
    );
  });

  test('overlapping (invalid) maps resolve like the kernel: first extent in written order', () => {
    fc.assert(
      fc.property(anyExtents(), fc.integer({ min: 0, max: 260 }), (extents, id) => {
        const map = new IdMap(extents);
        assert.equal(map.toOutside(id), linearLookup(extents, id, 'inside'));
        assert.equal(map.toInside(id), linearLookup(extents, id, 'outside'));
      }),
    );
  });

  test('unmapped IDs are undefined, never a sentinel', () => {
    const map = new IdMap([
      { inside: 0, outside: 1000, count: 1 },
      { inside: 1, outside: 100000, count: 65536 },
    ]);
    assert.equal(map.toOutside(0), 1000);
    assert.equal(map.toOutside(1), 100000);
    assert.equal(map.toOutside(65536), 165535);
    assert.equal(map.toOutside(65537), undefined);
    assert.equal(map.toInside(999), undefined);
    assert.equal(map.toInside(165535), 65536);
    assert.equal(map.toInside(4294967295), undefined);
  });

  test('invert swaps the directions', () => {
    fc.assert(
      fc.property(validExtents(), (extents) => {
        const map = new IdMap(extents);
        const inverse = map.invert();
        for (const id of probeIds(extents, 'inside')) assert.equal(inverse.toInside(id), map.toOutside(id));
      }),
    );
  });
});

describe('normal form', () => {
  test('is idempotent and keeps exactly the same pairs', () => {
    fc.assert(
      fc.property(anyExtents(), (extents) => {
        const once = normalize(extents);
        assert.deepEqual(normalize(once).extents, once.extents);
        assert.deepEqual(pairs(once.extents), pairs(extents));
      }),
    );
  });

  test('is canonical: equal pair sets give identical normal forms', () => {
    fc.assert(
      fc.property(anyExtents(6), anyExtents(6), (a, b) => {
        const same = [...pairs(a)].sort().join() === [...pairs(b)].sort().join();
        assert.equal(mapsEqual(a, b), same);
      }),
    );
  });

  test('merges extents contiguous on both sides, keeps others apart', () => {
    assert.deepEqual(
      normalize([
        { inside: 10, outside: 1010, count: 10 },
        { inside: 0, outside: 1000, count: 10 },
        { inside: 20, outside: 5000, count: 1 },
      ]).toJSON(),
      [
        [0, 1000, 20],
        [20, 5000, 1],
      ],
    );
  });
});

describe('splitAcrossParent', () => {
  /** A parent map plus a request that lies entirely in the parent's inside IDs. */
  const parentAndRequest = validExtents({ maxLength: 8, scale: 'small' }).chain((parent) => {
    const covered = parent.flatMap((e) => Array.from({ length: e.count }, (_, k) => e.inside + k));
    return fc.tuple(
      fc.constant(parent),
      fc.array(
        fc.record({
          at: fc.integer({ min: 0, max: covered.length - 1 }),
          len: fc.integer({ min: 1, max: 30 }),
          inside: fc.integer({ min: 0, max: 1000 }),
        }),
        {
          minLength: 1,
          maxLength: 4,
        },
      ),
      fc.constant(covered),
    );
  });

  test('pieces are equivalent to the request, each inside one parent extent, and accepted', () => {
    fc.assert(
      fc.property(parentAndRequest, ([parent, picks, covered]) => {
        // Build a request of runs of consecutive covered IDs (which may cross parent extents).
        const sorted = [...new Set(covered)].sort((a, b) => a - b);
        const request: Extent[] = [];
        let inside = 0;
        for (const pick of picks) {
          let start = sorted[pick.at]!;
          let len = 1;
          while (len < pick.len && sorted.includes(start + len)) len++;
          if (request.some((r) => start < r.outside + r.count && r.outside < start + len)) continue;
          request.push({ inside, outside: start, count: len });
          inside += len + pick.inside;
          start = 0;
        }
        if (request.length === 0) return;
        const result = splitAcrossParent(request, parent);
        assert.ok(mapsEqual(result, request));
        for (const piece of result.extents) {
          assert.ok(
            parent.some(
              (p) => p.inside <= piece.outside && piece.outside + piece.count <= p.inside + p.count,
            ),
          );
        }
        assert.deepEqual(validateMap(result, { parent }), {
          ok: true,
          errno: null,
          reason: null,
          line: null,
        });
        // Never merged: the number of pieces is exactly the number of parent boundaries crossed + 1 per line.
        assert.ok(result.length >= request.length);
      }),
    );
  });

  test('peer vectors (docs/kernel-rules.md, "Test vectors from peers")', () => {
    const parent = [
      { inside: 0, outside: 1000, count: 1 },
      { inside: 1, outside: 1000000, count: 65536 },
    ];
    assert.deepEqual(splitAcrossParent([{ inside: 0, outside: 0, count: 2 }], parent).toJSON(), [
      [0, 0, 1],
      [1, 1, 1],
    ]);
    const singles = [0, 1, 2, 3].map((i) => ({ inside: i, outside: i, count: 1 }));
    assert.deepEqual(splitAcrossParent([{ inside: 0, outside: 0, count: 4 }], singles).toJSON(), [
      [0, 0, 1],
      [1, 1, 1],
      [2, 2, 1],
      [3, 3, 1],
    ]);
  });

  test('contiguous parent extents are not merged (the kernel does not merge them)', () => {
    const parent = [
      { inside: 0, outside: 100000, count: 10 },
      { inside: 10, outside: 100010, count: 10 },
    ];
    assert.deepEqual(splitAcrossParent([{ inside: 0, outside: 0, count: 20 }], parent).toJSON(), [
      [0, 0, 10],
      [10, 10, 10],
    ]);
  });

  test('an ID the parent does not map is a precise error, not a silent pass-through', () => {
    const parent = [{ inside: 0, outside: 100000, count: 65536 }];
    assert.throws(
      () => splitAcrossParent([{ inside: 0, outside: 65530, count: 10 }], parent),
      (error: Error & { code?: string; data?: Record<string, unknown> }) => {
        assert.equal(error.code, 'NOT_MAPPED_IN_PARENT');
        assert.deepEqual(error.data?.missing, { start: 65536, count: 4 });
        assert.match(error.message, /65536-65539 .*0-65535/);
        return true;
      },
    );
  });
});

describe('compose', () => {
  test('agrees with step-by-step lookups', () => {
    fc.assert(
      fc.property(validExtents({ scale: 'small' }), validExtents({ scale: 'small' }), (child, parent) => {
        const composed = compose(child, parent);
        const c = new IdMap(child);
        const p = new IdMap(parent);
        for (const id of probeIds(child, 'inside')) {
          const mid = c.toOutside(id);
          const expected = mid === undefined ? undefined : p.toOutside(mid);
          assert.equal(composed.toOutside(id), expected);
        }
      }),
    );
  });

  test('rules file example: C = 0 0 100 under P = 0 100000 65536 is 0 100000 100 from init', () => {
    assert.deepEqual(
      compose(
        [{ inside: 0, outside: 0, count: 100 }],
        [{ inside: 0, outside: 100000, count: 65536 }],
      ).toJSON(),
      [[0, 100000, 100]],
    );
  });
});

describe('punchHole', () => {
  test('maps the hole exactly, keeps every other pair that does not collide, stays valid', () => {
    fc.assert(
      fc.property(
        validExtents({ scale: 'small' }),
        fc.record({
          inside: fc.integer({ min: 0, max: 300 }),
          outside: fc.integer({ min: 0, max: 300 }),
          count: fc.integer({ min: 1, max: 30 }),
        }),
        (extents, hole) => {
          const result = punchHole(extents, hole);
          assert.equal(validateMap(result).ok, true);
          const got = pairs(result.extents);
          for (let k = 0; k < hole.count; k++) assert.ok(got.has(`${hole.inside + k}:${hole.outside + k}`));
          for (const pair of pairs(extents)) {
            const [i, o] = pair.split(':').map(Number) as [number, number];
            const collides =
              (i >= hole.inside && i < hole.inside + hole.count) ||
              (o >= hole.outside && o < hole.outside + hole.count);
            assert.equal(
              got.has(pair),
              !collides ||
                (i - hole.inside === o - hole.outside && i >= hole.inside && i < hole.inside + hole.count),
            );
          }
        },
      ),
    );
  });

  test('podman/Incus example: pass host 1000 through as 1000 in 0:100000:65536', () => {
    assert.deepEqual(
      normalize(
        punchHole([{ inside: 0, outside: 100000, count: 65536 }], { inside: 1000, outside: 1000, count: 1 }),
      ).toJSON(),
      [
        [0, 100000, 1000],
        [1000, 1000, 1],
        [1001, 101001, 64535],
      ],
    );
  });
});
