import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { detectFormat } from '../../src/idmap/formats/detect.js';
import { FORMATS } from '../../src/idmap/formats/index.js';
import { expandKinds } from '../../src/idmap/formats/kinds.js';
import {
  formatUnshareArgs,
  formatUnshareValue,
  parseUnshareMap,
  punchUnshareHole,
} from '../../src/idmap/formats/unshare.js';
import { kindedExtents, onlyTypedErrors, throwsParse, u32Extent } from './fuzz.js';

describe('util-linux unshare --map-users/--map-groups', () => {
  test('vectors (docs/kernel-rules.md, "util-linux unshare")', () => {
    assert.deepEqual(parseUnshareMap('0:100000:65536'), [
      { inside: 0, outside: 100000, count: 65536, kind: 'both' },
    ]);
    // the deprecated comma form is outer,inner,count
    assert.deepEqual(parseUnshareMap('100000,0,65537', { kind: 'uid' }), [
      { inside: 0, outside: 100000, count: 65537, kind: 'uid' },
    ]);
    assert.deepEqual(
      parseUnshareMap('--map-users=0:1000:1 --map-groups 1,2,3 --map-users=auto --map-auto --map-subids all'),
      [
        { inside: 0, outside: 1000, count: 1, kind: 'uid' },
        { inside: 2, outside: 1, count: 3, kind: 'gid' },
        { kind: 'uid', keyword: 'auto', line: 1, column: 53 },
        { kind: 'both', keyword: 'auto', line: 1, column: 58 },
        { kind: 'both', keyword: 'subids', line: 1, column: 69 },
        { kind: 'both', keyword: 'all', line: 1, column: 82 },
      ],
    );
    assert.deepEqual(parseUnshareMap(''), []);
  });

  test('errors', () => {
    throwsParse(() => parseUnshareMap('0:1000'), 'MISSING_FIELD', 1, 1);
    throwsParse(() => parseUnshareMap('0:1000:1:2'), 'SYNTAX');
    throwsParse(() => parseUnshareMap('0:1000,1'), 'MISSING_FIELD');
    throwsParse(() => parseUnshareMap('0:-1:1'), 'BAD_NUMBER', 1, 3);
    throwsParse(() => parseUnshareMap('0:4294967296:1'), 'NUMBER_TOO_LARGE', 1, 3);
    throwsParse(() => parseUnshareMap('1,2,x'), 'BAD_NUMBER', 1, 5);
    throwsParse(() => parseUnshareMap('0:1:1junk'), 'BAD_NUMBER'); // sscanf would ignore "junk"; we do not
    throwsParse(() => parseUnshareMap('automatic'), 'SYNTAX', 1, 1);
    throwsParse(() => parseUnshareMap('--map-root'), 'UNKNOWN_OPTION', 1, 1);
    throwsParse(() => parseUnshareMap('--map-users'), 'MISSING_FIELD');
    throwsParse(() => parseUnshareMap('--map-users='), 'MISSING_FIELD');
    throwsParse(
      () => FORMATS.unshare.parse('0:1:1\n--map-users=auto', { source: 'args' }),
      'UNRESOLVED_KEYWORD',
      2,
      13,
    );
  });

  test('format: inner:outer:count', () => {
    assert.equal(formatUnshareValue({ inside: 0, outside: 100000, count: 65536 }), '0:100000:65536');
    assert.deepEqual(formatUnshareArgs([{ inside: 0, outside: 1000, count: 1, kind: 'both' }]), [
      '--map-users=0:1000:1',
      '--map-groups=0:1000:1',
    ]);
  });

  test('parse(format(x)) is x', () => {
    fc.assert(
      fc.property(u32Extent(0), (e) => {
        assert.deepEqual(parseUnshareMap(formatUnshareValue(e), { kind: 'gid' }), [{ ...e, kind: 'gid' }]);
      }),
    );
    fc.assert(
      fc.property(kindedExtents(), (x) => {
        assert.deepEqual(parseUnshareMap(formatUnshareArgs(x).join(' ')), expandKinds(x));
        assert.deepEqual(FORMATS.unshare.parse(FORMATS.unshare.format(x)), expandKinds(x));
      }),
    );
  });

  test('detectFormat recognises the output', () => {
    assert.equal(detectFormat('1000,0,1'), 'unshare');
    assert.equal(detectFormat('auto'), 'unshare');
    fc.assert(
      fc.property(
        kindedExtents().filter((x) => x.length > 0),
        (x) => {
          assert.equal(detectFormat(FORMATS.unshare.format(x)), 'unshare');
        },
      ),
    );
  });

  test('random input never throws anything but typed errors', () => {
    onlyTypedErrors(
      ['--map-users=0:1000:1 --map-groups=0:1000:1', '100000,0,65536', 'auto all subids'],
      (t) => parseUnshareMap(t),
    );
  });
  test("single-ID options with ranges follow unshare's hole rule (issue 14 item 8)", () => {
    // measured with util-linux 2.38.1, uid/gid 1001, subuid/subgid 100000:65536 (docs/kernel-rules.md)
    const caller = { uid: 1001, gid: 1001 };
    const kernel = (text: string, kind: 'uid' | 'gid' = 'uid') =>
      FORMATS.unshare
        .parse(text, { kind, caller })
        .filter((e) => e.kind === kind || e.kind === 'both')
        .map((e) => `${e.inside} ${e.outside} ${e.count}`)
        .join(', ');
    // --map-auto -r, --map-auto -c with the auto range written out
    assert.equal(kernel('--map-users=0:100000:65536 -r'), '0 1001 1, 1 100000 65535');
    assert.equal(
      kernel('--map-users=0:100000:65536 --map-groups=0:100000:65536 -r', 'gid'),
      '0 1001 1, 1 100000 65535',
    );
    assert.equal(kernel('--map-users=0:100000:65536 -c'), '1001 1001 1, 0 100000 1001, 1002 101001 64534');
    // the old outer,inner,count order: 65537 IDs, the hole brings it to 65536
    assert.equal(kernel('--map-users=100000,0,65537 --map-root-user'), '0 1001 1, 1 100000 65536');
    // the upper bound is inclusive: a single ID just past the range still costs its top ID
    assert.equal(kernel('--map-users=0:100000:10 --map-user=10'), '10 1001 1, 0 100000 9');
    assert.equal(kernel('--map-users=0:100000:10 --map-user=11'), '11 1001 1, 0 100000 10');
    // the outer side: the caller's own uid inside a range is skipped there
    assert.equal(kernel('--map-users=0:1000:10 --map-user=500'), '500 1001 1, 0 1000 1, 1 1002 8');
    // --map-user applies to uids only, the last one wins; ranges without a single ID are kept
    assert.equal(kernel('--map-user=3 --map-user 7 --map-users=0:100000:65536', 'gid'), '');
    assert.equal(
      kernel('--map-user=3 --map-user 7 --map-users=0:100000:65536'),
      '7 1001 1, 0 100000 7, 8 100007 65528',
    );
    assert.equal(kernel('--map-groups=0:100000:5 --map-user=0', 'gid'), '0 100000 5');
    // without the caller's IDs the single options cannot be resolved; names are not looked up
    assert.throws(() => FORMATS.unshare.parse('-r --map-users=0:1:1', {}), { code: 'CALLER_REQUIRED' });
    assert.throws(() => FORMATS.unshare.parse('--map-user=root', { caller }), { code: 'BAD_NUMBER' });
    assert.deepEqual(
      punchUnshareHole({ inside: 0, outside: 5, count: 3 }, { inside: 100, outside: 200, count: 1 }),
      [{ inside: 0, outside: 5, count: 3 }],
    );
  });
});
