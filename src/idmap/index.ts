/**
 * The pure ID-map core: model, algebra, validation and formats. No I/O.
 *
 * @module userns/idmap
 */
export { compose } from './compose.js';
export { type AllowedHostIds, type Coverage, hostIdsCoveredBy, type Uncovered } from './coverage.js';
export {
  type Extent,
  type ExtentKind,
  extent,
  formatRange,
  formatTriple,
  type IdKind,
  INVALID_ID,
  insideLast,
  isU32,
  type KindedExtent,
  MAX_EXTENTS,
  MAX_MAPPABLE_ID,
  outsideLast,
  sameExtent,
} from './extent.js';
export { detectFormat } from './formats/detect.js';
export { formatIncusRawIdmap, type IncusParseOptions, parseIncusRawIdmap } from './formats/incus.js';
export {
  FORMAT_ALIASES,
  FORMAT_NAMES,
  FORMATS,
  type FormatContext,
  type FormatName,
  formatByName,
  type MapFormat,
} from './formats/index.js';
export { formatUsernsJson, parseUsernsJson, type UsernsJsonParseOptions } from './formats/json.js';
export {
  formatKernelMap,
  type KernelLine,
  type KernelLineProblem,
  type KernelParseOptions,
  kernelLines,
  parseKernelLine,
  parseKernelMap,
} from './formats/kernel.js';
export {
  formatKubernetesUserns,
  type KubernetesParseOptions,
  parseKubernetesUserns,
} from './formats/kubernetes.js';
export { formatLxcIdmap, type LxcFormatOptions, type LxcParseOptions, parseLxcIdmap } from './formats/lxc.js';
export {
  formatNewidmapArgs,
  type NewidmapArgs,
  type NewidmapParseOptions,
  type NewidmapTarget,
  parseNewidmapArgs,
  parseNewidmapCommand,
} from './formats/newuidmap.js';
export { formatOciLinux, formatOciMappings, type OciParseOptions, parseOciMappings } from './formats/oci.js';
export { formatPodmanMap, type PodmanParseOptions, parsePodmanMap } from './formats/podman.js';
export {
  formatSubid,
  isValidSubidOwner,
  parseSubid,
  type SubidEntry,
  type SubidParseOptions,
  type SubidParseResult,
  subidOwnerMatches,
} from './formats/subid.js';
export { formatTriples, parseTriples, type TriplesOptions } from './formats/triples.js';
export {
  formatUnshareArgs,
  formatUnshareValue,
  isUnshareKeyword,
  parseUnshareMap,
  type UnshareEntry,
  type UnshareKeyword,
  type UnshareKeywordEntry,
  type UnshareParseOptions,
  type UnshareSingleEntry,
} from './formats/unshare.js';
export { extentsOf, IdMap, type MapLike } from './idmap.js';
export { mapsEqual, normalize } from './normalize.js';
export {
  type PermissionVerdict,
  PRIVILEGED_WRITER,
  predictPermission,
  type WriterSituation,
} from './permission.js';
export { punchHole } from './punch.js';
export {
  freeRanges,
  type IdRange,
  insideRanges,
  intersectRanges,
  normalizeRanges,
  outsideRanges,
  range,
  rangesSize,
  subtractRanges,
  takeFromPool,
  unionRanges,
} from './ranges.js';
export { splitAcrossParent } from './split.js';
export { type Errno, type ValidateOptions, type Verdict, validateMap, validateMapText } from './validate.js';
