/**
 * Which IDs a new user namespace gets: a mode (auto, self, keep-id, identity) or an explicit map,
 * resolved to a uid map and a gid map whose outside IDs are IDs of the CURRENT namespace.
 *
 * `mapForMode` is pure (given the caller's IDs, privilege, own maps and subordinate ranges);
 * `modeContext` gathers those inputs.
 */
import { DOCTOR_HINT, NewIdmapError, UsageError } from '../errors/index.js';
import { type Extent, extent, formatRange, type IdKind } from '../idmap/extent.js';
import { parsePodmanMap } from '../idmap/formats/podman.js';
import { IdMap } from '../idmap/idmap.js';
import { type IdRange, insideRanges, subtractRanges, unionRanges } from '../idmap/ranges.js';
import { isPrivileged, ownMap } from '../system/self.js';
import {
  getSubordinateRanges,
  type SubordinateOptions,
  suggestSubordinateRange,
} from '../system/subordinate.js';
import { currentUser, type UserInfo } from '../system/users.js';

/**
 * How maps are chosen when none is given: `auto` (root: every ID; others: 0 = you, 1… = your
 * subordinate IDs), `self` (only you, as 0), `keep-id` (your uid stays yours), `identity`.
 */
export type UsernsMode = 'auto' | 'self' | 'keep-id' | 'identity';
/** Every {@link UsernsMode}. */
export const MODES: readonly UsernsMode[] = ['auto', 'self', 'keep-id', 'identity'];

/** Whether `value` is a {@link UsernsMode}. */
export function isMode(value: unknown): value is UsernsMode {
  return typeof value === 'string' && (MODES as readonly string[]).includes(value);
}

/** podman's `keep-id:uid=N,gid=N,size=N`: the IDs the caller becomes inside, and the size. */
export interface KeepIdOptions {
  /** The inside uid the caller's uid maps to (default: the caller's uid). */
  uid?: number;
  /** The inside gid the caller's gid maps to (default: the caller's gid). */
  gid?: number;
  /** IDs in each map at most (default: the caller's ID and all its subordinate IDs). */
  size?: number;
}

/** A mode with its options: `keep-id:uid=N,gid=N,size=N` (podman's syntax). */
export type UsernsModeSpec = UsernsMode | `keep-id:${string}`;

/**
 * A mode name, or `keep-id:` with podman's options (uid=N, gid=N, size=N; decimal, size ≥ 1),
 * → the mode and its options; undefined for anything else (`auto:…` is the allocator's).
 * Throws UsageError for a malformed keep-id option.
 */
export function parseModeSpec(text: string): { mode: UsernsMode; keepId?: KeepIdOptions } | undefined {
  if (isMode(text)) return { mode: text };
  if (!text.startsWith('keep-id:')) return undefined;
  const keepId: KeepIdOptions = {};
  for (const option of text.slice('keep-id:'.length).split(',')) {
    const m = /^(uid|gid|size)=(0|[1-9][0-9]{0,9})$/.exec(option);
    const value = m === null ? Number.NaN : Number(m[2]);
    if (m === null || value > 4294967294 || (m[1] === 'size' && value < 1)) {
      throw new UsageError(`--userns ${text}: unknown or malformed option ${JSON.stringify(option)}`, {
        hint: 'keep-id accepts uid=N, gid=N (0…4294967294) and size=N (at least 1), e.g. keep-id:uid=1000,gid=1000',
      });
    }
    keepId[m[1] as keyof KeepIdOptions] = value;
  }
  return { mode: 'keep-id', keepId };
}

/** A map option: an IdMap, a mode, or a string in podman --uidmap syntax. */
export type MapSpec = IdMap | UsernsMode | string;

/** What a mode needs to know about the caller: IDs, privilege, subordinate ranges, the current maps. */
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
  /** A subordinate range nobody has (suggestSubordinateRange), for the hint when the user has none. */
  freeSubordinateRange?: IdRange;
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
  // A range free in both files (the one doctor proposes), not a fixed one another user may own.
  const range = ctx.freeSubordinateRange
    ? formatRange(ctx.freeSubordinateRange.start, ctx.freeSubordinateRange.count)
    : 'START-END';
  throw new NewIdmapError('NO_SUBORDINATE_IDS', message, {
    hint: `add a free range for ${who} to /etc/subuid and /etc/subgid (usermod --add-subuids ${range} --add-subgids ${range} ${ctx.user?.name ?? 'USER'}), or use --userns self, or --fallback single; ${DOCTOR_HINT}`,
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

/**
 * Lays `pool` out at consecutive inside IDs from `insideStart`, skipping inside ID `skip`, with
 * at most `limit` IDs.
 */
function layOut(
  pool: readonly IdRange[],
  insideStart: number,
  skip?: number,
  limit = Number.POSITIVE_INFINITY,
): Extent[] {
  const out: Extent[] = [];
  let inside = insideStart;
  let budget = limit;
  for (const r of pool) {
    if (budget <= 0) break;
    let outside = r.start;
    let left = Math.min(r.count, budget);
    budget -= left;
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
 * - `keep-id`: the caller's ID stays the same inside (or becomes `keepId.uid`/`gid`); the
 *   subordinate IDs fill 0… around it, `keepId.size` IDs in all at most (podman
 *   `--userns=keep-id[:uid=N,gid=N,size=N]`). Privileged: identity.
 * - `identity`: inside = outside for every ID the caller can map.
 */
export function mapForMode(
  mode: UsernsMode,
  kind: IdKind,
  ctx: ModeContext,
  keepId: KeepIdOptions = {},
): IdMap {
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
    case 'keep-id': {
      if (ctx.privileged) return new IdMap(available.map((r) => extent(r.start, r.start, r.count)));
      const target = keepId[kind] ?? own;
      if (sub.length === 0)
        return withoutSubordinateIds(mode, kind, ctx, new IdMap([extent(target, own, 1)]));
      const limit = keepId.size === undefined ? undefined : keepId.size - 1;
      return new IdMap([extent(target, own, 1), ...layOut(sub, 0, target, limit)]);
    }
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
export async function modeContext(
  options: { subordinate?: boolean; files?: SubordinateOptions & { loginDefsPath?: string } } = {},
): Promise<ModeContext> {
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
    const [u, g] = await Promise.all([
      getSubordinateRanges(user, 'uid', options.files),
      getSubordinateRanges(user, 'gid', options.files),
    ]);
    ctx.user = user;
    ctx.subuid = u.ranges;
    ctx.subgid = g.ranges;
    if (u.ranges.length === 0 || g.ranges.length === 0)
      ctx.freeSubordinateRange = await suggestSubordinateRange(options.files);
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
  keepId?: KeepIdOptions,
): Promise<IdMap> {
  if (spec instanceof IdMap) return spec;
  if (spec === undefined) return mapForMode(fallbackMode, kind, ctx, keepId);
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
