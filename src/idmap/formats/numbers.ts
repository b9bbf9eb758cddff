import { UsernsError } from '../../errors/index.js';
import { type Extent, INVALID_ID } from '../extent.js';
import { isCSpace } from './position.js';

/**
 * Number syntax for the map formats. IDs and counts are u32 values. Tools differ in what they
 * do above 4294967295 (the kernel and util-linux's sscanf silently truncate or wrap), so we
 * always refuse such numbers instead of guessing which wrapped value was meant.
 */

export type NumberProblemCode = 'MISSING_FIELD' | 'BAD_NUMBER' | 'NUMBER_TOO_LARGE';

export interface NumberProblem {
  code: NumberProblemCode;
  reason: string;
}

export function isProblem(value: number | NumberProblem): value is NumberProblem {
  return typeof value !== 'number';
}

/**
 * A plain decimal u32: digits only (leading zeros are decimal, as in the kernel, Go's
 * strconv and LXC), no sign, no fraction, no exponent, no spaces. `what` names the field in
 * messages ("outside ID").
 */
export function decimalU32(token: string, what: string): number | NumberProblem {
  if (token === '') return { code: 'MISSING_FIELD', reason: `expected ${what}, found nothing` };
  if (/^[0-9]+$/.test(token)) {
    const digits = token.replace(/^0+(?=.)/, '');
    if (digits.length > 10 || Number(digits) > INVALID_ID) {
      return { code: 'NUMBER_TOO_LARGE', reason: `${what} ${clipDigits(token)} is larger than 4294967295` };
    }
    return Number(digits);
  }
  return { code: 'BAD_NUMBER', reason: badDecimalReason(token, what) };
}

function clipDigits(token: string): string {
  return token.length > 24 ? `${token.slice(0, 20)}…(${token.length} digits)` : token;
}

function badDecimalReason(token: string, what: string): string {
  if (/^-\s*[0-9]/.test(token)) return `${what} must not be negative`;
  if (/^[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(\.[0-9]*)?[eE][+-]?[0-9]+)$/.test(token)) {
    return `${what} must be a whole number written in plain decimal digits`;
  }
  if (/^\+[0-9]+$/.test(token)) return `${what} must be written without a sign`;
  if (/^0[xX][0-9a-fA-F]+$/.test(token)) return `${what} must be decimal, not hexadecimal`;
  if (/\s/.test(token)) return `${what} must not contain whitespace`;
  return `expected ${what} as a decimal number`;
}

/**
 * strtoul(…, 0) as shadow's newuidmap/newgidmap use it: leading whitespace, an optional '+',
 * then `0x`/`0X` + hex digits, `0` + octal digits, or decimal digits; nothing may follow.
 * A '-' is refused (strtoul would wrap it to a huge value; shadow then reports an overflow).
 */
export function base0U32(token: string, what: string): number | NumberProblem {
  let i = 0;
  while (i < token.length && isCSpace(token.charCodeAt(i))) i++;
  if (i === token.length) return { code: 'MISSING_FIELD', reason: `expected ${what}, found nothing` };
  if (token[i] === '-') return { code: 'BAD_NUMBER', reason: `${what} must not be negative` };
  if (token[i] === '+') i++;
  let radix = 10;
  if (
    token[i] === '0' &&
    (token[i + 1] === 'x' || token[i + 1] === 'X') &&
    /[0-9a-fA-F]/.test(token[i + 2] ?? '')
  ) {
    radix = 16;
    i += 2;
  } else if (token[i] === '0') {
    radix = 8;
  }
  const start = i;
  let value = 0;
  for (; i < token.length; i++) {
    const digit = Number.parseInt(token[i]!, radix);
    if (Number.isNaN(digit)) break;
    // Stop growing once too large: the answer is already known and the loop stays exact.
    if (value <= INVALID_ID) value = value * radix + digit;
  }
  if (i === start)
    return { code: 'BAD_NUMBER', reason: `expected ${what} as a number (decimal, 0x hex or 0 octal)` };
  if (i < token.length) {
    const rest = token.slice(i);
    const octalHint =
      radix === 8 && /^[89]/.test(rest) ? ` (a leading 0 makes ${token.trim()} octal, as in strtoul)` : '';
    return {
      code: 'BAD_NUMBER',
      reason: `unexpected ${JSON.stringify(clipDigits(rest))} after ${what}${octalHint}`,
    };
  }
  if (value > INVALID_ID)
    return {
      code: 'NUMBER_TOO_LARGE',
      reason: `${what} ${clipDigits(token.trim())} is larger than 4294967295`,
    };
  return value;
}

/**
 * Formatters refuse what their parser would not read back: every field must be an integer in
 * [0, 4294967295]. (Whether the kernel would accept the map is the validator's business.)
 */
export function assertWritable(e: Extent, format: string): void {
  for (const field of ['inside', 'outside', 'count'] as const) {
    const value = e[field];
    if (!Number.isInteger(value) || value < 0 || value > INVALID_ID) {
      throw new UsernsError(
        'INVALID_EXTENT',
        `cannot write ${format}: ${field} ${String(value)} is not an integer in 0…4294967295`,
        {
          data: { extent: { inside: e.inside, outside: e.outside, count: e.count } },
        },
      );
    }
  }
}
