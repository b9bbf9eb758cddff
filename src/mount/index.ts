/**
 * Bind mounts, read-only and idmapped (`userns/mount`), for new namespaces and for callers' own mount trees.
 *
 * @module userns/mount
 */
export { MountError } from '../errors/index.js';
export type { MountInfo } from '../system/mounts.js';
export {
  type DetachedMount,
  type DetachedMountOptions,
  type IdmapSupport,
  openDetachedMount,
  openIdmappedMount,
  probeIdmapSupport,
} from './detached.js';
export { fsTypeOf, mountInfoOf } from './errors.js';
export type { PlannedMount } from './prepare.js';
export { formatMountSpec, type IdmapMaps, type MountSpec, parseMountSpec } from './spec.js';
export { type UsernsFdLease, type UsernsFdOptions, usernsFd } from './userns-fd.js';
