import { readFile } from 'node:fs/promises';
import { UsageError, UsernsError } from '../errors/index.js';
import type { Extent, IdKind, KindedExtent } from '../idmap/extent.js';
import { detectFormat } from '../idmap/formats/detect.js';
import { FORMAT_ALIASES, FORMATS, type FormatName, formatByName } from '../idmap/formats/index.js';
import { parseKernelMap } from '../idmap/formats/kernel.js';
import { parseTriples } from '../idmap/formats/triples.js';
import { IdMap } from '../idmap/idmap.js';
import { requireValidMap } from '../idmap/validate.js';
import { MAP_INPUT_LIMIT, readFileBounded, readStreamBounded } from '../system/bounded-read.js';
import { pageSize } from '../system/proc.js';

/** A MAP argument after reading: where it came from, its raw text (if any) and its extents. */
export interface MapInput {
  /** How the argument was given, for messages: a path, `-`, `self`, `pid:N`, or `argument`. */
  source: string;
  format: FormatName;
  /** The text as read, when the input was text (used to validate kernel text byte for byte). */
  text: string | undefined;
  map: IdMap;
}

const INLINE = /^\d+:\d+:\d+(,\d+:\d+:\d+)*$/;

export function parseKind(value: string | undefined): IdKind {
  if (value === undefined || value === 'uid' || value === 'gid') return value ?? 'uid';
  throw new UsageError(`--kind must be uid or gid, not '${value}'`);
}

export function parseFormatName(value: string | undefined, option: string): FormatName | undefined {
  if (value === undefined) return undefined;
  const name = formatByName(value);
  if (name !== undefined) return name;
  const aliases = Object.entries(FORMAT_ALIASES).map(([alias, to]) => `${alias} (= ${to})`);
  throw new UsageError(`${option} '${value}' is not a known format`, {
    hint: `formats: ${[...Object.keys(FORMATS), ...aliases].join(', ')}`,
  });
}

async function readStdin(stdin: NodeJS.ReadableStream): Promise<string> {
  return (await readStreamBounded(stdin, MAP_INPUT_LIMIT, 'standard input')).toString('latin1');
}

/** The extents of `entries` that apply to `kind` (entries marked `both` apply to either). */
export function entriesForKind(entries: readonly (Extent | KindedExtent)[], kind: IdKind): Extent[] {
  return entries
    .filter((e) => !('kind' in e) || e.kind === 'both' || e.kind === kind)
    .map((e) => ({ inside: e.inside, outside: e.outside, count: e.count }));
}

export interface ResolveOptions {
  kind: IdKind;
  from?: FormatName | undefined;
  parent?: IdMap | undefined;
  stdin?: NodeJS.ReadableStream;
  /**
   * Refuse a map the kernel would refuse (MapError MAP_INVALID), as every entry point does
   * (default true). Only `userns map validate`, whose job is to explain such maps, turns it off.
   */
  validate?: boolean;
  /** How an inline MAP is named in messages (default `argument`), e.g. `--from`. */
  label?: string;
}

/** A MAP argument read but not yet parsed. */
export interface RawMapInput {
  source: string;
  format: FormatName;
  text: string;
}

/** Formats whose entries act on the entries before them (podman `+`, unshare's hole rule). */
const JOINED_FORMATS: ReadonlySet<FormatName> = new Set(['podman', 'unshare']);

/** A missing file name that is not a map: a path (has '/', no blank, not JSON). */
function looksLikePath(argument: string): boolean {
  return argument.includes('/') && !/\s/.test(argument) && !/^[[{]/.test(argument);
}

/** The caller's IDs, for unshare's single-ID options (`-r`, `--map-user`, …). */
function caller(): { uid: number; gid: number } {
  return { uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 };
}

/**
 * Reads a MAP argument: `self` or `pid:N` (that process's /proc map of `kind`), `-` (standard
 * input), a file path, or the map itself (inline). Inline triples `inside:outside:count[,…]`
 * are recognised without `--from`; with `from`, an argument that is not an existing file is the
 * map's text in that format (`--from podman +1:100:1`, `--from kernel '0 1000 1'`). Without
 * `from`, an inline value that is not a path is auto-detected. Text formats are auto-detected
 * unless `from` names one.
 */
export async function readMapArgument(argument: string, options: ResolveOptions): Promise<RawMapInput> {
  const procMatch = /^(?:self|pid:(\d+))$/.exec(argument);
  if (procMatch) {
    const pid = procMatch[1] ?? 'self';
    const path = `/proc/${pid}/${options.kind}_map`;
    try {
      return { source: path, format: 'kernel', text: await readFile(path, 'latin1') };
    } catch (error) {
      throw new UsernsError('PROC_READ_FAILED', `cannot read ${path}: ${(error as Error).message}`, {
        hint: pid === 'self' ? undefined : `is process ${pid} running, and are you allowed to see it?`,
        cause: error,
      });
    }
  }
  if (options.from === undefined && INLINE.test(argument))
    return { source: options.label ?? 'argument', format: 'triples', text: argument };
  if (argument === '-') {
    const text = await readStdin(options.stdin ?? process.stdin);
    return { source: '<stdin>', format: options.from ?? detectFormat(text), text };
  }
  if (options.from !== undefined && INLINE.test(argument))
    return { source: options.label ?? 'argument', format: options.from, text: argument };
  let text: string;
  try {
    text = readFileBounded(argument, MAP_INPUT_LIMIT).toString('latin1');
  } catch (error) {
    if (error instanceof UsernsError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if ((code === 'ENOENT' || code === 'ENAMETOOLONG') && !looksLikePath(argument) && argument !== '') {
      return inlineArgument(argument, options.from, options.label ?? 'argument');
    }
    throw new UsernsError(
      'MAP_READ_FAILED',
      `cannot read map file ${argument}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  return { source: argument, format: options.from ?? detectFormat(text), text };
}

/** An argument that names no file, read as the map itself. */
function inlineArgument(argument: string, from: FormatName | undefined, label: string): RawMapInput {
  if (from !== undefined) return { source: label, format: from, text: argument };
  try {
    return { source: label, format: detectFormat(argument), text: argument };
  } catch {
    throw new UsageError(`'${argument}' is neither a file nor a map in a known format`, {
      hint: 'give the format with --from FORMAT (userns map convert --help lists them)',
    });
  }
}

/**
 * Parses what readMapArgument read into the extents that apply to `kind`, and (unless
 * `validate: false`) refuses a map the kernel would refuse (MapError MAP_INVALID).
 */
export function parseMapInput(raw: RawMapInput, options: ResolveOptions): IdMap {
  let map: IdMap;
  if (raw.format === 'kernel') map = new IdMap(parseKernelMap(raw.text, { source: raw.source }));
  else if (raw.format === 'triples') map = new IdMap(parseTriples(raw.text, { source: raw.source }));
  else {
    const entries = FORMATS[raw.format].parse(raw.text, {
      kind: options.kind,
      source: raw.source,
      parent: options.parent,
      caller: caller(),
    });
    map = new IdMap(entriesForKind(entries, options.kind));
  }
  if (options.validate !== false)
    requireValidMap(map, {
      kind: options.kind,
      source: raw.source,
      pageSize: pageSize(),
      sourceLine: (line) => entryLines(raw, options.kind, options.parent)?.[line - 1],
    });
  return map;
}

/** Formats with at most one map entry per text line (comments and blank lines allowed). */
const LINE_FORMATS: readonly FormatName[] = ['kernel', 'lxc', 'incus', 'subid'];

/**
 * For each entry of `kind` that `raw` holds, in map order, the line of the text it was read
 * from (1-based); undefined for formats whose entries are not lines (JSON, inline triples). So
 * that an error about map line N of an LXC config names the file's line, not N.
 */
export function entryLines(raw: RawMapInput, kind: IdKind, parent?: IdMap): number[] | undefined {
  if (!LINE_FORMATS.includes(raw.format)) return undefined;
  const out: number[] = [];
  raw.text.split('\n').forEach((text, i) => {
    // LXC: an empty lxc.idmap value clears what was read before it.
    if (raw.format === 'lxc' && /^[ \t\r]*lxc\.id_?map[ \t]*=[ \t\r]*$/.test(text)) {
      out.length = 0;
      return;
    }
    let entries: KindedExtent[];
    try {
      entries = FORMATS[raw.format].parse(text, { kind, source: raw.source, parent });
    } catch {
      return; // not an entry (a comment, a blank line)
    }
    for (const _ of entriesForKind(entries, kind)) out.push(i + 1);
  });
  return out;
}

/** readMapArgument + parseMapInput. */
export async function resolveMapArgument(argument: string, options: ResolveOptions): Promise<MapInput> {
  const raw = await readMapArgument(argument, options);
  return { ...raw, map: parseMapInput(raw, options) };
}

/** Formats that hold one map of one kind: a two-kind input needs --kind to be written to them. */
export const SINGLE_KIND_FORMATS: readonly FormatName[] = ['kernel', 'triples', 'newuidmap', 'subid'];

/**
 * Reads a MAP argument with its kinds kept (for `map convert`): uid and gid entries of formats
 * that hold both (LXC, Incus, JSON, Kubernetes, OCI config, podman u/g), `self`/`pid:N` as both
 * its uid_map and gid_map; kind-less formats (kernel text, triples) as 'both'. With `kind`, only
 * the entries for that kind, marked with it. Not validated here: see requireValidEntries.
 */
export async function readMapEntries(
  argument: string,
  options: Omit<ResolveOptions, 'kind' | 'validate'> & { kind: IdKind | undefined },
): Promise<KindedExtent[]> {
  return (await readMapEntriesOf([argument], options))[0] ?? [];
}

/**
 * readMapEntries for several arguments, one entry list per input. Consecutive inline values of
 * podman or unshare syntax are one input, as several `--uidmap` (or `--map-users`) options are:
 * a later `+` entry punches into the earlier ones, and unshare's single-ID options act on the
 * ranges.
 */
export async function readMapEntriesOf(
  arguments_: readonly string[],
  options: Omit<ResolveOptions, 'kind' | 'validate'> & { kind: IdKind | undefined },
): Promise<KindedExtent[][]> {
  const out: KindedExtent[][] = [];
  let pending: RawMapInput | undefined;
  const flush = () => {
    if (pending !== undefined) out.push(entriesOf(pending, options));
    pending = undefined;
  };
  for (const argument of arguments_) {
    if (options.kind === undefined && /^(?:self|pid:\d+)$/.test(argument)) {
      flush();
      out.push(await procEntries(argument, options));
      continue;
    }
    const raw = await readMapArgument(argument, { ...options, kind: options.kind ?? 'uid' });
    const inline = raw.source === (options.label ?? 'argument');
    if (
      pending !== undefined &&
      inline &&
      pending.source === raw.source &&
      pending.format === raw.format &&
      JOINED_FORMATS.has(raw.format)
    ) {
      pending = { ...pending, text: `${pending.text}\n${raw.text}` };
      continue;
    }
    flush();
    pending = raw;
  }
  flush();
  return out;
}

/** A process has one map of each kind: both are read. */
async function procEntries(
  argument: string,
  options: Omit<ResolveOptions, 'kind' | 'validate'> & { kind: IdKind | undefined },
): Promise<KindedExtent[]> {
  const out: KindedExtent[] = [];
  for (const kind of ['uid', 'gid'] as const) {
    const raw = await readMapArgument(argument, { ...options, kind });
    for (const e of parseMapInput(raw, { kind, validate: false }).extents) out.push({ ...e, kind });
  }
  return out;
}

/** The kinded entries of one input read by readMapArgument. */
function entriesOf(
  raw: RawMapInput,
  options: { kind: IdKind | undefined; parent?: IdMap | undefined },
): KindedExtent[] {
  let entries: KindedExtent[];
  if (raw.format === 'kernel')
    entries = parseKernelMap(raw.text, { source: raw.source }).map((e) => ({ ...e, kind: 'both' }));
  else if (raw.format === 'triples')
    entries = parseTriples(raw.text, { source: raw.source }).map((e) => ({ ...e, kind: 'both' }));
  else
    entries = FORMATS[raw.format].parse(raw.text, {
      kind: options.kind,
      source: raw.source,
      parent: options.parent,
      caller: caller(),
    });
  if (options.kind === undefined) return entries;
  const kind = options.kind;
  return entriesForKind(entries, kind).map((e) => ({ ...e, kind }));
}

/** requireValidMap for each kind that kinded entries hold (MapError MAP_INVALID; an empty input too). */
export function requireValidEntries(entries: readonly KindedExtent[], source: string): void {
  const page = pageSize();
  const lists = { uid: entriesForKind(entries, 'uid'), gid: entriesForKind(entries, 'gid') };
  if (lists.uid.length === 0 && lists.gid.length === 0) requireValidMap([], { source, pageSize: page });
  for (const kind of ['uid', 'gid'] as const)
    if (lists[kind].length > 0) requireValidMap(lists[kind], { kind, source, pageSize: page });
}
