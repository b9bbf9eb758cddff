import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { UsernsError } from '../../src/errors/index.js';
import type { KindedExtent } from '../../src/idmap/extent.js';
import { detectFormat } from '../../src/idmap/formats/detect.js';
import { FORMAT_NAMES, FORMATS, type FormatName } from '../../src/idmap/formats/index.js';
import { expandKinds } from '../../src/idmap/formats/kinds.js';
import { IdMap } from '../../src/idmap/idmap.js';
import { normalize } from '../../src/idmap/normalize.js';
import { onlyTypedErrors, throwsParse } from './fuzz.js';

const plain = (x: readonly KindedExtent[]) =>
  x.map(({ inside, outside, count }) => ({ inside, outside, count }));
const both = (x: readonly { inside: number; outside: number; count: number }[]) =>
  x.map((e) => ({ ...e, kind: 'both' as const }));

/** Entries with inside IDs 0, 1, 2, … in order: the only layout a subid file can record. */
const sequential = fc
  .array(fc.tuple(fc.integer({ min: 1, max: 100000 }), fc.nat(4000000000)), { minLength: 1, maxLength: 6 })
  .map((parts) => {
    let inside = 0;
    return parts.map(([count, outside]) => {
      const e = { inside, outside, count, kind: 'both' as const };
      inside += count;
      return e;
    });
  });

describe('format registry (map convert)', () => {
  test('every format is registered with a description', () => {
    assert.deepEqual([...FORMAT_NAMES].sort(), [
      'incus',
      'json',
      'kernel',
      'kubernetes',
      'lxc',
      'newuidmap',
      'oci',
      'podman',
      'subid',
      'triples',
      'unshare',
    ]);
    for (const name of FORMAT_NAMES) assert.ok(FORMATS[name].description.length > 10, name);
  });

  test('round trip through every format, and detection of every output', () => {
    const ctx = { owner: 'alice' };
    fc.assert(
      fc.property(sequential, (x) => {
        for (const name of FORMAT_NAMES) {
          const text = FORMATS[name].format(x, ctx);
          let back = FORMATS[name].parse(text, ctx);
          // per-kind formats give a uid copy and a gid copy of 'both' entries; podman normalizes
          if (name === 'oci' || name === 'json') assert.deepEqual(back, x, name);
          else if (name === 'podman') back = both(normalize(plain(back)).extents);
          else if (name === 'lxc' || name === 'kubernetes' || name === 'unshare' || name === 'newuidmap')
            back = both(plain(back.filter((e) => e.kind === 'uid')));
          assert.deepEqual(back, name === 'podman' ? both(normalize(plain(x)).extents) : x, name);
          const detected = detectFormat(text);
          const expected: FormatName[] = name === 'podman' ? ['podman', 'triples'] : [name];
          assert.ok(expected.includes(detected), `${name} output detected as ${detected}: ${text}`);
        }
      }),
      { numRuns: 200 },
    );
  });

  test('any pair converts', () => {
    const x: KindedExtent[] = [
      { inside: 0, outside: 1000, count: 1, kind: 'uid' },
      { inside: 1, outside: 100000, count: 65536, kind: 'uid' },
    ];
    for (const from of FORMAT_NAMES) {
      const text = FORMATS[from].format(x, { kind: 'uid', owner: 'alice' });
      const entries = FORMATS[from].parse(text, { kind: 'uid', owner: 'alice' });
      for (const to of FORMAT_NAMES) {
        const out = FORMATS[to].format(entries, { kind: 'uid', owner: 'alice' });
        const again = FORMATS[to].parse(out, { kind: 'uid', owner: 'alice' }).filter((e) => e.kind !== 'gid');
        assert.deepEqual(plain(again), plain(x), `${from} → ${to}`);
      }
    }
  });

  test('the CLI convert case: uid entries to a bare OCI array', () => {
    const oci = FORMATS.oci.format([{ inside: 0, outside: 100000, count: 65536, kind: 'uid' }], {
      kind: 'uid',
    });
    assert.deepEqual(JSON.parse(oci), [{ containerID: 0, hostID: 100000, size: 65536 }]);
    assert.deepEqual(
      FORMATS.kernel.parse(FORMATS.kernel.format(FORMATS.oci.parse(oci), { kind: 'uid' }), { kind: 'uid' }),
      [{ inside: 0, outside: 100000, count: 65536, kind: 'uid' }],
    );
  });

  test('kinds: single-map formats refuse mixed kinds without a kind, per-kind formats keep them', () => {
    const mixed: KindedExtent[] = [
      { inside: 0, outside: 1000, count: 1, kind: 'uid' },
      { inside: 0, outside: 2000, count: 1, kind: 'gid' },
    ];
    for (const name of ['kernel', 'triples', 'newuidmap'] as const) {
      assert.throws(
        () => FORMATS[name].format(mixed),
        (e: UsernsError) => e.code === 'MIXED_KINDS',
        name,
      );
      assert.equal(
        FORMATS[name].parse(FORMATS[name].format(mixed, { kind: 'gid' }), { kind: 'gid' })[0]!.outside,
        2000,
      );
    }
    for (const name of ['oci', 'kubernetes', 'json', 'lxc', 'incus', 'unshare'] as const) {
      assert.deepEqual(FORMATS[name].parse(FORMATS[name].format(mixed)), expandKinds(mixed), name);
    }
    assert.deepEqual(FORMATS.podman.parse(FORMATS.podman.format(mixed)), mixed);
    assert.deepEqual(FORMATS.podman.parse('0:1:1'), [{ inside: 0, outside: 1, count: 1, kind: 'both' }]);
    // newuidmap's program name says which map it is
    assert.equal(FORMATS.newuidmap.parse('newgidmap 1 0 0 1')[0]!.kind, 'gid');
    assert.equal(FORMATS.newuidmap.format(mixed, { kind: 'gid', pid: 42 }), 'newgidmap 42 0 2000 1');
  });

  test('podman @ and + get the parent through the context', () => {
    const parent = new IdMap([
      { inside: 0, outside: 1000, count: 1 },
      { inside: 1, outside: 100000, count: 65536 },
    ]);
    assert.deepEqual(plain(FORMATS.podman.parse('+1000:@1000', { kind: 'uid', parent })), [
      { inside: 0, outside: 1, count: 1000 },
      { inside: 1000, outside: 0, count: 1 },
      { inside: 1001, outside: 1001, count: 64536 },
    ]);
  });

  test('subid: ranges laid out from inside 0, owner filter, bad lines refused', () => {
    const text = '# delegated ranges\nalice:100000:65536\nbob:200000:65536\nalice:300000:10\n';
    assert.deepEqual(FORMATS.subid.parse(text, { owner: 'alice', kind: 'uid' }), [
      { inside: 0, outside: 100000, count: 65536, kind: 'uid' },
      { inside: 65536, outside: 300000, count: 10, kind: 'uid' },
    ]);
    throwsParse(
      () => FORMATS.subid.parse('alice:100000:65536\nbob:0x10:1\n', { source: '/etc/subuid' }),
      'SUBID_AMBIGUOUS_NUMBER',
      2,
    );
    assert.equal(
      FORMATS.subid.format(both([{ inside: 0, outside: 100000, count: 65536 }]), { owner: 'alice' }),
      'alice:100000:65536\n',
    );
    assert.throws(
      () => FORMATS.subid.format(both([{ inside: 0, outside: 1, count: 1 }])),
      (e: UsernsError) => e.code === 'OWNER_REQUIRED',
    );
    assert.throws(
      () => FORMATS.subid.format(both([{ inside: 5, outside: 1, count: 1 }]), { owner: 'alice' }),
      (e: UsernsError) => e.code === 'NOT_SUBID_LAYOUT',
    );
  });

  test('every parser only throws typed errors on random input', () => {
    const seeds = FORMAT_NAMES.map((name) =>
      FORMATS[name].format(
        [
          { inside: 0, outside: 1000, count: 1, kind: 'uid' },
          { inside: 1, outside: 100000, count: 65536, kind: 'uid' },
        ],
        { kind: 'uid', owner: 'alice' },
      ),
    );
    for (const name of FORMAT_NAMES)
      onlyTypedErrors(
        seeds,
        (t) => FORMATS[name].parse(t, { owner: 'alice' }),
        () => {},
        300,
      );
  });
});
