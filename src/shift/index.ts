/**
 * Directory trees and ID maps: shift a tree's ownership, check which IDs a map cannot represent.
 *
 * @module userns/shift
 */
export {
  ACL_UNDEFINED_ID,
  type AclEntry,
  AclFormatError,
  AclTag,
  decodeAcl,
  encodeAcl,
  shiftAcl,
} from './acl-xattr.js';
export {
  CapabilityFormatError,
  decodeCapability,
  encodeCapability,
  type FileCapability,
  shiftCapability,
} from './capability-xattr.js';
export {
  type FitOptions,
  type FitResult,
  type FitSource,
  fitTree,
  smallestFit,
  type UnfitId,
} from './fit.js';
export {
  describeUnmapped,
  type KindMaps,
  type ShiftChange,
  ShiftError,
  type ShiftIssue,
  type ShiftOptions,
  type ShiftProgress,
  type ShiftResult,
  shiftIncomplete,
  shiftTree,
  type UnmappedId,
} from './shift.js';
export { protectiveMap, ShiftPlanError, shiftTranslation, viewTranslation } from './translation.js';
export { defaultWorkers, type UnmappedPolicy } from './tree-walk.js';
