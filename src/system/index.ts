/**
 * Reads of the machine (`userns/system`): /proc, mounts, subordinate IDs, users and groups, newuidmap/newgidmap.
 *
 * @module userns/system
 */
export { type MountInfo, mountOf } from './mounts.js';
export {
  type CapFlags,
  capabilityFlags,
  type InspectOptions,
  inspectNewIdmap,
  type NewIdmapInfo,
  type NewIdmapTool,
  nosuidMountOf,
  parseGetcapOutput,
} from './newidmap.js';
export {
  type NamespaceType,
  type ProcessIdentity,
  type ProcPid,
  pageSize,
  readIdMap,
  readNamespaceInode,
  readProcessIdentity,
  readProcessStartTime,
  readSetgroups,
} from './proc.js';
export {
  getSubordinateRanges,
  listAllSubordinateRanges,
  parseGetsubidsOutput,
  parseNsswitchSubid,
  type SubidFile,
  type SubordinateOptions,
  type SubordinateRanges,
} from './subordinate.js';
export {
  currentUser,
  type GroupInfo,
  type LookupOptions,
  lookupGroup,
  lookupUser,
  parseGroupLine,
  parsePasswdLine,
  type UserInfo,
} from './users.js';
