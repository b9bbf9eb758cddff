/**
 * The arithmetic of a shift (pure): which outside ID every outside ID becomes, the protective
 * user namespace the walk runs in, and the tables the walk looks IDs up in, expressed in the
 * IDs the walk sees from inside that namespace.
 */
import { ShiftPlanError } from '../errors/index.js';
import { compose } from '../idmap/compose.js';
import { type Extent, extent, INVALID_ID, MAX_EXTENTS } from '../idmap/extent.js';
import { IdMap } from '../idmap/idmap.js';
import { normalize } from '../idmap/normalize.js';
import {
  type IdRange,
  intersectRanges,
  normalizeRanges,
  outsideRanges,
  subtractRanges,
  unionRanges,
} from '../idmap/ranges.js';
import type { Translation } from './tree-walk.js';

/**
 * Outside→outside translation of a shift: an ID that `from` shows as inside ID i becomes the
 * outside ID that `to` gives i. IDs `from` does not map, or whose inside ID `to` does not map,
 * have no entry. Inside = old outside ID, outside = new outside ID.
 */
export function shiftTranslation(from: IdMap, to: IdMap): IdMap {
  return normalize(compose(from.invert(), to));
}

/**
 * The map of the protective user namespace: exactly the outside IDs in `ranges`, packed into
 * inside IDs from 1 up, skipping the inside IDs in `avoid`. Inside 0 stays unmapped, so a
 * v1/v2 file capability (root ID 0 of an ancestor) is told apart from every mapped root ID, and
 * the overflow IDs stay unmapped, so an owner shown as the overflow ID is always "outside the
 * ranges" (the kernel shows every unmapped owner that way).
 */
export function protectiveMap(ranges: readonly IdRange[], avoid: readonly number[]): IdMap {
  const skip = [...new Set([0, ...avoid])].sort((a, b) => a - b);
  const out: Extent[] = [];
  let inside = 0;
  let skipAt = 0;
  const nextFree = () => {
    while (skipAt < skip.length && skip[skipAt]! < inside) skipAt++;
    while (skipAt < skip.length && skip[skipAt] === inside) {
      inside++;
      skipAt++;
    }
  };
  for (const r of unionRanges(ranges)) {
    let start = r.start;
    let left = r.count;
    while (left > 0) {
      nextFree();
      const limit = skipAt < skip.length ? skip[skipAt]! : INVALID_ID;
      const count = Math.min(left, limit - inside);
      if (count <= 0) {
        throw new ShiftPlanError(
          'PROTECTIVE_MAP_TOO_LARGE',
          'the source and target ranges together are too large for a protective user namespace',
          { hint: 'shift with --no-userns (as root), or with smaller ranges' },
        );
      }
      out.push(extent(inside, start, count));
      inside += count;
      start += count;
      left -= count;
    }
  }
  const map = normalize(out);
  if (map.length > MAX_EXTENTS) {
    throw new ShiftPlanError(
      'PROTECTIVE_MAP_TOO_LARGE',
      `the source and target ranges need ${map.length} map lines; the kernel takes at most ${MAX_EXTENTS}`,
      { hint: 'shift with --no-userns (as root), or with fewer, larger ranges' },
    );
  }
  return map;
}

/** A map (inside → outside) as the walk's translation table. */
export function tableOf(map: IdMap): Translation[] {
  return map.extents.map((e) => ({ from: e.inside, to: e.outside, count: e.count }));
}

/**
 * The translation as the walk sees it from inside the protective namespace `view` (inside =
 * what stat shows there, outside = the caller's IDs): view ID → caller ID → new caller ID →
 * view ID.
 */
export function viewTranslation(translation: IdMap, view: IdMap): IdMap {
  return normalize(compose(compose(view, translation), view.invert()));
}

/** Every outside ID a shift reads or writes: the outside ranges of both maps. */
export function touchedRanges(from: IdMap, to: IdMap, extra: readonly number[] = []): IdRange[] {
  return unionRanges(
    outsideRanges(from),
    outsideRanges(to),
    extra.map((id) => ({ start: id, count: 1 })),
  );
}

/**
 * The outside IDs a shift counts as already done: `to`'s outside IDs that `from` does not have.
 * An owner there was either shifted by an earlier run of the same shift (interrupted, or run
 * twice) or was never in the source range; either way it must stay as it is. This is what makes
 * a rerun finish an interrupted shift. (IDs in both ranges are ambiguous and are translated:
 * see the README on interrupted shifts between overlapping ranges.)
 */
export function doneRanges(from: IdMap, to: IdMap): IdRange[] {
  return subtractRanges(outsideRanges(to), outsideRanges(from));
}

/** `ranges` of caller IDs as the IDs a walk in the protective namespace `view` sees (all mapped). */
export function rangesInView(ranges: readonly IdRange[], view: IdMap): IdRange[] {
  const identity = new IdMap(ranges.map((r) => extent(r.start, r.start, r.count)));
  return outsideRanges(compose(identity, view.invert()));
}

/** Whether the outside ranges of `from` and `to` share an ID (then an ID on disk there may be shifted or not). */
export function outsideRangesOverlap(from: IdMap, to: IdMap): boolean {
  return intersectRanges(outsideRanges(from), outsideRanges(to)).length > 0;
}

/**
 * The intermediate range of a two-phase shift: the highest block of `count` IDs inside `allowed`
 * and outside `avoid`, or null when there is none. High IDs are the least likely to be in use
 * (the tree is checked for them anyway before the first change).
 */
export function intermediateRange(
  count: number,
  allowed: readonly IdRange[],
  avoid: readonly IdRange[],
): IdRange | null {
  const free = subtractRanges(normalizeRanges(allowed), avoid);
  for (let i = free.length - 1; i >= 0; i--) {
    const r = free[i]!;
    if (r.count >= count) return { start: r.start + r.count - count, count };
  }
  return null;
}

/**
 * A shift translation (inside = old outside ID, outside = new; see shiftTranslation) cut in two
 * through the intermediate IDs from `start` up: `first` takes every old ID to an intermediate
 * one, `second` takes that intermediate ID to the new one. second ∘ first = translation, and
 * each phase on its own moves IDs between ranges that do not overlap (when the intermediate
 * range overlaps neither map), so each can be rerun after an interruption.
 */
export function twoPhaseTranslations(translation: IdMap, start: number): { first: IdMap; second: IdMap } {
  const first: Extent[] = [];
  const second: Extent[] = [];
  let next = start;
  for (const e of translation.extents) {
    first.push(extent(e.inside, next, e.count));
    second.push(extent(next, e.outside, e.count));
    next += e.count;
  }
  return { first: normalize(first), second: normalize(second) };
}
