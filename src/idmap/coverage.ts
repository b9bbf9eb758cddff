import type { Extent, ExtentKind, IdKind, KindedExtent } from './extent.js';
import { type IdRange, normalizeRanges, subtractRanges } from './ranges.js';

/** The host IDs a map may use, per kind (ranges of outside IDs; a missing kind allows none). */
export interface AllowedHostIds {
  uid?: Iterable<IdRange>;
  gid?: Iterable<IdRange>;
}

/** Where a map leaves its allow-list: the first host ID not allowed, its kind and its entry. */
export interface Uncovered {
  kind: IdKind;
  /** The lowest host ID of the entry that the allow-list of `kind` does not contain. */
  id: number;
  /** Index of the entry in the input (0-based), and the entry. */
  index: number;
  extent: Extent | KindedExtent;
}

/** The answer of hostIdsCoveredBy: ok, or the first uncovered host ID and its entry. */
export type Coverage = { ok: true } | ({ ok: false } & Uncovered);

/**
 * Whether every host (outside) ID of `entries` lies in the allow-list of its kind: entries of
 * kind `uid` in `allowed.uid`, `gid` in `allowed.gid`, `both` (and plain extents, unless
 * `kind` says which map they belong to) in both. The allow-lists are unions of ranges, so an
 * entry may be covered by several adjacent allowed ranges together. Returns the first entry (in
 * input order) that is not covered and its lowest uncovered host ID.
 *
 * Incus `IdmapEntry.HostIDsCoveredBy` (used to restrict `raw.idmap` per project) asks the same
 * question for one entry, but requires a single allowed entry to contain it; userns takes the
 * union (docs/peer-syntax.md). An empty allow-list covers nothing; a count-0 entry has no host
 * IDs and is covered.
 */
export function hostIdsCoveredBy(
  entries: readonly (Extent | KindedExtent)[],
  allowed: AllowedHostIds,
  kind?: IdKind,
): Coverage {
  const lists: Record<IdKind, IdRange[]> = {
    uid: normalizeRanges(allowed.uid ?? []),
    gid: normalizeRanges(allowed.gid ?? []),
  };
  for (let index = 0; index < entries.length; index++) {
    const e = entries[index]!;
    const entryKind: ExtentKind = 'kind' in e ? e.kind : (kind ?? 'both');
    const kinds: IdKind[] = entryKind === 'both' ? ['uid', 'gid'] : [entryKind];
    for (const k of kinds) {
      if (e.count === 0) continue;
      const missing = subtractRanges([{ start: e.outside, count: e.count }], lists[k]);
      if (missing.length > 0) return { ok: false, kind: k, id: missing[0]!.start, index, extent: e };
    }
  }
  return { ok: true };
}
