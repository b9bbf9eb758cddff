/**
 * Bind mounts, read-only and idmapped, for new namespaces and for callers' own mount trees.
 *
 * @module userns/mount
 */
export {
  clearIdmapProbeCache,
  type DetachedMount,
  type DetachedMountOptions,
  type IdmapSupport,
  openDetachedMount,
  openIdmappedMount,
  probeIdmapSupport,
} from './detached.js';
export { explainMountFailure, fsTypeOf, MountError, type MountInfo, mountInfoOf } from './errors.js';
export { helperMountsFor, mountNamespacePaths, type PlannedMount, planMountMaps } from './prepare.js';
export { formatMountSpec, type IdmapMaps, type MountSpec, parseMountSpec } from './spec.js';
export {
  clearUsernsFdCache,
  type UsernsFdLease,
  type UsernsFdOptions,
  usernsFd,
  usernsFdCacheStats,
} from './userns-fd.js';
