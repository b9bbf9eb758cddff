import { type Extent, extent } from '../extent.js';
import { assertWritable, decimalU32, isProblem } from './numbers.js';
import { parseErrorAt } from './position.js';

/**
 * The CLI's inline map form: `inside:outside:count[,inside:outside:count…]`.
 *
 * Strict on purpose (it is what users type as an argument, so a typo must not silently mean
 * something else): every triple has all three fields, numbers are decimal u32, triples are
 * separated by single commas with no spaces. Whitespace around the whole text is allowed so a
 * file holding one line (with its newline) reads too. Podman's looser `--uidmap` syntax (count
 * optional, flags, `@`) lives in podman.ts.
 */

export interface TriplesOptions {
  /** File name or label for messages. */
  source?: string;
}

const FIELDS = ['inside ID', 'outside ID', 'count'] as const;
const HINT = 'write inside:outside:count triples separated by commas, e.g. 0:100000:65536,65536:1000:1';

/**
 * Parses inline triples `inside:outside:count[,…]` (what `--uidmap` and MAP arguments take).
 *
 * @throws ParseError naming the column of the first malformed triple.
 */
export function parseTriples(text: string, options: TriplesOptions = {}): Extent[] {
  const input = { text, source: options.source };
  const start = text.search(/\S/);
  if (start < 0)
    throw parseErrorAt('MISSING_FIELD', 'expected inside:outside:count, found nothing', input, 0, text, HINT);
  const end = text.length - (text.length - text.trimEnd().length);
  const out: Extent[] = [];
  let pos = start;
  while (pos <= end) {
    const comma = text.indexOf(',', pos);
    const stop = comma < 0 || comma > end ? end : comma;
    out.push(parseTriple(text.slice(pos, stop), pos, input));
    if (stop === end) break;
    pos = stop + 1;
    if (pos === end)
      throw parseErrorAt(
        'SYNTAX',
        'trailing comma: expected another inside:outside:count',
        input,
        stop,
        ',',
        HINT,
      );
  }
  return out;
}

function parseTriple(
  piece: string,
  offset: number,
  input: { text: string; source?: string | undefined },
): Extent {
  if (piece === '')
    throw parseErrorAt('SYNTAX', 'empty entry: expected inside:outside:count', input, offset, ',', HINT);
  const fields = piece.split(':');
  if (fields.length > 3) {
    const extra = fields.slice(0, 3).join(':').length;
    throw parseErrorAt(
      'SYNTAX',
      'too many fields: a triple is inside:outside:count (separate triples with commas)',
      input,
      offset + extra,
      piece.slice(extra),
      HINT,
    );
  }
  const values: number[] = [];
  let fieldOffset = offset;
  for (let f = 0; f < 3; f++) {
    const field = fields[f];
    if (field === undefined) {
      const missing = FIELDS[f]!;
      throw parseErrorAt(
        'MISSING_FIELD',
        `missing ${missing}: a triple is inside:outside:count${f === 2 ? ' (the count is required here; only podman --uidmap defaults it to 1)' : ''}`,
        input,
        offset + piece.length,
        piece,
        HINT,
      );
    }
    const value = decimalU32(field, FIELDS[f]!);
    if (isProblem(value))
      throw parseErrorAt(value.code, value.reason, input, fieldOffset, field === '' ? piece : field, HINT);
    values.push(value);
    fieldOffset += field.length + 1;
  }
  return extent(values[0]!, values[1]!, values[2]!);
}

/** `0:1000:1,1:100000:65536` — no trailing newline. */
export function formatTriples(extents: readonly Extent[]): string {
  return extents
    .map((e) => {
      assertWritable(e, 'triples');
      return `${e.inside}:${e.outside}:${e.count}`;
    })
    .join(',');
}
