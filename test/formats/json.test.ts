import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { detectFormat } from '../../src/idmap/formats/detect.js';
import { formatUsernsJson, parseUsernsJson } from '../../src/idmap/formats/json.js';
import { expandKinds } from '../../src/idmap/formats/kinds.js';
import { assertU32Extents, kindedExtents, onlyTypedErrors, throwsParse } from './fuzz.js';

describe('userns JSON', () => {
  test('vectors', () => {
    assert.deepEqual(parseUsernsJson('[[0,1000,1],[1,100000,65536]]'), [
      { inside: 0, outside: 1000, count: 1, kind: 'both' },
      { inside: 1, outside: 100000, count: 65536, kind: 'both' },
    ]);
    assert.deepEqual(parseUsernsJson('{"uid": [[0, 1000, 1]], "gid": [[0, 2000, 1]]}'), [
      { inside: 0, outside: 1000, count: 1, kind: 'uid' },
      { inside: 0, outside: 2000, count: 1, kind: 'gid' },
    ]);
    // the CLI's --json output can be piped back in
    assert.deepEqual(parseUsernsJson('{"ok": true, "map": [[0, 0, 1], [1, 1, 99]]}'), [
      { inside: 0, outside: 0, count: 1, kind: 'both' },
      { inside: 1, outside: 1, count: 99, kind: 'both' },
    ]);
    assert.deepEqual(parseUsernsJson('[]'), []);
  });

  test('errors', () => {
    throwsParse(() => parseUsernsJson('[[0,1000]]'), 'MISSING_FIELD', 1, 2);
    throwsParse(() => parseUsernsJson('[[0,1000,1,2]]'), 'SYNTAX', 1, 2);
    throwsParse(() => parseUsernsJson('[[0,1000,-1]]'), 'BAD_NUMBER', 1, 10);
    throwsParse(() => parseUsernsJson('[[0,1000,0.5]]'), 'BAD_NUMBER');
    throwsParse(() => parseUsernsJson('[[0,4294967296,1]]'), 'NUMBER_TOO_LARGE', 1, 5);
    throwsParse(() => parseUsernsJson('[null]'), 'WRONG_TYPE', 1, 2);
    throwsParse(() => parseUsernsJson('{"uid": 5}'), 'WRONG_TYPE', 1, 9);
    throwsParse(() => parseUsernsJson('{"uid": [[0, "1", 1]]}'), 'WRONG_TYPE', 1, 14);
    throwsParse(() => parseUsernsJson('{}'), 'MISSING_FIELD');
    throwsParse(() => parseUsernsJson('"x"'), 'WRONG_TYPE');
    throwsParse(() => parseUsernsJson('[[0,1,1]] x'), 'BAD_JSON', 1, 11);
    throwsParse(() => parseUsernsJson('{"uid": [[0,\n 1,\n 1]'), 'BAD_JSON', 3, 4);
    throwsParse(() => parseUsernsJson('[[0,1,1]'), 'BAD_JSON');
    throwsParse(() => parseUsernsJson('[01]'), 'BAD_JSON');
    throwsParse(() => parseUsernsJson('{"a\u0001":1}'), 'BAD_JSON');
  });

  test('parse(format(x)) is x', () => {
    fc.assert(
      fc.property(kindedExtents(['both']), (x) => {
        assert.deepEqual(parseUsernsJson(formatUsernsJson(x)), x);
      }),
    );
    fc.assert(
      fc.property(kindedExtents(['uid', 'gid']), (x) => {
        assert.deepEqual(parseUsernsJson(formatUsernsJson(x)), expandKinds(x));
      }),
    );
    fc.assert(
      fc.property(kindedExtents(), (x) => {
        const back = parseUsernsJson(formatUsernsJson(x));
        assert.deepEqual(back, x.every((e) => e.kind === 'both') ? x : expandKinds(x));
      }),
    );
  });

  test('detectFormat recognises the output', () => {
    fc.assert(
      fc.property(kindedExtents(), (x) => {
        assert.equal(detectFormat(formatUsernsJson(x)), 'json');
      }),
    );
  });

  test('random input never throws anything but typed errors', () => {
    onlyTypedErrors(
      ['[[0,1000,1],[1,100000,65536]]', '{"uid":[[0,1,1]],"gid":[]}', '{"ok":true,"map":[[0,0,1]]}'],
      (t) => parseUsernsJson(t),
      assertU32Extents,
    );
  });
});
