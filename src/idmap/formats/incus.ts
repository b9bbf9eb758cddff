import { UsernsError } from '../../errors/index.js';
import { type ExtentKind, INVALID_ID, type KindedExtent } from '../extent.js';
import { assertWritable, decimalU32, isProblem } from './numbers.js';
import { parseErrorAt, splitLines } from './position.js';

/**
 * Incus / LXD `raw.idmap`: one entry per line, `KIND HOST CONTAINER`, where KIND is `both`,
 * `uid` or `gid` and HOST / CONTAINER are an ID `A` or an inclusive range `A-B`. Note the order:
 * host (outside) first, then container (inside) — the reverse of every other format here.
 * Both ranges must have the same length. Examples: `both 1000 1000`, `uid 1000-1999 0-999`.
 *
 * As Incus's parser: lines split at '\n', empty lines skipped, fields separated by exactly one
 * space (Incus rejects tabs, doubled or trailing spaces and '\r', so we do too, with a message
 * saying so). No comments. Incus then hole-punches each entry into its map (AddSafe); that is
 * map algebra, not syntax, so entries are returned as written, in order.
 */

export interface IncusParseOptions {
  source?: string;
}

const KINDS: Record<string, ExtentKind> = { both: 'both', uid: 'uid', gid: 'gid' };
const HINT =
  'each line is "both|uid|gid HOST CONTAINER" with IDs or inclusive ranges A-B, e.g. uid 1000-1999 0-999';

type Input = { text: string; source?: string | undefined };

/** `A` or `A-B` (inclusive) → start and count. */
function parseRange(
  field: string,
  offset: number,
  side: string,
  input: Input,
): { start: number; count: number } {
  const parts = field.split('-');
  if (parts.length > 2) {
    throw parseErrorAt('SYNTAX', `${side} range must be an ID or A-B`, input, offset, field, HINT);
  }
  const start = decimalU32(parts[0]!, `${side} ID`);
  if (isProblem(start)) {
    // "-5" splits into ["", "5"]: say "negative" rather than "missing".
    const reason = parts[0] === '' && parts.length === 2 ? `${side} ID must not be negative` : start.reason;
    throw parseErrorAt(
      parts[0] === '' && parts.length === 2 ? 'BAD_NUMBER' : start.code,
      reason,
      input,
      offset,
      field,
      HINT,
    );
  }
  if (parts.length === 1) return { start, count: 1 };
  const last = decimalU32(parts[1]!, `last ${side} ID of the range`);
  if (isProblem(last))
    throw parseErrorAt(last.code, last.reason, input, offset + parts[0]!.length + 1, parts[1] || field, HINT);
  if (last < start) {
    throw parseErrorAt(
      'RANGE_REVERSED',
      `${side} range ${field} ends before it starts`,
      input,
      offset,
      field,
      HINT,
    );
  }
  if (last - start + 1 > INVALID_ID) {
    throw parseErrorAt(
      'NUMBER_TOO_LARGE',
      `${side} range ${field} holds ${last - start + 1} IDs, more than 4294967295`,
      input,
      offset,
      field,
      HINT,
    );
  }
  return { start, count: last - start + 1 };
}

/**
 * Parses Incus `raw.idmap` lines (`both 1000 1000`, `uid 1000-1999 0-999`): host ID(s) first,
 * then container ID(s).
 *
 * @throws ParseError naming the line and column of the first malformed entry.
 */
export function parseIncusRawIdmap(text: string, options: IncusParseOptions = {}): KindedExtent[] {
  const input = { text, source: options.source };
  const out: KindedExtent[] = [];
  for (const line of splitLines(text)) {
    const t = line.text;
    if (t === '') continue;
    const fields = t.split(' ');
    if (fields.length !== 3 || fields.some((f) => f === '')) {
      const spacing = /[\t\r]| {2}|^ | $/.test(t) ? ' (fields are separated by exactly one space)' : '';
      throw parseErrorAt(
        fields.length < 3 ? 'MISSING_FIELD' : 'SYNTAX',
        `expected 3 fields "KIND HOST CONTAINER", found ${fields.filter((f) => f !== '').length}${spacing}`,
        input,
        line.offset,
        t,
        HINT,
      );
    }
    const [word, hostField, containerField] = fields as [string, string, string];
    const kind = Object.hasOwn(KINDS, word) ? KINDS[word]! : undefined;
    if (kind === undefined)
      throw parseErrorAt('UNKNOWN_KIND', 'expected both, uid or gid', input, line.offset, word, HINT);
    const hostOffset = line.offset + word.length + 1;
    const containerOffset = hostOffset + hostField.length + 1;
    const host = parseRange(hostField, hostOffset, 'host', input);
    const container = parseRange(containerField, containerOffset, 'container', input);
    if (host.count !== container.count) {
      throw parseErrorAt(
        'RANGE_LENGTH_MISMATCH',
        `the host range has ${host.count} IDs but the container range has ${container.count}`,
        input,
        line.offset,
        t,
        HINT,
      );
    }
    out.push({ inside: container.start, outside: host.start, count: host.count, kind });
  }
  return out;
}

function range(start: number, count: number): string {
  return count === 1 ? `${start}` : `${start}-${start + count - 1}`;
}

/** `both 1000 1000\nuid 100000-165535 0-65535\n` — one line per entry, ranges inclusive. */
export function formatIncusRawIdmap(entries: readonly KindedExtent[]): string {
  let text = '';
  for (const e of entries) {
    assertWritable(e, 'Incus raw.idmap');
    if (e.count === 0 || e.inside + e.count - 1 > INVALID_ID || e.outside + e.count - 1 > INVALID_ID) {
      throw new UsernsError(
        'INVALID_EXTENT',
        `cannot write Incus raw.idmap: ${e.inside}:${e.outside}:${e.count} is not a range of IDs`,
        {
          hint: 'raw.idmap ranges are inclusive A-B, so they hold at least one ID and end at 4294967295 at most',
        },
      );
    }
    text += `${e.kind} ${range(e.outside, e.count)} ${range(e.inside, e.count)}\n`;
  }
  return text;
}
