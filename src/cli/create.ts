/** `userns create NAME`: named namespaces kept alive by a keeper process, with their state on disk. */
import { UsageError } from '../errors/index.js';
import { createNamespace, inspectNamespace } from '../namespaces/index.js';
import { COMMANDS } from './commands.js';
import { type CliIo, type Command, parseCommandLine, writeHelp, writeJson } from './common.js';
import { namespaceText } from './inspect.js';
import { parseMappingOptions } from './mapping-options.js';

const OPTIONS = COMMANDS.create.options;

export const main: Command = async (argv: string[], io: CliIo): Promise<number> => {
  const { values, positionals } = parseCommandLine(argv, OPTIONS, 'create');
  if (values.help) return writeHelp(io, 'create');
  const json = values.json === true;
  if (positionals.length !== 1) {
    throw new UsageError(positionals.length === 0 ? 'no NAME given' : 'create takes one NAME', {
      hint: "usage: userns create [options] NAME; see 'userns create --help'",
    });
  }
  const name = positionals[0]!;
  const warnings: string[] = [];
  const mapping = parseMappingOptions(values, { command: 'create', json, io, warnings });
  const root = values.root === undefined ? {} : { root: values.root };
  await createNamespace(name, { ...mapping, ...root });
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
