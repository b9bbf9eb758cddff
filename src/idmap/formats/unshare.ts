import type { ParseErrorCode } from '../../errors/index.js';
import { type Extent, type ExtentKind, extent, type IdKind, type KindedExtent } from '../extent.js';
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
 *
 * The single-ID options are read too: `--map-user=N` / `--map-group=N` (the caller's euid/egid
 * becomes N inside; the last one given wins), `-r` / `--map-root-user` (= user and group 0) and
 * `-c` / `--map-current-user` (= the caller's own IDs). They are returned as `UnshareSingleEntry`
 * and resolved with the caller's IDs by `resolveUnshareSingles`, which applies unshare's hole
 * rule to the ranges.
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

/** `--map-user=N`, `--map-group=N`, `-r`, `-c`: the caller's own ID (euid/egid) becomes `inside`. */
export interface UnshareSingleEntry {
  kind: IdKind;
  /** The inside ID, or 'self' for `-c` (the caller's own ID). */
  single: number | 'self';
  line: number;
  column: number;
}

/** One entry of a util-linux map: numbers, a keyword, or a single-ID option. */
export type UnshareEntry = KindedExtent | UnshareKeywordEntry | UnshareSingleEntry;

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

export function isUnshareSingle(entry: UnshareEntry): entry is UnshareSingleEntry {
  return 'single' in entry;
}

const SINGLE_OPTIONS: Record<string, IdKind> = { '--map-user': 'uid', '--map-group': 'gid' };
const ROOT_OPTIONS = ['-r', '--map-root-user'];
const CURRENT_OPTIONS = ['-c', '--map-current-user'];

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
 * The value of an option token: after its `=`, or else the next token (`following`); a missing
 * or empty value is a ParseError MISSING_FIELD with `missing` as its reason.
 */
function optionValue(token: Token, following: Token | undefined, missing: string, input: Input): Token {
  const eq = token.text.indexOf('=');
  const value = eq >= 0 ? { text: token.text.slice(eq + 1), offset: token.offset + eq + 1 } : following;
  if (value === undefined || value.text === '')
    throw parseErrorAt('MISSING_FIELD', missing, input, value?.offset ?? input.text.length, token.text, HINT);
  return value;
}

/**
 * Parses util-linux `unshare --map-users=inner:outer:count` values (and the old
 * `outer,inner,count` form, and the `--map-auto`/`--map-subids` keywords, and the single-ID options `--map-user`, `--map-group`, `-r`, `-c`).
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
    if (ROOT_OPTIONS.includes(t) || CURRENT_OPTIONS.includes(t)) {
      const single = ROOT_OPTIONS.includes(t) ? 0 : 'self';
      const at = lineColumn(text, token.offset);
      out.push({ kind: 'uid', single, ...at }, { kind: 'gid', single, ...at });
      continue;
    }
    const singleName = t.startsWith('--') ? (t.includes('=') ? t.slice(0, t.indexOf('=')) : t) : '';
    if (Object.hasOwn(SINGLE_OPTIONS, singleName)) {
      const eq = t.indexOf('=');
      const value = optionValue(token, eq >= 0 ? undefined : list[++i], `${singleName} needs an ID`, input);
      const id = decimalU32(value.text, 'ID');
      if (isProblem(id)) {
        const reason = /^[0-9]/.test(value.text)
          ? id.reason
          : `${id.reason} (user and group names are not looked up here: give the number)`;
        throw parseErrorAt(id.code, reason, input, value.offset, value.text, HINT);
      }
      out.push({ kind: SINGLE_OPTIONS[singleName]!, single: id, ...lineColumn(text, token.offset) });
      continue;
    }
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
          'options: --map-users, --map-groups, --map-auto, --map-subids, --map-user, --map-group, -r, -c',
        );
      }
      const value = optionValue(token, eq >= 0 ? undefined : list[++i], `${name} needs a value`, input);
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

/**
 * unshare's hole rule (util-linux `add_single_map_range`, the same since 2.38): when a single-ID
 * mapping (`inside` ← the caller's `outside`) is combined with a range, and the single ID's
 * inside or outside ID lies in the range's `[start, start + count]` on that side — the upper
 * bound included — the range loses its top ID (count − 1) and its remaining IDs are laid out
 * again skipping the single inside ID and the single outside ID, in up to three pieces.
 * Measured with subuid 100000:65536 and uid 1001: `--map-auto -r` → 1:100000:65535;
 * `--map-auto -c` → 0:100000:1001, 1002:101001:64534.
 */
export function punchUnshareHole(range: Extent, single: Extent): Extent[] {
  const within = (id: number, start: number) => id >= start && id <= start + range.count;
  if (!within(single.inside, range.inside) && !within(single.outside, range.outside)) return [range];
  const out: Extent[] = [];
  let inside = range.inside;
  let outside = range.outside;
  let left = range.count - 1;
  while (left > 0) {
    if (inside === single.inside) inside++;
    if (outside === single.outside) outside++;
    let n = left;
    if (inside < single.inside) n = Math.min(n, single.inside - inside);
    if (outside < single.outside) n = Math.min(n, single.outside - outside);
    out.push(extent(inside, outside, n));
    inside += n;
    outside += n;
    left -= n;
  }
  return out;
}

/**
 * The extents unshare writes for `entries`, per kind: the single-ID mapping first (the last
 * `--map-user`/`-r`/`-c` given for the kind; `outside` = the caller's euid or egid), then every
 * range with the hole rule applied. Keywords are returned unchanged (they need /etc/subuid).
 */
export function resolveUnshareSingles(
  entries: readonly UnshareEntry[],
  caller: { uid: number; gid: number },
): (KindedExtent | UnshareKeywordEntry)[] {
  const singles: Partial<Record<IdKind, Extent>> = {};
  for (const e of entries) {
    if (!isUnshareSingle(e)) continue;
    const own = e.kind === 'uid' ? caller.uid : caller.gid;
    singles[e.kind] = extent(e.single === 'self' ? own : e.single, own, 1);
  }
  const out: (KindedExtent | UnshareKeywordEntry)[] = [];
  for (const kind of ['uid', 'gid'] as const) {
    const s = singles[kind];
    if (s !== undefined) out.push({ ...s, kind });
  }
  for (const e of entries) {
    if (isUnshareSingle(e)) continue;
    if (isUnshareKeyword(e)) {
      out.push(e);
      continue;
    }
    const kinds: IdKind[] = e.kind === 'both' ? ['uid', 'gid'] : [e.kind];
    const pieces = kinds.map((k) => {
      const s = singles[k];
      return s === undefined ? [e as Extent] : punchUnshareHole(e, s);
    });
    if (kinds.length === 2 && singles.uid === undefined && singles.gid === undefined) {
      out.push(e);
      continue;
    }
    kinds.forEach((k, i) => {
      for (const p of pieces[i]!) out.push({ inside: p.inside, outside: p.outside, count: p.count, kind: k });
    });
  }
  return out;
}
