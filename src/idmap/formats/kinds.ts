import { UsernsError } from '../../errors/index.js';
import { type Extent, type ExtentKind, extent, type IdKind, type KindedExtent } from '../extent.js';

/**
 * UID/GID kinds across formats. Some formats carry a kind per entry (LXC `u`/`g`/`b`, Incus
 * `uid`/`gid`/`both`, podman `u`/`g` flags), some hold one list per kind (OCI, Kubernetes,
 * userns JSON), and some hold a single map of unknown kind (kernel text, triples, newuidmap).
 */

export function kinded(e: Extent, kind: ExtentKind): KindedExtent {
  return { inside: e.inside, outside: e.outside, count: e.count, kind };
}

export function plain(e: Extent): Extent {
  return extent(e.inside, e.outside, e.count);
}

/** Whether an entry of kind `entryKind` applies to IDs of kind `kind`. */
export function appliesTo(entryKind: ExtentKind, kind: IdKind): boolean {
  return entryKind === 'both' || entryKind === kind;
}

/** The UID list and the GID list of kinded entries ('both' entries go to both), order kept. */
export function byKind(entries: readonly KindedExtent[]): { uid: Extent[]; gid: Extent[] } {
  return {
    uid: entries.filter((e) => appliesTo(e.kind, 'uid')).map(plain),
    gid: entries.filter((e) => appliesTo(e.kind, 'gid')).map(plain),
  };
}

/**
 * The entries a single-kind format (kernel text, triples, newuidmap, subid) can write: those
 * for `kind` when given; otherwise all of them, unless they mix UID-only and GID-only entries,
 * which one single-kind map cannot express (silently dropping half would be worse).
 */
export function singleKind(
  entries: readonly KindedExtent[],
  kind: IdKind | undefined,
  format: string,
): Extent[] {
  if (kind !== undefined) return entries.filter((e) => appliesTo(e.kind, kind)).map(plain);
  if (entries.some((e) => e.kind === 'uid') && entries.some((e) => e.kind === 'gid')) {
    throw new UsernsError(
      'MIXED_KINDS',
      `the ${format} format holds one map, but the entries mix UID-only and GID-only mappings`,
      {
        hint: 'choose the kind to write (--kind uid or --kind gid)',
      },
    );
  }
  return entries.map(plain);
}

/**
 * The canonical "one list per kind" expansion: uid-applicable entries then gid-applicable
 * ones. This is what a per-kind format (OCI object, userns JSON object, unshare options)
 * reads back from what it writes, unless every entry is 'both'.
 */
export function expandKinds(entries: readonly KindedExtent[]): KindedExtent[] {
  const { uid, gid } = byKind(entries);
  return [...uid.map((e) => kinded(e, 'uid')), ...gid.map((e) => kinded(e, 'gid'))];
}
