/**
 * userns: Linux user namespaces and their ID maps.
 *
 * The ID-map core (`userns/idmap`) is pure and synchronous; the system layer (`userns/system`),
 * spawning (`userns/spawn`) and the stores do I/O and live beside it.
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
export * from './spawn/index.js';
export * from './store/namespaces.js';
export * from './system/index.js';
