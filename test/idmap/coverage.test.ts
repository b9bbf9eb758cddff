/** Host-ID coverage (Incus HostIDsCoveredBy): table of Incus's vectors, and a property. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { hostIdsCoveredBy } from '../../src/idmap/coverage.js';
import type { KindedExtent } from '../../src/idmap/extent.js';

const entry = (kind: KindedExtent['kind'], outside: number, count: number, inside = 0): KindedExtent => ({
  kind,
  inside,
  outside,
  count,
});
const covered = (e: KindedExtent, uid?: [number, number][], gid?: [number, number][]) =>
  hostIdsCoveredBy([e], {
    ...(uid === undefined ? {} : { uid: uid.map(([start, count]) => ({ start, count })) }),
    ...(gid === undefined ? {} : { gid: gid.map(([start, count]) => ({ start, count })) }),
  }).ok;

describe('hostIdsCoveredBy (issue 14 item 7)', () => {
  test("Incus's vectors: an entry of a kind needs that kind's list; both needs both", () => {
    const u = entry('uid', 1000, 1);
    const g = entry('gid', 1000, 1);
    const b = entry('both', 1000, 1);
    const one: [number, number][] = [[1000, 1]];
    assert.equal(covered(u), false, 'no lists');
    assert.equal(covered(u, one), true);
    assert.equal(covered(u, undefined, one), false);
    assert.equal(covered(u, one, one), true);
    assert.equal(covered(g, one), false);
    assert.equal(covered(g, undefined, one), true);
    assert.equal(covered(b, one), false);
    assert.equal(covered(b, undefined, one), false);
    assert.equal(covered(b, one, one), true);
    // a range: inside one allowed range, or not
    assert.equal(covered(entry('uid', 1000, 5), [[1000, 5]]), true);
    assert.equal(covered(entry('uid', 1000, 6), [[1000, 5]]), false);
    assert.equal(covered(entry('uid', 999, 5), [[1000, 5]]), false);
  });
  test('adjacent allowed ranges cover together (Incus requires one allowed entry)', () => {
    assert.equal(
      covered(entry('uid', 1000, 10), [
        [1000, 5],
        [1005, 5],
      ]),
      true,
    );
    assert.equal(
      covered(entry('uid', 1000, 10), [
        [1000, 5],
        [1006, 5],
      ]),
      false,
    );
  });
  test('names the first entry and host ID outside the list', () => {
    const r = hostIdsCoveredBy(
      [entry('uid', 100000, 65536), entry('uid', 3000, 2, 65536), entry('uid', 7, 1, 70000)],
      {
        uid: [
          { start: 100000, count: 65536 },
          { start: 3000, count: 1 },
        ],
      },
    );
    assert.deepEqual(
      { ok: r.ok, ...(r.ok ? {} : { kind: r.kind, id: r.id, index: r.index }) },
      { ok: false, kind: 'uid', id: 3001, index: 1 },
    );
    // plain extents take the kind given (or both)
    assert.equal(
      hostIdsCoveredBy([{ inside: 0, outside: 5, count: 1 }], { gid: [{ start: 5, count: 1 }] }, 'gid').ok,
      true,
    );
    assert.equal(
      hostIdsCoveredBy([{ inside: 0, outside: 5, count: 1 }], { gid: [{ start: 5, count: 1 }] }).ok,
      false,
    );
  });
  test('property: covered exactly when every host ID is in an allowed range', () => {
    const small = fc.record({
      start: fc.integer({ min: 0, max: 60 }),
      count: fc.integer({ min: 1, max: 12 }),
    });
    fc.assert(
      fc.property(fc.array(small, { maxLength: 5 }), fc.array(small, { maxLength: 5 }), (map, allowed) => {
        const entries = map.map((r, i) => entry('uid', r.start, r.count, i * 100));
        const r = hostIdsCoveredBy(entries, { uid: allowed });
        const inAllowed = (id: number) => allowed.some((a) => id >= a.start && id < a.start + a.count);
        let firstBad: { index: number; id: number } | undefined;
        for (let i = 0; i < entries.length && firstBad === undefined; i++) {
          for (let id = entries[i]!.outside; id < entries[i]!.outside + entries[i]!.count; id++) {
            if (!inAllowed(id)) {
              firstBad = { index: i, id };
              break;
            }
          }
        }
        if (firstBad === undefined) assert.equal(r.ok, true);
        else assert.deepEqual(r.ok ? null : { index: r.index, id: r.id }, firstBad);
      }),
      { numRuns: 500 },
    );
  });
});
