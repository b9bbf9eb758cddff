/**
 * Directory trees and ID maps (`userns/shift`): shift a tree's ownership, list the IDs a map cannot represent.
 *
 * @module userns/shift
 */
export { ShiftError, ShiftPlanError } from '../errors/index.js';
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
  type ShiftIssue,
  type ShiftOptions,
  type ShiftProgress,
  type ShiftResult,
  shiftIncomplete,
  shiftTree,
  type UnmappedId,
} from './shift.js';
export { protectiveMap, shiftTranslation, viewTranslation } from './translation.js';
export { defaultWorkers, type UnmappedPolicy } from './tree-walk.js';
