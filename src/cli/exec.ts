/** `userns exec NAME -- COMMAND`: run a command inside a named namespace. */
import { UsageError } from '../errors/index.js';
import { spawnInNamespace } from '../namespaces/index.js';
import { COMMANDS } from './commands.js';
import {
  type CliIo,
  type Command,
  forwardAndWait,
  parseCommandLine,
  passThroughStatus,
  valueOptions,
  writeHelp,
} from './common.js';
import { parseUserOption } from './mapping-options.js';

const OPTIONS = COMMANDS.exec.options;
const VALUE_OPTIONS = valueOptions(OPTIONS);

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

export const main: Command = passThroughStatus(
  async (argv: string[], io: CliIo): Promise<number> => {
    const split = splitExec(argv);
    const { values, positionals } = parseCommandLine(split.options, OPTIONS, 'exec');
    if (values.help) return writeHelp(io, 'exec');
    if (positionals.length !== 1 || split.command.length === 0) {
      throw new UsageError(positionals.length === 0 ? 'no NAME given' : 'no command given', {
        hint: "usage: userns exec [options] NAME -- COMMAND [ARGS...]; see 'userns exec --help'",
      });
    }
    const ids = values.user === undefined ? undefined : parseUserOption(values.user, 'exec');
    const [command, ...args] = split.command as [string, ...string[]];
    const child = spawnInNamespace(positionals[0]!, command, args, {
      stdio: 'inherit',
      ...(ids === undefined ? {} : { user: ids.user, group: ids.group }),
      ...(values.cwd === undefined ? {} : { cwd: values.cwd }),
      ...(values.root === undefined ? {} : { root: values.root }),
    });
    return forwardAndWait(child);
  },
  (argv) => splitExec(argv).options,
);
