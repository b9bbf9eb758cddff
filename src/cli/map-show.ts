import { formatRange } from '../idmap/extent.js';
import type { IdMap } from '../idmap/idmap.js';

const COLOURS = [31, 32, 33, 34, 35, 36];
const BAR_WIDTH = 32;

/** Where extent [start, start+count) falls on a lane of BAR_WIDTH cells spanning [lo, hi). */
function lane(start: number, count: number, lo: number, hi: number): string {
  const span = Math.max(1, hi - lo);
  const from = Math.min(BAR_WIDTH - 1, Math.floor(((start - lo) / span) * BAR_WIDTH));
  const to = Math.max(from + 1, Math.min(BAR_WIDTH, Math.ceil(((start + count - lo) / span) * BAR_WIDTH)));
  return ' '.repeat(from) + '█'.repeat(to - from) + ' '.repeat(BAR_WIDTH - to);
}

/**
 * Draws a map for the terminal: one row per extent with its inside and outside ranges and a bar
 * on each side, scaled to the span of that side, in the same colour so the eye can match them.
 */
export function renderMap(map: IdMap, kind: string, colour: boolean): string {
  const extents = map.extents;
  if (extents.length === 0) return `${kind} map: empty (nothing is mapped)\n`;
  const paint = (i: number, text: string) =>
    colour ? `\x1b[${COLOURS[i % COLOURS.length]}m${text}\x1b[0m` : text;
  const dim = (text: string) => (colour ? `\x1b[2m${text}\x1b[0m` : text);
  const inLo = Math.min(...extents.map((e) => e.inside));
  const inHi = Math.max(...extents.map((e) => e.inside + e.count));
  const outLo = Math.min(...extents.map((e) => e.outside));
  const outHi = Math.max(...extents.map((e) => e.outside + e.count));
  const rows = extents.map((e) => ({
    inside: formatRange(e.inside, e.count),
    outside: formatRange(e.outside, e.count),
    count: String(e.count),
  }));
  const wIn = Math.max(6, ...rows.map((r) => r.inside.length));
  const wOut = Math.max(7, ...rows.map((r) => r.outside.length));
  const wCount = Math.max(5, ...rows.map((r) => r.count.length));
  const axis = (lo: number, hi: number) => {
    const left = String(lo);
    const right = String(hi - 1);
    return `${left}${' '.repeat(Math.max(1, BAR_WIDTH - left.length - right.length))}${right}`;
  };
  const lines = [
    `${kind} map: ${extents.length} extent${extents.length === 1 ? '' : 's'}, ${map.size} IDs`,
    `${'#'.padStart(3)}  ${'inside'.padEnd(wIn)}    ${'outside'.padEnd(wOut)}  ${'count'.padStart(wCount)}  ${'inside'.padEnd(BAR_WIDTH)}  outside`,
    `${' '.repeat(3)}  ${' '.repeat(wIn)}    ${' '.repeat(wOut)}  ${' '.repeat(wCount)}  ${dim(axis(inLo, inHi))}  ${dim(axis(outLo, outHi))}`,
  ];
  rows.forEach((r, i) => {
    const e = extents[i]!;
    lines.push(
      `${String(i + 1).padStart(3)}  ${paint(i, r.inside.padEnd(wIn))} -> ${paint(i, r.outside.padEnd(wOut))}  ${r.count.padStart(wCount)}  ` +
        `${paint(i, lane(e.inside, e.count, inLo, inHi))}  ${paint(i, lane(e.outside, e.count, outLo, outHi))}`,
    );
  });
  return `${lines.join('\n')}\n`;
}
