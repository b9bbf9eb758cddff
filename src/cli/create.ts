/** `userns create NAME`: named namespaces kept alive by a keeper process, with their state on disk. */
import { UsageError } from '../errors.js';
import { COMMANDS } from './commands.js';
import { type CliIo, type Command, parseCommandLine, writeHelp, writeJson } from './common.js';
import { parseMappingOptions } from './run.js';

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
  const { createNamespace } = await import('../store/namespaces.js');
  const state = await createNamespace(name, {
    ...mapping,
    ...(values.root === undefined ? {} : { root: values.root }),
  });
  if (json) {
    writeJson(io, { ok: true, ...state });
    return 0;
  }
  const triples = (m: [number, number, number][]) => m.map((t) => t.join(':')).join(',');
  io.stdout.write(
    `created ${name}: keeper PID ${state.keeperPid}, namespaces ${state.namespaces.map((n) => n.type).join(',')}\n` +
      `  uid map ${triples(state.uidMap)}\n  gid map ${triples(state.gidMap)}\n  setgroups ${state.setgroups}\n`,
  );
  return 0;
};
