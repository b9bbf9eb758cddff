/** `userns exec NAME -- COMMAND`: run a command inside a named namespace. */
import { UsageError, UsernsError } from '../errors.js';
import { COMMANDS } from './commands.js';
import {
  type CliIo,
  type Command,
  parseCommandLine,
  reportError,
  valueOptions,
  writeHelp,
} from './common.js';
import { parseUserOption } from './run.js';

const OPTIONS = COMMANDS.exec.options;
const VALUE_OPTIONS = valueOptions(OPTIONS);
const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'] as const;

/** Options and NAME, then the command: after `--`, or from the first word after NAME. */
export function splitExec(argv: string[]): { options: string[]; command: string[] } {
  let named = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return { options: argv.slice(0, i), command: argv.slice(i + 1) };
    if (a.startsWith('-') && a !== '-') {
      if (VALUE_OPTIONS.has(a)) i++;
      continue;
    }
    if (named) return { options: argv.slice(0, i), command: argv.slice(i) };
    named = true;
  }
  return { options: argv, command: [] };
}

export const main: Command = async (argv: string[], io: CliIo): Promise<number> => {
  const split = splitExec(argv);
  const { values, positionals } = parseCommandLine(split.options, OPTIONS, 'exec');
  if (values.help) return writeHelp(io, 'exec');
  const json = values.json === true;
  if (positionals.length !== 1 || split.command.length === 0) {
    throw new UsageError(positionals.length === 0 ? 'no NAME given' : 'no command given', {
      hint: "usage: userns exec [options] NAME -- COMMAND [ARGS...]; see 'userns exec --help'",
    });
  }
  const ids = values.user === undefined ? undefined : parseUserOption(values.user, 'exec');
  const { spawnInNamespace } = await import('../store/namespaces.js');
  const handlers = new Map<string, () => void>();
  try {
    const [command, ...args] = split.command as [string, ...string[]];
    const child = spawnInNamespace(positionals[0]!, command, args, {
      stdio: 'inherit',
      ...(ids === undefined ? {} : { user: ids.user, group: ids.group }),
      ...(values.cwd === undefined ? {} : { cwd: values.cwd }),
      ...(values.root === undefined ? {} : { root: values.root }),
    });
    for (const signal of FORWARDED) {
      const handler = () => {
        child.kill(signal);
      };
      handlers.set(signal, handler);
      process.on(signal, handler);
    }
    const result = await child;
    if (result.signal !== null) {
      const { constants } = await import('node:os');
      return 128 + (constants.signals[result.signal] ?? 0);
    }
    return result.exitCode ?? 125;
  } catch (error) {
    if (!(error instanceof UsernsError) || error instanceof UsageError) throw error;
    reportError(error, io, json);
    return error.code === 'COMMAND_NOT_FOUND' ? 127 : error.code === 'COMMAND_NOT_EXECUTABLE' ? 126 : 125;
  } finally {
    for (const [signal, handler] of handlers) process.off(signal, handler);
  }
};
