/** `userns list`: the named namespaces and whether they still run. */

import { UsageError } from '../errors/index.js';
import { listNamespaces } from '../namespaces/index.js';
import { type CliIo, type Command, parseCommandLine, useColour, writeJson } from './common.js';

export const HELP = `Usage: userns list [--root DIR] [--json]

Lists the named namespaces (made by 'userns create') with how they are held (keeper, mount,
none) and their status:
  running    its keeper or bind mounts hold the recorded namespaces (--hold none: they still
             exist, asked by nsfs handle)
  stale      the keeper is gone, its PID was reused, a bind mount is gone, or a namespace
             changed ('userns rm NAME')
  gone       --hold none: all its processes exited ('userns rm NAME')
  unknown    it cannot be checked from here (its keeper runs in a PID namespace this /proc does
             not show, and no nsfs handle answers); never removed from here
  creating   a 'userns create' is making it right now
  broken     its state file is unreadable ('userns rm --force NAME')
  unsafe     its entry is not a real directory (a link); never followed ('userns rm --force NAME')
Entries whose creator died before finishing are removed on the way.

Options:
  --root DIR   state root (default: /run/userns for root; else $XDG_RUNTIME_DIR/userns or ~/.local/state/userns)
  --json       machine-readable output
  -h, --help   this text
`;

const OPTIONS = { root: { type: 'string' } } as const;

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
  if (values.help) {
    io.stdout.write(HELP);
    return 0;
  }
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
