import type { ExtentKind, KindedExtent } from '../extent.js';
import { assertWritable, decimalU32, isProblem } from './numbers.js';
import { type Line, parseErrorAt, splitLines } from './position.js';

/**
 * LXC ID maps: config lines `lxc.idmap = u 0 100000 65536` (also the pre-3.0 key `lxc.id_map`)
 * or the bare value `u 0 100000 65536`. Fields: type, container (inside) ID, host (outside) ID,
 * count.
 *
 * As LXC's parse_idmaps(): the type is one letter followed by whitespace, fields are separated
 * by runs of SP, \t or \r, numbers are decimal. LXC itself only knows `u` and `g`; we also
 * read `b` (both), as Incus/LXD write it in their own notation, but never write it: a 'both'
 * entry is written as a `u` line and a `g` line so the output is valid LXC config.
 * Blank lines and `#` comments are skipped. As in LXC, `lxc.idmap =` with an empty value clears
 * the entries read so far. Other `lxc.*` keys are an error unless `otherKeys: 'skip'` (then a
 * whole container config can be read for its ID maps).
 */

export interface LxcParseOptions {
  source?: string;
  /** What to do with config lines for other keys: 'error' (default) or 'skip'. */
  otherKeys?: 'error' | 'skip';
}

const KINDS: Record<string, ExtentKind> = { u: 'uid', g: 'gid', b: 'both' };
const FIELDS = ['container (inside) ID', 'host (outside) ID', 'count'] as const;
const HINT = 'each line is "lxc.idmap = u|g CONTAINER_ID HOST_ID COUNT", e.g. lxc.idmap = u 0 100000 65536';

/** LXC's field separators: SP, \t, \r. */
function isLxcSpace(ch: string | undefined): boolean {
  return ch === ' ' || ch === '\t' || ch === '\r';
}

type Input = { text: string; source?: string | undefined };

/** Parses one idmap value starting at `start` of `line`, as LXC's parse_idmaps() does. */
function parseValue(line: Line, start: number, input: Input): KindedExtent {
  const t = line.text;
  const at = (i: number) => line.offset + i;
  let i = start;
  while (isLxcSpace(t[i])) i++;
  const letter = t[i];
  const kind = letter !== undefined && Object.hasOwn(KINDS, letter) ? KINDS[letter] : undefined;
  if (kind === undefined) {
    throw parseErrorAt(
      'UNKNOWN_KIND',
      `expected the map type u (UIDs), g (GIDs) or b (both)`,
      input,
      at(i),
      letter ?? t,
      HINT,
    );
  }
  i++;
  if (i < t.length && !isLxcSpace(t[i])) {
    throw parseErrorAt(
      'SYNTAX',
      'the map type is a single letter followed by whitespace',
      input,
      at(i - 1),
      t.slice(i - 1).split(/[ \t\r]/)[0]!,
      HINT,
    );
  }
  const values: number[] = [];
  for (let f = 0; f < 3; f++) {
    while (isLxcSpace(t[i])) i++;
    const fieldStart = i;
    while (i < t.length && !isLxcSpace(t[i])) i++;
    const field = t.slice(fieldStart, i);
    const value = decimalU32(field, FIELDS[f]!);
    if (isProblem(value))
      throw parseErrorAt(
        value.code,
        value.reason,
        input,
        at(fieldStart),
        field === '' ? t.trim() : field,
        HINT,
      );
    values.push(value);
  }
  while (isLxcSpace(t[i])) i++;
  if (i < t.length)
    throw parseErrorAt(
      'SYNTAX',
      'expected 4 fields (type, container ID, host ID, count), found more',
      input,
      at(i),
      t.slice(i),
      HINT,
    );
  return { inside: values[0]!, outside: values[1]!, count: values[2]!, kind };
}

/**
 * Parses LXC configuration `lxc.idmap = u 0 100000 65536` lines (other keys and comments are
 * skipped).
 *
 * @throws ParseError naming the line and column of the first malformed entry.
 */
export function parseLxcIdmap(text: string, options: LxcParseOptions = {}): KindedExtent[] {
  const input = { text, source: options.source };
  let out: KindedExtent[] = [];
  for (const line of splitLines(text)) {
    const t = line.text;
    const first = t.search(/[^ \t\r]/);
    if (first < 0 || t[first] === '#') continue;
    const key = /^(lxc\.[A-Za-z0-9_.]*)[ \t]*=/.exec(t.slice(first));
    if (key === null) {
      if (t.startsWith('lxc.', first)) {
        throw parseErrorAt(
          'SYNTAX',
          "expected '=' after the key",
          input,
          line.offset + first,
          t.slice(first),
          HINT,
        );
      }
      out.push(parseValue(line, first, input));
      continue;
    }
    const name = key[1]!;
    if (name !== 'lxc.idmap' && name !== 'lxc.id_map') {
      if (options.otherKeys === 'skip') continue;
      throw parseErrorAt(
        'UNKNOWN_KEY',
        `${name} is not an ID-map key (expected lxc.idmap)`,
        input,
        line.offset + first,
        name,
        HINT,
      );
    }
    const valueStart = first + key[0].length;
    if (t.slice(valueStart).trim() === '') {
      out = []; // LXC: an empty value clears the list read so far
      continue;
    }
    out.push(parseValue(line, valueStart, input));
  }
  return out;
}

/** Options of {@link formatLxcIdmap}. */
export interface LxcFormatOptions {
  /** Write bare values (`u 0 100000 65536`) instead of `lxc.idmap = …` config lines. */
  bare?: boolean;
}

/** One line per entry, a 'both' entry as a `u` line then a `g` line (LXC has no `b`). */
export function formatLxcIdmap(entries: readonly KindedExtent[], options: LxcFormatOptions = {}): string {
  const prefix = options.bare ? '' : 'lxc.idmap = ';
  let text = '';
  for (const e of entries) {
    assertWritable(e, 'LXC idmap');
    const letters = e.kind === 'both' ? ['u', 'g'] : [e.kind === 'uid' ? 'u' : 'g'];
    for (const letter of letters) text += `${prefix}${letter} ${e.inside} ${e.outside} ${e.count}\n`;
  }
  return text;
}
