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
  collectGarbage,
  DEFAULT_SIZE,
  type GcOptions,
  gc,
  listAllocations,
  parseAutoUserns,
  parsePassthrough,
  previewAllocation,
  type RegistryLocation,
  recoverAllocations,
  release,
  releaseAllocation,
} from './allocate.js';
export {
  type AutoUserns,
  type AutoUsernsCapable,
  type AutoUsernsOptions,
  type WithMaps,
  withAutoUserns,
} from './auto.js';
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
