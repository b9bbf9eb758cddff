/**
 * Allocations owned by named namespaces (`userns create --userns auto:…`): gc releases one once
 * its namespace no longer holds the IDs, by this layer's own rule (examine: the recorded keeper
 * still runs with the recorded namespaces).
 */
import { type Allocation, gc, type RegistryLocation } from '../alloc/index.js';
import { defaultStateRoot } from '../state/state-root.js';
import { staleReason } from './liveness.js';
import { namespaceRoot, pathsFor } from './paths.js';
import { examine } from './state.js';

/**
 * Whether the named namespace `name` under `root` may still use the IDs allocated to it: it is
 * running, or cannot be told for sure (being created, broken, unsafe: keep rather than free IDs
 * that may be in use). Gone, stale and abandoned-without-keeper entries hold nothing.
 */
export function namespaceHoldsIds(name: string, root: string): boolean {
  const r = namespaceRoot({ root }, false);
  if (r === undefined) return false;
  const info = examine(name, pathsFor(name, r), false);
  if (info === undefined) return false;
  switch (info.status) {
    case 'running':
    case 'creating':
    case 'broken':
    case 'unsafe':
      return true;
    case 'stale':
      return false;
    case 'abandoned':
      // Its creator died; until the next create, rm or list removes it, its keeper may still run.
      return info.state !== null && staleReason(info.state) === undefined;
  }
}

/**
 * Releases the allocations whose named namespace is gone, or whose `userns run` process exited
 * (alloc.gc with this layer's liveness rule). Returns the allocations released.
 */
export async function gcAllocations(options: RegistryLocation = {}): Promise<Allocation[]> {
  const root = options.root ?? defaultStateRoot();
  return gc({ ...options, root, isNamespaceAlive: async (name) => namespaceHoldsIds(name, root) });
}
