/**
 * ID range allocation for many containers: `userns alloc`, `userns run --userns auto`,
 * `userns create --userns auto`: the operations over the registry a location names, the local
 * one of a state root (registry.ts has the on-disk design) or a fleet registry on etcd
 * (fleet/registry.ts), both behind one interface (backend.ts).
 */
import { join, resolve } from 'node:path';
import { UsageError } from '../errors/index.js';
import type { Extent, IdKind } from '../idmap/extent.js';
import { parsePodmanMap } from '../idmap/formats/podman.js';
import type { IdMap } from '../idmap/idmap.js';
import type { IdRange } from '../idmap/ranges.js';
import { defaultStateRoot, ensureStateRoot } from '../state/state-root.js';
import { runningStartTime, selfInProc } from '../system/proc.js';
import { ownMap } from '../system/self.js';
import type { AllocationRegistry } from './backend.js';
import { type AgentEvent, NodeAgent } from './fleet/agent.js';
import { FleetRegistry, type FleetRegistryOptions } from './fleet/registry.js';
import { isFleetRegistry, parseRegistryUrl } from './fleet/url.js';
import { type Policy, parsePolicy } from './policy.js';
import { type PoolOptions, type Pools, resolvePools } from './pool.js';
import {
  type Allocation,
  type AllocationRequest,
  type GcResult,
  type Holder,
  type KindUsage,
  type Liveness,
  type RecoverResult,
  Registry,
  type RegistryOptions,
  recoverRegistry,
} from './registry.js';
import { estimateRootfsSize, type RootfsEstimate } from './rootfs-size.js';

/** Size when neither `size` nor `forRootfs` is given (and the policy is not a slot). */
export const DEFAULT_SIZE = 65536;

/** Where the allocation registry lives: `<root>/alloc/` of a state root. */
export interface RegistryLocation {
  /** State root (default: src/state/state-root.ts defaultStateRoot). */
  root?: string;
  /** Options for the registry when this call opens it. */
  registry?: RegistryOptions;
  /**
   * Files read instead of the system's /etc/subuid, /etc/subgid, /etc/passwd and /etc/group,
   * for the pools and for the IDs excluded from them (getent and getsubids, which read the
   * system's, are then not asked).
   */
  subuidPath?: string;
  subgidPath?: string;
  passwdPath?: string;
  groupPath?: string;
  /**
   * Which registry: `local` (the SQLite registry of the state root, the default) or a fleet
   * registry on etcd, `etcd://HOST:PORT[,HOST:PORT…]/PREFIX` (fleet/url.ts). Default:
   * $USERNS_REGISTRY, else local. A fleet registry keeps this node's cache under the state root.
   */
  registryUrl?: string;
  /** This machine's name in a fleet registry (default: $USERNS_NODE, else the host name). */
  node?: string;
  /** Further options of a fleet registry (retries, idle close). */
  fleet?: Omit<FleetRegistryOptions, 'dir' | 'node' | 'systemTaken' | 'txnHook'>;
}

/**
 * Options of {@link allocate}: the size (IDs from inside 0; default 65536 or the slot size) or a
 * root filesystem to size from, the policy, the pools, a unique name, the owner (named namespace
 * or process) and podman-style extra mappings.
 */
export interface AllocateOptions extends RegistryLocation {
  size?: number;
  /**
   * When `size` is not given, the size (the estimate, the slot or the default) grows to at
   * least this: podman sizes an automatic namespace to cover the `--user` IDs (their highest
   * plus one; `--user 2000:3000` → at least 3001). An explicit `size` is kept as given.
   */
  minSize?: number;
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
  /** Bind to a process (a PID as this /proc shows it): `gc` releases the allocation once it has exited. */
  holder?: Holder;
  /** podman `uidmapping=`: INSIDE:HOST[:SIZE] (or extents), punched into the uid map. */
  uidMapping?: string | readonly Extent[];
  gidMapping?: string | readonly Extent[];
  /**
   * Fleet registry: tie the allocation to this node's lease (`node`: fails without a node agent;
   * `auto`: when an agent runs), or make it persistent (`none`, the default for allocate(); `auto`
   * for allocateForRun()). The local registry ignores it.
   */
  lease?: 'node' | 'auto' | 'none';
  /**
   * Return an existing allocation of the same name (when it matches) instead of
   * ALLOC_NAME_TAKEN. Default: true for a fleet registry, false for the local one.
   */
  reuse?: boolean;
}

export interface AllocationResult extends Allocation {
  /** Present when the size was estimated from a root filesystem. */
  estimate?: RootfsEstimate;
  /** What the pool lookup found wrong and worked around (Pools.warnings). */
  warnings?: string[];
}

const registries = new Map<string, Registry>();

/** The state root in use: the given one or the default, created and checked. */
export function stateRoot(root?: string): string {
  return ensureStateRoot(root ?? defaultStateRoot());
}

function substitutedFiles(location: RegistryLocation) {
  return {
    ...(location.subuidPath === undefined ? {} : { subuidPath: location.subuidPath }),
    ...(location.subgidPath === undefined ? {} : { subgidPath: location.subgidPath }),
    ...(location.passwdPath === undefined ? {} : { passwdPath: location.passwdPath }),
    ...(location.groupPath === undefined ? {} : { groupPath: location.groupPath }),
  };
}

/**
 * The registry of a state root; one instance per process and set of options, so its database
 * connection and in-memory index are reused.
 */
export function openRegistry(location: RegistryLocation = {}): Registry {
  const dir = join(stateRoot(location.root), 'alloc');
  const files = substitutedFiles(location);
  const options: RegistryOptions = { ...location.registry };
  if (options.systemTaken !== null && Object.keys(files).length > 0)
    options.systemTaken = { ...options.systemTaken, ...files };
  const key = `${dir}\0${JSON.stringify(options)}`;
  let registry = registries.get(key);
  if (registry === undefined) {
    registry = new Registry(dir, options);
    registries.set(key, registry);
  }
  return registry;
}

/** The fleet registry a location names (its registryUrl, else $USERNS_REGISTRY), or undefined for the local one. */
export function fleetRegistryText(location: RegistryLocation = {}): string | undefined {
  const text = location.registryUrl ?? process.env.USERNS_REGISTRY;
  if (text === undefined || text === '' || text === 'local') return undefined;
  if (!isFleetRegistry(text)) parseRegistryUrl(text); // throws the UsageError that says why
  return text;
}

const fleets = new Map<string, FleetRegistry>();

/** The fleet registry of a location (one instance per process, URL, state root and node). */
export function openFleetRegistry(location: RegistryLocation = {}): FleetRegistry {
  const text = fleetRegistryText(location);
  if (text === undefined) {
    throw new UsageError('no fleet registry given', {
      hint: 'give --registry etcd://HOST:PORT[,HOST:PORT…]/PREFIX or set USERNS_REGISTRY',
    });
  }
  const url = parseRegistryUrl(text);
  const dir = join(stateRoot(location.root), 'alloc');
  const files = substitutedFiles(location);
  const given = location.registry?.systemTaken;
  const systemTaken = given === null ? null : { ...given, ...files };
  const key = JSON.stringify([text, dir, location.node ?? null, systemTaken, location.fleet ?? null]);
  let registry = fleets.get(key);
  if (registry === undefined) {
    registry = new FleetRegistry(url, {
      dir,
      systemTaken,
      ...(location.node === undefined ? {} : { node: location.node }),
      ...location.fleet,
    });
    fleets.set(key, registry);
  }
  return registry;
}

/**
 * The registry a location names: the fleet registry of its registryUrl (or $USERNS_REGISTRY),
 * else the local registry of its state root. Every operation below goes through this.
 */
export function openAllocationRegistry(location: RegistryLocation = {}): AllocationRegistry {
  return fleetRegistryText(location) === undefined ? openRegistry(location) : openFleetRegistry(location);
}

/**
 * Starts this node's agent for the fleet registry of `location` (see fleet/agent.ts): keeps the
 * node's lease alive until stop(). `onEvent` sees every event from the registration on.
 */
export async function startAgent(
  location: RegistryLocation & { ttl?: number },
  onEvent?: (event: AgentEvent) => void,
): Promise<NodeAgent> {
  const registry = openFleetRegistry(location);
  const given = location.registry?.systemTaken;
  return NodeAgent.start(registry.url, {
    dir: join(stateRoot(location.root), 'alloc'),
    node: registry.node,
    systemTaken: given === null ? null : { ...given, ...substitutedFiles(location) },
    ...(location.ttl === undefined ? {} : { ttl: location.ttl }),
    ...(onEvent === undefined ? {} : { onEvent }),
  });
}

/** Closes every registry this process opened (database files, etcd connections). */
export function closeAllocationRegistries(): void {
  for (const r of registries.values()) r.close();
  registries.clear();
  for (const r of fleets.values()) r.close();
  fleets.clear();
}

/**
 * Recovers a damaged registry database (REGISTRY_CORRUPT's hint): moves it aside, keeps what can
 * still be read. Leaves a registry that is not damaged alone.
 */
export async function recoverAllocations(location: RegistryLocation = {}): Promise<RecoverResult> {
  const dir = join(stateRoot(location.root), 'alloc');
  for (const [key, registry] of registries) {
    if (registry.dir !== dir) continue;
    registry.close();
    registries.delete(key);
  }
  return recoverRegistry(dir, location.registry);
}

/** resolvePools options for the files a location substitutes. */
export function poolFiles(location: RegistryLocation): Pick<PoolOptions, 'subordinate' | 'passwdPath'> {
  const subordinate = {
    ...(location.subuidPath === undefined ? {} : { subuidPath: location.subuidPath }),
    ...(location.subgidPath === undefined ? {} : { subgidPath: location.subgidPath }),
  };
  return {
    ...(Object.keys(subordinate).length === 0 ? {} : { subordinate }),
    ...(location.passwdPath === undefined ? {} : { passwdPath: location.passwdPath }),
  };
}

/**
 * Passthrough mappings as podman's `uidmapping=`/`gidmapping=` write them (podman `--uidmap`
 * syntax: `INSIDE:HOST[:SIZE]`, several separated by commas, `u`/`g` flags), for one kind.
 * HOST is an ID of the current namespace (the pool's IDs); `@HOST` is an ID of the initial
 * namespace, translated through `parent` (default: this process's own map, read only when an
 * `@` is present), as `--uidmap` does. Throws ParseError (HOST_ID_NOT_MAPPED, …).
 */
export function parsePassthrough(
  text: string,
  option = 'uidmapping',
  kind: IdKind = option.startsWith('gid') ? 'gid' : 'uid',
  parent?: IdMap,
): Extent[] {
  const map = parent ?? (text.includes('@') ? ownMap(kind) : undefined);
  return [...parsePodmanMap(text, { kind, source: option, parent: map }).extents];
}

function passthrough(
  value: string | readonly Extent[] | undefined,
  option: string,
): readonly Extent[] | undefined {
  if (value === undefined) return undefined;
  return typeof value === 'string' ? parsePassthrough(value, option) : value;
}

/**
 * The registry request of allocate() options: size (or estimate), policy, pools (none for a
 * fleet registry: its configuration has them), passthrough, lease and reuse.
 */
async function requestFor(
  options: AllocateOptions,
  registry: Pick<AllocationRegistry, 'poolsFromRegistry' | 'location'>,
): Promise<{ request: AllocationRequest; estimate: RootfsEstimate | undefined; pools: Pools | undefined }> {
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
  const sizeDefaulted = size === undefined;
  size ??= policy.kind === 'slot' ? policy.slotSize : DEFAULT_SIZE;
  if (options.size === undefined && options.minSize !== undefined) size = Math.max(size, options.minSize);
  let pools: Pools | undefined;
  if (registry.poolsFromRegistry) {
    const local = (['pool', 'uidPool', 'gidPool', 'pools', 'configPath'] as const).filter(
      (o) => options[o] !== undefined,
    );
    if (local.length > 0) {
      throw new UsageError(
        `${local.join(', ')}: the pools of the fleet registry ${registry.location} come from its configuration`,
        {
          hint: `change them for the whole fleet: userns alloc config --registry ${registry.location} --pool START:COUNT`,
        },
      );
    }
  } else {
    pools =
      options.pools ??
      (await resolvePools({
        ...(options.pool === undefined ? {} : { pool: options.pool }),
        ...(options.uidPool === undefined ? {} : { uidPool: options.uidPool }),
        ...(options.gidPool === undefined ? {} : { gidPool: options.gidPool }),
        ...(options.configPath === undefined ? {} : { configPath: options.configPath }),
        ...poolFiles(options),
      }));
  }
  const uidPassthrough = passthrough(options.uidMapping, 'uidmapping');
  const gidPassthrough = passthrough(options.gidMapping, 'gidmapping');
  const request: AllocationRequest = {
    size,
    policy,
    ...(pools === undefined ? {} : { pools }),
    defaults: { policy: options.policy === undefined, size: sizeDefaulted },
    ...(options.name === undefined ? {} : { name: options.name }),
    ...(options.namespace === undefined ? {} : { namespace: options.namespace }),
    ...(options.holder === undefined ? {} : { holder: options.holder }),
    ...(uidPassthrough === undefined ? {} : { uidPassthrough }),
    ...(gidPassthrough === undefined ? {} : { gidPassthrough }),
    ...(options.lease === undefined ? {} : { lease: options.lease }),
    ...(options.reuse === undefined ? {} : { reuse: options.reuse }),
  };
  return { request, estimate, pools };
}

/** The result for the caller: the estimate, and the warnings of the pools and of the registry. */
function resultOf(
  registry: Pick<AllocationRegistry, 'location'>,
  { warnings: registryWarnings, ...allocation }: Allocation & { warnings?: string[] },
  estimate: RootfsEstimate | undefined,
  pools: Pools | undefined,
): AllocationResult {
  const result: AllocationResult = estimate === undefined ? allocation : { ...allocation, estimate };
  const warnings = [...(pools?.warnings ?? []), ...(registryWarnings ?? [])];
  if (allocation.offline !== undefined)
    warnings.push(
      `the fleet registry ${registry.location} is unreachable: ${allocation.name} is served from this node's cache (as read at ${allocation.offline.readAt}, revision ${allocation.offline.revision})`,
    );
  if (warnings.length > 0) result.warnings = warnings;
  return result;
}

/**
 * Allocates uid and gid ranges for one container. Throws AllocError (ALLOC_EXHAUSTED,
 * ALLOC_NAME_TAKEN, …), UsageError for a bad policy, InvalidNameError, StateRootError,
 * StateFileError (NO_SPACE, REGISTRY_CORRUPT, …).
 */
export async function allocate(options: AllocateOptions = {}): Promise<AllocationResult> {
  const registry = openAllocationRegistry(options);
  const { request, estimate, pools } = await requestFor(options, registry);
  return resultOf(registry, await registry.allocate(request), estimate, pools);
}

/**
 * What allocate() would give now, recording nothing (for dry runs): the same range and the same
 * errors, as long as nobody allocates in between. Creates nothing when the registry does not
 * exist yet (it is then empty).
 */
export async function previewAllocation(options: AllocateOptions = {}): Promise<AllocationResult> {
  if (fleetRegistryText(options) !== undefined) {
    const fleet = openFleetRegistry(options);
    const { request, estimate, pools } = await requestFor(options, fleet);
    return resultOf(fleet, await fleet.preview(request), estimate, pools);
  }
  const dir = join(resolve(options.root ?? defaultStateRoot()), 'alloc');
  const { request, estimate, pools } = await requestFor(options, { poolsFromRegistry: false, location: dir });
  const open = [...registries.values()].find((r) => r.dir === dir);
  const registry = open ?? new Registry(dir, options.registry);
  try {
    return resultOf(registry, await registry.preview(request), estimate, pools);
  } finally {
    if (open === undefined) registry.close();
  }
}

/**
 * Releases an allocation by id or name and returns it. Throws AllocError ALLOC_NOT_FOUND when
 * there is none, ALLOC_NOT_OWNER for another user's (unless root).
 */
export async function release(
  idOrName: string,
  location: RegistryLocation & { force?: boolean } = {},
): Promise<Allocation> {
  const result = await openAllocationRegistry(location).release(
    idOrName,
    location.force === undefined ? {} : { force: location.force },
  );
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
  return openAllocationRegistry(location).list();
}

/** Free and used IDs of each pool, counted in IDs (the default pools unless given). */
export async function allocationUsage(
  options: RegistryLocation & { pools?: Pools; pool?: readonly IdRange[] } = {},
): Promise<{ uid: KindUsage; gid: KindUsage }> {
  const registry = openAllocationRegistry(options);
  if (registry.poolsFromRegistry) return registry.usage();
  const pools =
    options.pools ??
    (await resolvePools({
      ...(options.pool === undefined ? {} : { pool: options.pool }),
      ...poolFiles(options),
    }));
  return registry.usage(pools);
}

/** Options of {@link collectGarbage}. */
export interface GcOptions extends RegistryLocation {
  /**
   * Whether the named namespace `name` still holds its IDs, as far as can be told from here (the
   * named-namespace layer knows: gcAllocations() in userns/namespaces passes its own check).
   */
  isNamespaceAlive: (name: string) => Promise<boolean | Liveness | { liveness: Liveness; reason?: string }>;
}

/**
 * Releases, in one transaction, the allocations whose named namespace is gone or whose
 * `userns run` process exited, as far as that can be proven from here; the others whose owner
 * cannot be checked from here (another PID namespace) are kept and listed with the reason.
 */
export async function collectGarbage(options: GcOptions): Promise<GcResult> {
  const root = stateRoot(options.root);
  return openAllocationRegistry({ ...options, root }).collectGarbage(options.isNamespaceAlive);
}

/** As collectGarbage, returning the released allocations. */
export async function gc(options: GcOptions): Promise<Allocation[]> {
  return (await collectGarbage(options)).released;
}

/**
 * For `userns run --userns auto[:…]`: allocates for the current process (gc releases it if the
 * process dies without releasing). Call releaseAllocation(id) when the namespace has ended.
 */
export async function allocateForRun(options: AllocateOptions = {}): Promise<AllocationResult> {
  // This process as /proc shows it, with the PID namespace of /proc: gc can then tell from
  // anywhere whether its PID means this process. Not visible in this /proc (a PID namespace
  // /proc does not show): recorded without a namespace, which gc never judges.
  const self = selfInProc() ?? {
    pid: process.pid,
    startTime: runningStartTime('self') ?? '0',
    pidNamespace: null,
  };
  // In a fleet registry, on this node's lease when its agent runs: the process lives here only.
  return allocate({ ...options, holder: options.holder ?? self, lease: options.lease ?? 'auto' });
}

/** Releases if it still exists; true when it did. Never throws ALLOC_NOT_FOUND. */
export async function releaseAllocation(id: string, location: RegistryLocation = {}): Promise<boolean> {
  return (await openAllocationRegistry(location).release(id, { ifExists: true })) !== undefined;
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
        hint: 'auto accepts size=N, uidmapping=INSIDE:HOST[:SIZE], gidmapping=… and policy=first-fit|contiguous|slot[:SIZE]|base:N',
      });
    }
  }
  if (uid.length > 0) out.uidMapping = uid;
  if (gid.length > 0) out.gidMapping = gid;
  return out;
}
