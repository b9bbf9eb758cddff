/** `userns exec NAME -- COMMAND`: run a command inside a named namespace. */
import { UsageError } from '../errors/index.js';
import { spawnInNamespace } from '../namespaces/index.js';
import { type CliIo, type Command, foreground, parseCommandLine } from './common.js';
import { parseUserOption } from './mapping-options.js';

export const HELP = `Usage: userns exec [options] NAME [--] COMMAND [ARGS...]

Runs COMMAND inside the namespaces of NAME (made by 'userns create'): the helper reopens them
by their nsfs handles (Linux 6.18+; else through the keeper's pidfd or the bind-mounted files),
checks that each is the recorded one, and enters the user namespace first, then the others. A
stale NAME (its keeper gone, its PID reused, a bind mount gone) is refused with NS_STALE, one
whose namespaces no longer exist (--hold none after its processes exited) with NS_GONE; remove
it with 'userns rm NAME'.

Options:
  --user UID[:GID]   IDs to run as inside (default: those given to create, else 0:0)
  --cwd DIR          working directory inside (default: the current one; with a mount
                     namespace, / when the current one cannot be entered inside)
  --root DIR         state root (default: /run/userns for root; else $XDG_RUNTIME_DIR/userns or ~/.local/state/userns)
  --json             errors as JSON
  -h, --help         this text

Exit status: the command's, or 128+N when it was killed by signal N; 125 when userns itself
failed, 126 when the command cannot be executed, 127 when it is not found, 2 for usage errors.
SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH are forwarded to the command.
`;

const OPTIONS = {
  user: { type: 'string' },
  cwd: { type: 'string' },
  root: { type: 'string' },
} as const;
const VALUE_OPTIONS = new Set(['--user', '--cwd', '--root']);

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
  if (values.help) {
    io.stdout.write(HELP);
    return 0;
  }
  const json = values.json === true;
  if (positionals.length !== 1 || split.command.length === 0) {
    throw new UsageError(positionals.length === 0 ? 'no NAME given' : 'no command given', {
      hint: "usage: userns exec [options] NAME -- COMMAND [ARGS...]; see 'userns exec --help'",
    });
  }
  const ids = values.user === undefined ? undefined : parseUserOption(values.user, 'exec');
  const [command, ...args] = split.command as [string, ...string[]];
  return foreground(
    () => ({
      child: spawnInNamespace(positionals[0]!, command, args, {
        stdio: 'inherit',
        ...(ids === undefined ? {} : { user: ids.user, group: ids.group }),
        ...(values.cwd === undefined ? {} : { cwd: values.cwd }),
        ...(values.root === undefined ? {} : { root: values.root }),
      }),
    }),
    io,
    json,
  );
};
