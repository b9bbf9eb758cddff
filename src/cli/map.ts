import { UsageError } from '../errors/index.js';
import { compose } from '../idmap/compose.js';
import { hostIdsCoveredBy, type Uncovered } from '../idmap/coverage.js';
import { type Extent, type IdKind, INVALID_ID, type KindedExtent } from '../idmap/extent.js';
import { FORMAT_NAMES, FORMATS } from '../idmap/formats/index.js';
import { formatKernelMap, kernelLines } from '../idmap/formats/kernel.js';
import type { IdMap } from '../idmap/idmap.js';
import { PRIVILEGED_WRITER, type WriterSituation } from '../idmap/permission.js';
import { splitAcrossParent } from '../idmap/split.js';
import {
  requireValidMap,
  type Verdict,
  validateMap,
  validateMapText,
  withSourceLines,
} from '../idmap/validate.js';
import { pageSize } from '../system/proc.js';
import { COMMANDS } from './commands.js';
import { type CliIo, type Command, parseCommandLine, useColour, writeHelp, writeJson } from './common.js';
import {
  entriesForKind,
  entryLines,
  parseFormatName,
  parseKind,
  parseMapInput,
  readMapArgument,
  readMapEntries,
  readMapEntriesOf,
  requireValidEntries,
  resolveMapArgument,
  SINGLE_KIND_FORMATS,
} from './map-input.js';
import { renderMap } from './map-show.js';
import { didYouMean } from './suggest.js';

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
  const { values, positionals } = parseCommandLine(argv, COMMANDS['map validate'].options, 'map validate');
  if (values.help) return writeHelp(io, 'map validate');
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
      const extents = parseMapInput(raw, { kind, parent, validate: false }).extents;
      const coverage = await allowedCoverage(values.allowed, extents, kind, io);
      if (!coverage.ok) return printUncovered(io, values.json === true, coverage, values.allowed);
    }
    return printVerdict(io, values.json === true, verdict, kind, kernelLines(raw.text).length);
  }
  const map = parseMapInput(raw, { kind, parent, validate: false });
  let verdict: Verdict & { sourceLine?: number | null } = validateMap(map, options);
  const lines = entryLines(raw, kind, parent);
  if (!verdict.ok && lines !== undefined) {
    // The file's lines are not the map's (comments, the other kind): name both.
    const at = (n: number) => lines[n - 1];
    verdict = {
      ...verdict,
      reason: withSourceLines(verdict.reason!, raw.source, at),
      sourceLine: verdict.line === null ? null : (at(verdict.line) ?? null),
    };
  }
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
  const entries = await readMapEntries(argument, { kind, stdin: io.stdin, label: '--allowed' });
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
  const { values, positionals } = parseCommandLine(argv, COMMANDS['map split'].options, 'map split');
  if (values.help) return writeHelp(io, 'map split');
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
  // Errors (an ID the parent does not map; a result the kernel would refuse) are reported as
  // every command reports them: one line, or the --json error shape; exit 1.
  const result = splitAcrossParent(request, parent, kind);
  requireValidMap(result, {
    kind,
    parent,
    pageSize: pageSizeOption(values['page-size']),
    source: 'the split map',
  });
  if (values.json) writeJson(io, { ok: true, map: result.toJSON() });
  else io.stdout.write(formatKernelMap(result.extents));
  return 0;
}

async function convert(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, COMMANDS['map convert'].options, 'map convert');
  if (values.help) return writeHelp(io, 'map convert');
  needPositionals(positionals, 1, 'convert');
  const to = parseFormatName(values.to, '--to');
  if (to === undefined)
    throw new UsageError('userns map convert needs --to FORMAT', {
      hint: `formats: ${Object.keys(FORMATS).join(', ')}`,
    });
  // Without --kind both kinds are kept: formats that hold both write both.
  const kind = values.kind === undefined ? undefined : parseKind(values.kind);
  const from = parseFormatName(values.from, '--from');
  const parent = await optionalParent(values.parent, kind ?? 'uid', io);
  const entries: KindedExtent[] = [];
  // Consecutive inline podman/unshare arguments are one map (readMapEntriesOf).
  for (const list of await readMapEntriesOf(positionals, { kind, from, parent, stdin: io.stdin }))
    for (const e of list) entries.push(e);
  requireValidEntries(entries, positionals.length === 1 ? positionals[0]! : 'the input');
  if (
    kind === undefined &&
    SINGLE_KIND_FORMATS.includes(to) &&
    entries.some((e) => e.kind === 'uid') &&
    entries.some((e) => e.kind === 'gid')
  ) {
    throw new UsageError(`the ${to} format holds one map, and the input has both a uid map and a gid map`, {
      hint: `choose the one to write: --kind uid or --kind gid (or a format that holds both: ${FORMAT_NAMES.filter((f) => !SINGLE_KIND_FORMATS.includes(f)).join(', ')})`,
    });
  }
  const text = FORMATS[to].format(entries, {
    kind,
    parent,
    ...(values.owner === undefined ? {} : { owner: values.owner }),
  });
  if (values.json) {
    const triples = (k: IdKind) => entriesForKind(entries, k).map((e) => [e.inside, e.outside, e.count]);
    writeJson(io, { ok: true, format: to, text, uidMap: triples('uid'), gidMap: triples('gid') });
  } else io.stdout.write(text.endsWith('\n') || text === '' ? text : `${text}\n`);
  return 0;
}

async function lookup(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, COMMANDS['map lookup'].options, 'map lookup');
  if (values.help) return writeHelp(io, 'map lookup');
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
      // ok says what the exit status says: every ID translated.
      ok: results.every((r) => r.result !== null),
      direction: values.reverse ? 'outside-to-inside' : 'inside-to-outside',
      results,
    });
  else for (const r of results) io.stdout.write(`${r.id} -> ${r.result ?? 'unmapped'}\n`);
  return results.every((r) => r.result !== null) ? 0 : 1;
}

async function composeCommand(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, COMMANDS['map compose'].options, 'map compose');
  if (values.help) return writeHelp(io, 'map compose');
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
  const { values, positionals } = parseCommandLine(argv, COMMANDS['map show'].options, 'map show');
  if (values.help) return writeHelp(io, 'map show');
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
    await writeHelp(io, 'map');
    return sub === undefined ? 2 : 0;
  }
  const command = Object.hasOwn(subcommands, sub) ? subcommands[sub] : undefined;
  if (command === undefined)
    throw new UsageError(`unknown subcommand 'map ${sub}'${didYouMean(sub, Object.keys(subcommands))}`, {
      hint: "see 'userns map --help'",
    });
  return command(rest, io);
};
