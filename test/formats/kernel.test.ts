import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ParseError, UsernsError } from '../../src/errors/index.js';
import { formatKernelMap, parseKernelMap } from '../../src/idmap/formats/kernel.js';
import { validExtents } from '../arbitraries.js';

describe('kernel /proc map format', () => {
  test('reads what the kernel prints, including 4294967295 for unmappable IDs', () => {
    const text = '         0 4294967295 4294967295\n         1     100000      65536\n';
    assert.deepEqual(parseKernelMap(text), [
      { inside: 0, outside: 4294967295, count: 4294967295 },
      { inside: 1, outside: 100000, count: 65536 },
    ]);
    assert.equal(formatKernelMap(parseKernelMap(text), 'proc'), text);
  });

  test('an empty file is an empty map (no map written yet)', () => {
    assert.deepEqual(parseKernelMap(''), []);
  });

  test('parse(format(x)) is the identity, in both styles', () => {
    fc.assert(
      fc.property(validExtents({ maxLength: 30 }), (extents) => {
        assert.deepEqual(parseKernelMap(formatKernelMap(extents, 'write')), extents);
        assert.deepEqual(parseKernelMap(formatKernelMap(extents, 'proc')), extents);
      }),
    );
  });

  test('errors carry code, line, column and the offending text', () => {
    assert.throws(
      () => parseKernelMap('0 1000 1\n1 2x 3\n', { source: 'map.txt' }),
      (error: ParseError) => {
        assert.ok(error instanceof ParseError);
        assert.equal(error.code, 'SYNTAX');
        assert.equal(error.line, 2);
        assert.equal(error.column, 4);
        assert.match(error.message, /^map\.txt:2:4: /);
        return true;
      },
    );
    assert.throws(() => parseKernelMap('4294967296 0 1'), { code: 'NUMBER_TOO_LARGE' });
    assert.throws(() => parseKernelMap('0 0 1\0'), { code: 'NUL_BYTE' });
    assert.deepEqual(parseKernelMap('0 0 1\n\0junk', { nul: 'stop' }), [{ inside: 0, outside: 0, count: 1 }]);
  });

  test('random bytes never throw anything but typed errors', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.uint8Array().map((b) => Buffer.from(b).toString('latin1')),
          fc.stringMatching(/^[0-9 \t\n\v\f\r+-]{0,40}$/),
        ),
        (text) => {
          try {
            const extents = parseKernelMap(text);
            for (const e of extents)
              assert.ok(e.inside <= 4294967295 && e.outside <= 4294967295 && e.count <= 4294967295);
          } catch (error) {
            assert.ok(error instanceof UsernsError, String(error));
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});
