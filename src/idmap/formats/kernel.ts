import { ParseError } from '../../errors/index.js';
import { type Extent, extent, INVALID_ID } from '../extent.js';

/**
 * The kernel's /proc/PID/{uid,gid}_map text.
 *
 * Writing: the exact grammar of kernel map_write() (docs/kernel-rules.md, "Line grammar"): lines split at
 * '\n' with at most one trailing newline; per line optional leading whitespace, three decimal
 * numbers separated by whitespace (C isspace: SP \t \n \v \f \r), optional trailing whitespace.
 * Reading: the kernel prints "%10u %10u %10u\n", which the same grammar accepts; 4294967295 in
 * column 2 means "not mappable from the reader's namespace" and is kept as is.
 *
 * One deliberate difference: the kernel parses numbers into 64 bits and silently truncates them
 * to u32 (4294967296 becomes 0). We refuse numbers above 4294967295 instead.
 */

/** C isspace(): SP, \t, \n, \v, \f, \r. */
function isSpace(code: number): boolean {
  return code === 0x20 || (code >= 0x09 && code <= 0x0d);
}

/** A problem with one line of kernel map text, as the kernel's parser would find it. */
export interface KernelLineProblem {
  readonly code: 'SYNTAX' | 'NUMBER_TOO_LARGE';
  readonly reason: string;
  readonly column: number; // 1-based
  readonly text: string;
}

/** The three numbers of one line, or the problem the kernel's parser would stop at. */
export type KernelLine = { first: number; lower: number; count: number } | { problem: KernelLineProblem };

const FIELD_NAMES = ['inside ID (column 1)', 'outside ID (column 2)', 'count (column 3)'] as const;

function tokenAt(line: string, start: number): string {
  let end = start;
  while (end < line.length && !isSpace(line.charCodeAt(end))) end++;
  return end > start ? line.slice(start, end) : line.slice(start, start + 1);
}

/** Parses one line (without its '\n') exactly as the kernel's map_write() loop does. */
export function parseKernelLine(line: string): KernelLine {
  const length = line.length;
  let pos = 0;
  let first = 0;
  let lower = 0;
  let count = 0;
  for (let field = 0; field < 3; field++) {
    while (pos < length && isSpace(line.charCodeAt(pos))) pos++;
    const start = pos;
    let value = 0;
    for (; pos < length; pos++) {
      const digit = line.charCodeAt(pos) - 0x30;
      if (digit < 0 || digit > 9) break;
      value = value * 10 + digit; // exact until 2^53, far above anything we accept
    }
    // simple_strtoul stops at the first non-digit; the kernel then demands whitespace (or, after
    // the count, the end of the line).
    const terminated = pos < length ? isSpace(line.charCodeAt(pos)) : field === 2;
    if (pos === start || !terminated) {
      return {
        problem: {
          code: 'SYNTAX',
          reason:
            pos === start
              ? `expected a decimal ${FIELD_NAMES[field]}`
              : field < 2
                ? `expected whitespace after the ${FIELD_NAMES[field]}`
                : `unexpected text after the ${FIELD_NAMES[field]}`,
          column: pos + 1,
          text: tokenAt(line, pos === start ? start : start),
        },
      };
    }
    if (value > INVALID_ID) {
      const digits = line.slice(start, pos);
      return {
        problem: {
          code: 'NUMBER_TOO_LARGE',
          reason: `${FIELD_NAMES[field]} ${digits} is larger than 4294967295 (the kernel would silently truncate it to ${BigInt(digits) % 4294967296n})`,
          column: start + 1,
          text: digits,
        },
      };
    }
    if (field === 0) first = value;
    else if (field === 1) lower = value;
    else count = value;
  }
  while (pos < length && isSpace(line.charCodeAt(pos))) pos++;
  if (pos < length) {
    return {
      problem: {
        code: 'SYNTAX',
        reason: 'expected 3 numbers per line, found more',
        column: pos + 1,
        text: tokenAt(line, pos),
      },
    };
  }
  return { first, lower, count };
}

/**
 * Splits map text into lines the way the kernel does: at '\n', where a '\n' followed by the end
 * of the text ends the loop (exactly one trailing newline allowed). Text after a NUL byte is
 * ignored by the kernel (it works on a C string); `nul: 'stop'` reproduces that.
 */
export function kernelLines(text: string): string[] {
  if (text === '') return [];
  const lines = text.split('\n');
  if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** Options of {@link parseKernelMap}. */
export interface KernelParseOptions {
  source?: string;
  /** What to do with a NUL byte: 'error' (default) or 'stop' there, as the kernel does. */
  nul?: 'error' | 'stop';
}

/** Parses kernel map text into extents, in file order. Empty text is an empty map. */
export function parseKernelMap(text: string, options: KernelParseOptions = {}): Extent[] {
  let input = text;
  const nulAt = input.indexOf('\0');
  if (nulAt >= 0) {
    if (options.nul === 'stop') {
      input = input.slice(0, nulAt);
    } else {
      const line = input.slice(0, nulAt).split('\n').length;
      const column = nulAt - input.lastIndexOf('\n', nulAt - 1);
      throw new ParseError('NUL_BYTE', 'NUL byte in map text', {
        source: options.source,
        line,
        column,
        text: '\\0',
      });
    }
  }
  const out: Extent[] = [];
  const lines = kernelLines(input);
  for (let i = 0; i < lines.length; i++) {
    const parsed = parseKernelLine(lines[i]!);
    if ('problem' in parsed) {
      const p = parsed.problem;
      throw new ParseError(p.code, p.reason, {
        source: options.source,
        line: i + 1,
        column: p.column,
        text: p.text,
      });
    }
    out.push(extent(parsed.first, parsed.lower, parsed.count));
  }
  return out;
}

/**
 * Formats extents as kernel map text. 'write' is what userns writes ("%u %u %u\n", the shortest
 * form, which matters for the page-size limit); 'proc' is what the kernel prints when read.
 */
export function formatKernelMap(extents: readonly Extent[], style: 'write' | 'proc' = 'write'): string {
  if (style === 'proc') {
    return extents
      .map(
        (e) =>
          `${String(e.inside).padStart(10)} ${String(e.outside).padStart(10)} ${String(e.count).padStart(10)}\n`,
      )
      .join('');
  }
  let text = '';
  for (const e of extents) text += `${e.inside} ${e.outside} ${e.count}\n`;
  return text;
}
