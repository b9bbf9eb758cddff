/** `userns list`: the named namespaces and whether they still run. */
import { UsageError } from '../errors/index.js';
import { listNamespaces } from '../namespaces/index.js';
import { COMMANDS } from './commands.js';
import { type CliIo, type Command, parseCommandLine, useColour, writeHelp, writeJson } from './common.js';

const OPTIONS = COMMANDS.list.options;

const COLOURS: Record<string, string> = {
  running: '32',
  stale: '31',
  gone: '31',
  unknown: '33',
  broken: '31',
  unsafe: '31',
  creating: '33',
};

export const main: Command = async (argv: string[], io: CliIo): Promise<number> => {
  const { values, positionals } = parseCommandLine(argv, OPTIONS, 'list');
  if (values.help) return writeHelp(io, 'list');
  if (positionals.length > 0) {
    throw new UsageError(`unexpected argument '${positionals[0]}'`, { hint: "see 'userns list --help'" });
  }
  const entries = await listNamespaces(values.root === undefined ? {} : { root: values.root });
  if (values.json) {
    writeJson(io, { ok: true, namespaces: entries });
    return 0;
  }
  const colour = useColour(io.stdout, io.env);
  const triples = (m: [number, number, number][] | undefined) =>
    m === undefined ? '-' : m.map((t) => t.join(':')).join(',');
  const rows = entries.map((e) => [
    e.name,
    e.status,
    e.state === null ? '-' : e.state.hold,
    e.state?.keeperPid === undefined ? '-' : String(e.state.keeperPid),
    e.state === null ? '-' : e.state.namespaces.map((n) => n.type).join(','),
    triples(e.state?.uidMap),
    e.state === null ? '-' : e.state.createdAt.replace(/\.\d+Z$/, 'Z'),
  ]);
  const header = ['NAME', 'STATUS', 'HOLD', 'KEEPER', 'NAMESPACES', 'UID MAP', 'CREATED'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[], paint = false) =>
    `${cells
      .map((c, i) => {
        const padded = i === cells.length - 1 ? c : c.padEnd(widths[i]!);
        return paint && i === 1 && colour && COLOURS[c] ? `\x1b[${COLOURS[c]}m${padded}\x1b[0m` : padded;
      })
      .join('  ')}\n`;
  io.stdout.write(line(header));
  for (const r of rows) io.stdout.write(line(r, true));
  return 0;
};
