/**
 * `userns doctor` as an API: find and explain what blocks user namespaces here.
 *
 * @module userns/doctor
 */

export { freeRange, type LoginDefs } from '../system/subordinate.js';
export { GROUPS, runDoctor } from './doctor.js';
export { environmentChecks } from './environment.js';
export { kernelChecks } from './kernel.js';
export { newidmapChecks } from './newidmap.js';
export { type ProbeOptions, type ProbeStep, probeAsUser, probeHere, stepOf } from './probe.js';
export { subidChecks } from './subids.js';
export type {
  Check,
  CheckGroup,
  CheckStatus,
  DoctorContext,
  DoctorOptions,
  DoctorReport,
  Evidence,
} from './types.js';
