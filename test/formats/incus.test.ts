import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { UsernsError } from '../../src/errors/index.js';
import { detectFormat } from '../../src/idmap/formats/detect.js';
import { formatIncusRawIdmap, parseIncusRawIdmap } from '../../src/idmap/formats/incus.js';
import { assertU32Extents, kindedExtents, onlyTypedErrors, throwsParse } from './fuzz.js';

describe('Incus/LXD raw.idmap', () => {
  test('vectors: host first, then container; inclusive ranges', () => {
    assert.deepEqual(parseIncusRawIdmap('both 1000 1000\nuid 1000-1999 0-999\ngid 50 60\n'), [
      { inside: 1000, outside: 1000, count: 1, kind: 'both' },
      { inside: 0, outside: 1000, count: 1000, kind: 'uid' },
      { inside: 60, outside: 50, count: 1, kind: 'gid' },
    ]);
    assert.deepEqual(parseIncusRawIdmap('\n\nuid 0-4294967294 1-4294967295\n'), [
      { inside: 1, outside: 0, count: 4294967295, kind: 'uid' },
    ]);
    throwsParse(() => parseIncusRawIdmap('uid 0-4294967295 0-4294967295'), 'NUMBER_TOO_LARGE', 1, 5);
    assert.deepEqual(parseIncusRawIdmap(''), []);
  });

  test('errors', () => {
    const e = throwsParse(
      () => parseIncusRawIdmap('both 1000 1000\nuid 1000-1999 0-998', { source: 'raw.idmap' }),
      'RANGE_LENGTH_MISMATCH',
      2,
      1,
    );
    assert.match(e.message, /^raw\.idmap:2:1: the host range has 1000 IDs but the container range has 999/);
    throwsParse(() => parseIncusRawIdmap('uid 10-5 0-5'), 'RANGE_REVERSED', 1, 5);
    throwsParse(() => parseIncusRawIdmap('user 1 1'), 'UNKNOWN_KIND', 1, 1);
    throwsParse(() => parseIncusRawIdmap('both 1000'), 'MISSING_FIELD', 1, 1);
    throwsParse(() => parseIncusRawIdmap('both 1000 1000 1'), 'SYNTAX');
    throwsParse(() => parseIncusRawIdmap('both  1000 1000'), 'SYNTAX'); // Incus splits at single spaces
    throwsParse(() => parseIncusRawIdmap('both 1000 1000\r'), 'BAD_NUMBER', 1, 11);
    throwsParse(() => parseIncusRawIdmap('both 1-2-3 1'), 'SYNTAX', 1, 6);
    throwsParse(() => parseIncusRawIdmap('both -5 1'), 'BAD_NUMBER', 1, 6);
    throwsParse(() => parseIncusRawIdmap('both 5- 1'), 'MISSING_FIELD', 1, 8);
    throwsParse(() => parseIncusRawIdmap('both 4294967296 1'), 'NUMBER_TOO_LARGE', 1, 6);
    throwsParse(() => parseIncusRawIdmap('# comment 1'), 'UNKNOWN_KIND');
  });

  test('parse(format(x)) is x', () => {
    fc.assert(
      fc.property(kindedExtents(['uid', 'gid', 'both'], 1), (x) => {
        assert.deepEqual(parseIncusRawIdmap(formatIncusRawIdmap(x)), x);
      }),
    );
    assert.equal(
      formatIncusRawIdmap([{ inside: 0, outside: 1000, count: 1000, kind: 'uid' }]),
      'uid 1000-1999 0-999\n',
    );
    assert.throws(
      () => formatIncusRawIdmap([{ inside: 0, outside: 0, count: 0, kind: 'uid' }]),
      (err: UsernsError) => err.code === 'INVALID_EXTENT',
    );
  });

  test('detectFormat recognises the output', () => {
    fc.assert(
      fc.property(
        kindedExtents(['uid', 'gid', 'both'], 1).filter((x) => x.length > 0),
        (x) => {
          assert.equal(detectFormat(formatIncusRawIdmap(x)), 'incus');
        },
      ),
    );
  });

  test('random input never throws anything but typed errors', () => {
    onlyTypedErrors(
      ['both 1000 1000\nuid 1000-1999 0-999\n'],
      (t) => parseIncusRawIdmap(t),
      assertU32Extents,
    );
  });
});
