import { type ParseArgsConfig, parseArgs } from 'node:util';
import { UsageError, UsernsError } from '../errors/index.js';
import { exitStatusForSignal, forwardSignals } from '../system/signals.js';
import type { CommandName } from './commands.js';
import { commandHelp } from './help.js';
import { FdOutput, type OutputStream } from './output.js';
import { mapStack } from './stack.js';
import { closest, didYouMean } from './suggest.js';

/** Streams a command writes to; replaced by buffers in tests. */
export interface CliIo {
  stdout: OutputStream;
  stderr: OutputStream;
  stdin: NodeJS.ReadableStream;
  env: NodeJS.ProcessEnv;
}

/**
 * The process's own: standard output and error written directly (src/cli/output.ts), standard
 * input created on first use (Node builds process.stdin from its stream modules, and most
 * commands never read it: issue 18, start-up).
 */
export function processIo(): CliIo {
  return {
    stdout: new FdOutput(1),
    stderr: new FdOutput(2),
    get stdin() {
      return process.stdin;
    },
    env: process.env,
  };
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

/**
 * A map in every command's --json output: `[[inside, outside, count], …]` in written order (as
 * IdMap.toJSON); two maps are `uidMap` and `gidMap`, one map is `map` with its `kind`.
 */
export function mapJson(
  extents: readonly { inside: number; outside: number; count: number }[],
): [number, number, number][] {
  return extents.map((e) => [e.inside, e.outside, e.count]);
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

/** Prints a command's help (src/cli/help.ts); returns exit status 0. */
export async function writeHelp(io: CliIo, command: CommandName): Promise<number> {
  io.stdout.write(await commandHelp(command));
  return 0;
}

export function writeJson(io: CliIo, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/**
 * Whether to colour output: a TTY, NO_COLOR unset or empty (the common convention: any value
 * turns colour off), FORCE_COLOR set and not 0 turns it on, and TERM not dumb.
 */
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
    // A bug in userns: keep the stack, it is what a bug report needs (with TypeScript positions).
    const stack = (error as Error)?.stack;
    io.stderr.write(`userns: internal error: ${stack === undefined ? String(error) : mapStack(stack)}\n`);
  }
  if (error instanceof UsageError) return 2;
  return known ? 1 : 70;
}

/** The exit status of a command that ran: its own, or 128 + N when signal N killed it. */
export function exitStatus(result: { exitCode: number | null; signal: NodeJS.Signals | null }): number {
  return result.signal !== null ? exitStatusForSignal(result.signal) : (result.exitCode ?? 125);
}

/** The exit status when the command could not be started: 127 not found, 126 not executable, else 125. */
export function failureStatus(error: UsernsError): number {
  return error.code === 'COMMAND_NOT_FOUND' ? 127 : error.code === 'COMMAND_NOT_EXECUTABLE' ? 126 : 125;
}

/**
 * For commands whose exit status is the command's they run (`run`, `exec`): userns's own
 * failures must not be mistaken for the command's, so every one of them, usage errors included,
 * is 125; a command that is not there is 127, one that cannot be executed 126 (as `env`,
 * `chroot` and podman do). Wraps such a command's main (`options` gives the arguments that are
 * userns's own, before the command): errors are printed as everywhere else.
 */
export function passThroughStatus(command: Command, options: (argv: string[]) => string[]): Command {
  return async (argv, io) => {
    try {
      return await command(argv, io);
    } catch (error) {
      if (!(error instanceof UsernsError)) throw error;
      // --json among userns's own options, not the command's arguments.
      reportError(error, io, options(argv).includes('--json'));
      return failureStatus(error);
    }
  };
}

/**
 * Waits for a command run in a namespace (`run`, `exec`), forwarding the signals userns receives
 * to it (system/signals.ts), and returns the status to exit with: the command's, or 128+N when
 * signal N killed it.
 */
export async function forwardAndWait(
  child: { kill(signal: NodeJS.Signals): unknown } & PromiseLike<{
    exitCode: number | null;
    signal: NodeJS.Signals | null;
  }>,
): Promise<number> {
  const stopForwarding = forwardSignals(child);
  try {
    return exitStatus(await child);
  } finally {
    stopForwarding();
  }
}
