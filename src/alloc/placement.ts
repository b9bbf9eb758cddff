/**
 * Where an allocation goes and what it maps, whatever registry records it: the request checks,
 * the block choice per kind (policy.ts over a FreeSpace), the maps with podman-style passthrough
 * mappings punched in (and the pool IDs they reserve), the ALLOC_EXHAUSTED error, and the gc
 * verdict on an allocation's owner. The local registry (registry.ts, SQLite) and the fleet
 * registry (fleet/registry.ts, etcd) both place through these functions, so one machine and a
 * fleet give the same ranges for the same free space.
 */
import { AllocError, MapError } from '../errors/index.js';
import { type Extent, extent, formatRange, formatTriple, MAX_EXTENTS } from '../idmap/extent.js';
import { normalize } from '../idmap/normalize.js';
import { punchHole } from '../idmap/punch.js';
import { type IdRange, intersectRanges, normalizeRanges, subtractRanges } from '../idmap/ranges.js';
import { firstOverlap, validateMap } from '../idmap/validate.js';
import { validateName } from '../state/names.js';
import { bootId, procPidNamespace } from '../system/proc.js';
import type { FreeSpace } from './free-space.js';
import { blockShape, formatPolicy, MAP_BYTES, MAX_LINE_BYTES, pickBlocks } from './policy.js';
import { formatPool, type Pool } from './pool.js';
import {
  ALLOC_EXHAUSTED,
  ALLOC_NAME_TAKEN,
  type Allocation,
  type AllocationRequest,
  type Holder,
  holderLiveness,
  type Liveness,
} from './registry.js';

/** Checks a request's names and size (InvalidName / ALLOC_BAD_SIZE) before anything is read. */
export function checkRequest(request: Pick<AllocationRequest, 'name' | 'namespace' | 'size'>): void {
  if (request.name !== undefined) validateName(request.name, 'allocation name');
  if (request.namespace !== undefined) validateName(request.namespace, 'namespace name');
  if (!Number.isSafeInteger(request.size) || request.size < 1) {
    throw new AllocError(
      'ALLOC_BAD_SIZE',
      `cannot allocate ${request.size} IDs: the size must be at least 1`,
    );
  }
}

/**
 * The holder as recorded: its PID namespace defaults to that of this process's /proc (null =
 * unknown, never judged), and the boot it runs in is added.
 */
export function recordedHolder(given: Holder | undefined): Holder | undefined {
  if (given === undefined) return undefined;
  const pidNamespace = given.pidNamespace === undefined ? procPidNamespace() : given.pidNamespace;
  const holder: Holder = { pid: given.pid, startTime: given.startTime };
  if (typeof pidNamespace === 'number') holder.pidNamespace = pidNamespace;
  const boot = given.boot ?? bootId();
  if (boot !== undefined) holder.boot = boot;
  return holder;
}

/** ALLOC_NAME_TAKEN for `name`, held by `other`. */
export function nameTaken(name: string, other: Allocation): AllocError {
  const where = other.node === undefined ? '' : ` by node ${other.node}`;
  return new AllocError(
    ALLOC_NAME_TAKEN,
    `an allocation named ${name} exists already (id ${other.id}, created ${other.created}${where})`,
    {
      hint: `choose another name, or release it first: userns alloc release ${name}`,
      data: { name, id: other.id, ...(other.node === undefined ? {} : { node: other.node }) },
    },
  );
}

/**
 * An existing allocation returned for a request of the same name (`reuse`): its size must be
 * the one asked for and each passthrough mapping asked for must be in its maps; otherwise
 * ALLOC_NAME_MISMATCH (never a second range under one name). Returns it marked `reused`.
 */
export function reuseMatching(existing: Allocation, request: AllocationRequest): Allocation {
  const problems: string[] = [];
  if (existing.size !== request.size)
    problems.push(`${existing.size} IDs, not the ${request.size} asked for`);
  for (const kind of ['uid', 'gid'] as const) {
    const wanted = (kind === 'uid' ? request.uidPassthrough : request.gidPassthrough) ?? [];
    const map = kind === 'uid' ? existing.uidMap : existing.gidMap;
    for (const hole of wanted) {
      const mapped = map.some(
        (e) =>
          e.inside <= hole.inside &&
          hole.inside + hole.count <= e.inside + e.count &&
          e.outside - e.inside === hole.outside - hole.inside,
      );
      if (!mapped) problems.push(`its ${kind} map does not map ${formatTriple(hole)}`);
    }
  }
  if (problems.length > 0) {
    throw new AllocError(
      'ALLOC_NAME_MISMATCH',
      `allocation ${existing.name} (${existing.id}) exists with ${problems.join('; ')}`,
      {
        hint: `ask for what it has (userns alloc list shows it), use another name, or release it first: userns alloc release ${existing.name}`,
        data: {
          name: existing.name,
          id: existing.id,
          size: existing.size,
          uidMap: existing.uidMap.map(formatTriple),
          gidMap: existing.gidMap.map(formatTriple),
        },
      },
    );
  }
  return { ...existing, reused: true };
}

/** ALLOC_EXHAUSTED for one kind: what was asked, the largest free block, where the pool came from. */
export function exhaustedError(
  kind: 'uid' | 'gid',
  request: Pick<AllocationRequest, 'policy' | 'size'>,
  pool: Pool,
  free: FreeSpace,
  releaseHint = "'userns alloc list', 'userns alloc release', 'userns alloc gc'",
): AllocError {
  const { reserve, align } = blockShape(request.policy, request.size);
  const where = formatPool(pool.ranges);
  const asked =
    request.policy.kind === 'base'
      ? `${reserve} ${kind}s at ${request.policy.base}`
      : `${reserve} ${kind}s${align > 1 ? ` aligned to ${align}` : ''}`;
  const baseNote =
    request.policy.kind === 'base'
      ? ` (${formatRange(request.policy.base, reserve)} is not entirely free in the pool)`
      : align > 1 && free.largest >= reserve
        ? ` (no free block of ${reserve} starts at a multiple of ${align})`
        : request.policy.kind === 'first-fit' && free.total >= reserve
          ? ` (the free IDs are spread over more blocks than one map can hold: ${MAX_EXTENTS} lines, ${MAP_BYTES} bytes)`
          : '';
  return new AllocError(
    ALLOC_EXHAUSTED,
    `cannot allocate: asked for ${asked}; the largest free block in pool ${where} is ${free.largest} (${free.total} free in total)${baseNote}`,
    {
      hint: `the pool comes from ${pool.source}; release allocations (${releaseHint}), ask for fewer IDs, or give a larger pool`,
      data: {
        kind,
        asked: reserve,
        align,
        policy: formatPolicy(request.policy),
        largestFree: free.largest,
        totalFree: free.total,
        pool: pool.ranges,
        poolSource: pool.source,
      },
    },
  );
}

/** The free space of each kind an allocation is placed in, with the pools they come from. */
export interface PlacementSpace {
  uid: { pool: Pool; free: FreeSpace; taken: readonly IdRange[] };
  gid: { pool: Pool; free: FreeSpace; taken: readonly IdRange[] };
}

/**
 * Which allocation holds any of `range` (a kind's host IDs), or undefined. Ranges of live
 * allocations never overlap, so a registry answers this from its index of ranges.
 */
export type HolderLookup = (kind: 'uid' | 'gid', range: IdRange) => { id: string; name: string } | undefined;

/** What an allocation maps and reserves, before it is recorded. */
export interface Placement {
  uidMap: Extent[];
  gidMap: Extent[];
  uids: IdRange[];
  gids: IdRange[];
}

/**
 * One kind's map and reserved host IDs: the blocks at consecutive inside IDs from 0 (one block:
 * `0 start size`), then each passthrough mapping punched in.
 */
function buildMap(
  kind: 'uid' | 'gid',
  blocks: readonly IdRange[],
  request: AllocationRequest,
  space: PlacementSpace['uid'],
  holderOf: HolderLookup,
): { map: Extent[]; reserved: IdRange[] } {
  let map: Extent[] = [];
  let inside = 0;
  for (const b of blocks) {
    const n = Math.min(b.count, request.size - inside);
    if (n > 0) map.push(extent(inside, b.start, n));
    inside += n;
  }
  const reserved: IdRange[] = blocks.map((b) => ({ ...b }));
  const passthrough = (kind === 'uid' ? request.uidPassthrough : request.gidPassthrough) ?? [];
  for (const hole of passthrough) {
    map = [...punchHole(map, hole).extents];
    // Host IDs of the passthrough that come from the pool are reserved for this allocation;
    // others (a host user outside the pool) are shared, as podman does.
    const fromPool = subtractRanges(
      intersectRanges([{ start: hole.outside, count: hole.count }], space.pool.ranges),
      blocks,
    );
    for (const r of fromPool) {
      const holder = holderOf(kind, r);
      if (holder !== undefined) {
        throw new AllocError(
          'ALLOC_PASSTHROUGH_TAKEN',
          `the ${kind}mapping ${formatTriple(hole)} maps host ${kind}s ${formatRange(r.start, r.count)} of the pool, which allocation ${holder.name} (${holder.id}) holds`,
          {
            hint: 'map a host ID outside the pool, or release that allocation first',
            data: { kind, mapping: hole, holder: holder.id },
          },
        );
      }
      // IDs of the pool that are not free (taken by a passwd/group entry) are mapped, not reserved.
      reserved.push(...subtractRanges([r], space.taken));
    }
  }
  if (passthrough.length > 0) map = [...normalize(map).extents];
  const verdict = validateMap(map, { kind });
  if (!verdict.ok) {
    throw new MapError(
      'ALLOC_MAP_INVALID',
      `the ${kind} map of this allocation would be refused by the kernel: ${verdict.reason}`,
      {
        hint: `check the --${kind}mapping values`,
        data: { kind, map: map.map(formatTriple) },
      },
    );
  }
  return { map, reserved: normalizeRanges(reserved) };
}

/**
 * Passthrough mappings of one kind may not overlap one another, inside or outside: the kernel
 * refuses a map with two such lines, and punching the later one into the earlier would silently
 * cut the earlier one short (leaving some of its inside IDs unmapped). ALLOC_MAP_INVALID naming
 * both mappings and the shared IDs.
 */
function checkPassthroughApart(kind: 'uid' | 'gid', passthrough: readonly Extent[] | undefined): void {
  const list = passthrough ?? [];
  const overlap = firstOverlap(list, false);
  if (overlap === undefined) return;
  const a = list[overlap.earlier]!;
  const b = list[overlap.index]!;
  const side = overlap.side;
  const start = Math.max(a[side], b[side]);
  const end = Math.min(a[side] + a.count, b[side] + b.count);
  const where = side === 'inside' ? `container ${kind}s` : `host ${kind}s`;
  throw new MapError(
    'ALLOC_MAP_INVALID',
    `the ${kind}mappings ${formatTriple(a)} and ${formatTriple(b)} overlap (${where} ${formatRange(start, end - start)}): each ID may be mapped once`,
    {
      hint: `give --${kind}mapping values that do not overlap`,
      data: { kind, mappings: [formatTriple(a), formatTriple(b)], side },
    },
  );
}

/**
 * Room for one kind's blocks in one kernel map write (MAX_EXTENTS lines, MAP_BYTES bytes): each
 * passthrough mapping may cut a line in two and adds one of its own.
 */
function roomFor(passthrough: readonly Extent[] | undefined): { lines: number; bytes: number } {
  const n = passthrough?.length ?? 0;
  return { lines: MAX_EXTENTS - 2 * n, bytes: MAP_BYTES - 2 * MAX_LINE_BYTES * n };
}

/**
 * Places one allocation: the uid blocks by the policy (policy.ts pickBlocks: one block, or for
 * `first-fit` several when no free block is large enough), the gid blocks preferring the uid
 * start when the uids are one block, then both maps with the passthrough mappings. Throws
 * ALLOC_EXHAUSTED (per kind), ALLOC_PASSTHROUGH_TAKEN, ALLOC_MAP_INVALID. Pure: records nothing.
 */
export function place(
  request: AllocationRequest,
  space: PlacementSpace,
  holderOf: HolderLookup,
  releaseHint?: string,
): Placement {
  checkPassthroughApart('uid', request.uidPassthrough);
  checkPassthroughApart('gid', request.gidPassthrough);
  const uidBlocks = pickBlocks(
    space.uid.free,
    request.policy,
    request.size,
    undefined,
    roomFor(request.uidPassthrough),
  );
  if (uidBlocks === undefined)
    throw exhaustedError('uid', request, space.uid.pool, space.uid.free, releaseHint);
  const gidBlocks = pickBlocks(
    space.gid.free,
    request.policy,
    request.size,
    uidBlocks.length === 1 ? uidBlocks[0]!.start : undefined,
    roomFor(request.gidPassthrough),
  );
  if (gidBlocks === undefined)
    throw exhaustedError('gid', request, space.gid.pool, space.gid.free, releaseHint);
  const uid = buildMap('uid', uidBlocks, request, space.uid, holderOf);
  const gid = buildMap('gid', gidBlocks, request, space.gid, holderOf);
  return { uidMap: uid.map, gidMap: gid.map, uids: uid.reserved, gids: gid.reserved };
}

/** What an isNamespaceAlive callback may answer. */
export type NamespaceAnswer = boolean | Liveness | { liveness: Liveness; reason?: string };

/**
 * Whether an allocation's owner is gone, as far as can be proven from here: its process
 * (holderLiveness: only where /proc shows its PID namespace), then its named namespace.
 * Allocations with neither owner are 'alive' (only an explicit release frees them).
 */
export async function ownerLiveness(
  a: Allocation,
  isNamespaceAlive: (name: string) => Promise<NamespaceAnswer>,
  here = procPidNamespace(),
): Promise<{ liveness: Liveness; reason?: string }> {
  let verdict: { liveness: Liveness; reason?: string } = { liveness: 'alive' };
  if (a.holder !== undefined) verdict = holderLiveness(a.holder, here);
  if (verdict.liveness === 'alive' && a.namespace !== undefined) {
    const answer = await isNamespaceAlive(a.namespace);
    verdict =
      typeof answer === 'boolean'
        ? { liveness: answer ? 'alive' : 'dead' }
        : typeof answer === 'string'
          ? { liveness: answer }
          : answer;
    if (verdict.liveness === 'unknown')
      verdict.reason = `namespace ${a.namespace}: ${verdict.reason ?? 'cannot check from here'}`;
  }
  return verdict;
}
