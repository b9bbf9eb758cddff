/** Every error class of userns and the union of their codes. */
export {
  type ErrorDetails,
  MapError,
  ParseError,
  type SourcePosition,
  UsageError,
  UsernsError,
} from './base.js';
export {
  AllocError,
  DOCTOR_HINT,
  InvalidNameError,
  LockTimeoutError,
  MountError,
  NamespaceError,
  NewIdmapError,
  OciError,
  ReexecError,
  ShiftError,
  ShiftPlanError,
  SpawnError,
  StateRootError,
  type StepDetails,
  WalkError,
} from './classes.js';
export type { ErrorCode } from './codes.js';
