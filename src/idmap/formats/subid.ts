import { ParseError, type ParseErrorCode, UsernsError } from '../../errors/index.js';
import { INVALID_ID } from '../extent.js';

/**
 * /etc/subuid and /etc/subgid: one `owner:start:count` per line, owner a login name or a numeric
 * UID (both files are keyed by the USER, never by a group). Pure text in, entries out: no I/O.
 *
 * Unlike podman (which fails the whole file on one bad line, even another user's), a malformed
 * line becomes a ParseError in `problems` and is skipped; the other lines are still used.
 *
 * What we accept is what every consumer agrees on, so that an entry we report as usable is one
 * that shadow's newuidmap/newgidmap (the tools that actually grant the IDs) honour too:
 *
 * - Numbers are plain decimal, no sign, no leading zeros (except `0` itself). Shadow HEAD parses
 *   them with base 0 (`0x186a0` = 100000, and `0100000` is OCTAL 32768), while podman,
 *   containers/storage and util-linux unshare parse decimal (`0100000` = 100000, `0x186a0` is
 *   an error). A hex or zero-padded number therefore means different IDs to different tools; we
 *   report it (SUBID_AMBIGUOUS_NUMBER, with both readings) and skip the line rather than silently
 *   pick one reading.
 * - No whitespace inside a line: shadow compares the owner verbatim and rejects trailing text
 *   after a number (a trailing space or a DOS `\r` makes newuidmap ignore the line), while podman
 *   trims it. Such lines are reported (SUBID_SYNTAX) and skipped.
 * - Blank (whitespace-only) lines and lines whose first non-blank character is `#` are skipped.
 *   (Shadow has no comment syntax: it ignores them because they do not parse, same effect.)
 * - start ≤ 4294967295, 1 ≤ count ≤ 4294967295 and start + count ≤ 4294967296, as shadow HEAD.
 *   (Whether the kernel can map the range, e.g. one containing 4294967295, is the validator's
 *   business, not the file format's.)
 *
 * Problem codes: SUBID_SYNTAX (field count, empty owner, whitespace, not a number),
 * SUBID_AMBIGUOUS_NUMBER, SUBID_NUMBER_TOO_LARGE (> 4294967295), SUBID_EMPTY_RANGE (count 0),
 * SUBID_RANGE_OVERFLOW (start + count > 4294967296).
 */

/** One usable line of a subordinate ID file. `line` counts from 1. */
export interface SubidEntry {
  owner: string;
  start: number;
  count: number;
  line: number;
}

/** What {@link parseSubid} found: the well-formed entries and one problem per malformed line. */
export interface SubidParseResult {
  /** Well-formed entries, in file order (never merged or sorted). */
  entries: SubidEntry[];
  /** One ParseError per malformed line (that line is skipped). */
  problems: ParseError[];
}

/** Options of {@link parseSubid}. */
export interface SubidParseOptions {
  /** File name for messages, e.g. `/etc/subuid`. */
  source?: string;
}

const HINT = 'each line must be owner:start:count in decimal, e.g. alice:100000:65536';
const FIELD_NAMES = ['owner', 'start', 'count'] as const;

/** C isspace(). */
function hasSpace(text: string): number {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x20 || (c >= 0x09 && c <= 0x0d)) return i;
  }
  return -1;
}

function describeChar(ch: string): string {
  if (ch === '\r') return 'a carriage return (DOS line ending)';
  if (ch === '\t') return 'a tab';
  if (ch === ' ') return 'a space';
  return `character ${JSON.stringify(ch)}`;
}

/** How shadow's strtoul(…, 0) reads a hex or zero-padded number, for the message. */
function shadowReading(digits: string): string {
  if (/^0[xX][0-9a-fA-F]+$/.test(digits)) return `${BigInt(digits)}`;
  if (/^0[0-7]+$/.test(digits)) return `${BigInt(`0o${digits.slice(1)}`)} (octal)`;
  return 'nothing (invalid)';
}

interface LineProblem {
  code: ParseErrorCode;
  reason: string;
  column: number; // 1-based
  text: string;
}

function parseLine(line: string): { owner: string; start: number; count: number } | LineProblem {
  const fields = line.split(':');
  if (fields.length !== 3) {
    return {
      code: 'SUBID_SYNTAX',
      reason: `expected 3 fields owner:start:count separated by ':', found ${fields.length}`,
      column: 1,
      text: line,
    };
  }
  const columns = [1, fields[0]!.length + 2, fields[0]!.length + fields[1]!.length + 3];
  const values: number[] = [];
  for (let f = 0; f < 3; f++) {
    const field = fields[f]!;
    const column = columns[f]!;
    const space = hasSpace(field);
    if (space >= 0) {
      return {
        code: 'SUBID_SYNTAX',
        reason: `${describeChar(field[space]!)} in the ${FIELD_NAMES[f]} field (newuidmap/newgidmap would ignore this line)`,
        column: column + space,
        text: field,
      };
    }
    if (f === 0) {
      if (field === '') return { code: 'SUBID_SYNTAX', reason: 'empty owner', column, text: line };
      continue;
    }
    if (!/^[0-9]+$/.test(field)) {
      if (/^0[xX][0-9a-fA-F]+$/.test(field)) {
        return {
          code: 'SUBID_AMBIGUOUS_NUMBER',
          reason: `hexadecimal ${FIELD_NAMES[f]}: shadow's newuidmap reads it as ${shadowReading(field)}, podman and unshare reject it; write it in decimal`,
          column,
          text: field,
        };
      }
      return {
        code: 'SUBID_SYNTAX',
        reason: field === '' ? `empty ${FIELD_NAMES[f]}` : `${FIELD_NAMES[f]} is not a decimal number`,
        column,
        text: field === '' ? line : field,
      };
    }
    if (field.length > 1 && field[0] === '0') {
      return {
        code: 'SUBID_AMBIGUOUS_NUMBER',
        reason: `${FIELD_NAMES[f]} has a leading zero: shadow's newuidmap reads it as ${shadowReading(field)}, podman and unshare as ${BigInt(field)}; write it without leading zeros`,
        column,
        text: field,
      };
    }
    // Digit strings longer than 10 are certainly too large; keep the conversion exact.
    const value = field.length > 10 ? Number.POSITIVE_INFINITY : Number(field);
    if (value > INVALID_ID) {
      return {
        code: 'SUBID_NUMBER_TOO_LARGE',
        reason: `${FIELD_NAMES[f]} ${field} is larger than 4294967295`,
        column,
        text: field,
      };
    }
    values.push(value);
  }
  const [start, count] = values as [number, number];
  if (count === 0) {
    return {
      code: 'SUBID_EMPTY_RANGE',
      reason: 'count is 0 (an empty range never matches)',
      column: columns[2]!,
      text: fields[2]!,
    };
  }
  if (start + count > 4294967296) {
    return {
      code: 'SUBID_RANGE_OVERFLOW',
      reason: `start ${start} + count ${count} goes past the last ID 4294967295`,
      column: columns[1]!,
      text: line,
    };
  }
  return { owner: fields[0]!, start, count };
}

/** Parses subuid/subgid text. Never throws: malformed lines are reported in `problems` and skipped. */
export function parseSubid(text: string, opts: SubidParseOptions = {}): SubidParseResult {
  const entries: SubidEntry[] = [];
  const problems: ParseError[] = [];
  const lines = text.split('\n');
  // A final newline does not start another line.
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const parsed = parseLine(line);
    if ('code' in parsed) {
      problems.push(
        new ParseError(
          parsed.code,
          parsed.reason,
          { source: opts.source, line: i + 1, column: parsed.column, text: parsed.text },
          { hint: `${HINT}; this line is skipped` },
        ),
      );
      continue;
    }
    entries.push({ owner: parsed.owner, start: parsed.start, count: parsed.count, line: i + 1 });
  }
  return { entries, problems };
}

/** True when `owner` can be written as the owner field of a line that parseSubid reads back. */
export function isValidSubidOwner(owner: string): boolean {
  return (
    owner !== '' &&
    !owner.includes(':') &&
    !owner.includes('\n') &&
    hasSpace(owner) < 0 &&
    !owner.startsWith('#')
  );
}

/**
 * Formats entries as subuid/subgid text, one `owner:start:count\n` per entry, in the given order.
 * Throws UsernsError SUBID_INVALID_ENTRY for an entry that parseSubid would not read back.
 */
export function formatSubid(entries: readonly { owner: string; start: number; count: number }[]): string {
  let text = '';
  for (const e of entries) {
    const validNumbers =
      Number.isInteger(e.start) &&
      Number.isInteger(e.count) &&
      e.start >= 0 &&
      e.start <= INVALID_ID &&
      e.count >= 1 &&
      e.count <= INVALID_ID &&
      e.start + e.count <= 4294967296;
    if (!isValidSubidOwner(e.owner) || !validNumbers) {
      throw new UsernsError('SUBID_INVALID_ENTRY', `cannot write subordinate ID entry ${JSON.stringify(e)}`, {
        hint: 'the owner must be a non-empty name or UID without ":", "#" at the start or whitespace; count ≥ 1 and start + count ≤ 4294967296',
        data: { entry: { owner: e.owner, start: e.start, count: e.count } },
      });
    }
    text += `${e.owner}:${e.start}:${e.count}\n`;
  }
  return text;
}

/**
 * Whether a subid owner field designates this user: equal to the login name, or a decimal UID
 * equal to the user's UID (shadow and unshare both accept either form, in both files).
 */
export function subidOwnerMatches(owner: string, user: { name: string; uid: number }): boolean {
  if (owner === user.name) return true;
  return /^[0-9]+$/.test(owner) && owner.length <= 10 && Number(owner) === user.uid;
}
