/**
 * Allocations owned by named namespaces (`userns create --userns auto:…`): gc may release one
 * only once its namespace is gone, by this layer's rule (the state it recorded: keeper PID, start
 * time, PID namespace, boot), and keeps it, with the reason, when that cannot be told from here.
 */
import { lstatSync, readFileSync } from 'node:fs';
import {
  type Allocation,
  collectGarbage,
  type GcResult,
  type Liveness,
  type RegistryLocation,
} from '../alloc/index.js';
import { probeNsfs } from '../native/nsfs.js';
import { defaultStateRoot } from '../state/state-root.js';
import { bootId, processLiveness, procPidNamespace, runningStartTime } from '../system/proc.js';
import { hasHandles, staleMeansGone } from './handles.js';
import { holdProblem } from './liveness.js';
import { pathsFor } from './paths.js';
import type { NamespaceState } from './state.js';

/**
 * Whether the named namespace `name` under `root` still exists, as far as can be told from here:
 *
 * - no entry `<root>/ns/<name>`: gone (`rm` removes the entry before it releases the allocation);
 * - an entry without a readable state.json (being created, or its creator died; `userns list`
 *   cleans those up, releasing their allocations): unknown;
 * - state.json names the keeper by PID and start time, valid in the PID namespace it records
 *   (`pidNamespace`): checked only where /proc shows that namespace, else unknown. A state
 *   written before the namespace was recorded: alive when that PID runs here with that start
 *   time, else unknown (it may run in a PID namespace this /proc does not show).
 */
export function namespaceLiveness(name: string, root: string): { liveness: Liveness; reason?: string } {
  const paths = pathsFor(name, root);
  if (lstatSync(paths.entry, { throwIfNoEntry: false }) === undefined) return { liveness: 'dead' };
  let text: string;
  try {
    text = readFileSync(paths.state, 'utf8');
  } catch (error) {
    return {
      liveness: 'unknown',
      reason: `no readable state (${(error as NodeJS.ErrnoException).code ?? error}): being created, or its creator died ('userns list' cleans it up)`,
    };
  }
  let state: {
    keeperPid?: unknown;
    keeperStartTime?: unknown;
    pidNamespace?: unknown;
    bootId?: unknown;
    hold?: unknown;
    namespaces?: unknown;
    creatorUserNamespace?: unknown;
  };
  try {
    state = JSON.parse(text);
  } catch {
    return { liveness: 'unknown', reason: 'its state.json is not valid JSON' };
  }
  if (state.hold === 'mount' || state.hold === 'none')
    return heldWithoutKeeper(state as unknown as NamespaceState, paths);
  const pid = state.keeperPid;
  if (typeof pid !== 'number' || !Number.isInteger(pid))
    return { liveness: 'unknown', reason: 'its state names no keeper' };
  const start = typeof state.keeperStartTime === 'string' ? state.keeperStartTime : undefined;
  const boot = bootId();
  // Created during another boot: its keeper is certainly gone.
  if (typeof state.bootId === 'string' && boot !== undefined && state.bootId !== boot)
    return { liveness: 'dead' };
  const here = procPidNamespace();
  if (typeof state.pidNamespace === 'number') {
    if (here !== state.pidNamespace) {
      return {
        liveness: 'unknown',
        reason: `its keeper ${pid} is in PID namespace pid:[${state.pidNamespace}], and /proc here shows ${here === undefined ? 'another one' : `pid:[${here}]`}: cannot check from here`,
      };
    }
    if (start === undefined) return { liveness: 'unknown', reason: 'its state has no keeper start time' };
    const liveness = processLiveness(pid, start);
    return liveness === 'unknown' ? { liveness, reason: `/proc/${pid} cannot be read here` } : { liveness };
  }
  const running =
    start === undefined ? runningStartTime(pid) !== undefined : processLiveness(pid, start) === 'alive';
  return running
    ? { liveness: 'alive' }
    : {
        liveness: 'unknown',
        reason: `its keeper ${pid} is not in this /proc, and its state (from an older userns) does not say in which PID namespace it runs`,
      };
}

/**
 * Liveness of a `mount` or `none` namespace: by nsfs handle (its user namespace still reopens:
 * alive, whoever holds it; ESTALE asked by someone the kernel would let in: dead); without
 * handles, a `mount` hold by its bind files, a `none` one cannot be told.
 */
function heldWithoutKeeper(
  state: NamespaceState,
  paths: ReturnType<typeof pathsFor>,
): { liveness: Liveness; reason?: string } {
  const boot = bootId();
  if (typeof state.bootId === 'string' && boot !== undefined && state.bootId !== boot)
    return { liveness: 'dead' };
  if (Array.isArray(state.namespaces) && hasHandles(state)) {
    const user = state.namespaces.find((n) => n.type === 'user');
    if (user?.handle) {
      try {
        const [answer] = probeNsfs([user.handle]).handles;
        if (answer?.errno === null && answer.inode === user.inode) return { liveness: 'alive' };
        if ((answer?.errno === 'ESTALE' || answer?.errno === 'ENOENT') && staleMeansGone(state))
          return { liveness: 'dead' };
        return {
          liveness: 'unknown',
          reason: `its user namespace handle answers ${answer?.errno ?? 'nothing'} here`,
        };
      } catch (error) {
        return { liveness: 'unknown', reason: `cannot ask the kernel: ${(error as Error).message}` };
      }
    }
  }
  if (state.hold === 'mount' && Array.isArray(state.namespaces))
    return holdProblem(state, paths) === undefined ? { liveness: 'alive' } : { liveness: 'dead' };
  return { liveness: 'unknown', reason: 'it has no holder and no usable nsfs handles: cannot check' };
}

/**
 * Releases, in one transaction, the allocations whose named namespace is gone or whose
 * `userns run` process exited, as far as that can be proven from here; the others whose owner
 * cannot be checked from here (another PID namespace) are kept and listed with the reason.
 */
export async function collectAllocationGarbage(options: RegistryLocation = {}): Promise<GcResult> {
  const root = options.root ?? defaultStateRoot();
  return collectGarbage({
    ...options,
    root,
    isNamespaceAlive: async (name) => namespaceLiveness(name, root),
  });
}

/** As collectAllocationGarbage, returning the released allocations. */
export async function gcAllocations(options: RegistryLocation = {}): Promise<Allocation[]> {
  return (await collectAllocationGarbage(options)).released;
}
