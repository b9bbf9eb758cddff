/**
 * Named namespaces that outlive a command (`userns/namespaces`): create, exec, list, inspect, rm.
 *
 * @module userns/namespaces
 */
export { NamespaceError } from '../errors/index.js';
export { collectAllocationGarbage, gcAllocations, namespaceLiveness } from './allocations.js';
export { type CreateOptions, createNamespace } from './create.js';
export {
  type ExecOptions,
  type ExecResult,
  execInNamespace,
  type NamespaceChildProcess,
  spawnInNamespace,
} from './exec.js';
export {
  type InspectResult,
  inspectNamespace,
  listNamespaces,
  type RemoveOptions,
  type RemoveResult,
  removeNamespace,
  type SubidChange,
} from './manage.js';
export type { RootOption } from './paths.js';
export type { NamespaceInfo, NamespaceState, NamespaceStatus, StoredOptions } from './state.js';
