import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { UsernsError } from '../../src/errors/index.js';
import { detectFormat } from '../../src/idmap/formats/detect.js';
import { formatTriples, parseTriples } from '../../src/idmap/formats/triples.js';
import { assertU32Extents, onlyTypedErrors, throwsParse, u32Extents } from './fuzz.js';

describe('triples inside:outside:count,…', () => {
  test('vectors', () => {
    assert.deepEqual(parseTriples('0:100000:65536'), [{ inside: 0, outside: 100000, count: 65536 }]);
    assert.deepEqual(parseTriples('0:1000:1,1:100000:65536'), [
      { inside: 0, outside: 1000, count: 1 },
      { inside: 1, outside: 100000, count: 65536 },
    ]);
    // written order is kept, a trailing newline (file input) is fine, leading zeros are decimal
    assert.deepEqual(parseTriples('5:5:1,0:0:1\n'), [
      { inside: 5, outside: 5, count: 1 },
      { inside: 0, outside: 0, count: 1 },
    ]);
    assert.deepEqual(parseTriples('010:0:1'), [{ inside: 10, outside: 0, count: 1 }]);
    assert.deepEqual(parseTriples('4294967295:4294967295:4294967295'), [
      { inside: 4294967295, outside: 4294967295, count: 4294967295 },
    ]);
    assert.deepEqual(parseTriples('0:0:0'), [{ inside: 0, outside: 0, count: 0 }]); // validation is not parsing
  });

  test('errors: code, line, column, text, source', () => {
    const e = throwsParse(() => parseTriples('0:1000:1,1:2x:3', { source: 'argument' }), 'BAD_NUMBER', 1, 12);
    assert.equal(e.text, '2x');
    assert.match(e.message, /^argument:1:12: /);
    throwsParse(() => parseTriples('0:1000'), 'MISSING_FIELD', 1, 7);
    throwsParse(() => parseTriples('0:1000:'), 'MISSING_FIELD', 1, 8);
    throwsParse(() => parseTriples('0:1:1:1'), 'SYNTAX', 1, 6);
    throwsParse(() => parseTriples('0:1:1,'), 'SYNTAX', 1, 6);
    throwsParse(() => parseTriples('0:1:1,,2:2:2'), 'SYNTAX', 1, 7);
    throwsParse(() => parseTriples(''), 'MISSING_FIELD', 1, 1);
    throwsParse(() => parseTriples('   \n'), 'MISSING_FIELD');
    throwsParse(() => parseTriples('0:4294967296:1'), 'NUMBER_TOO_LARGE', 1, 3);
    throwsParse(() => parseTriples('0:-1:1'), 'BAD_NUMBER', 1, 3);
    throwsParse(() => parseTriples('0:1.5:1'), 'BAD_NUMBER');
    throwsParse(() => parseTriples('0:0x10:1'), 'BAD_NUMBER');
    throwsParse(() => parseTriples('0:+1:1'), 'BAD_NUMBER');
    throwsParse(() => parseTriples('0:1:1, 1:2:1'), 'BAD_NUMBER', 1, 7);
    throwsParse(() => parseTriples('u0:1:1'), 'BAD_NUMBER');
  });

  test('parse(format(x)) is x', () => {
    fc.assert(
      fc.property(
        u32Extents(0).filter((x) => x.length > 0),
        (x) => {
          assert.deepEqual(parseTriples(formatTriples(x)), x);
        },
      ),
    );
  });

  test('format refuses values it could not read back', () => {
    assert.throws(
      () => formatTriples([{ inside: -1, outside: 0, count: 1 }]),
      (e: UsernsError) => e.code === 'INVALID_EXTENT',
    );
    assert.throws(
      () => formatTriples([{ inside: 0, outside: 0.5, count: 1 }]),
      (e: UsernsError) => e.code === 'INVALID_EXTENT',
    );
  });

  test('detectFormat recognises the output', () => {
    fc.assert(
      fc.property(
        u32Extents(0).filter((x) => x.length > 0),
        (x) => {
          assert.equal(detectFormat(formatTriples(x)), 'triples');
        },
      ),
    );
  });

  test('random input never throws anything but typed errors', () => {
    onlyTypedErrors(['0:1000:1,1:100000:65536', '4294967294:0:1'], (t) => parseTriples(t), assertU32Extents);
  });
});
