import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { detectFormat } from '../../src/idmap/formats/detect.js';
import { FORMATS } from '../../src/idmap/formats/index.js';
import {
  formatNewidmapArgs,
  parseNewidmapArgs,
  parseNewidmapCommand,
} from '../../src/idmap/formats/newuidmap.js';
import { assertU32Extents, onlyTypedErrors, throwsParse, u32Extents } from './fuzz.js';

describe('newuidmap/newgidmap argument vectors', () => {
  test('vectors (docs/kernel-rules.md, "newuidmap and newgidmap")', () => {
    assert.deepEqual(parseNewidmapArgs(['newuidmap', '1234', '0', '1000', '1', '1', '100000', '65536']), {
      program: 'newuidmap',
      target: 1234,
      extents: [
        { inside: 0, outside: 1000, count: 1 },
        { inside: 1, outside: 100000, count: 65536 },
      ],
    });
    assert.deepEqual(parseNewidmapArgs(['1234', '0', '0x3e9', '1']), {
      target: 1234,
      extents: [{ inside: 0, outside: 1001, count: 1 }],
    });
    assert.deepEqual(parseNewidmapArgs(['/usr/bin/newgidmap', 'fd:5', '010', ' 0X10', '+1']), {
      program: '/usr/bin/newgidmap',
      target: { fd: 5 },
      extents: [{ inside: 8, outside: 16, count: 1 }], // leading 0 = octal, leading space and + allowed (strtoul)
    });
    assert.deepEqual(parseNewidmapArgs(['$PID', '0', '0', '1']).target, { placeholder: '$PID' });
    assert.deepEqual(parseNewidmapArgs(['1', '4294967295', '0', '4294967295']).extents, [
      { inside: 4294967295, outside: 0, count: 4294967295 },
    ]);
  });

  test('errors', () => {
    throwsParse(() => parseNewidmapArgs(['newuidmap', '1234', '0', '1000']), 'ARGUMENT_COUNT', 1, 16);
    throwsParse(() => parseNewidmapArgs(['newuidmap', '1234']), 'ARGUMENT_COUNT');
    throwsParse(() => parseNewidmapArgs([]), 'MISSING_FIELD');
    throwsParse(() => parseNewidmapArgs(['newuidmap']), 'MISSING_FIELD');
    throwsParse(() => parseNewidmapArgs(['1234', '0', '1000x', '1']), 'BAD_NUMBER', 1, 8);
    throwsParse(() => parseNewidmapArgs(['1234', '0', '08', '1']), 'BAD_NUMBER'); // 8 is not an octal digit
    throwsParse(() => parseNewidmapArgs(['1234', '0', '0x', '1']), 'BAD_NUMBER');
    throwsParse(() => parseNewidmapArgs(['1234', '0', '-1', '1']), 'BAD_NUMBER');
    throwsParse(() => parseNewidmapArgs(['1234', '0', '', '1']), 'MISSING_FIELD');
    throwsParse(() => parseNewidmapArgs(['1234', '0', '1 ', '1']), 'BAD_NUMBER'); // trailing junk
    throwsParse(() => parseNewidmapArgs(['1234', '0', '0x100000000', '1']), 'NUMBER_TOO_LARGE');
    throwsParse(() => parseNewidmapArgs(['1234', '0', '4294967296', '1']), 'NUMBER_TOO_LARGE');
    throwsParse(() => parseNewidmapArgs(['0', '0', '0', '1']), 'BAD_TARGET', 1, 1);
    throwsParse(() => parseNewidmapArgs(['fd:', '0', '0', '1']), 'BAD_TARGET');
    throwsParse(() => parseNewidmapArgs(['pid', '0', '0', '1']), 'BAD_TARGET');
    const e = throwsParse(
      () => parseNewidmapCommand('newuidmap 1 0 0 1\n  0 0 z', { source: 'cmd' }),
      'BAD_NUMBER',
      2,
      7,
    );
    assert.match(e.message, /^cmd:2:7: /);
  });

  test('parse(format(x)) is x', () => {
    const target = fc.oneof(
      fc.integer({ min: 1, max: 2147483647 }),
      fc.nat(2147483647).map((fd) => ({ fd })),
    );
    fc.assert(
      fc.property(
        fc.option(fc.constantFrom('newuidmap', 'newgidmap', '/usr/bin/newuidmap'), { nil: undefined }),
        target,
        u32Extents(0).filter((x) => x.length > 0),
        (program, pid, extents) => {
          const argv = formatNewidmapArgs(program, pid, extents);
          assert.ok(argv.every((a) => /^(new[ug]idmap|\/usr\/bin\/newuidmap|fd:\d+|\d+)$/.test(a)));
          assert.deepEqual(
            parseNewidmapArgs(argv),
            program === undefined ? { target: pid, extents } : { program, target: pid, extents },
          );
          assert.deepEqual(parseNewidmapCommand(argv.join(' ')), parseNewidmapArgs(argv));
        },
      ),
    );
  });

  test('detectFormat recognises the output (with and without the program name)', () => {
    fc.assert(
      fc.property(
        u32Extents(0).filter((x) => x.length > 0),
        fc.boolean(),
        (extents, withProgram) => {
          assert.equal(
            detectFormat(formatNewidmapArgs(withProgram ? 'newgidmap' : undefined, 4242, extents).join(' ')),
            'newuidmap',
          );
        },
      ),
    );
    assert.equal(
      detectFormat(FORMATS.newuidmap.format([{ inside: 0, outside: 1000, count: 1, kind: 'uid' }])),
      'newuidmap',
    );
  });

  test('random input never throws anything but typed errors', () => {
    const seeds = ['newuidmap 1234 0 1000 1 1 100000 65536', 'fd:3 0 0x3e9 1', '$PID 0 010 1'];
    onlyTypedErrors(seeds, (t) => parseNewidmapCommand(t).extents, assertU32Extents);
    onlyTypedErrors(seeds, (t) => parseNewidmapArgs(t.split(' ')).extents, assertU32Extents);
  });
});
