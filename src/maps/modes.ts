/**
 * Which IDs a new user namespace gets: a mode (auto, self, keep-id, identity) or an explicit map,
 * resolved to a uid map and a gid map whose outside IDs are IDs of the CURRENT namespace.
 *
 * `mapForMode` is pure (given the caller's IDs, privilege, own maps and subordinate ranges);
 * `modeContext` gathers those inputs.
 */
import { DOCTOR_HINT, NewIdmapError } from '../errors/index.js';
import { type Extent, extent, type IdKind } from '../idmap/extent.js';
import { parsePodmanMap } from '../idmap/formats/podman.js';
import { IdMap } from '../idmap/idmap.js';
import { type IdRange, insideRanges, subtractRanges, unionRanges } from '../idmap/ranges.js';
import { isPrivileged, ownMap } from '../system/self.js';
import { getSubordinateRanges } from '../system/subordinate.js';
import { currentUser, type UserInfo } from '../system/users.js';

export type UsernsMode = 'auto' | 'self' | 'keep-id' | 'identity';
export const MODES: readonly UsernsMode[] = ['auto', 'self', 'keep-id', 'identity'];

export function isMode(value: unknown): value is UsernsMode {
  return typeof value === 'string' && (MODES as readonly string[]).includes(value);
}

/** A map option: an IdMap, a mode, or a string in podman --uidmap syntax. */
export type MapSpec = IdMap | UsernsMode | string;

export interface ModeContext {
  /** The caller's effective uid and gid (IDs of the current namespace). */
  uid: number;
  gid: number;
  /** Can write any map directly (CAP_SETUID + CAP_SETGID): root. */
  privileged: boolean;
  /** The current namespace's own maps (column 1 = current-namespace IDs). */
  ownUidMap: IdMap;
  ownGidMap: IdMap;
  /** The caller's subordinate ranges (unprivileged modes only; in file order). */
  subuid: readonly IdRange[];
  subgid: readonly IdRange[];
  user?: UserInfo;
  /** 'single': without subordinate IDs, map only the caller (with a warning) instead of failing. */
  fallback?: 'none' | 'single';
  /** Warnings of planning (a fallback taken), passed on to the spawn result. */
  warnings?: string[];
}

/**
 * An unprivileged mode that needs subordinate IDs, for a user who has none. Mapping only the
 * caller silently is what leads to "potentially insufficient UIDs or GIDs" much later, so it is
 * an error unless the caller asked for the fallback.
 */
function withoutSubordinateIds(mode: UsernsMode, kind: IdKind, ctx: ModeContext, single: IdMap): IdMap {
  const own = kind === 'uid' ? ctx.uid : ctx.gid;
  const who = ctx.user?.name ?? `uid ${ctx.uid}`;
  const message = `${who} has no subordinate ${kind}s (/etc/sub${kind} or libsubid), so mode ${mode} can map only ${kind} ${own}`;
  if (ctx.fallback === 'single') {
    ctx.warnings?.push(`${message}; mapping only ${single.toString()} as asked (--fallback single)`);
    return single;
  }
  throw new NewIdmapError('NO_SUBORDINATE_IDS', message, {
    hint: `add a range for ${who} to /etc/subuid and /etc/subgid (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${ctx.user?.name ?? 'USER'}), or use --userns self, or --fallback single; ${DOCTOR_HINT}`,
    data: { kind, user: who, mode },
  });
}

/**
 * The subordinate ranges in file order, without the caller's own ID (a range may contain it) and
 * without IDs an earlier line already gave (overlapping lines): the kernel refuses both.
 */
export function usablePool(ranges: readonly IdRange[], own: number): IdRange[] {
  const out: IdRange[] = [];
  let seen: IdRange[] = [{ start: own, count: 1 }];
  for (const r of ranges) {
    out.push(...subtractRanges([r], seen));
    seen = unionRanges(seen, [r]);
  }
  return out;
}

/** Lays `pool` out at consecutive inside IDs from `insideStart`, skipping inside ID `skip`. */
function layOut(pool: readonly IdRange[], insideStart: number, skip?: number): Extent[] {
  const out: Extent[] = [];
  let inside = insideStart;
  for (const r of pool) {
    let outside = r.start;
    let left = r.count;
    while (left > 0) {
      if (inside === skip) inside++;
      // Stop the piece before the skipped inside ID.
      const room = skip !== undefined && inside < skip ? skip - inside : left;
      const n = Math.min(left, room);
      out.push(extent(inside, outside, n));
      inside += n;
      outside += n;
      left -= n;
    }
  }
  return out;
}

/**
 * The map a mode gives, for uids or gids. All outside IDs are IDs of the current namespace.
 *
 * - `auto`: unprivileged → 0 = the caller, 1… = all its subordinate ranges in order (as
 *   `podman unshare`); privileged → identity over every ID the current namespace maps (in the
 *   initial namespace: `0 0 4294967295`).
 * - `self`: only the caller, as 0 (`unshare -r`).
 * - `keep-id`: the caller's ID stays the same inside; the subordinate IDs fill 0… around it
 *   (podman `--userns=keep-id`). Privileged: identity.
 * - `identity`: inside = outside for every ID the caller can map.
 */
export function mapForMode(mode: UsernsMode, kind: IdKind, ctx: ModeContext): IdMap {
  const own = kind === 'uid' ? ctx.uid : ctx.gid;
  const available = insideRanges(kind === 'uid' ? ctx.ownUidMap : ctx.ownGidMap);
  const sub = usablePool(kind === 'uid' ? ctx.subuid : ctx.subgid, own);
  switch (mode) {
    case 'self':
      return new IdMap([extent(0, own, 1)]);
    case 'auto':
      if (ctx.privileged) return new IdMap(available.map((r) => extent(r.start, r.start, r.count)));
      if (sub.length === 0) return withoutSubordinateIds(mode, kind, ctx, new IdMap([extent(0, own, 1)]));
      return new IdMap([extent(0, own, 1), ...layOut(sub, 1)]);
    case 'keep-id':
      if (ctx.privileged) return new IdMap(available.map((r) => extent(r.start, r.start, r.count)));
      if (sub.length === 0) return withoutSubordinateIds(mode, kind, ctx, new IdMap([extent(own, own, 1)]));
      return new IdMap([extent(own, own, 1), ...layOut(sub, 0, own)]);
    case 'identity': {
      if (ctx.privileged) return new IdMap(available.map((r) => extent(r.start, r.start, r.count)));
      if (sub.length === 0) return withoutSubordinateIds(mode, kind, ctx, new IdMap([extent(own, own, 1)]));
      const ranges = [{ start: own, count: 1 }, ...sub].sort((a, b) => a.start - b.start);
      return new IdMap(ranges.map((r) => extent(r.start, r.start, r.count)));
    }
  }
}

/** Whether a podman map string has a `+` entry (whose rootless fill needs the caller's ranges). */
function hasPlusEntry(spec: string): boolean {
  return spec.includes('+');
}

/**
 * Whether resolving these specs needs the subordinate ranges: unprivileged modes, and podman
 * strings with a `+` entry (their rootless fill hands out the caller's IDs).
 */
export function needsSubordinate(specs: readonly (MapSpec | undefined)[], privileged: boolean): boolean {
  return (
    !privileged &&
    specs.some(
      (s) =>
        s === undefined ||
        (isMode(s) && s !== 'self') ||
        (typeof s === 'string' && !isMode(s) && hasPlusEntry(s)),
    )
  );
}

/**
 * The map of podman's rootless namespace for an unprivileged caller: its `auto` map (0 = the
 * caller, 1… = its subordinate ranges), or only the caller when it has none (podman then has
 * nothing else either). Inside: IDs of that namespace; outside: IDs of the current namespace.
 */
export function rootlessMap(kind: IdKind, ctx: ModeContext): IdMap {
  const own = kind === 'uid' ? ctx.uid : ctx.gid;
  const sub = usablePool(kind === 'uid' ? ctx.subuid : ctx.subgid, own);
  return new IdMap([extent(0, own, 1), ...layOut(sub, 1)]);
}

/** Gathers the inputs of mapForMode. Subordinate ranges are read only when asked for. */
export async function modeContext(options: { subordinate?: boolean } = {}): Promise<ModeContext> {
  const privileged = isPrivileged();
  const ctx: ModeContext = {
    uid: process.geteuid?.() ?? 0,
    gid: process.getegid?.() ?? 0,
    privileged,
    ownUidMap: ownMap('uid'),
    ownGidMap: ownMap('gid'),
    subuid: [],
    subgid: [],
  };
  if (options.subordinate ?? !privileged) {
    const user = await currentUser();
    const [u, g] = await Promise.all([getSubordinateRanges(user, 'uid'), getSubordinateRanges(user, 'gid')]);
    ctx.user = user;
    ctx.subuid = u.ranges;
    ctx.subgid = g.ranges;
  }
  return ctx;
}

/**
 * Resolves one map option. `undefined` means the `fallbackMode` (the `userns` option, default
 * auto). A string that is not a mode name is parsed as podman --uidmap syntax, whose `@ID` form
 * (an ID of the initial namespace) is translated through the current namespace's own map. For an
 * unprivileged caller a leading `+` entry fills from the IDs it may map (`rootlessMap`), as
 * rootless podman does; a privileged caller fills from the current namespace's map.
 */
export async function resolveMapSpec(
  spec: MapSpec | undefined,
  kind: IdKind,
  ctx: ModeContext,
  fallbackMode: UsernsMode = 'auto',
): Promise<IdMap> {
  if (spec instanceof IdMap) return spec;
  if (spec === undefined) return mapForMode(fallbackMode, kind, ctx);
  if (isMode(spec)) return mapForMode(spec, kind, ctx);
  if (typeof spec !== 'string') {
    throw new NewIdmapError('INVALID_MAP', `--${kind}map must be an IdMap, a mode or a map string`);
  }
  return parsePodmanMap(spec, {
    kind,
    parent: kind === 'uid' ? ctx.ownUidMap : ctx.ownGidMap,
    rootless: ctx.privileged || !hasPlusEntry(spec) ? undefined : rootlessMap(kind, ctx),
    source: `--${kind}map`,
  });
}
