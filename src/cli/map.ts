import { UsageError, UsernsError } from '../errors/index.js';
import { compose } from '../idmap/compose.js';
import { hostIdsCoveredBy, type Uncovered } from '../idmap/coverage.js';
import { type Extent, type IdKind, INVALID_ID } from '../idmap/extent.js';
import { FORMATS } from '../idmap/formats/index.js';
import { formatKernelMap, kernelLines } from '../idmap/formats/kernel.js';
import type { IdMap } from '../idmap/idmap.js';
import { PRIVILEGED_WRITER, type WriterSituation } from '../idmap/permission.js';
import { splitAcrossParent } from '../idmap/split.js';
import { type Verdict, validateMap, validateMapText } from '../idmap/validate.js';
import { pageSize } from '../system/proc.js';
import { type CliIo, type Command, parseCommandLine, useColour, writeJson } from './common.js';
import {
  entriesForKind,
  parseFormatName,
  parseKind,
  parseMapInput,
  readMapArgument,
  readMapArguments,
  resolveMapArgument,
} from './map-input.js';
import { renderMap } from './map-show.js';

const MAP_HELP = `A MAP is one of:
  inside:outside:count[,…]   inline triples, e.g. 0:100000:65536
  FILE                       a file in any format (auto-detected, or --from FORMAT)
  -                          standard input
  self | pid:N               a process's /proc/PID/uid_map (gid_map with --kind gid)
Formats: ${Object.keys(FORMATS).join(', ')}`;

const HELP: Record<string, string> = {
  '': `Usage: userns map <subcommand> [options]

Subcommands:
  validate [--parent MAP] MAP        would the kernel accept MAP? (exit 0 yes, 1 no)
  split --parent MAP MAP             cut MAP at the parent's extent boundaries so the kernel accepts it
  convert [--from F] --to F INPUT…   convert between map formats
  lookup [--reverse] MAP ID…         translate IDs inside→outside (--reverse: outside→inside)
  compose MAP PARENT [ANCESTOR…]     express a nested map in the IDs of its outermost ancestor
  show MAP                           draw a map in the terminal

${MAP_HELP}
Options for every subcommand: --kind uid|gid, --json, --help.
`,
  validate: `Usage: userns map validate [--parent MAP] [--kind uid|gid] [--page-size N] [--allowed MAP]
                          [--unprivileged [--euid N] [--egid N] [--setgroups allow|deny]] MAP

Says whether the kernel would accept MAP written in one write() to /proc/PID/${'{uid,gid}'}_map,
and if not, the errno (EINVAL or EPERM) and the reason, naming the line. The kernel's checks are
applied in the kernel's order: size < PAGE_SIZE, syntax, (u32)-1, count and wrap, overlaps on
either side, the 340-line limit, then permission and containment in the parent map.

  --parent MAP      the writer's current namespace map (outside IDs must lie in ONE of its lines)
  --unprivileged    predict for a writer without CAP_SETUID/CAP_SETGID/CAP_SETFCAP that owns the
                    namespace (euid/egid default to this process's)
  --setgroups V     the target's setgroups at write time (default allow)
  --allowed MAP     also require every host ID of MAP to lie in this allow-list's host IDs of the
                    same kind (any format: subid lines, raw.idmap, triples…); exit 1 naming the
                    first host ID outside it (Incus HostIDsCoveredBy)
  --json            {"ok": bool, "errno": "EINVAL"|"EPERM"|null, "reason": str|null, "line": n|null}

Exit status: 0 accepted, 1 rejected, 2 usage error.
${MAP_HELP}
`,
  split: `Usage: userns map split --parent MAP [--kind uid|gid] MAP

Cuts every line of MAP at the boundaries of the parent's lines, so that each piece lies inside
one parent line as the kernel requires (it never splits a line itself). Pieces keep their order
and are never merged. Fails, naming the first missing range, if the parent does not map an ID.
Prints the result in kernel format; --json prints {"ok": true, "map": [[inside, outside, count], …]}.

Example: inside a namespace mapped 0 1000 1 + 1 100000 65536,
  userns map split --parent self 0:0:100     →  0 0 1 / 1 1 99
${MAP_HELP}
`,
  convert: `Usage: userns map convert [--from FORMAT] --to FORMAT [--kind uid|gid] [--parent MAP] [--owner USER] INPUT…

Reads each INPUT (a MAP) and prints the concatenated extents in FORMAT.
--parent is needed by podman's '@' and '+' forms; --owner names the user of subuid/subgid lines.
Formats:
${Object.entries(FORMATS)
  .map(([name, f]) => `  ${name.padEnd(11)} ${f.description}`)
  .join('\n')}
`,
  lookup: `Usage: userns map lookup [--reverse] [--kind uid|gid] MAP ID…

Translates each inside ID to its outside ID (with --reverse: outside to inside) through MAP.
Unmapped IDs print "unmapped" (the kernel shows them as the overflow ID, usually 65534).
${MAP_HELP}
`,
  compose: `Usage: userns map compose [--kind uid|gid] MAP PARENT [ANCESTOR…]

MAP's outside IDs are PARENT's inside IDs; prints MAP expressed in PARENT's outside IDs (then the
next ancestor's, and so on). IDs an ancestor does not map are dropped.
Example: userns map compose 0:0:100 0:100000:65536    →  0 100000 100
${MAP_HELP}
`,
  show: `Usage: userns map show [--kind uid|gid] MAP

Draws MAP: one row per extent, inside and outside ranges with bars scaled to each side.
Colour on a terminal unless NO_COLOR is set.
${MAP_HELP}
`,
};

const common = {
  kind: { type: 'string' },
  from: { type: 'string' },
} as const;

function needPositionals(positionals: string[], min: number, sub: string, max = Number.POSITIVE_INFINITY) {
  if (positionals.length < min || positionals.length > max) {
    throw new UsageError(
      positionals.length < min
        ? `userns map ${sub}: missing argument`
        : `userns map ${sub}: too many arguments`,
      { hint: `see 'userns map ${sub} --help'` },
    );
  }
}

function parseId(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) > INVALID_ID)
    throw new UsageError(`'${text}' is not an ID (0 to 4294967295)`);
  return Number(text);
}

/** The --parent MAP of a subcommand, when given. */
async function optionalParent(
  argument: string | undefined,
  kind: IdKind,
  io: CliIo,
): Promise<IdMap | undefined> {
  return argument === undefined
    ? undefined
    : (await resolveMapArgument(argument, { kind, stdin: io.stdin })).map;
}

/** --page-size, defaulting to this kernel's page size (the limit of one map write). */
function pageSizeOption(value: string | undefined): number {
  return value === undefined ? pageSize() : parseId(value);
}

function printVerdict(io: CliIo, json: boolean, verdict: Verdict, kind: IdKind, lines: number): number {
  if (json) writeJson(io, verdict);
  else if (verdict.ok)
    io.stdout.write(
      `ok: the kernel would accept this ${kind} map (${lines} line${lines === 1 ? '' : 's'})\n`,
    );
  else io.stdout.write(`rejected (${verdict.errno}): ${verdict.reason}\n`);
  return verdict.ok ? 0 : 1;
}

async function validate(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandLine(
    argv,
    {
      ...common,
      parent: { type: 'string' },
      'page-size': { type: 'string' },
      unprivileged: { type: 'boolean' },
      euid: { type: 'string' },
      egid: { type: 'string' },
      setgroups: { type: 'string' },
      allowed: { type: 'string' },
    },
    'map validate',
  );
  if (values.help) return help(io, 'validate');
  needPositionals(positionals, 1, 'validate', 1);
  const kind = parseKind(values.kind);
  const from = parseFormatName(values.from, '--from');
  const parent = await optionalParent(values.parent, kind, io);
  const pageSize = pageSizeOption(values['page-size']);
  if (values.setgroups !== undefined && values.setgroups !== 'allow' && values.setgroups !== 'deny') {
    throw new UsageError(`--setgroups must be allow or deny, not '${values.setgroups}'`);
  }
  let writer: WriterSituation = PRIVILEGED_WRITER;
  if (values.unprivileged) {
    writer = {
      capSetid: false,
      capSetfcap: false,
      euid: values.euid === undefined ? (process.geteuid?.() ?? 0) : parseId(values.euid),
      egid: values.egid === undefined ? (process.getegid?.() ?? 0) : parseId(values.egid),
      isOwner: true,
      setgroups: (values.setgroups as 'allow' | 'deny' | undefined) ?? 'allow',
    };
  }
  const options = { kind, parent, pageSize, writer };
  const raw = await readMapArgument(positionals[0]!, { kind, from, parent, stdin: io.stdin });
  // Kernel text is judged byte for byte by the kernel's own grammar (a syntax error is EINVAL,
  // not a usage problem); other formats are parsed first and then written as userns would.
  if (raw.format === 'kernel') {
    const verdict = validateMapText(raw.text, options);
    if (verdict.ok && values.allowed !== undefined) {
      const extents = parseMapInput(raw, { kind, parent }).extents;
      const coverage = await allowedCoverage(values.allowed, extents, kind, io);
      if (!coverage.ok) return printUncovered(io, values.json === true, coverage, values.allowed);
    }
    return printVerdict(io, values.json === true, verdict, kind, kernelLines(raw.text).length);
  }
  const map = parseMapInput(raw, { kind, parent });
  const verdict = validateMap(map, options);
  if (verdict.ok && values.allowed !== undefined) {
    const coverage = await allowedCoverage(values.allowed, map.extents, kind, io);
    if (!coverage.ok) return printUncovered(io, values.json === true, coverage, values.allowed);
  }
  return printVerdict(io, values.json === true, verdict, kind, map.length);
}

/**
 * --allowed ALLOWED: the host IDs of every line of the map must lie in ALLOWED's host (outside)
 * IDs of the map's kind (Incus HostIDsCoveredBy). ALLOWED is a MAP in any format: a subid file,
 * an Incus raw.idmap, kernel lines, triples, …
 */
async function allowedCoverage(argument: string, extents: readonly Extent[], kind: IdKind, io: CliIo) {
  const raw = await readMapArgument(argument, { kind, stdin: io.stdin });
  const entries = FORMATS[raw.format].parse(raw.text, { kind, source: raw.source });
  const hostIds = entriesForKind(entries, kind).map((e) => ({ start: e.outside, count: e.count }));
  return hostIdsCoveredBy(extents, { [kind]: hostIds }, kind);
}

function printUncovered(io: CliIo, json: boolean, c: Uncovered, allowed: string): number {
  const e = c.extent;
  const reason = `line ${c.index + 1} (${e.inside}:${e.outside}:${e.count}) maps host ${c.kind} ${c.id}, which is not in the allowed host ${c.kind}s (${allowed})`;
  if (json)
    writeJson(io, {
      ok: false,
      errno: null,
      reason,
      line: c.index + 1,
      uncovered: { kind: c.kind, id: c.id },
    });
  else io.stdout.write(`not allowed: ${reason}\n`);
  return 1;
}

async function split(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandLine(
    argv,
    { ...common, parent: { type: 'string' }, 'page-size': { type: 'string' } },
    'map split',
  );
  if (values.help) return help(io, 'split');
  needPositionals(positionals, 1, 'split', 1);
  if (values.parent === undefined)
    throw new UsageError('userns map split needs --parent MAP (for example --parent self)');
  const kind = parseKind(values.kind);
  const parent = (await resolveMapArgument(values.parent, { kind, stdin: io.stdin })).map;
  const request = (
    await resolveMapArgument(positionals[0]!, {
      kind,
      from: parseFormatName(values.from, '--from'),
      parent,
      stdin: io.stdin,
    })
  ).map;
  let result: IdMap;
  try {
    result = splitAcrossParent(request, parent, kind);
  } catch (error) {
    if (!(error instanceof UsernsError)) throw error;
    if (values.json)
      writeJson(io, {
        ok: false,
        reason: error.message,
        code: error.code,
        ...(error.data ? { data: error.data } : {}),
      });
    else io.stderr.write(`userns: ${error.message}\n`);
    return 1;
  }
  const pageSize = pageSizeOption(values['page-size']);
  const verdict = validateMap(result, { kind, parent, pageSize });
  if (!verdict.ok) {
    const reason = `the split map cannot be written: ${verdict.reason}`;
    if (values.json) writeJson(io, { ok: false, errno: verdict.errno, reason });
    else io.stderr.write(`userns: ${reason}\n`);
    return 1;
  }
  if (values.json) writeJson(io, { ok: true, map: result.toJSON() });
  else io.stdout.write(formatKernelMap(result.extents));
  return 0;
}

async function convert(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandLine(
    argv,
    { ...common, to: { type: 'string' }, parent: { type: 'string' }, owner: { type: 'string' } },
    'map convert',
  );
  if (values.help) return help(io, 'convert');
  needPositionals(positionals, 1, 'convert');
  const to = parseFormatName(values.to, '--to');
  if (to === undefined)
    throw new UsageError('userns map convert needs --to FORMAT', {
      hint: `formats: ${Object.keys(FORMATS).join(', ')}`,
    });
  const kind = parseKind(values.kind);
  const from = parseFormatName(values.from, '--from');
  const parent = await optionalParent(values.parent, kind, io);
  const entries = [];
  const options = { kind, from, parent, stdin: io.stdin };
  for (const raw of await readMapArguments(positionals, options)) {
    entries.push(...parseMapInput(raw, options).extents.map((e) => ({ ...e, kind })));
  }
  const text = FORMATS[to].format(entries, {
    kind,
    parent,
    ...(values.owner === undefined ? {} : { owner: values.owner }),
  });
  if (values.json)
    writeJson(io, { ok: true, format: to, text, map: entries.map((e) => [e.inside, e.outside, e.count]) });
  else io.stdout.write(text.endsWith('\n') || text === '' ? text : `${text}\n`);
  return 0;
}

async function lookup(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandLine(
    argv,
    { ...common, reverse: { type: 'boolean', short: 'r' } },
    'map lookup',
  );
  if (values.help) return help(io, 'lookup');
  needPositionals(positionals, 2, 'lookup');
  const kind = parseKind(values.kind);
  const { map } = await resolveMapArgument(positionals[0]!, {
    kind,
    from: parseFormatName(values.from, '--from'),
    stdin: io.stdin,
  });
  const results = positionals.slice(1).map((text) => {
    const id = parseId(text);
    const result = values.reverse ? map.toInside(id) : map.toOutside(id);
    return { id, result: result ?? null };
  });
  if (values.json)
    writeJson(io, {
      ok: true,
      direction: values.reverse ? 'outside-to-inside' : 'inside-to-outside',
      results,
    });
  else for (const r of results) io.stdout.write(`${r.id} -> ${r.result ?? 'unmapped'}\n`);
  return results.every((r) => r.result !== null) ? 0 : 1;
}

async function composeCommand(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, { ...common }, 'map compose');
  if (values.help) return help(io, 'compose');
  needPositionals(positionals, 2, 'compose');
  const kind = parseKind(values.kind);
  const from = parseFormatName(values.from, '--from');
  let result = (await resolveMapArgument(positionals[0]!, { kind, from, stdin: io.stdin })).map;
  for (const argument of positionals.slice(1)) {
    result = compose(result, (await resolveMapArgument(argument, { kind, from, stdin: io.stdin })).map);
  }
  if (values.json) writeJson(io, { ok: true, map: result.toJSON() });
  else io.stdout.write(formatKernelMap(result.extents));
  return 0;
}

async function show(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, { ...common }, 'map show');
  if (values.help) return help(io, 'show');
  needPositionals(positionals, 1, 'show', 1);
  const kind = parseKind(values.kind);
  const { map } = await resolveMapArgument(positionals[0]!, {
    kind,
    from: parseFormatName(values.from, '--from'),
    stdin: io.stdin,
  });
  if (values.json) writeJson(io, { ok: true, kind, size: map.size, map: map.toJSON() });
  else io.stdout.write(renderMap(map, kind, useColour(io.stdout, io.env)));
  return 0;
}

function help(io: CliIo, sub: string): number {
  io.stdout.write(HELP[sub] ?? HELP['']!);
  return 0;
}

const subcommands: Record<string, Command> = {
  validate,
  split,
  convert,
  lookup,
  compose: composeCommand,
  show,
};

export const main: Command = async (argv, io) => {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    help(io, '');
    return sub === undefined ? 2 : 0;
  }
  const command = Object.hasOwn(subcommands, sub) ? subcommands[sub] : undefined;
  if (command === undefined)
    throw new UsageError(`unknown subcommand 'map ${sub}'`, { hint: "see 'userns map --help'" });
  return command(rest, io);
};
