import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { Extent } from '../../src/idmap/extent.js';
import { detectFormat } from '../../src/idmap/formats/detect.js';
import { FORMATS } from '../../src/idmap/formats/index.js';
import { formatPodmanMap, parsePodmanMap } from '../../src/idmap/formats/podman.js';
import { IdMap } from '../../src/idmap/idmap.js';
import { normalize } from '../../src/idmap/normalize.js';
import { pairs, validExtents } from '../arbitraries.js';
import { kindedExtents, onlyTypedErrors, throwsParse, u32Extents } from './fuzz.js';

const triples = (m: IdMap) => m.extents.map((e) => [e.inside, e.outside, e.count]);
const uid = (text: string, parent?: IdMap) => triples(parsePodmanMap(text, { kind: 'uid', parent }));
const map = (...t: [number, number, number][]) =>
  new IdMap(t.map(([inside, outside, count]) => ({ inside, outside, count })));
const rootless = map([0, 1000, 1], [1, 100000, 65536]);

describe('podman --uidmap/--gidmap', () => {
  test('plain triples, size defaulting to 1, sorted and merged', () => {
    assert.deepEqual(uid('0:1000:1,1:100000:65536'), [
      [0, 1000, 1],
      [1, 100000, 65536],
    ]);
    assert.deepEqual(uid('5:5000'), [[5, 5000, 1]]);
    assert.deepEqual(uid('1:2:1,0:1:1'), [[0, 1, 2]]); // sorted by container ID, contiguous merged
    assert.deepEqual(uid('0:1000:1:1:100000:65536'), [
      [0, 1000, 1],
      [1, 100000, 65536],
    ]); // triples chained with ':' in one entry
    assert.deepEqual(uid('0:1:1\n2:3:4 '), [
      [0, 1, 1],
      [2, 3, 4],
    ]);
    assert.deepEqual(uid('0:1:0'), []); // size 0 is ignored, as podman does
    assert.deepEqual(uid(''), []);
    assert.deepEqual(uid('007:010:1'), [[7, 10, 1]]); // Go's ParseUint base 10
  });

  test("podman's own test vectors (pkg/util ParseIDMap tests)", () => {
    assert.deepEqual(uid('0:2000:100000,+1:100:1'), [
      [0, 2000, 1],
      [1, 100, 1],
      [2, 2002, 99998],
    ]);
    assert.deepEqual(uid('0:0:20,24:24:6,+7:1000:2,+12:2000:3,+18:3000:7'), [
      [0, 0, 7],
      [7, 1000, 2],
      [9, 9, 3],
      [12, 2000, 3],
      [15, 15, 3],
      [18, 3000, 7],
      [25, 25, 5],
    ]);
    assert.deepEqual(uid('0:0:20,+10:1:1'), [
      [0, 0, 1],
      [2, 2, 8],
      [10, 1, 1],
      [11, 11, 9],
    ]);
    assert.deepEqual(uid('0:20:10,15:35:10,+8:23:16'), [
      [0, 20, 3],
      [8, 23, 16],
      [24, 44, 1],
    ]);
    assert.deepEqual(uid('u1:3:1,g2:4:2'), [[1, 3, 1]]);
    assert.deepEqual(triples(parsePodmanMap('u1:3:1,g2:4:2', { kind: 'gid' })), [[2, 4, 2]]);
    assert.deepEqual(uid('+100000:@1002:1', map([20, 1002, 1])), [[100000, 20, 1]]);
    assert.deepEqual(uid('+100000:@1002', map([20, 1002, 1])), [[100000, 20, 1]]);
    assert.deepEqual(uid('100:@100000:1', rootless), [[100, 1, 1]]);
  });

  test('@host is translated through the parent (the rootless layout, docs/kernel-rules.md)', () => {
    // host IDs 1000 and 1000000 are inside IDs 0 and 1 of {0→1000:1, 1→1000000:65536}
    assert.deepEqual(uid('0:@1000:1,1:@1000000:1', map([0, 1000, 1], [1, 1000000, 65536])), [[0, 0, 2]]);
    // a range crossing parent extents is fine while it stays contiguous inside
    assert.deepEqual(uid('0:@100000:20', map([0, 100000, 10], [10, 100010, 10])), [[0, 0, 20]]);
    throwsParse(() => uid('0:@1000:2', map([0, 1000, 1], [5, 1001, 1])), 'HOST_RANGE_NOT_CONTIGUOUS', 1, 3);
    throwsParse(() => uid('0:@1000:2', rootless), 'HOST_ID_NOT_MAPPED', 1, 3);
    throwsParse(() => uid('0:1:1,5:@999', rootless), 'HOST_ID_NOT_MAPPED', 1, 9);
    throwsParse(() => uid('0:@1000'), 'PARENT_REQUIRED', 1, 3);
    // an entry for the other kind is skipped before its @ is looked at
    assert.deepEqual(uid('g0:@5:1'), []);
  });

  test('rootless +: fills the rest of the parent from 0 (keep-id layout)', () => {
    assert.deepEqual(uid('+1000:@1000', rootless), [
      [0, 1, 1000],
      [1000, 0, 1],
      [1001, 1001, 64536],
    ]);
    assert.deepEqual(uid('+11:0:1', rootless), [
      [0, 1, 11],
      [11, 0, 1],
      [12, 12, 65525],
    ]); // podman --userns=keep-id:uid=11 gives the same map
    // no fill when the first entry is not a + entry, or without a parent
    assert.deepEqual(uid('0:5:1,+1:0:1', rootless), [
      [0, 5, 1],
      [1, 0, 1],
    ]);
    assert.deepEqual(uid('+1000:0:1'), [[1000, 0, 1]]);
  });

  test('errors', () => {
    throwsParse(() => uid('x0:1:1'), 'UNKNOWN_FLAG', 1, 1);
    throwsParse(() => uid('0:1:1,u:1:1'), 'MISSING_FIELD', 1, 8);
    throwsParse(() => uid(':1:1'), 'MISSING_FIELD', 1, 1);
    throwsParse(() => uid('0'), 'MISSING_FIELD');
    throwsParse(() => uid('0:1:1:2'), 'SYNTAX');
    throwsParse(() => uid('0:1:-1'), 'BAD_NUMBER', 1, 5);
    throwsParse(() => uid('0:4294967296:1'), 'NUMBER_TOO_LARGE', 1, 3);
    throwsParse(() => uid('0::1'), 'MISSING_FIELD', 1, 3);
    throwsParse(() => uid('0:@:1', rootless), 'MISSING_FIELD', 1, 4);
    const e = throwsParse(
      () => parsePodmanMap('0:1:1,1:2:z', { kind: 'uid', source: '--uidmap' }),
      'BAD_NUMBER',
      1,
      11,
    );
    assert.match(e.message, /^--uidmap:1:11: /);
  });

  test('parse(format(x)) is x in podman normal form', () => {
    fc.assert(
      fc.property(u32Extents(0), (x) => {
        assert.deepEqual(parsePodmanMap(formatPodmanMap(x), { kind: 'uid' }).extents, normalize(x).extents);
      }),
    );
    fc.assert(
      fc.property(kindedExtents(), (x) => {
        for (const kind of ['uid', 'gid'] as const) {
          const mine = x.filter((e) => e.kind === 'both' || e.kind === kind);
          assert.deepEqual(
            parsePodmanMap(formatPodmanMap(x), { kind }).extents,
            normalize(mine.filter((e) => e.count > 0)).extents,
          );
        }
      }),
    );
  });

  test('sort and merge match podman for valid maps (only contiguous neighbours merge)', () => {
    const podmanMerge = (x: Extent[]) => {
      const out: Extent[] = [];
      for (const e of [...x].sort((a, b) => a.inside - b.inside)) {
        const last = out[out.length - 1];
        if (last && last.inside + last.count === e.inside && last.outside + last.count === e.outside)
          out[out.length - 1] = { ...last, count: last.count + e.count };
        else out.push(e);
      }
      return out;
    };
    fc.assert(
      fc.property(validExtents({ scale: 'small' }), (x) => {
        assert.deepEqual(parsePodmanMap(formatPodmanMap(x), { kind: 'uid' }).extents, podmanMerge(x));
      }),
    );
  });

  test('+ maps the entry exactly and removes its IDs from everything else', () => {
    fc.assert(
      fc.property(
        validExtents({ scale: 'small' }),
        fc.nat(300),
        fc.nat(300),
        fc.integer({ min: 1, max: 40 }),
        (base, inside, outside, count) => {
          const text = `${formatPodmanMap(base)},+${inside}:${outside}:${count}`;
          const result = parsePodmanMap(text, { kind: 'uid' }).extents;
          const got = pairs(result);
          for (let k = 0; k < count; k++) assert.ok(got.has(`${inside + k}:${outside + k}`));
          for (const p of got) {
            const [i, o] = p.split(':').map(Number) as [number, number];
            const inHole = i >= inside && i < inside + count;
            const outHole = o >= outside && o < outside + count;
            if (inHole || outHole)
              assert.equal(i - inside, o - outside, `pair ${p} collides with the + entry`);
            else assert.ok(pairs(base).has(p));
          }
          for (const p of pairs(base)) {
            const [i, o] = p.split(':').map(Number) as [number, number];
            if (!(i >= inside && i < inside + count) && !(o >= outside && o < outside + count))
              assert.ok(got.has(p), `lost ${p}`);
          }
        },
      ),
    );
  });

  test('detectFormat: podman-only syntax is podman, plain output is triples and parses the same', () => {
    assert.equal(detectFormat('u0:1000:1,g0:2000:1'), 'podman');
    assert.equal(detectFormat('+1000:@1000'), 'podman');
    assert.equal(detectFormat('0:1000'), 'podman');
    fc.assert(
      fc.property(
        kindedExtents(['uid', 'gid', 'both'], 1).filter((x) => x.length > 0),
        (x) => {
          const text = FORMATS.podman.format(x);
          const detected = detectFormat(text);
          if (x.some((e) => e.kind !== 'both')) assert.equal(detected, 'podman');
          else {
            assert.equal(detected, 'triples');
            assert.deepEqual(
              normalize(FORMATS.triples.parse(text)).extents,
              FORMATS.podman.parse(text).map(({ inside, outside, count }) => ({ inside, outside, count })),
            );
          }
        },
      ),
    );
  });

  test('random input never throws anything but typed errors', () => {
    const seeds = [
      '0:1000:1,1:100000:65536',
      '+1000:@1000',
      'u0:@100000:10,g+5:1',
      '0:1000:1:1:100000:65536',
    ];
    // Merging contiguous entries may give a count above 2^32-1 for an invalid map (as podman's
    // own merge would); the validator rejects it. Everything else is u32.
    const check = (r: Extent[]) => {
      for (const e of r)
        assert.ok(Number.isSafeInteger(e.count) && e.inside <= 4294967295 && e.outside <= 4294967295);
    };
    onlyTypedErrors(seeds, (t) => parsePodmanMap(t, { kind: 'uid' }).extents, check);
    onlyTypedErrors(seeds, (t) => parsePodmanMap(t, { kind: 'gid', parent: rootless }).extents, check);
  });
});
