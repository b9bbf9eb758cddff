/**
 * The pure ID-map core: model, algebra, validation and formats. No I/O.
 *
 * @module userns/idmap
 */
export * from './compose.js';
export * from './extent.js';
export * from './formats/detect.js';
export * from './formats/incus.js';
export {
  FORMAT_NAMES,
  FORMATS,
  type FormatContext,
  type FormatName,
  type MapFormat,
} from './formats/index.js';
export * from './formats/json.js';
export * from './formats/kernel.js';
export * from './formats/kubernetes.js';
export * from './formats/lxc.js';
export * from './formats/newuidmap.js';
export * from './formats/oci.js';
export * from './formats/podman.js';
export * from './formats/subid.js';
export * from './formats/triples.js';
export * from './formats/unshare.js';
export * from './idmap.js';
export * from './normalize.js';
export * from './permission.js';
export * from './punch.js';
export * from './ranges.js';
export * from './split.js';
export * from './validate.js';
