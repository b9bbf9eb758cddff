/**
 * userns: Linux user namespaces and their ID maps.
 *
 * The ID-map core (`userns/idmap`) is pure and synchronous; the system layer (`userns/system`),
 * spawning (`userns/spawn`) and the stores do I/O and live beside it.
 *
 * @module userns
 */

export {
  type AllocateOptions,
  type Allocation,
  allocate,
  gc as gcAllocations,
  listAllocations,
  parseAutoUserns,
  release as releaseAllocationByName,
  releaseAllocation,
} from './alloc/index.js';
export { type Check, type DoctorReport, runDoctor } from './doctor/index.js';
export * from './errors.js';
export * from './idmap/index.js';
export {
  clearIdmapProbeCache,
  clearUsernsFdCache,
  type DetachedMount,
  type DetachedMountOptions,
  type IdmapMaps,
  type IdmapSupport,
  MountError,
  type MountSpec,
  openDetachedMount,
  openIdmappedMount,
  parseMountSpec,
  probeIdmapSupport,
  usernsFd,
  usernsFdCacheStats,
} from './mount/index.js';
export {
  type BundleFormat,
  type CheckReport as OciCheckReport,
  checkConfigText as checkOciConfigText,
  checkOciConfig,
  fillConfigText as fillOciConfigText,
  fillOciConfig,
  OciError,
  type OciFillOptions,
  type OciResult,
} from './oci/index.js';
export {
  REEXEC_ENV,
  ReexecError,
  type ReexecInfo,
  type ReexecOptions,
  reexecInfo,
  reexecInUserNamespace,
} from './reexec/index.js';
export {
  type FitResult,
  fitTree,
  type KindMaps,
  ShiftError,
  type ShiftOptions,
  type ShiftResult,
  shiftTree,
} from './shift/index.js';
export * from './spawn/index.js';
export * from './store/namespaces.js';
export * from './system/index.js';
