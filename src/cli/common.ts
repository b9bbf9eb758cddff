import { type ParseArgsConfig, parseArgs } from 'node:util';
import { UsageError, UsernsError } from '../errors.js';
import type { CommandName } from './commands.js';
import { closest, didYouMean } from './suggest.js';

/** Streams a command writes to; replaced by buffers in tests. */
export interface CliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  stdin: NodeJS.ReadableStream;
  env: NodeJS.ProcessEnv;
}

export function processIo(): CliIo {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env };
}

/** A command: takes its own arguments (after the command words), returns the exit status. */
export type Command = (argv: string[], io: CliIo) => Promise<number>;

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

/**
 * util.parseArgs with userns conventions: `--json` and `--help` are always accepted; unknown
 * options, missing values and values given to flags are one-line UsageErrors (exit 2) that
 * suggest the option meant and name the command's --help (Node's own messages are several
 * sentences about positionals). `options` is the command's entry of the command table
 * (src/cli/commands.ts), whose extra fields (value, help, complete) parseArgs ignores.
 */
type StandardOptions = { json: { type: 'boolean' }; help: { type: 'boolean'; short: 'h' } };
type ParsedCommandLine<O extends OptionSpec> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O & StandardOptions; allowPositionals: true; strict: true }>
>;

export function parseCommandLine<O extends OptionSpec>(
  argv: string[],
  options: O,
  command: string,
): ParsedCommandLine<O> {
  const all = { ...options, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } as O &
    StandardOptions;
  try {
    return parseArgs({ args: argv, options: all, allowPositionals: true as const, strict: true as const });
  } catch (error) {
    throw usageErrorFor(argv, all, command, error);
  }
}

/** The first problem parseArgs found in `argv`, as a one-line UsageError. */
function usageErrorFor(argv: string[], options: OptionSpec, command: string, error: unknown): UsageError {
  const hint = `see 'userns ${command} --help'`;
  const shorts = new Map<string, string>();
  for (const [name, option] of Object.entries(options)) if (option.short) shorts.set(option.short, name);
  const { tokens } = parseArgs({ args: argv, options, allowPositionals: true, strict: false, tokens: true });
  for (const token of tokens) {
    if (token.kind !== 'option') continue;
    const name = token.rawName.startsWith('--') ? token.name : shorts.get(token.name);
    const option = name === undefined ? undefined : options[name];
    if (option === undefined) {
      const known = Object.entries(options).flatMap(([long, o]) => [
        `--${long}`,
        ...(o.short ? [`-${o.short}`] : []),
      ]);
      return new UsageError(
        `unknown option '${token.rawName}' for 'userns ${command}'${didYouMean(token.rawName, known)}`,
        { hint, data: { option: token.rawName, suggestion: closest(token.rawName, known) ?? null } },
      );
    }
    if (
      option.type === 'string' &&
      (token.value === undefined || (!token.inlineValue && token.value.startsWith('-')))
    ) {
      return new UsageError(
        `option '${token.rawName}' needs a value${token.value === undefined ? '' : ` (to give one that starts with '-', write ${token.rawName}=${token.value})`}`,
        { hint, data: { option: token.rawName } },
      );
    }
    if (option.type === 'boolean' && token.inlineValue) {
      return new UsageError(`option '${token.rawName}' takes no value`, {
        hint,
        data: { option: token.rawName },
      });
    }
  }
  return new UsageError(
    (error as Error).message.replace(/\. To specify a positional.*$/s, '').split('\n')[0]!,
    { hint },
  );
}

/**
 * The words that are options taking a value (`--uidmap`, `-x`), for commands that find where
 * their own options end and a command line begins (`run`, `exec`). Options whose value is
 * optional (`--allocate[=OPTIONS]`) take none from the next word.
 */
export function valueOptions(
  options: Readonly<Record<string, { type: string; short?: string; value?: string }>>,
): Set<string> {
  const words = new Set<string>();
  for (const [name, option] of Object.entries(options)) {
    if (option.type !== 'string' || option.value?.startsWith('[')) continue;
    words.add(`--${name}`);
    if (option.short !== undefined) words.add(`-${option.short}`);
  }
  return words;
}

/** Prints a command's help (src/cli/help.ts, loaded only then); returns exit status 0. */
export async function writeHelp(io: CliIo, command: CommandName): Promise<number> {
  const { commandHelp } = await import('./help.js');
  io.stdout.write(await commandHelp(command));
  return 0;
}

export function writeJson(io: CliIo, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Whether to colour output: a TTY, NO_COLOR unset (https://no-color.org), and TERM not dumb. */
export function useColour(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '' && env.FORCE_COLOR !== '0') return true;
  return stream.isTTY === true && env.TERM !== 'dumb';
}

/** Prints an error the way every command does: one line, a hint, no stack (or JSON with --json). */
export function reportError(error: unknown, io: CliIo, json: boolean): number {
  const known = error instanceof UsernsError;
  if (json) {
    const body = known
      ? error.toJSON()
      : { error: 'InternalError', code: 'INTERNAL', message: String((error as Error)?.message ?? error) };
    io.stdout.write(`${JSON.stringify({ ok: false, ...body }, null, 2)}\n`);
  } else if (known) {
    io.stderr.write(`userns: ${error.message}\n`);
    if (error.hint) io.stderr.write(`  hint: ${error.hint}\n`);
  } else {
    // A bug in userns: keep the stack, it is what a bug report needs.
    io.stderr.write(`userns: internal error: ${(error as Error)?.stack ?? String(error)}\n`);
  }
  if (error instanceof UsageError) return 2;
  return known ? 1 : 70;
}
