/**
 * ID range allocation for many containers: `userns alloc`, `userns run --userns auto`,
 * `userns create --userns auto`. See registry.ts for the on-disk design.
 *
 * @module userns/alloc
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../errors.js';
import type { Extent } from '../idmap/extent.js';
import { parsePodmanMap } from '../idmap/formats/podman.js';
import type { IdRange } from '../idmap/ranges.js';
import { processStartTime } from '../store/lock.js';
import { defaultStateRoot, ensureStateRoot } from '../store/state-root.js';
import { type Policy, parsePolicy } from './policy.js';
import { type Pools, resolvePools } from './pool.js';
import { type Allocation, type KindUsage, Registry, type RegistryOptions } from './registry.js';
import { estimateRootfsSize, type RootfsEstimate } from './rootfs-size.js';

export * from './free-space.js';
export * from './policy.js';
export * from './pool.js';
export * from './registry.js';
export * from './rootfs-size.js';
export * from './system-taken.js';

/** Size when neither `size` nor `forRootfs` is given (and the policy is not a slot). */
export const DEFAULT_SIZE = 65536;

/** Where the allocation registry lives: `<root>/alloc/` of a state root. */
export interface RegistryLocation {
  /** State root (default: /run/userns for root, $XDG_RUNTIME_DIR/userns otherwise). */
  root?: string;
  /** Options for the registry when this call opens it. */
  registry?: RegistryOptions;
}

/**
 * Options of {@link allocate}: the size (IDs from inside 0; default 65536 or the slot size) or a
 * root filesystem to size from, the policy, the pools, a unique name, the owner (named namespace
 * or process) and podman-style extra mappings.
 */
export interface AllocateOptions extends RegistryLocation {
  size?: number;
  /** Estimate the size from this root filesystem (ignored when `size` is given). */
  forRootfs?: string;
  /** first-fit (default), slot[:SIZE], base:N. */
  policy?: Policy | string;
  /** Pool for both kinds, or each kind's own; default: see pool.ts. */
  pool?: readonly IdRange[];
  uidPool?: readonly IdRange[];
  gidPool?: readonly IdRange[];
  /** Already-resolved pools (skips the lookup). */
  pools?: Pools;
  configPath?: string;
  name?: string;
  /** Bind to a named namespace: `gc` releases the allocation once it is gone. */
  namespace?: string;
  /** Bind to a process: `gc` releases the allocation once it has exited. */
  holder?: { pid: number; startTime: string };
  /** podman `uidmapping=`: INSIDE:HOST[:SIZE] (or extents), punched into the uid map. */
  uidMapping?: string | readonly Extent[];
  gidMapping?: string | readonly Extent[];
}

export interface AllocationResult extends Allocation {
  /** Present when the size was estimated from a root filesystem. */
  estimate?: RootfsEstimate;
}

const registries = new Map<string, Registry>();

/** The state root in use: the given one or the default, created and checked. */
export function stateRoot(root?: string): string {
  return ensureStateRoot(root ?? defaultStateRoot());
}

/** The registry of a state root; one instance per process, so its in-memory index is reused. */
export function openRegistry(location: RegistryLocation = {}): Registry {
  const dir = join(stateRoot(location.root), 'alloc');
  let registry = registries.get(dir);
  if (registry === undefined) {
    registry = new Registry(dir, location.registry);
    registries.set(dir, registry);
  }
  return registry;
}

/**
 * Passthrough mappings as podman's `uidmapping=`/`gidmapping=` write them (podman `--uidmap`
 * syntax: `INSIDE:HOST[:SIZE]`, several separated by commas, `u`/`g` flags), for one kind.
 */
export function parsePassthrough(
  text: string,
  option = 'uidmapping',
  kind: 'uid' | 'gid' = option.startsWith('gid') ? 'gid' : 'uid',
): Extent[] {
  return [...parsePodmanMap(text, { kind, source: option }).extents];
}

function passthrough(
  value: string | readonly Extent[] | undefined,
  option: string,
): readonly Extent[] | undefined {
  if (value === undefined) return undefined;
  return typeof value === 'string' ? parsePassthrough(value, option) : value;
}

/** Allocates uid and gid ranges for one container. */
export async function allocate(options: AllocateOptions = {}): Promise<AllocationResult> {
  const policy =
    typeof options.policy === 'string'
      ? parsePolicy(options.policy)
      : (options.policy ?? { kind: 'first-fit' });
  let size = options.size;
  let estimate: RootfsEstimate | undefined;
  if (size === undefined && options.forRootfs !== undefined) {
    estimate = estimateRootfsSize(options.forRootfs);
    size = estimate.size;
  }
  size ??= policy.kind === 'slot' ? policy.slotSize : DEFAULT_SIZE;
  const registry = openRegistry(options);
  const pools =
    options.pools ??
    (await resolvePools({
      ...(options.pool === undefined ? {} : { pool: options.pool }),
      ...(options.uidPool === undefined ? {} : { uidPool: options.uidPool }),
      ...(options.gidPool === undefined ? {} : { gidPool: options.gidPool }),
      ...(options.configPath === undefined ? {} : { configPath: options.configPath }),
    }));
  const uidPassthrough = passthrough(options.uidMapping, 'uidmapping');
  const gidPassthrough = passthrough(options.gidMapping, 'gidmapping');
  const allocation = await registry.allocate({
    size,
    policy,
    pools,
    ...(options.name === undefined ? {} : { name: options.name }),
    ...(options.namespace === undefined ? {} : { namespace: options.namespace }),
    ...(options.holder === undefined ? {} : { holder: options.holder }),
    ...(uidPassthrough === undefined ? {} : { uidPassthrough }),
    ...(gidPassthrough === undefined ? {} : { gidPassthrough }),
  });
  return estimate === undefined ? allocation : { ...allocation, estimate };
}

/** Releases an allocation by id or name (ALLOC_NOT_FOUND when there is none). */
export async function release(idOrName: string, location: RegistryLocation = {}): Promise<Allocation> {
  const result = await openRegistry(location).release(idOrName);
  return result!.allocation;
}

/**
 * The live allocations, oldest first.
 *
 * @param location The state root (default: /run/userns for root, $XDG_RUNTIME_DIR/userns otherwise).
 * @returns Each allocation with its uid and gid ranges and maps (host IDs), name, owner and creation time.
 * @throws AllocError when the registry cannot be read or locked (a damaged file names itself).
 */
export async function listAllocations(location: RegistryLocation = {}): Promise<Allocation[]> {
  return openRegistry(location).list();
}

/** Free and used IDs of the pools (the default pools unless given). */
export async function allocationUsage(
  options: RegistryLocation & { pools?: Pools; pool?: readonly IdRange[] } = {},
): Promise<{ uid: KindUsage; gid: KindUsage }> {
  const pools =
    options.pools ?? (await resolvePools(options.pool === undefined ? {} : { pool: options.pool }));
  return openRegistry(options).usage(pools);
}

/**
 * Whether the named namespace `name` under `root` still exists: `<root>/ns/<name>/state.json`
 * names a keeper process (keeperPid, keeperStartTime) that still runs.
 */
export function defaultIsNamespaceAlive(root: string): (name: string) => Promise<boolean> {
  return async (name) => {
    let text: string;
    try {
      text = readFileSync(join(root, 'ns', name, 'state.json'), 'utf8');
    } catch (error) {
      return (
        (error as NodeJS.ErrnoException).code !== 'ENOENT' &&
        (error as NodeJS.ErrnoException).code !== 'ENOTDIR'
      );
    }
    let state: { keeperPid?: unknown; keeperStartTime?: unknown };
    try {
      state = JSON.parse(text);
    } catch {
      return true; // unreadable: keep the allocation rather than free IDs that may be in use
    }
    if (typeof state.keeperPid !== 'number') return true;
    const start = processStartTime(state.keeperPid);
    if (start === undefined) return false;
    return state.keeperStartTime === undefined || String(state.keeperStartTime) === start;
  };
}

/** Options of {@link gc}. */
export interface GcOptions extends RegistryLocation {
  /**
   * Whether the named namespace an allocation belongs to still exists (default: its state entry is
   * running under the same state root).
   */
  isNamespaceAlive?: (name: string) => Promise<boolean>;
}

/** Releases allocations whose named namespace is gone, or whose `userns run` process exited. */
export async function gc(options: GcOptions = {}): Promise<Allocation[]> {
  const root = stateRoot(options.root);
  return openRegistry({ ...options, root }).gc(options.isNamespaceAlive ?? defaultIsNamespaceAlive(root));
}

/**
 * For `userns run --userns auto[:…]`: allocates for the current process (gc releases it if the
 * process dies without releasing). Call releaseAllocation(id) when the namespace has ended.
 */
export async function allocateForRun(options: AllocateOptions = {}): Promise<AllocationResult> {
  return allocate({
    ...options,
    holder: options.holder ?? { pid: process.pid, startTime: processStartTime('self') ?? '0' },
  });
}

/** Releases if it still exists; true when it did. Never throws ALLOC_NOT_FOUND. */
export async function releaseAllocation(id: string, location: RegistryLocation = {}): Promise<boolean> {
  return (await openRegistry(location).release(id, { ifExists: true })) !== undefined;
}

/**
 * `auto`, `auto:size=N`, `auto:size=N,uidmapping=0:1000:1,gidmapping=…,policy=slot` (podman's
 * --userns=auto options; uidmapping/gidmapping may repeat) → allocate() options.
 */
export function parseAutoUserns(text: string): AllocateOptions | undefined {
  if (text !== 'auto' && !text.startsWith('auto:')) return undefined;
  const out: AllocateOptions = {};
  const uid: Extent[] = [];
  const gid: Extent[] = [];
  if (text === 'auto') return out;
  for (const option of text.slice(5).split(',')) {
    const eq = option.indexOf('=');
    const key = eq < 0 ? option : option.slice(0, eq);
    const value = eq < 0 ? '' : option.slice(eq + 1);
    if (key === 'size' && /^[0-9]{1,10}$/.test(value) && Number(value) >= 1) out.size = Number(value);
    else if (key === 'uidmapping') uid.push(...parsePassthrough(value, 'uidmapping'));
    else if (key === 'gidmapping') gid.push(...parsePassthrough(value, 'gidmapping'));
    else if (key === 'policy') out.policy = parsePolicy(value);
    else {
      throw new UsageError(`--userns ${text}: unknown or malformed option ${JSON.stringify(option)}`, {
        hint: 'auto accepts size=N, uidmapping=INSIDE:HOST[:SIZE], gidmapping=… and policy=first-fit|slot[:SIZE]|base:N',
      });
    }
  }
  if (uid.length > 0) out.uidMapping = uid;
  if (gid.length > 0) out.gidMapping = gid;
  return out;
}
