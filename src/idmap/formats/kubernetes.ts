import type { Extent, KindedExtent } from '../extent.js';
import { JsonDoc, type JsonNode, member, parseJsonTree } from './json-tree.js';
import { byKind, kinded } from './kinds.js';
import { assertWritable } from './numbers.js';

/**
 * Kubernetes' per-pod user-namespace record, as the kubelet persists it at
 * `<kubelet-root>/pods/<podUID>/userns` (KEP-127):
 * `{"uidMappings":[{"hostId":H,"containerId":0,"length":L}],"gidMappings":[…]}`.
 *
 * The kubelet itself insists on exactly one mapping per kind, uid == gid and containerId 0;
 * those are policy checks for the validator, not syntax, so any number of mappings parses here
 * (in written order). Unknown members are ignored, as Go's encoding/json does.
 */

export interface KubernetesParseOptions {
  source?: string;
}

const HINT = 'Kubernetes mappings look like {"hostId": 65536, "containerId": 0, "length": 65536}';

function mapping(doc: JsonDoc, node: JsonNode, what: string): Extent {
  const obj = doc.object(node, what, HINT);
  const oci =
    member(obj, 'hostID') !== undefined ||
    member(obj, 'containerID') !== undefined ||
    member(obj, 'size') !== undefined;
  const hint = oci ? 'this is the OCI spelling (hostID/containerID/size): read it as oci' : HINT;
  const outside = doc.u32(doc.field(obj, 'hostId', what, hint), `${what} hostId`);
  const inside = doc.u32(doc.field(obj, 'containerId', what, hint), `${what} containerId`);
  const count = doc.u32(doc.field(obj, 'length', what, hint), `${what} length`);
  return { inside, outside, count };
}

/**
 * Parses the kubelet's per-pod userns record `{"uidMappings": [{"hostId", "containerId",
 * "length"}], "gidMappings": […]}`.
 *
 * @throws ParseError with the line and column of the offending value.
 */
export function parseKubernetesUserns(text: string, options: KubernetesParseOptions = {}): KindedExtent[] {
  const doc = new JsonDoc(text, options.source);
  const root = doc.object(
    parseJsonTree(text, options.source),
    'the Kubernetes userns record',
    'expected {"uidMappings": […], "gidMappings": […]}',
  );
  if (member(root, 'uidMappings') === undefined && member(root, 'gidMappings') === undefined) {
    throw doc.fail('MISSING_FIELD', 'expected "uidMappings" and "gidMappings"', root, HINT);
  }
  const out: KindedExtent[] = [];
  for (const [key, kind] of [
    ['uidMappings', 'uid'],
    ['gidMappings', 'gid'],
  ] as const) {
    const list = member(root, key);
    if (list === undefined || list.type === 'null') continue;
    doc.array(list, key).items.forEach((item, i) => {
      out.push(kinded(mapping(doc, item, `${key}[${i}]`), kind));
    });
  }
  return out;
}

function formatList(extents: readonly Extent[]): string {
  return `[${extents
    .map((e) => {
      assertWritable(e, 'Kubernetes mappings');
      return `{"hostId":${e.outside},"containerId":${e.inside},"length":${e.count}}`;
    })
    .join(',')}]`;
}

/**
 * Compact JSON exactly as the kubelet writes it (Go's json.Marshal: no spaces, field order
 * hostId, containerId, length). 'both' entries go to both lists.
 */
export function formatKubernetesUserns(entries: readonly KindedExtent[]): string {
  const { uid, gid } = byKind(entries);
  return `{"uidMappings":${formatList(uid)},"gidMappings":${formatList(gid)}}`;
}
