import { type Extent, type ExtentKind, extent, type IdKind, INVALID_ID } from '../extent.js';
import { IdMap } from '../idmap.js';
import { normalize } from '../normalize.js';
import { punchHole } from '../punch.js';
import { type IdRange, insideRanges, outsideRanges, subtractRanges } from '../ranges.js';
import { assertWritable, decimalU32, isProblem } from './numbers.js';
import { isCSpace, parseErrorAt, type Token, tokens } from './position.js';

/**
 * podman / buildah `--uidmap` and `--gidmap` values, with podman's rootless extensions
 * (behaviour read in podman's pkg/util ParseIDMap and its tests):
 *
 *   [flags]container:[@]host[:size]     flags: any of + u g, before the container ID
 *
 * - Entries are separated by ',' (podman's flag is a string slice, so commas split it) and, for
 *   text read from a file, by whitespace. One entry may also chain triples with ':'
 *   (`0:1000:1:1:100000:65536`); `container:host` alone means size 1. Empty entries are skipped.
 * - Numbers are decimal u32 (Go's ParseUint base 10: leading zeros are decimal).
 * - `u` / `g` restrict an entry to UIDs / GIDs; with neither (or both) it applies to both.
 *   Entries for the other kind are skipped before anything else happens to them.
 * - `@host` is a host ID as seen from the real host; it is translated through `parent` (the
 *   current namespace's map: inside = IDs here, outside = host). Podman translates ID by ID
 *   and would emit several pieces for a range that is not contiguous inside; we require one
 *   contiguous inside range and report precisely where it breaks.
 * - Size 0 entries are ignored (as podman does).
 * - `+` punches the entry's container IDs and host IDs out of the entries before it, then adds
 *   it (punch.ts). When the first entry that applies is a `+` entry and a parent is given
 *   (rootless), podman fills the map afterwards: container IDs not yet mapped, from 0 upwards,
 *   get the parent's inside IDs not yet used as host IDs, in ascending order (so
 *   `+1000:@1000` in a `0 1000 1, 1 100000 65536` namespace gives 0:1:1000, 1000:0:1,
 *   1001:1001:64536 — the keep-id layout).
 * - `rootless` (an unprivileged caller outside any namespace of its own): podman parses inside
 *   its rootless namespace, whose map is the caller's `auto` map (0 = the caller, 1… = its
 *   subordinate ranges). The fill then takes that map's outside IDs in the order of its inside
 *   IDs, so the result equals podman's composed with the rootless map, written in IDs of the
 *   current namespace (docs/peer-syntax.md, "rootless + and @").
 * - The result is sorted by container ID and contiguous entries merged (normalize.ts).
 */

export interface PodmanParseOptions {
  /** Which map is being built: entries flagged for the other kind are skipped. */
  kind: IdKind;
  /** The current namespace's map, needed by `@` and enabling the rootless `+` fill. */
  parent?: IdMap | undefined;
  /**
   * The IDs an unprivileged caller may map, as the map of podman's rootless namespace (inside:
   * that namespace's IDs, outside: IDs of the current namespace; the caller's `auto` map).
   * When given, a leading `+` fills from it instead of from `parent`.
   */
  rootless?: IdMap | undefined;
  source?: string | undefined;
}

const HINT =
  'podman maps are [+][u|g]container:[@]host[:size], several separated by commas, e.g. 0:1000:1,1:100000:65536';

type Input = { text: string; source?: string | undefined };

interface Entry {
  kind: ExtentKind;
  plus: boolean;
  inside: number;
  host: number;
  at: boolean;
  count: number;
  /** Where the host field is, for errors about `@`. */
  hostToken: Token;
}

/** Reads the flags before the container ID; returns them and where the digits start. */
function parseFlags(field: Token, input: Input): { kind: ExtentKind; plus: boolean; digitsAt: number } {
  let u = false;
  let g = false;
  let plus = false;
  let i = 0;
  for (; i < field.text.length; i++) {
    const c = field.text[i]!;
    if (c >= '0' && c <= '9') break;
    if (c === '+') plus = true;
    else if (c === 'u') u = true;
    else if (c === 'g') g = true;
    else {
      throw parseErrorAt(
        'UNKNOWN_FLAG',
        `unknown flag ${JSON.stringify(c)} (flags are +, u and g, before the container ID)`,
        input,
        field.offset + i,
        field.text,
        HINT,
      );
    }
  }
  if (i === field.text.length) {
    const reason = i === 0 ? 'empty container ID' : 'expected the container ID after the flags';
    throw parseErrorAt('MISSING_FIELD', reason, input, field.offset + i, field.text, HINT);
  }
  return { kind: u === g ? 'both' : u ? 'uid' : 'gid', plus, digitsAt: i };
}

function number(field: Token, skip: number, what: string, input: Input): number {
  const value = decimalU32(field.text.slice(skip), what);
  if (isProblem(value))
    throw parseErrorAt(value.code, value.reason, input, field.offset + skip, field.text || ':', HINT);
  return value;
}

function parseTriple(fields: readonly Token[], input: Input): Entry {
  const [first, host, size] = fields as [Token, Token, Token | undefined];
  const { kind, plus, digitsAt } = parseFlags(first, input);
  const inside = number(first, digitsAt, 'container ID', input);
  const at = host.text.startsWith('@');
  const hostId = number(host, at ? 1 : 0, at ? 'host ID after @' : 'host ID', input);
  const count = size === undefined ? 1 : number(size, 0, 'size', input);
  return { kind, plus, inside, host: hostId, at, count, hostToken: host };
}

/** Splits the text into entries and each entry into triples of fields. */
function parseEntries(text: string, input: Input): Entry[] {
  const out: Entry[] = [];
  for (const element of tokens(text, (c) => c === 0x2c || isCSpace(c))) {
    const fields: Token[] = [];
    let offset = element.offset;
    for (const part of element.text.split(':')) {
      fields.push({ text: part, offset });
      offset += part.length + 1;
    }
    if (fields.length === 2) {
      out.push(parseTriple(fields, input));
      continue;
    }
    if (fields.length % 3 !== 0) {
      throw parseErrorAt(
        fields.length < 3 ? 'MISSING_FIELD' : 'SYNTAX',
        `expected container:host[:size] (or whole triples chained with ':'), found ${fields.length} fields`,
        input,
        element.offset,
        element.text,
        HINT,
      );
    }
    for (let i = 0; i < fields.length; i += 3) out.push(parseTriple(fields.slice(i, i + 3), input));
  }
  return out;
}

/** The parent extent that maps outside ID `id` to `inside`, for walking a range through it. */
function extentAt(parent: IdMap, id: number, inside: number): Extent {
  for (const e of parent.extents) {
    if (id >= e.outside && id < e.outside + e.count && e.inside + (id - e.outside) === inside) return e;
  }
  return extent(inside, id, 1); // unreachable for a consistent IdMap; advance by one ID
}

/** Translates host IDs [host, host+count) through `parent` into one contiguous inside range. */
function translateAt(entry: Entry, parent: IdMap, input: Input): number {
  const start = parent.toInside(entry.host);
  const { hostToken } = entry;
  if (start === undefined) {
    throw parseErrorAt(
      'HOST_ID_NOT_MAPPED',
      `host ID ${entry.host} is not mapped in the current user namespace`,
      input,
      hostToken.offset,
      hostToken.text,
      'the parent map does not contain this host ID; check /proc/self/uid_map (or gid_map)',
    );
  }
  const end = entry.host + entry.count;
  let id = entry.host;
  while (id < end) {
    const inside = parent.toInside(id);
    if (inside === undefined) {
      throw parseErrorAt(
        'HOST_ID_NOT_MAPPED',
        `host ID ${id} (in the range @${entry.host} size ${entry.count}) is not mapped in the current user namespace`,
        input,
        hostToken.offset,
        hostToken.text,
        'make the range smaller or split it where the parent map has a gap',
      );
    }
    if (inside !== start + (id - entry.host)) {
      throw parseErrorAt(
        'HOST_RANGE_NOT_CONTIGUOUS',
        `host IDs @${entry.host}…${end - 1} are not contiguous in the current user namespace: host ID ${id} is ID ${inside} here, not ${start + (id - entry.host)}`,
        input,
        hostToken.offset,
        hostToken.text,
        `split the entry at host ID ${id}`,
      );
    }
    const e = extentAt(parent, id, inside);
    id = Math.min(end, e.outside + e.count);
  }
  return start;
}

/**
 * The IDs a rootless fill may hand out, in the order podman hands them out: the parent's inside
 * IDs ascending, or (`rootless`) the rootless map's outside IDs in the order of its inside IDs.
 */
function fillSource(parent: IdMap, rootless: IdMap | undefined): IdRange[] {
  if (rootless === undefined) return insideRanges(parent);
  return [...rootless.extents]
    .sort((a, b) => a.inside - b.inside)
    .map((e) => ({ start: e.outside, count: e.count }));
}

/**
 * Podman's rootless fill: unmapped container IDs from 0 up get the `source` IDs that no entry
 * uses as host IDs, in source order; whatever is left goes after the last entry.
 */
function fillFrom(idmap: readonly Extent[], source: readonly IdRange[]): Extent[] {
  const used = outsideRanges(idmap);
  // Keep the source's order: subtract the used IDs range by range.
  const available = source.flatMap((r) => subtractRanges([r], used));
  const out: Extent[] = [];
  let next = 0;
  let r = 0;
  let pos = available[0]?.start ?? 0;
  const take = (upTo: number) => {
    while (next < upTo && r < available.length) {
      const range = available[r]!;
      const n = Math.min(upTo - next, range.start + range.count - pos);
      out.push(extent(next, pos, n));
      next += n;
      pos += n;
      if (pos === range.start + range.count) {
        r++;
        pos = available[r]?.start ?? 0;
      }
    }
  };
  for (const m of [...idmap].sort((a, b) => a.inside - b.inside)) {
    take(m.inside);
    out.push(m);
    next = Math.max(next, m.inside) + m.count;
  }
  take(INVALID_ID);
  return out;
}

/** Parses podman `--uidmap`/`--gidmap` text into the map podman would use for `kind`. */
export function parsePodmanMap(text: string, options: PodmanParseOptions): IdMap {
  const input = { text, source: options.source };
  let idmap: Extent[] = [];
  let fill = false;
  for (const entry of parseEntries(text, input)) {
    if (entry.kind !== 'both' && entry.kind !== options.kind) continue;
    if (entry.count === 0) continue;
    let outside = entry.host;
    if (entry.at) {
      if (options.parent === undefined) {
        throw parseErrorAt(
          'PARENT_REQUIRED',
          `@${entry.host} needs the current namespace's map to translate host IDs`,
          input,
          entry.hostToken.offset,
          entry.hostToken.text,
          'give the parent map (--parent self), or write the ID as seen in this namespace without @',
        );
      }
      outside = translateAt(entry, options.parent, input);
    }
    const mapping = extent(entry.inside, outside, entry.count);
    if (!entry.plus) {
      idmap.push(mapping);
      continue;
    }
    if (idmap.length === 0 && (options.parent !== undefined || options.rootless !== undefined)) fill = true;
    idmap = [...punchHole(idmap, mapping).extents];
  }
  if (fill) idmap = fillFrom(idmap, fillSource(options.parent ?? IdMap.identity(), options.rootless));
  return normalize(idmap);
}

/**
 * `0:1000:1,1:100000:65536`: explicit sizes, a `u`/`g` flag for entries of kind uid/gid (plain
 * extents and 'both' entries get none). No trailing newline.
 */
export function formatPodmanMap(extents: readonly (Extent & { readonly kind?: ExtentKind })[]): string {
  return extents
    .map((e) => {
      assertWritable(e, 'podman --uidmap');
      const flag = e.kind === 'uid' ? 'u' : e.kind === 'gid' ? 'g' : '';
      return `${flag}${e.inside}:${e.outside}:${e.count}`;
    })
    .join(',');
}
