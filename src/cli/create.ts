/** `userns create NAME`: named namespaces held by a keeper, bind mounts or their command, with their state on disk. */
import { UsageError, UsernsError } from '../errors/index.js';
import {
  createNamespace,
  createNamespaceWithCommand,
  HOLD_MODES,
  type HoldMode,
  inspectNamespace,
} from '../namespaces/index.js';
import { COMMANDS } from './commands.js';
import {
  type CliIo,
  type Command,
  failureStatus,
  forwardAndWait,
  parseCommandLine,
  reportError,
  writeHelp,
  writeJson,
} from './common.js';
import { namespaceText } from './inspect.js';
import { parseMappingOptions } from './mapping-options.js';

const OPTIONS = COMMANDS.create.options;

export const main: Command = async (argv: string[], io: CliIo): Promise<number> => {
  // `--hold none NAME -- COMMAND`: what follows -- is the command's, never userns's.
  const dashes = argv.indexOf('--');
  const own = dashes < 0 ? argv : argv.slice(0, dashes);
  const command = dashes < 0 ? [] : argv.slice(dashes + 1);
  const { values, positionals } = parseCommandLine(own, OPTIONS, 'create');
  if (values.help) return writeHelp(io, 'create');
  const json = values.json === true;
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0 ? 'no NAME given' : 'create takes one NAME (a command goes after --)',
      { hint: "usage: userns create [options] NAME; see 'userns create --help'" },
    );
  }
  const hold = (values.hold ?? 'keeper') as HoldMode;
  if (!HOLD_MODES.includes(hold)) {
    throw new UsageError(`--hold must be keeper, mount or none, not '${values.hold}'`, {
      hint: "see 'userns create --help'",
    });
  }
  if ((hold === 'none') !== command.length > 0) {
    throw new UsageError(
      hold === 'none'
        ? '--hold none needs a command after --: the namespace lives as long as its processes'
        : `a command after -- needs --hold none (with --hold ${hold} nothing runs in it)`,
      { hint: "usage: userns create --hold none [options] NAME -- COMMAND; see 'userns create --help'" },
    );
  }
  const name = positionals[0]!;
  const warnings: string[] = [];
  const mapping = parseMappingOptions(values, { command: 'create', json, io, warnings });
  const root = values.root === undefined ? {} : { root: values.root };
  if (hold === 'none') {
    // From here the exit status is COMMAND's; userns's own failures are 125 (126/127 for a
    // command that cannot be executed / is not there), as for run and exec.
    try {
      const { child } = await createNamespaceWithCommand(name, command, {
        ...mapping,
        ...root,
        stdio: 'inherit',
      });
      return await forwardAndWait(child);
    } catch (error) {
      if (!(error instanceof UsernsError)) throw error;
      reportError(error, io, json);
      return failureStatus(error);
    }
  }
  await createNamespace(name, { ...mapping, ...root, hold });
  // The same layout as 'userns inspect NAME' (JSON and text): one shape to script against.
  const made = await inspectNamespace(name, root);
  if (json) {
    writeJson(io, { ok: true, ...made, warnings: [...warnings, ...made.warnings] });
    return 0;
  }
  io.stdout.write(`created ${name}\n${namespaceText(made)}`);
  for (const w of made.warnings) io.stderr.write(`userns: warning: ${w}\n`);
  return 0;
};
