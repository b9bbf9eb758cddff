/**
 * ID range allocation for many containers (`userns/alloc`).
 *
 * @module userns/alloc
 */
export { AllocError } from '../errors/index.js';
export {
  type AllocateOptions,
  type AllocationResult,
  allocate,
  allocateForRun,
  allocationUsage,
  closeAllocationRegistries,
  collectGarbage,
  DEFAULT_SIZE,
  fleetRegistryText,
  type GcOptions,
  gc,
  listAllocations,
  openAllocationRegistry,
  openFleetRegistry,
  parseAutoUserns,
  parsePassthrough,
  previewAllocation,
  type RegistryLocation,
  recoverAllocations,
  release,
  releaseAllocation,
  startAgent,
} from './allocate.js';
export {
  type AutoUserns,
  type AutoUsernsCapable,
  type AutoUsernsOptions,
  type WithMaps,
  withAutoUserns,
} from './auto.js';
export type { AllocationRegistry } from './backend.js';
export { type AgentEvent, NodeAgent, type NodeAgentOptions, startNodeAgent } from './fleet/agent.js';
export { etcdLoaded } from './fleet/client.js';
export type { FleetConfig, LiveNode } from './fleet/layout.js';
export { defaultNodeName, FleetRegistry, type FleetRegistryOptions } from './fleet/registry.js';
export { type FleetRegistryUrl, isFleetRegistry, parseRegistryUrl } from './fleet/url.js';
export { formatPolicy, type Policy, parsePolicy, SLOT_UNIT } from './policy.js';
export {
  DEFAULT_CONFIG_PATH,
  type Pool,
  type PoolOptions,
  type Pools,
  parsePoolArgument,
  readPoolConfig,
  resolvePools,
} from './pool.js';
export type { AllocationRequest } from './registry.js';
export {
  ALLOC_EXHAUSTED,
  ALLOC_NAME_TAKEN,
  ALLOC_NOT_FOUND,
  type Allocation,
  type GcResult,
  type Holder,
  type KindUsage,
  type Liveness,
  type RecoverResult,
  type RegistryOptions,
} from './registry.js';
export {
  estimateRootfsSize,
  MIN_ROOTFS_SIZE,
  NOBODY_ID,
  type RootfsEstimate,
  type RootfsOptions,
} from './rootfs-size.js';
export type { Exclusion, SystemTakenOptions } from './system-taken.js';
