/**
 * Running commands in new user namespaces: the public API (`userns/spawn`).
 *
 * @module userns/spawn
 */
export { DOCTOR_HINT, NewIdmapError, SpawnError } from '../errors/index.js';
export {
  isMode,
  type KeepIdOptions,
  type MapSpec,
  MODES,
  type ModeContext,
  mapForMode,
  modeContext,
  parseModeSpec,
  resolveMapSpec,
  type UsernsMode,
  type UsernsModeSpec,
} from '../maps/modes.js';
export {
  type AppliedMaps,
  type MapPlan,
  type MapWriteOptions,
  newidmapArgv,
  planMaps,
  singleMap,
  writeMaps,
} from '../maps/write-maps.js';
export { NAMESPACES, type Namespace } from '../native/helper.js';
export {
  dryRunSpawn,
  planSpawn,
  type RunResult,
  run,
  type SpawnOptions,
  type SpawnPlan,
  type SpawnResult,
  type StartedNamespaces,
  spawn,
  type UsernsChildProcess,
} from './spawn.js';
