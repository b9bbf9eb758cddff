import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ParseError, UsernsError } from '../../src/errors/index.js';
import type { Extent, ExtentKind, KindedExtent } from '../../src/idmap/extent.js';

/** Shared generators and the "only typed errors" fuzz property for the format tests. */

export const U32 = 4294967295;

/**
 * Any extent with u32 fields whose ranges stay within u32 (inside + count ≤ 4294967295 and the
 * same for outside). Fields are biased towards 0 and the top of the range by fast-check.
 */
export function u32Extent(minCount = 0): fc.Arbitrary<Extent> {
  return fc.tuple(fc.nat({ max: U32 }), fc.nat({ max: U32 }), fc.nat({ max: U32 })).map(([a, b, c]) => {
    const inside = Math.min(a, U32 - minCount);
    const outside = Math.min(b, U32 - minCount);
    const room = U32 - Math.max(inside, outside);
    return { inside, outside, count: minCount + (c % (room - minCount + 1)) };
  });
}

export function u32Extents(minCount = 0, maxLength = 8): fc.Arbitrary<Extent[]> {
  return fc.array(u32Extent(minCount), { maxLength });
}

export function kindedExtents(
  kinds: readonly ExtentKind[] = ['uid', 'gid', 'both'],
  minCount = 0,
): fc.Arbitrary<KindedExtent[]> {
  return fc.array(
    fc.tuple(u32Extent(minCount), fc.constantFrom(...kinds)).map(([e, kind]) => ({ ...e, kind })),
    { maxLength: 8 },
  );
}

const PIECES = [
  '0',
  '1',
  '9',
  '00',
  '4294967295',
  '4294967296',
  '99999999999999999999',
  '-1',
  '+',
  '-',
  '.',
  '1.5',
  '1e3',
  '0x10',
  ':',
  ',',
  ' ',
  '\t',
  '\n',
  '\r',
  '\r\n',
  '\0',
  '#',
  '=',
  '@',
  'u',
  'g',
  'b',
  'both',
  'uid',
  'gid',
  'lxc.idmap',
  '{',
  '}',
  '[',
  ']',
  '"',
  'null',
  'true',
  '"size"',
  '"hostID"',
  '"uidMappings"',
  'fd:',
  '$PID',
  '--map-users=',
  'auto',
  '\u00ff',
  '\ud800',
  '😀',
];

/** Random edits (insert / delete / replace a piece) applied to valid texts. */
export function mutated(seeds: readonly string[]): fc.Arbitrary<string> {
  return fc
    .tuple(
      fc.constantFrom(...seeds),
      fc.array(
        fc.tuple(fc.nat(), fc.constantFrom('insert', 'delete', 'replace'), fc.constantFrom(...PIECES)),
        { minLength: 1, maxLength: 4 },
      ),
    )
    .map(([seed, edits]) => {
      let text = seed;
      for (const [n, op, piece] of edits) {
        const pos = text.length === 0 ? 0 : n % (text.length + 1);
        if (op === 'insert') text = text.slice(0, pos) + piece + text.slice(pos);
        else if (op === 'delete') text = text.slice(0, pos) + text.slice(pos + 1 + (n % 3));
        else text = text.slice(0, pos) + piece + text.slice(pos + piece.length);
      }
      return text;
    });
}

/** Random text of every kind a user (or an attacker) might feed a parser. */
export function anyText(seeds: readonly string[]): fc.Arbitrary<string> {
  return fc.oneof(
    fc.string(),
    fc.string({ unit: 'binary', maxLength: 60 }),
    fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.from(b).toString('latin1')),
    fc.json(),
    fc.stringMatching(/^[0-9:,@+ug \n-]{0,40}$/),
    mutated(seeds),
    mutated(seeds),
  );
}

/** Checks that a successful parse produced sane numbers. */
export function assertU32Extents(extents: readonly Extent[]): void {
  for (const e of extents) {
    for (const v of [e.inside, e.outside, e.count])
      assert.ok(Number.isInteger(v) && v >= 0 && v <= U32, `bad value ${v}`);
  }
}

/**
 * The fuzz property: `parse` either returns or throws a UsernsError (ParseError for syntax);
 * never a TypeError, RangeError or anything else. `check` inspects successful results.
 */
export function onlyTypedErrors(
  seeds: readonly string[],
  parse: (text: string) => unknown,
  check: (result: never) => void = () => {},
  numRuns = 1500,
): void {
  fc.assert(
    fc.property(anyText(seeds), (text) => {
      let result: unknown;
      try {
        result = parse(text);
      } catch (error) {
        assert.ok(error instanceof UsernsError, `threw ${String(error)} for ${JSON.stringify(text)}`);
        if (error instanceof ParseError) {
          assert.ok(error.line >= 1 && error.column >= 1, `bad position ${error.line}:${error.column}`);
          assert.match(error.code, /^[A-Z][A-Z0-9_]*$/);
        }
        return;
      }
      check(result as never);
    }),
    { numRuns },
  );
}

/** Asserts `fn` throws a ParseError with this code (and, when given, line and column). */
export function throwsParse(fn: () => unknown, code: string, line?: number, column?: number): ParseError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ParseError, `expected ParseError ${code}, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (line !== undefined) assert.equal(error.line, line, error.message);
    if (column !== undefined) assert.equal(error.column, column, error.message);
    return error;
  }
  assert.fail(`expected ParseError ${code}, nothing thrown`);
}
