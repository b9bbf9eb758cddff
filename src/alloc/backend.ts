/**
 * What every allocation registry does, whichever store is under it: the local one (registry.ts,
 * a SQLite file under the state root, for one machine) and the fleet one (fleet/registry.ts, on
 * etcd v3, for many). The operations of the alloc layer (index.ts: allocate, release, list, gc,
 * usage) talk to this interface only.
 */
import type { Pools } from './pool.js';
import type { Allocation, AllocationRequest, GcResult, KindUsage, Liveness } from './registry.js';

/**
 * The operations every registry backend offers (the local SQLite one and the fleet one on etcd):
 * what the alloc layer's allocate/release/list/gc/usage call. Errors: AllocError (ALLOC_*),
 * StateFileError (the local file), and for the fleet, errors naming the etcd members.
 */
export interface AllocationRegistry {
  /** `local` (SQLite) or `etcd`. */
  readonly backend: 'local' | 'etcd';
  /** Where it is: the database file, or the etcd URL without credentials. */
  readonly location: string;
  /**
   * Whether the pools come from the registry itself (a fleet's configuration, PREFIX/config)
   * instead of this machine's configuration (pool.ts resolvePools).
   */
  readonly poolsFromRegistry: boolean;
  /** The pools a request gets when it names none (for a local registry: undefined, see pool.ts). */
  registryPools(): Promise<Pools | undefined>;
  /**
   * Allocates uid and gid ranges for one container; with `reuse` (the fleet's default), returns
   * the allocation of the same name instead. The result may carry `warnings`.
   */
  allocate(request: AllocationRequest): Promise<Allocation & { warnings?: string[] }>;
  /** What allocate() would return now, recording nothing (a dry run), with the same errors. */
  preview(request: AllocationRequest): Promise<Allocation & { warnings?: string[] }>;
  /** Releases by id or name: the allocation and the sequence number of the release. */
  release(
    idOrName: string,
    options?: { ifExists?: boolean; force?: boolean },
  ): Promise<{ allocation: Allocation; seq: number } | undefined>;
  /** Every live allocation, in creation order. */
  list(): Promise<Allocation[]>;
  /** Releases the allocations whose owner is provably gone (see registry.ts collectGarbage). */
  collectGarbage(
    isNamespaceAlive: (name: string) => Promise<boolean | Liveness | { liveness: Liveness; reason?: string }>,
  ): Promise<GcResult>;
  /** Free and used IDs per pool (`pools` for a local registry; a fleet registry uses its own). */
  usage(pools?: Pools): Promise<{ uid: KindUsage; gid: KindUsage }>;
  /** Consistency problems of the stored registry (empty = consistent), and its allocations. */
  verify(): Promise<{ problems: string[]; allocations: Allocation[] }>;
  /** Closes connections and files (the registry reopens them when used again). */
  close(): void;
}
