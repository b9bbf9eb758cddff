import { MapError } from '../errors/index.js';
import {
  type Extent,
  formatRange,
  formatTriple,
  type IdKind,
  INVALID_ID,
  isU32,
  MAX_EXTENTS,
} from './extent.js';
import { kernelLines, parseKernelLine } from './formats/kernel.js';
import { extentsOf, type MapLike } from './idmap.js';
import {
  containingExtent,
  lastStartingAtOrBefore,
  piecesAcrossParent,
  type SortedParent,
  sortParent,
} from './parent-walk.js';
import { predictPermission, type WriterSituation } from './permission.js';
import { insideRanges } from './ranges.js';

/**
 * The errno a refused map write fails with: EINVAL for a malformed map, EPERM for one the writer may not install.
 */
export type Errno = 'EINVAL' | 'EPERM';

/** What the kernel would answer to one write() of a map. */
export interface Verdict {
  ok: boolean;
  /** The errno write() would fail with, null when it would succeed. */
  errno: Errno | null;
  /** Why, naming the offending line; null when ok. */
  reason: string | null;
  /** 1-based line of the map the verdict is about; null when ok or about the whole map. */
  line: number | null;
}

/**
 * Options of {@link validateMap} and {@link validateMapText}: the kind, the parent map, the page
 * size and the writer's situation (default: a privileged writer).
 */
export interface ValidateOptions {
  kind?: IdKind;
  /**
   * The map of the namespace the outside IDs belong to (the current namespace's own map, as read
   * from /proc/self/uid_map inside it). Omit when writing under the initial namespace.
   * Pass an IdMap when validating many requests against one parent: its sorted form is cached.
   */
  parent?: MapLike;
  /** The kernel's PAGE_SIZE: one write must be shorter than this. Default 4096. */
  pageSize?: number;
  /** Predict the permission checks for this writer; omitted = privileged (root). */
  writer?: WriterSituation;
}

const OK: Verdict = Object.freeze({ ok: true, errno: null, reason: null, line: null });

function fail(errno: Errno, reason: string, line: number | null): Verdict {
  return { ok: false, errno, reason, line };
}

/** The per-line value checks of map_write(), after syntax: (u32)-1, count 0 or wrap. */
function lineValueProblem(e: Extent, n: number): Verdict | undefined {
  if (e.inside === INVALID_ID || e.outside === INVALID_ID) {
    return fail('EINVAL', `line ${n} (${formatTriple(e)}): 4294967295 is (u32)-1, never a valid ID`, n);
  }
  if (e.count === 0) return fail('EINVAL', `line ${n} (${formatTriple(e)}): count must be at least 1`, n);
  if (e.inside + e.count > INVALID_ID || e.outside + e.count > INVALID_ID) {
    const side = e.inside + e.count > INVALID_ID ? 'inside' : 'outside';
    return fail(
      'EINVAL',
      `line ${n} (${formatTriple(e)}): the ${side} range runs past 4294967294, the last mappable ID`,
      n,
    );
  }
  return undefined;
}

/**
 * True when some two ranges on `side` intersect: in order of start, a range starting before the
 * furthest end so far. No sort at all when the ranges are already in ascending order; otherwise
 * one native numeric sort (no comparator) of start and line packed into one number. Beyond 1024
 * lines: starts and ends sorted independently (half-open ranges are pairwise disjoint exactly
 * when every start[k+1] >= end[k]).
 */
function anyOverlap(extents: readonly Extent[], side: 'inside' | 'outside'): boolean {
  const n = extents.length;
  let ascending = true;
  for (let i = 1; i < n && ascending; i++) {
    const prev = extents[i - 1]!;
    ascending = extents[i]![side] >= prev[side] + prev.count;
  }
  if (ascending) return false;
  // One native numeric sort of start·1024 + line (exact: < 2^42), then each range against the
  // next start. Maps longer than 1024 lines (the kernel takes 340) use two sorts instead.
  if (n <= 1024) {
    const keys = new Float64Array(n);
    for (let i = 0; i < n; i++) keys[i] = extents[i]![side] * 1024 + i;
    keys.sort();
    let previousEnd = -1;
    for (let k = 0; k < n; k++) {
      const key = keys[k]!;
      const start = Math.floor(key / 1024); // exact: a division by a power of two
      const line = key - start * 1024;
      if (start < previousEnd) return true;
      previousEnd = Math.max(previousEnd, start + extents[line]!.count);
    }
    return false;
  }
  const starts = new Float64Array(n);
  const ends = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const e = extents[i]!;
    starts[i] = e[side];
    ends[i] = e[side] + e.count;
  }
  starts.sort();
  ends.sort();
  for (let k = 1; k < n; k++) if (starts[k]! < ends[k - 1]!) return true;
  return false;
}

/**
 * True when the outside ranges are proven disjoint by the parent: every line lies inside a
 * parent extent, no two in the same one, and the parent's extents do not intersect. O(n), no
 * sort: the usual shape of a map split across its parent. False means "not proven".
 */
function disjointByParent(extents: readonly Extent[], parent: SortedParent | undefined): boolean {
  if (parent === undefined || parent.overlapping || extents.length > parent.extents.length) return false;
  const used = new Uint8Array(parent.extents.length);
  for (const e of extents) {
    const k = lastStartingAtOrBefore(parent, e.outside);
    if (k < 0 || e.outside + e.count > parent.ends[k]! || used[k] === 1) return false;
    used[k] = 1;
  }
  return true;
}

/**
 * First line (0-based `index`) whose inside or outside range intersects an earlier line's
 * (`earlier`), and on which side; undefined when none does. `outsideDisjoint`: the caller knows
 * the outside ranges are apart (only the inside ones are checked).
 */
export function firstOverlap(
  extents: readonly Extent[],
  outsideDisjoint: boolean,
): { index: number; earlier: number; side: 'inside' | 'outside' } | undefined {
  // Only when something overlaps do we pay O(n²) to find the first line in written order, as
  // the kernel reports it (it checks each new line against the earlier ones).
  if (!anyOverlap(extents, 'inside') && (outsideDisjoint || !anyOverlap(extents, 'outside')))
    return undefined;
  for (let i = 1; i < extents.length; i++) {
    const e = extents[i]!;
    for (let j = 0; j < i; j++) {
      const p = extents[j]!;
      if (e.inside < p.inside + p.count && p.inside < e.inside + e.count)
        return { index: i, earlier: j, side: 'inside' };
      if (e.outside < p.outside + p.count && p.outside < e.outside + e.count)
        return { index: i, earlier: j, side: 'outside' };
    }
  }
  return undefined;
}

/**
 * The checks after the per-line ones, in the kernel's order. `lines` are the lines that passed
 * the per-line checks (all of them before `lineError`, if any); `lineCount` counts every line.
 */
function checkParsed(
  lines: readonly Extent[],
  lineCount: number,
  lineError: Verdict | undefined,
  options: ValidateOptions,
): Verdict {
  // The kernel checks overlap and the line limit as it inserts each line, so an overlap or the
  // limit on an earlier line wins over a syntax error on a later one.
  const parent = options.parent === undefined ? undefined : sortParent(options.parent);
  // Each line in its own parent extent: no outside overlap, and the containment check passes.
  const containedApart = disjointByParent(lines, parent);
  const overlap = firstOverlap(lines, containedApart);
  const limitLine = lineCount > MAX_EXTENTS ? MAX_EXTENTS : Number.POSITIVE_INFINITY;
  const errorLine = lineError?.line ?? Number.POSITIVE_INFINITY;
  if (overlap && overlap.index + 1 <= Math.min(errorLine, limitLine)) {
    const e = lines[overlap.index]!;
    const p = lines[overlap.earlier]!;
    return fail(
      'EINVAL',
      `line ${overlap.index + 1} (${formatTriple(e)}) overlaps line ${overlap.earlier + 1} (${formatTriple(p)}) on the ${overlap.side} side`,
      overlap.index + 1,
    );
  }
  if (limitLine < errorLine) {
    return fail(
      'EINVAL',
      `the map has ${lineCount} lines; the kernel accepts at most ${MAX_EXTENTS}`,
      MAX_EXTENTS,
    );
  }
  if (lineError) return lineError;
  if (lines.length === 0) return fail('EINVAL', 'the map is empty; the kernel needs at least one line', null);

  const kind = options.kind ?? 'uid';
  if (options.writer) {
    const permission = predictPermission(lines, kind, options.writer);
    if (!permission.allowed) return fail('EPERM', permission.reason, permission.line);
  }
  if (options.parent !== undefined && parent !== undefined && !containedApart) {
    for (let i = 0; i < lines.length; i++) {
      const e = lines[i]!;
      if (containingExtent(parent, e.outside, e.count) !== undefined) continue;
      const pieces = piecesAcrossParent(e, parent);
      const gap = pieces.find((p) => p.parent === undefined);
      const available = insideRanges(options.parent)
        .map((r) => formatRange(r.start, r.count))
        .join(', ');
      const reason = gap
        ? `line ${i + 1} (${formatTriple(e)}): ${kind} ${formatRange(gap.outside, gap.count)} is not mapped in the parent namespace (it maps ${available || 'nothing'})`
        : `line ${i + 1} (${formatTriple(e)}) spans ${pieces.length} extents of the parent map; the kernel requires each line to lie inside one (split it: userns map split)`;
      return fail('EPERM', reason, i + 1);
    }
  }
  return OK;
}

function tooLarge(bytes: number, pageSize: number): Verdict {
  return fail(
    'EINVAL',
    `the map is ${bytes} bytes; the kernel accepts at most ${pageSize - 1} bytes in one write (PAGE_SIZE - 1)`,
    null,
  );
}

/**
 * Validates map text exactly as the kernel's map_write() would, in the kernel's order of checks
 * (docs/kernel-rules.md, "Writing a map"): size of the write, then each line (syntax, (u32)-1, count 0 or
 * wrap, overlap with earlier lines, the 340-line limit), an empty map, permission, and finally
 * containment of every line in ONE extent of the parent map.
 */
export function validateMapText(text: string, options: ValidateOptions = {}): Verdict {
  const pageSize = options.pageSize ?? 4096;
  const bytes = Buffer.byteLength(text);
  if (bytes >= pageSize) return tooLarge(bytes, pageSize);
  // The kernel stops at a NUL byte (it parses a C string).
  const nulAt = text.indexOf('\0');
  const rawLines = kernelLines(nulAt >= 0 ? text.slice(0, nulAt) : text);
  const lines: Extent[] = [];
  let lineError: Verdict | undefined;
  for (let i = 0; i < rawLines.length && lineError === undefined; i++) {
    const n = i + 1;
    const parsed = parseKernelLine(rawLines[i]!);
    if ('problem' in parsed) {
      const p = parsed.problem;
      // A number above u32 is refused by userns; the kernel would truncate it silently.
      lineError =
        p.code === 'NUMBER_TOO_LARGE'
          ? fail('EINVAL', `line ${n}: ${p.reason}; userns refuses it`, n)
          : fail('EINVAL', `line ${n}, column ${p.column}: ${p.reason}`, n);
      break;
    }
    const e = { inside: parsed.first, outside: parsed.lower, count: parsed.count };
    lineError = lineValueProblem(e, n);
    if (lineError === undefined) lines.push(e);
  }
  return checkParsed(lines, rawLines.length, lineError, options);
}

function decimalDigits(v: number): number {
  if (v < 100000) return v < 10 ? 1 : v < 100 ? 2 : v < 1000 ? 3 : v < 10000 ? 4 : 5;
  return v < 1000000 ? 6 : v < 10000000 ? 7 : v < 100000000 ? 8 : v < 1000000000 ? 9 : 10;
}

/**
 * Validates a map as userns writes it: kernel text, one "inside outside count\n" line per extent,
 * in order. Same verdicts as validateMapText on that text, without building and re-parsing it.
 */
export function validateMap(map: MapLike, options: ValidateOptions = {}): Verdict {
  const extents = extentsOf(map);
  const pageSize = options.pageSize ?? 4096;
  // A line is at most 33 bytes ("4294967295 4294967295 4294967295\n"): count the text's bytes
  // only when the page could be too small for it.
  const mayBeTooLarge = extents.length * 33 >= pageSize;
  let bytes = 0;
  // One pass: a value that is no u32 anywhere is refused before anything else; the first line
  // with a value problem (checked in the kernel's order below) is remembered.
  let valid = extents.length;
  let lineError: Verdict | undefined;
  for (let i = 0; i < extents.length; i++) {
    const e = extents[i]!;
    if (!isU32(e.inside) || !isU32(e.outside) || !isU32(e.count)) {
      // Not representable in the kernel's text at all.
      return fail(
        'EINVAL',
        `line ${i + 1} (${formatTriple(e)}): every value must be an integer from 0 to 4294967295`,
        i + 1,
      );
    }
    if (mayBeTooLarge)
      bytes += decimalDigits(e.inside) + decimalDigits(e.outside) + decimalDigits(e.count) + 3;
    if (lineError === undefined) {
      lineError = lineValueProblem(e, i + 1);
      if (lineError !== undefined) valid = i;
    }
  }
  if (bytes >= pageSize) return tooLarge(bytes, pageSize);
  return checkParsed(
    valid === extents.length ? extents : extents.slice(0, valid),
    extents.length,
    lineError,
    options,
  );
}

export interface RequireValidOptions extends ValidateOptions {
  /** Where the map came from, for the message: a file, `--from`, `uidMap`… */
  source?: string;
  /**
   * The line of the source text that holds map line N (1-based), when the source is a file whose
   * lines are not the map's (LXC config with comments and both kinds, Incus raw.idmap…): the
   * message then names `source:LINE`.
   */
  sourceLine?: (mapLine: number) => number | undefined;
}

/**
 * The one gate every map passes where it enters userns (command-line MAP arguments, map files,
 * API options such as `shiftTree`'s `from`/`to`): `validateMap` with the same options, and a
 * typed `MapError` (`MAP_INVALID`) instead of a verdict. Nothing may be changed with a map the
 * kernel would refuse: its IDs could run past 4294967294 and wrap to 0 in 32-bit arithmetic.
 *
 * Throws MapError `MAP_INVALID`, `data: { source, kind, errno, line, sourceLine, reason }`.
 */
export function requireValidMap(map: MapLike, options: RequireValidOptions = {}): void {
  const verdict = validateMap(map, options);
  if (verdict.ok) return;
  const kind = options.kind ?? 'uid';
  const fileLine = verdict.line === null ? undefined : options.sourceLine?.(verdict.line);
  const where =
    options.source === undefined ? '' : `${options.source}${fileLine === undefined ? '' : `:${fileLine}`}: `;
  const reason =
    options.sourceLine === undefined || options.source === undefined
      ? verdict.reason
      : withSourceLines(verdict.reason!, options.source, options.sourceLine);
  throw new MapError(
    'MAP_INVALID',
    `${where}the kernel would refuse this ${kind} map (${verdict.errno}): ${reason}`,
    {
      hint: "every map must be one the kernel accepts; 'userns map validate' explains a map line by line",
      data: {
        source: options.source ?? null,
        kind,
        errno: verdict.errno,
        line: verdict.line,
        sourceLine: fileLine ?? null,
        reason: verdict.reason,
      },
    },
  );
}

/**
 * A verdict's reason with the source lines of the map lines it names: "line 2 (5:200000:10)"
 * becomes "line 2 (5:200000:10, conf:5)" (for files whose lines are not the map's).
 */
export function withSourceLines(
  reason: string,
  source: string,
  sourceLine: (mapLine: number) => number | undefined,
): string {
  return reason.replace(/\bline (\d+) \(([^)]*)\)/g, (text, n: string, triple: string) => {
    const at = sourceLine(Number(n));
    return at === undefined ? text : `line ${n} (${triple}, ${source}:${at})`;
  });
}
