import { UsageError } from '../errors/index.js';
import { MAX_EXTENTS, MAX_MAPPABLE_ID } from '../idmap/extent.js';
import type { IdRange } from '../idmap/ranges.js';
import type { FreeSpace } from './free-space.js';

/**
 * Where in the free space an allocation goes.
 *
 * - `first-fit`: the lowest free block of `size` IDs; when no single free block is that large,
 *   the lowest free IDs of several blocks, in ascending order, mapped at consecutive inside IDs
 *   from 0 (what containers/storage does for podman --userns=auto; docs/peer-syntax.md).
 * - `contiguous`: the lowest free block of `size` IDs, or fail (Incus isolated containers,
 *   callers that need a map of one line).
 * - `slot[:SIZE]`: blocks of SIZE IDs (a multiple of 65536, default 65536) whose start is a
 *   multiple of SIZE (systemd-nspawn --private-users=pick and nsresourced with 65536, the
 *   kubelet with idsPerPod). A request larger than one slot takes consecutive slots.
 * - `base:N`: exactly at N, or fail (systemd-nspawn --private-users=N).
 */
export type Policy =
  | { kind: 'first-fit' }
  | { kind: 'contiguous' }
  | { kind: 'slot'; slotSize: number }
  | { kind: 'base'; base: number };

/** The unit of slot sizes: 65536 IDs (systemd, Kubernetes and podman hand out ranges of this size). */
export const SLOT_UNIT = 65536;

/** The text form of a policy, as `--policy` takes it: `first-fit`, `contiguous`, `slot:SIZE`, `base:N`. */
export function formatPolicy(p: Policy): string {
  switch (p.kind) {
    case 'first-fit':
      return 'first-fit';
    case 'contiguous':
      return 'contiguous';
    case 'slot':
      return `slot:${p.slotSize}`;
    case 'base':
      return `base:${p.base}`;
  }
}

function parseCount(text: string, what: string): number {
  if (!/^(0|[1-9][0-9]*|0x[0-9a-fA-F]+)$/.test(text)) {
    throw new UsageError(`${what}: ${JSON.stringify(text)} is not a number`, {
      hint: 'write a decimal number (or 0x… hexadecimal)',
    });
  }
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n > MAX_MAPPABLE_ID) {
    throw new UsageError(`${what}: ${text} is larger than 4294967294, the last mappable ID`);
  }
  return n;
}

/** Parses `first-fit`, `contiguous`, `slot`, `slot:SIZE` or `base:N` (numbers decimal or 0x hex). */
export function parsePolicy(text: string): Policy {
  if (text === 'first-fit' || text === 'firstfit') return { kind: 'first-fit' };
  if (text === 'contiguous') return { kind: 'contiguous' };
  if (text === 'slot') return { kind: 'slot', slotSize: SLOT_UNIT };
  const m = /^(slot|base):(.*)$/.exec(text);
  if (m?.[1] === 'slot') {
    const slotSize = parseCount(m[2]!, 'policy slot size');
    if (slotSize === 0 || slotSize % SLOT_UNIT !== 0) {
      throw new UsageError(`policy slot size ${slotSize} is not a positive multiple of 65536`, {
        hint: 'systemd and the kubelet use slots of 65536 IDs; larger slots must be multiples of it',
      });
    }
    return { kind: 'slot', slotSize };
  }
  if (m?.[1] === 'base') return { kind: 'base', base: parseCount(m[2]!, 'policy base') };
  throw new UsageError(`unknown allocation policy ${JSON.stringify(text)}`, {
    hint: 'use first-fit, contiguous, slot, slot:SIZE (a multiple of 65536) or base:N',
  });
}

/** How many IDs an allocation of `size` reserves, and how its start must be aligned. */
export function blockShape(policy: Policy, size: number): { reserve: number; align: number } {
  if (policy.kind === 'slot') {
    const slots = Math.max(1, Math.ceil(size / policy.slotSize));
    return { reserve: slots * policy.slotSize, align: policy.slotSize };
  }
  return { reserve: size, align: 1 };
}

/**
 * The start of the block the policy picks in `free`, or undefined when there is none.
 * `prefer` (the start chosen for the other kind, so that uid and gid bases match when they can)
 * is taken when it satisfies the policy and is free.
 */
export function pickBlock(
  free: FreeSpace,
  policy: Policy,
  size: number,
  prefer?: number,
): number | undefined {
  const { reserve, align } = blockShape(policy, size);
  if (reserve > MAX_MAPPABLE_ID + 1) return undefined;
  if (policy.kind === 'base') return free.isFree(policy.base, reserve) ? policy.base : undefined;
  if (prefer !== undefined && prefer % align === 0 && free.isFree(prefer, reserve)) return prefer;
  return free.findFit({ size: reserve, align });
}

/** Bytes of one kernel map line `inside outside count\n`. */
function lineBytes(inside: number, outside: number, count: number): number {
  return String(inside).length + String(outside).length + String(count).length + 3;
}

/**
 * The host blocks the policy picks in `free`, lowest first, or undefined when there are none.
 * One block, except for `first-fit` when no single free block holds `size` IDs: then the lowest
 * free IDs, in ascending order, from as many blocks as needed, as long as the map still fits in
 * one kernel write: at most `room.lines` lines and `room.bytes` bytes (MAX_EXTENTS and a 4 KiB
 * page, less what the caller keeps for passthrough mappings).
 */
export function pickBlocks(
  free: FreeSpace,
  policy: Policy,
  size: number,
  prefer?: number,
  room: { lines: number; bytes: number } = { lines: MAX_EXTENTS, bytes: MAP_BYTES },
): IdRange[] | undefined {
  const { reserve } = blockShape(policy, size);
  const start = pickBlock(free, policy, size, prefer);
  if (start !== undefined) return [{ start, count: reserve }];
  if (policy.kind !== 'first-fit' || free.total < size) return undefined;
  const out: IdRange[] = [];
  let inside = 0;
  let bytes = 0;
  for (const gap of free.ranges()) {
    const n = Math.min(size - inside, gap.count);
    bytes += lineBytes(inside, gap.start, n);
    if (out.length === room.lines || bytes > room.bytes) return undefined;
    out.push({ start: gap.start, count: n });
    inside += n;
    if (inside === size) return out;
  }
  return undefined;
}

/** The most bytes one map write may have on 4 KiB pages (PAGE_SIZE - 1). */
export const MAP_BYTES = 4095;

/** The longest kernel map line: three 10-digit numbers, two blanks and a newline. */
export const MAX_LINE_BYTES = 33;
