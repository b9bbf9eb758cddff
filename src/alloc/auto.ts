/**
 * `--userns auto:OPTIONS` (podman's --userns=auto): a fresh range from the allocation registry,
 * turned into explicit maps for whoever starts the namespace (spawn(), createNamespace(),
 * reexecInUserNamespace(), `userns run`). spawn() itself never allocates: its plan has no side
 * effects, and the caller decides who owns the range and when it is released.
 */
import { IdMap } from '../idmap/idmap.js';
import type { UsernsModeSpec } from '../maps/modes.js';
import {
  type AllocationResult,
  allocate,
  allocateForRun,
  parseAutoUserns,
  previewAllocation,
  releaseAllocation,
} from './allocate.js';

/** Options that may name an `auto:…` mode (SpawnOptions, CreateOptions, ReexecOptions, …). */
export interface AutoUsernsCapable {
  userns?: UsernsModeSpec | `auto:${string}`;
  /** The IDs the command runs as inside: an `auto:` namespace without size= covers them. */
  user?: number;
  group?: number;
}

/** The options with the allocated maps in place of the `auto:…` mode. */
export type WithMaps<T extends AutoUsernsCapable> = Omit<T, 'userns'> & { userns?: UsernsModeSpec };

/** How withAutoUserns() allocates: the registry's state root, the owner, or only a preview. */
export interface AutoUsernsOptions {
  /** State root of the registry (default: /run/userns for root, $XDG_RUNTIME_DIR/userns otherwise). */
  stateRoot?: string;
  /**
   * Who owns the range: a named namespace (released by its `rm`, or by gc once it is gone), or
   * by default this process (released by `release()`, or by gc once this process has exited).
   */
  namespace?: string;
  /** Only show the range a run would get now: nothing is recorded (for dry runs). */
  preview?: boolean;
}

/** What withAutoUserns() returns: the options with explicit maps, the allocation, and its release. */
export interface AutoUserns<T extends AutoUsernsCapable> {
  /** `options` with `userns: 'auto'` and the range's uidMap and gidMap (unchanged without `auto:`). */
  options: WithMaps<T>;
  /** The allocation made (or previewed), null when `userns` was not `auto:…`. */
  allocation: AllocationResult | null;
  /** Releases the allocation of a run (nothing for a namespace's, a preview or no allocation). */
  release(): Promise<void>;
}

/**
 * When `options.userns` is `auto:size=N[,uidmapping=…][,gidmapping=…][,policy=…]`: allocates a
 * range (owned by this process, or by `how.namespace`) and returns the options with explicit
 * maps. Without size=, the range is the default size or more: enough to map `options.user` and
 * `options.group` (podman sizes for `--user` the same way). Other modes pass through unchanged. Throws UsageError for bad auto options, AllocError
 * (ALLOC_EXHAUSTED, …) when the registry cannot give the range.
 */
export async function withAutoUserns<T extends AutoUsernsCapable>(
  options: T,
  how: AutoUsernsOptions = {},
): Promise<AutoUserns<T>> {
  const mode = options.userns;
  if (mode === undefined || !mode.startsWith('auto:')) {
    return { options: options as WithMaps<T>, allocation: null, release: async () => {} };
  }
  const request = parseAutoUserns(mode)!;
  // Without size=, the namespace covers the IDs the command runs as (podman's --user sizing).
  const highest = Math.max(options.user ?? 0, options.group ?? 0);
  if (request.size === undefined && highest > 0) request.minSize = highest + 1;
  const location = how.stateRoot === undefined ? {} : { root: how.stateRoot };
  let allocation: AllocationResult;
  let release = async () => {};
  if (how.preview) {
    allocation = await previewAllocation({ ...request, ...location });
  } else if (how.namespace !== undefined) {
    // In a fleet registry ($USERNS_REGISTRY), on the node's lease when its agent runs: a named
    // namespace lives on this machine only.
    allocation = await allocate({ ...request, ...location, namespace: how.namespace, lease: 'auto' });
  } else {
    const made = await allocateForRun({ ...request, ...location });
    allocation = made;
    release = async () => {
      await releaseAllocation(made.id, location);
    };
  }
  const maps = { uidMap: new IdMap(allocation.uidMap), gidMap: new IdMap(allocation.gidMap) };
  return { options: { ...options, userns: 'auto', ...maps } as WithMaps<T>, allocation, release };
}
