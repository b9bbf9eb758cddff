import { type ErrorCode, type ErrorDetails, ParseError } from '../../errors/index.js';

/**
 * Positions and errors shared by the map-format parsers. Every parser reports problems as a
 * ParseError carrying the 1-based line and column of the offending text, so that messages read
 * `file:3:7: …` whatever the format.
 */

/** Where a problem is: the source label, a 1-based line and column, and the offending text. */
export interface Where {
  source?: string | undefined;
  line: number;
  column: number;
  text: string;
}

/** 1-based line and column of a 0-based offset into `text` (columns count UTF-16 units). */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  const end = Math.min(offset, text.length);
  for (let i = text.indexOf('\n'); i >= 0 && i < end; i = text.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, column: end - lineStart + 1 };
}

/** Long offending texts are cut so that an error message stays readable. */
function clip(text: string): string {
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

export function parseError(code: ErrorCode, reason: string, where: Where, hint?: string): ParseError {
  const details: ErrorDetails = hint === undefined ? {} : { hint };
  return new ParseError(
    code,
    reason,
    { source: where.source, line: where.line, column: where.column, text: clip(where.text) },
    details,
  );
}

/** A ParseError at `offset` of `text` (line and column computed from the offset). */
export function parseErrorAt(
  code: ErrorCode,
  reason: string,
  input: { text: string; source?: string | undefined },
  offset: number,
  offending: string,
  hint?: string,
): ParseError {
  return parseError(
    code,
    reason,
    { source: input.source, ...lineColumn(input.text, offset), text: offending },
    hint,
  );
}

/** One line of a text: its content (without the '\n'), 1-based number and offset of its start. */
export interface Line {
  text: string;
  number: number;
  offset: number;
}

/** Splits at '\n'. A final '\n' ends the last line rather than starting an empty one. */
export function splitLines(text: string): Line[] {
  if (text === '') return [];
  const parts = text.split('\n');
  if (parts[parts.length - 1] === '') parts.pop();
  const out: Line[] = [];
  let offset = 0;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    out.push({ text: part, number: i + 1, offset });
    offset += part.length + 1;
  }
  return out;
}

/** One whitespace-separated token of a text and its offset. */
export interface Token {
  text: string;
  offset: number;
}

/** Splits `text` at runs of characters matching `isSeparator` (no empty tokens). */
export function tokens(text: string, isSeparator: (code: number) => boolean, base = 0): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    while (i < text.length && isSeparator(text.charCodeAt(i))) i++;
    const start = i;
    while (i < text.length && !isSeparator(text.charCodeAt(i))) i++;
    if (i > start) out.push({ text: text.slice(start, i), offset: base + start });
  }
  return out;
}

/** C isspace(): SP, \t, \n, \v, \f, \r. */
export function isCSpace(code: number): boolean {
  return code === 0x20 || (code >= 0x09 && code <= 0x0d);
}
