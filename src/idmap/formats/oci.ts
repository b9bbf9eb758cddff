import type { Extent, KindedExtent } from '../extent.js';
import {
  type JsonArray,
  JsonDoc,
  type JsonNode,
  type JsonObject,
  member,
  parseJsonTree,
} from './json-tree.js';
import { byKind, kinded } from './kinds.js';
import { assertWritable } from './numbers.js';

/**
 * OCI runtime-spec ID mappings (config.json `linux.uidMappings` / `linux.gidMappings`, also
 * `mounts[].uidMappings` for idmapped mounts): `{"containerID": C, "hostID": H, "size": N}`,
 * all uint32 in the spec's Go types.
 *
 * Accepted documents:
 * - a bare array of mappings → entries of kind 'both' (the array does not say which kind);
 * - an object with `uidMappings` and/or `gidMappings` (the `linux` section) → 'uid' / 'gid';
 * - a whole config.json (an object with a `linux` object) → its `linux` section's mappings.
 * Unknown members are ignored (as Go's encoding/json does); the three fields are required.
 * Kubernetes' userns file looks similar but spells the fields hostId/containerId/length: that
 * is kubernetes.ts, and a mapping spelled that way gets a hint pointing there.
 */

export interface OciParseOptions {
  source?: string;
}

const HINT = 'OCI mappings look like {"containerID": 0, "hostID": 100000, "size": 65536}';

function isKubernetesSpelling(obj: JsonObject): boolean {
  return (
    member(obj, 'hostId') !== undefined ||
    member(obj, 'containerId') !== undefined ||
    member(obj, 'length') !== undefined
  );
}

function mapping(doc: JsonDoc, node: JsonNode, what: string): Extent {
  const obj = doc.object(node, what, HINT);
  const hint = isKubernetesSpelling(obj)
    ? 'this is the Kubernetes spelling (hostId/containerId/length): read it as kubernetes'
    : HINT;
  const inside = doc.u32(doc.field(obj, 'containerID', what, hint), `${what} containerID`);
  const outside = doc.u32(doc.field(obj, 'hostID', what, hint), `${what} hostID`);
  const count = doc.u32(doc.field(obj, 'size', what, hint), `${what} size`);
  return { inside, outside, count };
}

function mappings(doc: JsonDoc, node: JsonArray, name: string): Extent[] {
  return node.items.map((item, i) => mapping(doc, item, `${name}[${i}]`));
}

/** The object holding uidMappings/gidMappings: the document itself or its `linux` member. */
function mappingHolder(doc: JsonDoc, root: JsonObject): { holder: JsonObject; prefix: string } {
  if (member(root, 'uidMappings') !== undefined || member(root, 'gidMappings') !== undefined)
    return { holder: root, prefix: '' };
  const linux = member(root, 'linux');
  if (linux !== undefined) return { holder: doc.object(linux, 'linux'), prefix: 'linux.' };
  throw doc.fail(
    'MISSING_FIELD',
    'expected uidMappings/gidMappings, a "linux" section holding them, or an array of mappings',
    root,
    HINT,
  );
}

/**
 * Parses OCI runtime-spec mappings: `[{"containerID", "hostID", "size"}]`, or a config with
 * `linux.uidMappings`/`gidMappings`.
 *
 * @throws ParseError with the line and column of the offending value.
 */
export function parseOciMappings(text: string, options: OciParseOptions = {}): KindedExtent[] {
  const doc = new JsonDoc(text, options.source);
  const root = parseJsonTree(text, options.source);
  if (root.type === 'array') return mappings(doc, root, 'mapping').map((e) => kinded(e, 'both'));
  const { holder, prefix } = mappingHolder(doc, doc.object(root, 'the document', HINT));
  const out: KindedExtent[] = [];
  for (const [key, kind] of [
    ['uidMappings', 'uid'],
    ['gidMappings', 'gid'],
  ] as const) {
    const list = member(holder, key);
    // `null` is what Go writes for an empty slice without omitempty.
    if (list === undefined || list.type === 'null') continue;
    for (const e of mappings(doc, doc.array(list, prefix + key), prefix + key)) out.push(kinded(e, kind)); // (no push(...): large inputs would overflow the call stack)
  }
  return out;
}

function formatList(extents: readonly Extent[], indent: string): string {
  if (extents.length === 0) return '[]';
  const lines = extents.map((e) => {
    assertWritable(e, 'OCI mappings');
    return `${indent}  {"containerID": ${e.inside}, "hostID": ${e.outside}, "size": ${e.count}}`;
  });
  return `[\n${lines.join(',\n')}\n${indent}]`;
}

/** A bare array of OCI mappings, one per line. */
export function formatOciMappings(extents: readonly Extent[]): string {
  return `${formatList(extents, '')}\n`;
}

/**
 * The `linux` section form `{"uidMappings": […], "gidMappings": […]}` ('both' entries go to
 * both lists, in order).
 */
export function formatOciLinux(entries: readonly KindedExtent[]): string {
  const { uid, gid } = byKind(entries);
  return `{\n  "uidMappings": ${formatList(uid, '  ')},\n  "gidMappings": ${formatList(gid, '  ')}\n}\n`;
}
