/**
 * Named namespaces that outlive a command (`userns/namespaces`): create, exec, list, inspect, rm.
 *
 * @module userns/namespaces
 */
export { NamespaceError } from '../errors/index.js';
export { collectAllocationGarbage, gcAllocations, namespaceLiveness } from './allocations.js';
export {
  type CreatedWithCommand,
  type CreateOptions,
  type CreateWithCommandOptions,
  createNamespace,
  createNamespaceWithCommand,
} from './create.js';
export {
  type ExecOptions,
  type ExecResult,
  execInNamespace,
  type NamespaceChildProcess,
  spawnInNamespace,
} from './exec.js';
export { handlesDisabled } from './handles.js';
export {
  type InspectResult,
  inspectNamespace,
  type ListOptions,
  listNamespaces,
  type RemoveOptions,
  type RemoveResult,
  removeNamespace,
  type SubidChange,
} from './manage.js';
export type { RootOption } from './paths.js';
export {
  HOLD_MODES,
  type HoldMode,
  type NamespaceInfo,
  type NamespaceState,
  type NamespaceStatus,
  type StoredOptions,
} from './state.js';
