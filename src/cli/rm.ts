/** `userns rm NAME...`: stop a named namespace's keeper and remove its state. */
import { UsageError } from '../errors/index.js';
import { removeNamespace } from '../namespaces/index.js';
import { type CliIo, type Command, parseCommandLine, reportError, writeJson } from './common.js';

export const HELP = `Usage: userns rm [--force] [--root DIR] [--json] NAME...

Removes named namespaces: stops the keeper (SIGTERM, then SIGKILL; with a PID namespace every
process in it dies too) or removes the bind mounts (--hold mount), and deletes the state. Stale
and gone entries are removed as well. A --hold none namespace whose processes still run keeps
running (only its record goes; a warning says so). A namespace whose keeper runs in a PID
namespace this /proc does not show is never removed from here (NS_UNCHECKABLE), even with
--force: its keeper could not be stopped.

Options:
  -f, --force  also remove broken entries and entries that are not real directories (a link is
               removed itself, never followed); a NAME that does not exist is not an error
  --root DIR   state root (default: /run/userns for root; else $XDG_RUNTIME_DIR/userns or ~/.local/state/userns)
  --json       machine-readable output
  -h, --help   this text
`;

const OPTIONS = { force: { type: 'boolean', short: 'f' }, root: { type: 'string' } } as const;

export const main: Command = async (argv: string[], io: CliIo): Promise<number> => {
  const { values, positionals } = parseCommandLine(argv, OPTIONS, 'rm');
  if (values.help) {
    io.stdout.write(HELP);
    return 0;
  }
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
