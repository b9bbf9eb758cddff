import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ParseError, UsernsError } from '../../src/errors/index.js';
import {
  formatSubid,
  isValidSubidOwner,
  parseSubid,
  subidOwnerMatches,
} from '../../src/idmap/formats/subid.js';

describe('subuid/subgid format', () => {
  test('comments, blank lines, several ranges per user, numeric owners, file order kept', () => {
    const text = [
      '# subordinate UIDs',
      '',
      'alice:100000:65536',
      '   ',
      '  # indented comment',
      '1001:300000:10',
      'bob:165536:65536',
      'alice:200000:1000',
      '',
    ].join('\n');
    const { entries, problems } = parseSubid(text, { source: '/etc/subuid' });
    assert.deepEqual(problems, []);
    assert.deepEqual(entries, [
      { owner: 'alice', start: 100000, count: 65536, line: 3 },
      { owner: '1001', start: 300000, count: 10, line: 6 },
      { owner: 'bob', start: 165536, count: 65536, line: 7 },
      { owner: 'alice', start: 200000, count: 1000, line: 8 },
    ]);
  });

  test('a last line without newline, and an empty file', () => {
    assert.deepEqual(parseSubid('a:1:2').entries, [{ owner: 'a', start: 1, count: 2, line: 1 }]);
    assert.deepEqual(parseSubid(''), { entries: [], problems: [] });
    assert.deepEqual(parseSubid('\n\n'), { entries: [], problems: [] });
  });

  test('bounds: start + count may reach 4294967296, not pass it', () => {
    assert.deepEqual(parseSubid('a:4294967295:1\nb:0:4294967295\nc:1:4294967295\n').entries, [
      { owner: 'a', start: 4294967295, count: 1, line: 1 },
      { owner: 'b', start: 0, count: 4294967295, line: 2 },
      { owner: 'c', start: 1, count: 4294967295, line: 3 },
    ]);
  });

  const malformed: [string, string, string, number, string][] = [
    // line text, code, why, column, offending text
    ['alice:100000', 'SUBID_SYNTAX', 'two fields', 1, 'alice:100000'],
    ['alice:100000:65536:7', 'SUBID_SYNTAX', 'four fields', 1, 'alice:100000:65536:7'],
    [':100000:65536', 'SUBID_SYNTAX', 'empty owner', 1, ':100000:65536'],
    ['alice::65536', 'SUBID_SYNTAX', 'empty start', 7, 'alice::65536'],
    ['alice:abc:65536', 'SUBID_SYNTAX', 'non-numeric start', 7, 'abc'],
    ['alice:100000:-1', 'SUBID_SYNTAX', 'negative count', 14, '-1'],
    ['alice:+5:1', 'SUBID_SYNTAX', 'sign', 7, '+5'],
    ['alice:1e5:1', 'SUBID_SYNTAX', 'exponent', 7, '1e5'],
    ['alice:100000:65536 ', 'SUBID_SYNTAX', 'trailing space', 19, '65536 '],
    ['alice:100000:65536\r', 'SUBID_SYNTAX', 'DOS line ending', 19, '65536\r'],
    [' alice:100000:65536', 'SUBID_SYNTAX', 'leading space in owner', 1, ' alice'],
    ['alice: 100000:65536', 'SUBID_SYNTAX', 'space before number', 7, ' 100000'],
    ['alice:4294967296:1', 'SUBID_NUMBER_TOO_LARGE', 'start > u32', 7, '4294967296'],
    ['alice:1:4294967296', 'SUBID_NUMBER_TOO_LARGE', 'count > u32', 9, '4294967296'],
    ['alice:1:99999999999999999999999', 'SUBID_NUMBER_TOO_LARGE', 'huge count', 9, '99999999999999999999999'],
    ['alice:100000:0', 'SUBID_EMPTY_RANGE', 'count 0', 14, '0'],
    ['alice:4294967295:2', 'SUBID_RANGE_OVERFLOW', 'past the last ID', 7, 'alice:4294967295:2'],
    ['alice:0x186a0:65536', 'SUBID_AMBIGUOUS_NUMBER', 'hex (shadow reads 100000)', 7, '0x186a0'],
    ['alice:0100000:65536', 'SUBID_AMBIGUOUS_NUMBER', 'leading zero (shadow: octal)', 7, '0100000'],
  ];

  for (const [line, code, why, column, text] of malformed) {
    test(`malformed (${why}) is reported with line and column, and skipped: ${JSON.stringify(line)}`, () => {
      const { entries, problems } = parseSubid(`bob:1:1\n${line}\ncarol:5:5\n`, { source: '/etc/subuid' });
      assert.deepEqual(
        entries.map((e) => e.owner),
        ['bob', 'carol'],
      );
      assert.equal(problems.length, 1);
      const p = problems[0]!;
      assert.ok(p instanceof ParseError);
      assert.equal(p.code, code);
      assert.equal(p.source, '/etc/subuid');
      assert.equal(p.line, 2);
      assert.equal(p.column, column);
      assert.equal(p.text, text);
      assert.match(p.message, /^\/etc\/subuid:2:/);
      assert.ok(p.hint?.includes('skipped'));
    });
  }

  test('the ambiguity messages give both readings', () => {
    const [octal, hex] = parseSubid('a:0100000:1\na:0x186a0:1\n').problems;
    assert.match(octal!.message, /32768 \(octal\)/);
    assert.match(octal!.message, /100000/);
    assert.match(hex!.message, /100000/);
  });

  test('every problem of a file is reported, not just the first', () => {
    const { entries, problems } = parseSubid('x\ny:1\nz:1:1\nw:1:0\n');
    assert.deepEqual(
      problems.map((p) => p.line),
      [1, 2, 4],
    );
    assert.equal(entries.length, 1);
  });

  test('formatSubid writes one line per entry and refuses what would not read back', () => {
    assert.equal(
      formatSubid([
        { owner: 'alice', start: 100000, count: 65536 },
        { owner: '1001', start: 0, count: 1 },
      ]),
      'alice:100000:65536\n1001:0:1\n',
    );
    assert.equal(formatSubid([]), '');
    for (const bad of [
      { owner: '', start: 1, count: 1 },
      { owner: 'a:b', start: 1, count: 1 },
      { owner: '#a', start: 1, count: 1 },
      { owner: 'a b', start: 1, count: 1 },
      { owner: 'a', start: 1, count: 0 },
      { owner: 'a', start: -1, count: 1 },
      { owner: 'a', start: 1.5, count: 1 },
      { owner: 'a', start: 4294967295, count: 2 },
    ]) {
      assert.throws(() => formatSubid([bad]), { code: 'SUBID_INVALID_ENTRY' }, JSON.stringify(bad));
    }
  });

  test('owner matching: name or decimal UID', () => {
    const alice = { name: 'alice', uid: 1001 };
    assert.equal(subidOwnerMatches('alice', alice), true);
    assert.equal(subidOwnerMatches('1001', alice), true);
    assert.equal(subidOwnerMatches('1002', alice), false);
    assert.equal(subidOwnerMatches('bob', alice), false);
    assert.equal(subidOwnerMatches('Alice', alice), false);
    assert.equal(subidOwnerMatches('0', { name: 'root', uid: 0 }), true);
    assert.equal(subidOwnerMatches('daemon', { name: 'root', uid: 0 }), false); // no unshare root quirk
  });

  const owner = fc
    .oneof(
      fc.stringMatching(/^[a-z_][a-z0-9_.-]{0,31}\$?$/),
      fc.nat({ max: 4294967294 }).map(String),
      fc.string({ minLength: 1 }),
    )
    .filter(isValidSubidOwner);
  const entry = fc
    .record({ owner, start: fc.nat({ max: 4294967295 }), count: fc.integer({ min: 1, max: 4294967295 }) })
    .filter((e) => e.start + e.count <= 4294967296);

  test('parse(format(x)) = x', () => {
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 30 }), (entries) => {
        const parsed = parseSubid(formatSubid(entries));
        assert.deepEqual(parsed.problems, []);
        assert.deepEqual(
          parsed.entries,
          entries.map((e, i) => ({ ...e, line: i + 1 })),
        );
      }),
      { numRuns: 500 },
    );
  });

  test('random text never throws: every non-blank, non-comment line is an entry or a problem', () => {
    const line = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.stringMatching(/^[a-z0-9:#x \t\r+-]{0,30}$/),
      fc
        .tuple(owner, fc.bigInt({ min: 0n, max: 1n << 40n }), fc.bigInt({ min: 0n, max: 1n << 40n }))
        .map(([o, s, c]) => `${o}:${s}:${c}`),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 20 }), (lines) => {
        const text = lines.join('\n');
        let result: ReturnType<typeof parseSubid>;
        try {
          result = parseSubid(text);
        } catch (error) {
          assert.fail(`threw ${String(error)}`);
        }
        const physical = text.split('\n');
        const meaningful = physical.filter(
          (l, i) => !(i === physical.length - 1 && l === '') && l.trim() !== '' && !l.trim().startsWith('#'),
        );
        assert.equal(result.entries.length + result.problems.length, meaningful.length);
        for (const e of result.entries) {
          assert.ok(
            Number.isInteger(e.start) && e.start >= 0 && e.count >= 1 && e.start + e.count <= 4294967296,
          );
          assert.equal(physical[e.line - 1], `${e.owner}:${e.start}:${e.count}`);
        }
        for (const p of result.problems) {
          assert.ok(p instanceof UsernsError && p.code.startsWith('SUBID_'));
          assert.ok(p.line >= 1 && p.line <= physical.length && p.column >= 1);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
