/** `userns rm NAME...`: stop a named namespace's keeper and remove its state. */
import { UsageError } from '../errors/index.js';
import { removeNamespace } from '../namespaces/index.js';
import { COMMANDS } from './commands.js';
import { type CliIo, type Command, parseCommandLine, reportError, writeHelp, writeJson } from './common.js';

const OPTIONS = COMMANDS.rm.options;

export const main: Command = async (argv: string[], io: CliIo): Promise<number> => {
  const { values, positionals } = parseCommandLine(argv, OPTIONS, 'rm');
  if (values.help) return writeHelp(io, 'rm');
  if (positionals.length === 0) {
    throw new UsageError('no NAME given', {
      hint: "usage: userns rm [--force] NAME...; see 'userns rm --help'",
    });
  }
  const json = values.json === true;
  const results: unknown[] = [];
  let status = 0;
  for (const name of positionals) {
    try {
      const r = await removeNamespace(name, {
        force: values.force === true,
        ...(values.root === undefined ? {} : { root: values.root }),
      });
      results.push(r);
      if (!json && r.removed) io.stdout.write(`${name}\n`);
      if (!json) for (const w of r.warnings) io.stderr.write(`userns: warning: ${w}\n`);
    } catch (error) {
      status = 1;
      if (json) results.push({ name, ...(error as { toJSON?: () => object }).toJSON?.() });
      else reportError(error, io, false);
    }
  }
  if (json) writeJson(io, { ok: status === 0, removed: results });
  return status;
};
