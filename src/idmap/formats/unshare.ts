import type { ParseErrorCode } from '../../errors/index.js';
import type { Extent, ExtentKind, KindedExtent } from '../extent.js';
import { byKind } from './kinds.js';
import { assertWritable, decimalU32, isProblem } from './numbers.js';
import { isCSpace, lineColumn, parseErrorAt, type Token, tokens } from './position.js';

/**
 * util-linux unshare `--map-users` / `--map-groups` values (docs/kernel-rules.md, "util-linux unshare"):
 * - `inner:outer:count` (v2.39+; unshare tries this form first),
 * - `outer,inner,count` (v2.38, deprecated; note the swapped order),
 * - keywords `auto` (first subid block at inner 0), `all` (v2.40: copy the current map as
 *   identity) and `subids` (v2.41: first subid block as identity). Resolving them needs
 *   /etc/subuid or /proc, so they are returned symbolically.
 *
 * Input is one or more values separated by whitespace, each optionally written as the option
 * itself: `--map-users=V`, `--map-users V`, `--map-groups=V`, and `--map-auto` / `--map-subids`
 * (both kinds). A bare value gets the kind from the caller (default 'both').
 * unshare reads numbers with sscanf("%u"), which accepts signs and wraps; we accept plain
 * decimal u32 only, and nothing may follow the third number (sscanf would ignore it).
 */

export type UnshareKeyword = 'auto' | 'all' | 'subids';

/** A util-linux keyword (`auto`, `all`, `subids`) in place of numbers, with where it was. */
export interface UnshareKeywordEntry {
  kind: ExtentKind;
  keyword: UnshareKeyword;
  line: number;
  column: number;
}

/** One entry of a util-linux map: numbers, or a keyword. */
export type UnshareEntry = KindedExtent | UnshareKeywordEntry;

/** Options of {@link parseUnshareMap}. */
export interface UnshareParseOptions {
  source?: string;
  /** Kind of values given without an option name. Default 'both'. */
  kind?: ExtentKind;
}

const KEYWORDS: readonly string[] = ['auto', 'all', 'subids'];
const OPTIONS: Record<string, ExtentKind> = { '--map-users': 'uid', '--map-groups': 'gid' };
const HINT = 'values are inner:outer:count (or the old outer,inner,count), auto, all or subids';

type Input = { text: string; source?: string | undefined };

/** Whether an entry is a keyword rather than numbers. */
export function isUnshareKeyword(entry: UnshareEntry): entry is UnshareKeywordEntry {
  return 'keyword' in entry;
}

interface FieldProblem {
  code: ParseErrorCode;
  reason: string;
  at: number;
}

/** The three numbers of `a<sep>b<sep>c`, or the first problem and its offset in `value`. */
function threeNumbers(value: string, sep: string, names: readonly string[]): number[] | FieldProblem {
  const fields = value.split(sep);
  if (fields.length !== 3) {
    return {
      code: fields.length < 3 ? 'MISSING_FIELD' : 'SYNTAX',
      reason: `expected 3 fields separated by '${sep}', found ${fields.length}`,
      at: 0,
    };
  }
  const values: number[] = [];
  let at = 0;
  for (let f = 0; f < 3; f++) {
    const v = decimalU32(fields[f]!, names[f]!);
    if (isProblem(v)) return { ...v, at };
    values.push(v);
    at += fields[f]!.length + 1;
  }
  return values;
}

function parseValue(token: Token, kind: ExtentKind, input: Input): UnshareEntry {
  const v = token.text;
  if (KEYWORDS.includes(v))
    return { kind, keyword: v as UnshareKeyword, ...lineColumn(input.text, token.offset) };
  if (!v.includes(':') && !v.includes(',')) {
    throw parseErrorAt(
      'SYNTAX',
      'expected inner:outer:count, outer,inner,count, auto, all or subids',
      input,
      token.offset,
      v,
      HINT,
    );
  }
  // As unshare: the colon form first; the comma form only when there is no colon.
  const colon = v.includes(':');
  const r = colon
    ? threeNumbers(v, ':', ['inner ID', 'outer ID', 'count'])
    : threeNumbers(v, ',', ['outer ID', 'inner ID', 'count']);
  if (!Array.isArray(r)) {
    const reason = colon ? r.reason : `${r.reason} (old form outer,inner,count)`;
    throw parseErrorAt(r.code, reason, input, token.offset + r.at, v, HINT);
  }
  const [a, b, count] = r as [number, number, number];
  return colon ? { inside: a, outside: b, count, kind } : { inside: b, outside: a, count, kind };
}

/**
 * Parses util-linux `unshare --map-users=inner:outer:count` values (and the old
 * `outer,inner,count` form, and the `--map-auto`/`--map-subids` keywords).
 *
 * @throws ParseError naming the column of the first malformed value.
 */
export function parseUnshareMap(text: string, options: UnshareParseOptions = {}): UnshareEntry[] {
  const input = { text, source: options.source };
  const list = tokens(text, isCSpace);
  const out: UnshareEntry[] = [];
  for (let i = 0; i < list.length; i++) {
    const token = list[i]!;
    const t = token.text;
    if (t === '--map-auto' || t === '--map-subids') {
      out.push({
        kind: 'both',
        keyword: t === '--map-auto' ? 'auto' : 'subids',
        ...lineColumn(text, token.offset),
      });
      continue;
    }
    if (t.startsWith('--')) {
      const eq = t.indexOf('=');
      const name = eq < 0 ? t : t.slice(0, eq);
      const kind = Object.hasOwn(OPTIONS, name) ? OPTIONS[name]! : undefined;
      if (kind === undefined) {
        throw parseErrorAt(
          'UNKNOWN_OPTION',
          `${name} is not an unshare ID-map option`,
          input,
          token.offset,
          t,
          'options: --map-users, --map-groups, --map-auto, --map-subids',
        );
      }
      let value: Token | undefined;
      if (eq >= 0) value = { text: t.slice(eq + 1), offset: token.offset + eq + 1 };
      else value = list[++i];
      if (value === undefined || value.text === '') {
        throw parseErrorAt(
          'MISSING_FIELD',
          `${name} needs a value`,
          input,
          value?.offset ?? text.length,
          t,
          HINT,
        );
      }
      out.push(parseValue(value, kind, input));
      continue;
    }
    out.push(parseValue(token, options.kind ?? 'both', input));
  }
  return out;
}

/** `inner:outer:count`, the current syntax (util-linux ≥ 2.39). */
export function formatUnshareValue(e: Extent): string {
  assertWritable(e, 'unshare --map-users');
  return `${e.inside}:${e.outside}:${e.count}`;
}

/**
 * unshare options for the entries: `--map-users=…` for every entry that applies to UIDs, then
 * `--map-groups=…` for GIDs ('both' entries give one of each). Several ranges per kind need
 * util-linux ≥ 2.40.
 */
export function formatUnshareArgs(entries: readonly KindedExtent[]): string[] {
  const { uid, gid } = byKind(entries);
  return [
    ...uid.map((e) => `--map-users=${formatUnshareValue(e)}`),
    ...gid.map((e) => `--map-groups=${formatUnshareValue(e)}`),
  ];
}
