import { UsernsError } from '../../errors/index.js';
import { type Extent, extent } from '../extent.js';
import { assertWritable, base0U32, decimalU32, isProblem } from './numbers.js';
import { isCSpace, parseErrorAt, type Token, tokens } from './position.js';

/**
 * shadow-utils newuidmap / newgidmap argument vectors:
 * `newuidmap <pid>|fd:<N> <uid> <loweruid> <count> [<uid> <loweruid> <count>]…`
 * (docs/kernel-rules.md, "newuidmap and newgidmap"). The program name is optional.
 *
 * Numbers are read as shadow reads them, with strtoul base 0: `0x3e9` is 1001 and a leading
 * `0` means OCTAL (`010` is 8), leading whitespace is allowed and trailing junk is refused.
 * The pid is decimal; `fd:N` (shadow ≥ 4.14) is an fd open on the /proc/PID directory.
 * A shell-variable placeholder (`$PID`, `${PID}`) is accepted as the target so that a command
 * template (what `formatNewidmapArgs` writes when no pid is known) reads back.
 * Shadow's own range checks (count ≥ 1, upper + count ≤ 2^32−1) are the validator's job.
 */

export type NewidmapTarget = number | { fd: number } | { placeholder: string };

/** A newuidmap/newgidmap command line: its program, target process and ranges. */
export interface NewidmapArgs {
  /** argv[0] when given (as written, e.g. `/usr/bin/newuidmap`). */
  program?: string;
  target: NewidmapTarget;
  /** The ranges in order: inside = `<uid>`, outside = `<loweruid>`. */
  extents: Extent[];
}

/** Options of {@link parseNewidmapArgs}. */
export interface NewidmapParseOptions {
  source?: string;
}

const FIELDS = ['inside ID (<uid>)', 'outside ID (<loweruid>)', 'count'] as const;
const HINT = 'usage: newuidmap <pid>|fd:<N> <uid> <loweruid> <count> [<uid> <loweruid> <count>]…';
const PROGRAM = /(^|\/)new[ug]idmap$/;
const PLACEHOLDER = /^\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})$/;
const PID_MAX = 2147483647; // pid_t is an int

type Input = { text: string; source?: string | undefined };

function parseTarget(token: Token, input: Input): NewidmapTarget {
  const t = token.text;
  if (PLACEHOLDER.test(t)) return { placeholder: t };
  const isFd = t.startsWith('fd:');
  const digits = isFd ? t.slice(3) : t.trimStart();
  const value = decimalU32(digits, isFd ? 'file descriptor number' : 'target pid');
  if (isProblem(value) || value > PID_MAX || (!isFd && value === 0)) {
    const reason = isProblem(value)
      ? value.reason
      : isFd
        ? 'file descriptor number out of range'
        : 'pid must be between 1 and 2147483647';
    throw parseErrorAt('BAD_TARGET', `${reason} (expected a pid or fd:N)`, input, token.offset, t, HINT);
  }
  return isFd ? { fd: value } : value;
}

function parseTokens(list: readonly Token[], input: Input): NewidmapArgs {
  let i = 0;
  let program: string | undefined;
  if (list[0] !== undefined && PROGRAM.test(list[0].text)) {
    program = list[0].text;
    i = 1;
  }
  const targetToken = list[i];
  if (targetToken === undefined) {
    throw parseErrorAt(
      'MISSING_FIELD',
      'expected the target pid (or fd:N)',
      input,
      input.text.length,
      '',
      HINT,
    );
  }
  const target = parseTarget(targetToken, input);
  const rest = list.slice(i + 1);
  if (rest.length === 0 || rest.length % 3 !== 0) {
    const at =
      rest.length === 0 ? { offset: input.text.length, text: '' } : rest[rest.length - (rest.length % 3)]!;
    throw parseErrorAt(
      'ARGUMENT_COUNT',
      rest.length === 0
        ? 'expected at least one <uid> <loweruid> <count> range after the target'
        : `${rest.length} numbers after the target: not a multiple of 3 (<uid> <loweruid> <count> per range)`,
      input,
      at.offset,
      at.text,
      HINT,
    );
  }
  const extents: Extent[] = [];
  for (let r = 0; r < rest.length; r += 3) {
    const values = [0, 1, 2].map((f) => {
      const token = rest[r + f]!;
      const value = base0U32(token.text, FIELDS[f]!);
      if (isProblem(value))
        throw parseErrorAt(value.code, value.reason, input, token.offset, token.text, HINT);
      return value;
    });
    extents.push(extent(values[0]!, values[1]!, values[2]!));
  }
  return program === undefined ? { target, extents } : { program, target, extents };
}

/**
 * Parses an argument vector (each element one argument, as execve passes them). Error columns
 * are positions in the arguments joined by single spaces, line 1.
 */
export function parseNewidmapArgs(argv: readonly string[], options: NewidmapParseOptions = {}): NewidmapArgs {
  const list: Token[] = [];
  let offset = 0;
  for (const arg of argv) {
    list.push({ text: arg, offset });
    offset += arg.length + 1;
  }
  return parseTokens(list, { text: argv.join(' '), source: options.source });
}

/** Parses a command line as text (arguments separated by whitespace, e.g. from a file). */
export function parseNewidmapCommand(text: string, options: NewidmapParseOptions = {}): NewidmapArgs {
  return parseTokens(tokens(text, isCSpace), { text, source: options.source });
}

function formatTarget(target: NewidmapTarget): string {
  if (typeof target === 'number') return String(target);
  if ('fd' in target) return `fd:${target.fd}`;
  return target.placeholder;
}

/** `['newuidmap', '1234', '0', '1000', '1', …]` (decimal). Omit the program with `undefined`. */
export function formatNewidmapArgs(
  program: string | undefined,
  pid: NewidmapTarget,
  extents: readonly Extent[],
): string[] {
  if (extents.length === 0) {
    throw new UsernsError('EMPTY_MAP', 'newuidmap/newgidmap need at least one range', {
      hint: 'the map to write is empty',
    });
  }
  const argv = program === undefined ? [] : [program];
  argv.push(formatTarget(pid));
  for (const e of extents) {
    assertWritable(e, 'newuidmap arguments');
    argv.push(String(e.inside), String(e.outside), String(e.count));
  }
  return argv;
}
