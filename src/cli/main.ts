import { UsageError } from '../errors/index.js';
import { COMMANDS, type CommandName, TOP_COMMANDS, type TopCommand } from './commands.js';
import { type CliIo, type Command, processIo, reportError, writeHelp } from './common.js';
import { programHelp } from './help.js';
import { closest, didYouMean } from './suggest.js';

/**
 * Where each command's code lives. Each command is imported only when it runs (the only dynamic
 * imports of userns, see docs/architecture.md); what a command is and takes is in the command
 * table (src/cli/commands.ts). Start-up measured interleaved, 30 rounds each, on the 2-core
 * development machine: `userns map split --parent self 0:0:100` takes 208 ms of CPU (426 ms
 * wall, a loaded machine), and 356 ms (631 ms) with every command module loaded at start.
 * `cli_run_true_ms` in the benchmarks follows it.
 */
const LOADERS: Record<TopCommand, () => Promise<Command>> = {
  map: async () => (await import('./map.js')).main,
  // The spawn modules are fetched beside run.js, not after it: one round of file reads less.
  run: async () => (await Promise.all([import('./run.js'), import('../spawn/spawn.js')]))[0].main,
  create: async () => (await import('./create.js')).main,
  exec: async () => (await import('./exec.js')).main,
  list: async () => (await import('./list.js')).main,
  inspect: async () => (await import('./inspect.js')).main,
  rm: async () => (await import('./rm.js')).main,
  alloc: async () => (await import('./alloc.js')).main,
  shift: async () => (await import('./shift.js')).main,
  fit: async () => (await import('./fit.js')).main,
  oci: async () => (await import('./oci.js')).main,
  doctor: async () => (await import('./doctor.js')).main,
  completion: async () => (await import('./completion.js')).main,
  help: async () => help,
  version: async () => (await import('./version.js')).main,
};

const VERSION_FLAGS = ['--version', '-V', '-v'];
const HELP_FLAGS = ['--help', '-h'];

function isCommand(name: string): name is TopCommand {
  return Object.hasOwn(LOADERS, name);
}

function unknownCommand(name: string): UsageError {
  const option = name.startsWith('-');
  const candidates = option ? [...HELP_FLAGS, ...VERSION_FLAGS] : TOP_COMMANDS;
  return new UsageError(`unknown ${option ? 'option' : 'command'} '${name}'${didYouMean(name, candidates)}`, {
    hint: "run 'userns --help' for the list of commands",
    data: { [option ? 'option' : 'command']: name, suggestion: closest(name, candidates) ?? null },
  });
}

/**
 * `userns help [COMMAND [SUBCOMMAND]]`: exactly what `userns COMMAND [SUBCOMMAND] --help`
 * prints, because it is that.
 */
const help: Command = async (argv, io) => {
  const words = argv.filter((a) => a !== '--json');
  if (words.length === 0 || (words.length === 1 && HELP_FLAGS.includes(words[0]!))) {
    if (words.length === 1) {
      return writeHelp(io, 'help');
    }
    io.stdout.write(programHelp());
    return 0;
  }
  const [name, sub, ...extra] = words as [string, ...string[]];
  if (!isCommand(name)) throw unknownCommand(name);
  const spec = COMMANDS[name];
  if (sub !== undefined && 'subcommands' in spec) {
    const subcommands: readonly string[] = spec.subcommands;
    if (!subcommands.includes(sub)) {
      throw new UsageError(`'userns ${name}' has no subcommand '${sub}'${didYouMean(sub, subcommands)}`, {
        hint: `see 'userns ${name} --help'`,
      });
    }
  }
  if ((sub !== undefined && !('subcommands' in spec)) || extra.length > 0) {
    throw new UsageError(
      `'userns help' takes a command and a subcommand, not '${[sub, ...extra].join(' ')}'`,
      {
        hint: `try 'userns help ${name}'`,
      },
    );
  }
  const topic = (sub === undefined ? name : `${name} ${sub}`) as CommandName;
  return writeHelp(io, topic);
};

export async function main(argv: string[], io: CliIo = processIo()): Promise<number> {
  const [name, ...rest] = argv;
  const json = argv.includes('--json');
  try {
    if (name === undefined || HELP_FLAGS.includes(name)) {
      io.stdout.write(programHelp());
      return name === undefined ? 2 : 0;
    }
    if (VERSION_FLAGS.includes(name)) return await (await LOADERS.version())(rest, io);
    if (!isCommand(name)) throw unknownCommand(name);
    return await (await LOADERS[name]())(rest, io);
  } catch (error) {
    return reportError(error, io, json);
  }
}
