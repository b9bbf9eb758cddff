import { readFile } from 'node:fs/promises';
import { UsageError, UsernsError } from '../errors/index.js';
import type { Extent, IdKind, KindedExtent } from '../idmap/extent.js';
import { detectFormat } from '../idmap/formats/detect.js';
import { FORMAT_ALIASES, FORMATS, type FormatName, formatByName } from '../idmap/formats/index.js';
import { parseKernelMap } from '../idmap/formats/kernel.js';
import { parseTriples } from '../idmap/formats/triples.js';
import { IdMap } from '../idmap/idmap.js';

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
  const chunks: Buffer[] = [];
  for await (const chunk of stdin)
    chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString('latin1');
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
    return { source: 'argument', format: 'triples', text: argument };
  if (argument === '-') {
    const text = await readStdin(options.stdin ?? process.stdin);
    return { source: '<stdin>', format: options.from ?? detectFormat(text), text };
  }
  if (options.from !== undefined && INLINE.test(argument))
    return { source: 'argument', format: options.from, text: argument };
  let text: string;
  try {
    text = await readFile(argument, 'latin1');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if ((code === 'ENOENT' || code === 'ENAMETOOLONG') && !looksLikePath(argument) && argument !== '') {
      return inlineArgument(argument, options.from);
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
function inlineArgument(argument: string, from: FormatName | undefined): RawMapInput {
  if (from !== undefined) return { source: 'argument', format: from, text: argument };
  try {
    return { source: 'argument', format: detectFormat(argument), text: argument };
  } catch {
    throw new UsageError(`'${argument}' is neither a file nor a map in a known format`, {
      hint: 'give the format with --from FORMAT (userns map convert --help lists them)',
    });
  }
}

/**
 * readMapArgument for several arguments. Consecutive inline values of podman or unshare syntax
 * are one map, as several `--uidmap` (or `--map-users`) options are: a later `+` entry punches
 * into the earlier ones, and unshare's single-ID options act on the ranges.
 */
export async function readMapArguments(
  arguments_: readonly string[],
  options: ResolveOptions,
): Promise<RawMapInput[]> {
  const out: RawMapInput[] = [];
  for (const argument of arguments_) {
    const raw = await readMapArgument(argument, options);
    const last = out.at(-1);
    if (
      last !== undefined &&
      last.source === 'argument' &&
      raw.source === 'argument' &&
      last.format === raw.format &&
      JOINED_FORMATS.has(raw.format)
    ) {
      out[out.length - 1] = { ...last, text: `${last.text}\n${raw.text}` };
    } else out.push(raw);
  }
  return out;
}

/** Parses what readMapArgument read into the extents that apply to `kind`. */
export function parseMapInput(raw: RawMapInput, options: ResolveOptions): IdMap {
  if (raw.format === 'kernel') return new IdMap(parseKernelMap(raw.text, { source: raw.source }));
  if (raw.format === 'triples') return new IdMap(parseTriples(raw.text, { source: raw.source }));
  const entries = FORMATS[raw.format].parse(raw.text, {
    kind: options.kind,
    source: raw.source,
    parent: options.parent,
    caller: { uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 },
  });
  return new IdMap(entriesForKind(entries, options.kind));
}

/** readMapArgument + parseMapInput. */
export async function resolveMapArgument(argument: string, options: ResolveOptions): Promise<MapInput> {
  const raw = await readMapArgument(argument, options);
  return { ...raw, map: parseMapInput(raw, options) };
}
