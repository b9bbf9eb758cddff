import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { KindedExtent } from '../../src/idmap/extent.js';
import { detectFormat } from '../../src/idmap/formats/detect.js';
import { formatLxcIdmap, parseLxcIdmap } from '../../src/idmap/formats/lxc.js';
import { assertU32Extents, kindedExtents, onlyTypedErrors, throwsParse } from './fuzz.js';

const k = (kind: KindedExtent['kind'], inside: number, outside: number, count: number): KindedExtent => ({
  inside,
  outside,
  count,
  kind,
});

/** What a 'both' entry reads back as: a u line then a g line. */
const expandBoth = (x: KindedExtent[]) =>
  x.flatMap((e) =>
    e.kind === 'both'
      ? [
          { ...e, kind: 'uid' as const },
          { ...e, kind: 'gid' as const },
        ]
      : [e],
  );

describe('LXC lxc.idmap', () => {
  test('config lines, bare values, comments, b for both', () => {
    const text =
      '# container 1\nlxc.idmap = u 0 100000 65536\nlxc.idmap=g 0 100000 65536\n\n  lxc.id_map = b 65536 1000 1\r\nu\t1\t2\t3\n';
    assert.deepEqual(parseLxcIdmap(text), [
      k('uid', 0, 100000, 65536),
      k('gid', 0, 100000, 65536),
      k('both', 65536, 1000, 1),
      k('uid', 1, 2, 3),
    ]);
    assert.deepEqual(parseLxcIdmap(''), []);
    assert.deepEqual(parseLxcIdmap('u 0 007 1'), [k('uid', 0, 7, 1)]);
  });

  test('an empty lxc.idmap value clears the list (as LXC does)', () => {
    assert.deepEqual(parseLxcIdmap('lxc.idmap = u 0 1 1\nlxc.idmap =\nlxc.idmap = g 0 2 2\n'), [
      k('gid', 0, 2, 2),
    ]);
  });

  test('other keys: an error, or skipped on request', () => {
    const config = 'lxc.rootfs.path = dir:/var/lib/lxc/c1/rootfs\nlxc.idmap = u 0 100000 65536\n';
    throwsParse(() => parseLxcIdmap(config), 'UNKNOWN_KEY', 1, 1);
    assert.deepEqual(parseLxcIdmap(config, { otherKeys: 'skip' }), [k('uid', 0, 100000, 65536)]);
  });

  test('errors', () => {
    const e = throwsParse(
      () => parseLxcIdmap('lxc.idmap = u 0 100000 65536\nlxc.idmap = x 0 1 1\n', { source: 'c1.conf' }),
      'UNKNOWN_KIND',
      2,
      13,
    );
    assert.match(e.message, /^c1\.conf:2:13: /);
    throwsParse(() => parseLxcIdmap('lxc.idmap = u 0 1'), 'MISSING_FIELD');
    throwsParse(() => parseLxcIdmap('lxc.idmap = u 0 1 1 1'), 'SYNTAX', 1, 21);
    throwsParse(() => parseLxcIdmap('lxc.idmap = ug 0 1 1'), 'SYNTAX');
    throwsParse(() => parseLxcIdmap('u 0 -1 1'), 'BAD_NUMBER', 1, 5);
    throwsParse(() => parseLxcIdmap('u 0 4294967296 1'), 'NUMBER_TOO_LARGE', 1, 5);
    throwsParse(() => parseLxcIdmap('u 0 0x10 1'), 'BAD_NUMBER');
    throwsParse(() => parseLxcIdmap('lxc.idmap u 0 1 1'), 'SYNTAX', 1, 1);
    throwsParse(() => parseLxcIdmap('0 1000 1'), 'UNKNOWN_KIND', 1, 1);
  });

  test('format: config lines; both as u + g (LXC has no b)', () => {
    assert.equal(
      formatLxcIdmap([k('both', 0, 100000, 65536)]),
      'lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\n',
    );
    assert.equal(formatLxcIdmap([k('gid', 1, 2, 3)], { bare: true }), 'g 1 2 3\n');
  });

  test('parse(format(x)) is x', () => {
    fc.assert(
      fc.property(kindedExtents(['uid', 'gid']), fc.boolean(), (x, bare) => {
        assert.deepEqual(parseLxcIdmap(formatLxcIdmap(x, { bare })), x);
      }),
    );
    fc.assert(
      fc.property(kindedExtents(), (x) => {
        assert.deepEqual(parseLxcIdmap(formatLxcIdmap(x)), expandBoth(x));
      }),
    );
  });

  test('detectFormat recognises the output', () => {
    fc.assert(
      fc.property(
        kindedExtents().filter((x) => x.length > 0),
        fc.boolean(),
        (x, bare) => {
          assert.equal(detectFormat(formatLxcIdmap(x, { bare })), 'lxc');
        },
      ),
    );
  });

  test('random input never throws anything but typed errors', () => {
    onlyTypedErrors(
      ['lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\n', '# c\nb 0 1 1\n'],
      (t) => parseLxcIdmap(t),
      assertU32Extents,
    );
  });
});
