import type { ChildProcess } from 'node:child_process';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { UsageError, UsernsError } from '../errors/index.js';
import { exitStatusForSignal, forwardSignals } from '../system/signals.js';

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
 * util.parseArgs with userns conventions: unknown options and missing values are UsageErrors
 * (exit 2) that name the command's --help; `--json` and `--help` are always accepted.
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
  try {
    return parseArgs({
      args: argv,
      options: { ...options, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } as O &
        StandardOptions,
      allowPositionals: true as const,
      strict: true as const,
    });
  } catch (error) {
    throw new UsageError(`${(error as Error).message.replace(/\. To specify a positional.*$/s, '')}`, {
      hint: `see 'userns ${command} --help'`,
    });
  }
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
    // A bug in userns: keep the stack, it is what a bug report needs.
    io.stderr.write(`userns: internal error: ${(error as Error)?.stack ?? String(error)}\n`);
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
 * Runs a command userns starts in the foreground (exec, create --hold none): signals are
 * forwarded, and the exit status is the command's; userns's own failures (usage errors aside,
 * which the caller reports as 2) are reported here and give 125, 126 or 127.
 */
export async function foreground(
  start: () => StartedChild | Promise<StartedChild>,
  io: CliIo,
  json: boolean,
): Promise<number> {
  let stopForwarding = () => {};
  try {
    const { child } = await start();
    stopForwarding = forwardSignals(child);
    return exitStatus(await child);
  } catch (error) {
    if (!(error instanceof UsernsError) || error instanceof UsageError) throw error;
    reportError(error, io, json);
    return failureStatus(error);
  } finally {
    stopForwarding();
  }
}

/** A started command, in an object: the child is itself a promise, which await would unwrap. */
export interface StartedChild {
  child: ChildProcess & Promise<{ exitCode: number | null; signal: NodeJS.Signals | null }>;
}
