/**
 * Running commands in new user namespaces: the public API.
 *
 * @module userns/spawn
 */
export {
  type HelperHandle,
  type HelperOptions,
  launchHelper,
  NAMESPACES,
  type Namespace,
} from '../native/helper.js';
export { DOCTOR_HINT, NewIdmapError, SpawnError } from './errors.js';
export {
  isMode,
  type MapSpec,
  MODES,
  type ModeContext,
  mapForMode,
  modeContext,
  resolveMapSpec,
  type UsernsMode,
} from './modes.js';
export {
  dryRunSpawn,
  planSpawn,
  type RunResult,
  run,
  type SpawnOptions,
  type SpawnPlan,
  type SpawnResult,
  spawn,
  type UsernsChildProcess,
} from './spawn.js';
export {
  type AppliedMaps,
  type MapPlan,
  type MapWriteOptions,
  newidmapArgv,
  planMaps,
  singleMap,
  writeMaps,
} from './write-maps.js';
