/**
 * ID maps in OCI runtime bundles (config.json) and in the kubelet's per-pod userns records.
 *
 * OCI (runtime-spec): `linux.uidMappings` / `linux.gidMappings` (`[{"containerID", "hostID",
 * "size"}]`), a `{"type": "user"}` entry in `linux.namespaces`, and per mount `uidMappings` /
 * `gidMappings` with the `idmap` option (idmapped mounts, runtime-spec ≥ 1.1).
 * Kubernetes (KEP-127): `{"uidMappings": [{"hostId", "containerId", "length"}], "gidMappings": […]}`.
 *
 * Reading reports every problem with the file, the JSON path and the line and column; checking
 * says what the runtime and the kernel would refuse, and why; filling edits only the mapping
 * fields (json-edit.ts), so every other byte of the file stays as it was.
 */

import { OciError, type OciErrorCode } from '../errors/index.js';
import type { Extent, IdKind } from '../idmap/extent.js';
import { formatTriple } from '../idmap/extent.js';
import {
  type JsonArray,
  type JsonNode,
  type JsonObject,
  lastMember,
  parseJsonTree,
} from '../idmap/formats/json-tree.js';
import { decimalU32, isProblem } from '../idmap/formats/numbers.js';
import { lineColumn } from '../idmap/formats/position.js';
import type { IdMap } from '../idmap/idmap.js';
import { type IdRange, subtractRanges } from '../idmap/ranges.js';
import { validateMap } from '../idmap/validate.js';
import { appendItem, applyEdits, detectStyle, type Edit, setMembers } from './json-edit.js';

/** An OCI runtime config (config.json) or a kubelet per-pod userns record. */
export type BundleFormat = 'oci' | 'kubernetes';

/** A list of mappings read from the document, with where it is. */
export interface MappingList {
  /** JSON path, e.g. `linux.uidMappings` or `mounts[3].gidMappings`. */
  path: string;
  kind: IdKind;
  extents: Extent[];
}

/** A mount of the config as the checks see it: its destination and idmap. */
export interface MountView {
  index: number;
  destination: string | undefined;
  uid: MappingList | undefined;
  gid: MappingList | undefined;
  options: string[];
  /** Its `type` ("bind", "tmpfs", "ext4", …), when given. */
  type?: string | undefined;
  /** Its `source` (a host path for a bind mount; relative = to the bundle directory), when given. */
  source?: string | undefined;
}

/** What a document says about ID mapping. */
export interface ConfigView {
  format: BundleFormat;
  uid: MappingList | undefined;
  gid: MappingList | undefined;
  /** OCI: the user namespace entry of linux.namespaces (path: joins an existing one). */
  userNamespace: { index: number; path: string | null } | undefined;
  mounts: MountView[];
  /** OCI: `root.path`, the container's root filesystem (relative = to the bundle directory). */
  rootPath?: string | undefined;
}

/** Where the IDs of the maps belong, for checking (the namespace the runtime runs in). */
export interface CheckEnvironment {
  /** This namespace's own maps (/proc/self/{uid,gid}_map); omitted = the initial namespace. */
  parent?: { uid: IdMap | readonly Extent[]; gid: IdMap | readonly Extent[] };
  /** The runtime writes maps with CAP_SETUID/CAP_SETGID (root). Default true. */
  privileged?: boolean;
  /** Unprivileged: the caller's IDs and subordinate ranges (what newuidmap/newgidmap allow). */
  uid?: number;
  gid?: number;
  subuid?: readonly IdRange[];
  subgid?: readonly IdRange[];
  /** The kernel's page size (default 4096). */
  pageSize?: number;
}

/** What checking a bundle found: its maps and user namespace, and every problem with where it is. */
export interface CheckReport {
  format: BundleFormat;
  uidMappings: Extent[];
  gidMappings: Extent[];
  /** OCI: none, a new user namespace, or one joined by path. */
  userNamespace: 'none' | 'new' | 'path';
  /** Mounts with mappings (idmapped mounts). */
  idmappedMounts: { destination: string | null; uidMappings: Extent[]; gidMappings: Extent[] }[];
  warnings: string[];
}

// ---------------------------------------------------------------------------------------------
// Reading

const OCI_FIELDS = { inside: 'containerID', outside: 'hostID', count: 'size' } as const;
const K8S_FIELDS = { inside: 'containerId', outside: 'hostId', count: 'length' } as const;

class Reader {
  constructor(
    readonly text: string,
    readonly file: string,
  ) {}

  fail(code: OciErrorCode, path: string, reason: string, node?: JsonNode, hint?: string): OciError {
    const at = node === undefined ? undefined : lineColumn(this.text, node.offset);
    const where = at === undefined ? '' : ` (line ${at.line}, column ${at.column})`;
    return new OciError(code, `${this.file}: ${path}: ${reason}${where}`, {
      ...(hint === undefined ? {} : { hint }),
      data: { file: this.file, path, ...(at === undefined ? {} : at) },
    });
  }

  object(node: JsonNode, path: string): JsonObject {
    if (node.type !== 'object')
      throw this.fail('OCI_INVALID', path, `must be an object, found ${kindOf(node)}`, node);
    return node;
  }

  array(node: JsonNode, path: string): JsonArray {
    if (node.type !== 'array')
      throw this.fail('OCI_INVALID', path, `must be an array, found ${kindOf(node)}`, node);
    return node;
  }

  string(node: JsonNode, path: string): string {
    if (node.type !== 'string')
      throw this.fail('OCI_INVALID', path, `must be a string, found ${kindOf(node)}`, node);
    return node.value;
  }

  u32(node: JsonNode, path: string): number {
    if (node.type !== 'number')
      throw this.fail(
        'OCI_INVALID',
        path,
        `must be a number from 0 to 4294967295, found ${kindOf(node)}`,
        node,
      );
    const value = decimalU32(node.raw, 'the value');
    if (isProblem(value)) throw this.fail('OCI_INVALID', path, value.reason, node);
    return value;
  }

  /** A mapping list; null (Go's empty slice) reads as empty. */
  mappings(node: JsonNode, path: string, kind: IdKind, format: BundleFormat): MappingList {
    if (node.type === 'null') return { path, kind, extents: [] };
    const fields = format === 'oci' ? OCI_FIELDS : K8S_FIELDS;
    const other = format === 'oci' ? K8S_FIELDS : OCI_FIELDS;
    const extents = this.array(node, path).items.map((item, i) => {
      const p = `${path}[${i}]`;
      const obj = this.object(item, p);
      const get = (field: string) => {
        const m = lastMember(obj, field);
        if (m === undefined) {
          const spelled = Object.values(other).some((f) => lastMember(obj, f) !== undefined);
          throw this.fail(
            'OCI_INVALID',
            p,
            `has no "${field}"`,
            obj,
            spelled
              ? format === 'oci'
                ? 'this is the Kubernetes spelling (hostId/containerId/length); OCI uses {"containerID", "hostID", "size"}'
                : 'this is the OCI spelling (containerID/hostID/size); Kubernetes uses {"hostId", "containerId", "length"}'
              : format === 'oci'
                ? 'OCI mappings look like {"containerID": 0, "hostID": 100000, "size": 65536}'
                : 'Kubernetes mappings look like {"hostId": 65536, "containerId": 0, "length": 65536}',
          );
        }
        return this.u32(m.value, `${p}.${field}`);
      };
      return { inside: get(fields.inside), outside: get(fields.outside), count: get(fields.count) };
    });
    return { path, kind, extents };
  }
}

function kindOf(node: JsonNode): string {
  switch (node.type) {
    case 'number':
      return `the number ${node.raw.length > 24 ? `${node.raw.slice(0, 20)}…` : node.raw}`;
    case 'string':
      return `the string ${JSON.stringify(node.value.length > 40 ? `${node.value.slice(0, 37)}...` : node.value)}`;
    case 'boolean':
      return String(node.value);
    case 'null':
      return 'null';
    default:
      return `an ${node.type}`;
  }
}

/** Which kind of document this is (undefined: cannot tell). */
export function detectFormat(root: JsonNode): BundleFormat | undefined {
  if (root.type !== 'object') return undefined;
  const has = (k: string) => lastMember(root, k) !== undefined;
  if (['ociVersion', 'linux', 'process', 'root', 'mounts', 'hostname', 'annotations'].some(has)) return 'oci';
  if (has('uidMappings') || has('gidMappings')) return 'kubernetes';
  return undefined;
}

interface Parsed {
  reader: Reader;
  root: JsonObject;
  view: ConfigView;
  linux: JsonObject | undefined;
  namespaces: JsonArray | undefined;
  mountNodes: JsonObject[];
}

function parse(text: string, file: string, format?: BundleFormat): Parsed {
  const reader = new Reader(text, file);
  const tree = parseJsonTree(text, file);
  const detected = detectFormat(tree);
  const fmt = format ?? detected;
  if (fmt === undefined) {
    throw reader.fail(
      'OCI_UNKNOWN_FORMAT',
      '(document)',
      'is neither an OCI config.json (ociVersion, linux, process, …) nor a Kubernetes userns record (uidMappings, gidMappings)',
      tree,
      'give the format: --format oci or --format kubernetes',
    );
  }
  const root = reader.object(tree, '(document)');
  if (fmt === 'kubernetes') {
    const list = (key: string, kind: IdKind) => {
      const m = lastMember(root, key);
      return m === undefined ? undefined : reader.mappings(m.value, key, kind, 'kubernetes');
    };
    return {
      reader,
      root,
      linux: undefined,
      namespaces: undefined,
      mountNodes: [],
      view: {
        format: fmt,
        uid: list('uidMappings', 'uid'),
        gid: list('gidMappings', 'gid'),
        userNamespace: undefined,
        mounts: [],
      },
    };
  }
  const linuxMember = lastMember(root, 'linux');
  const linux =
    linuxMember === undefined || linuxMember.value.type === 'null'
      ? undefined
      : reader.object(linuxMember.value, 'linux');
  const list = (key: string, kind: IdKind) => {
    const m = linux === undefined ? undefined : lastMember(linux, key);
    return m === undefined ? undefined : reader.mappings(m.value, `linux.${key}`, kind, 'oci');
  };
  let namespaces: JsonArray | undefined;
  let userNamespace: ConfigView['userNamespace'];
  const nsMember = linux === undefined ? undefined : lastMember(linux, 'namespaces');
  if (nsMember !== undefined && nsMember.value.type !== 'null') {
    namespaces = reader.array(nsMember.value, 'linux.namespaces');
    namespaces.items.forEach((item, i) => {
      const obj = reader.object(item, `linux.namespaces[${i}]`);
      const type = lastMember(obj, 'type');
      if (type === undefined)
        throw reader.fail('OCI_INVALID', `linux.namespaces[${i}]`, 'has no "type"', obj);
      if (reader.string(type.value, `linux.namespaces[${i}].type`) !== 'user') return;
      const path = lastMember(obj, 'path');
      const p = path === undefined ? '' : reader.string(path.value, `linux.namespaces[${i}].path`);
      userNamespace = { index: i, path: p === '' ? null : p };
    });
  }
  const mountNodes: JsonObject[] = [];
  const mounts: MountView[] = [];
  const mountsMember = lastMember(root, 'mounts');
  if (mountsMember !== undefined && mountsMember.value.type !== 'null') {
    reader.array(mountsMember.value, 'mounts').items.forEach((item, i) => {
      const p = `mounts[${i}]`;
      const obj = reader.object(item, p);
      mountNodes.push(obj);
      const dest = lastMember(obj, 'destination');
      const opts = lastMember(obj, 'options');
      const optionalString = (key: string) => {
        const m = lastMember(obj, key);
        return m === undefined || m.value.type === 'null' ? undefined : reader.string(m.value, `${p}.${key}`);
      };
      const options =
        opts === undefined || opts.value.type === 'null'
          ? []
          : reader
              .array(opts.value, `${p}.options`)
              .items.map((o, j) => reader.string(o, `${p}.options[${j}]`));
      const mlist = (key: string, kind: IdKind) => {
        const m = lastMember(obj, key);
        return m === undefined ? undefined : reader.mappings(m.value, `${p}.${key}`, kind, 'oci');
      };
      mounts.push({
        index: i,
        destination: dest === undefined ? undefined : reader.string(dest.value, `${p}.destination`),
        uid: mlist('uidMappings', 'uid'),
        gid: mlist('gidMappings', 'gid'),
        options,
        type: optionalString('type'),
        source: optionalString('source'),
      });
    });
  }
  const rootMember = lastMember(root, 'root');
  let rootPath: string | undefined;
  if (rootMember !== undefined && rootMember.value.type !== 'null') {
    const pathMember = lastMember(reader.object(rootMember.value, 'root'), 'path');
    if (pathMember !== undefined) rootPath = reader.string(pathMember.value, 'root.path');
  }
  return {
    reader,
    root,
    linux,
    namespaces,
    mountNodes,
    view: {
      format: 'oci',
      uid: list('uidMappings', 'uid'),
      gid: list('gidMappings', 'gid'),
      userNamespace,
      mounts,
      rootPath,
    },
  };
}

/** Reads the mapping fields of a document (OCI config.json or Kubernetes userns record). */
export function readConfigView(text: string, file = 'config.json', format?: BundleFormat): ConfigView {
  return parse(text, file, format).view;
}

// ---------------------------------------------------------------------------------------------
// Checking

const nonEmpty = (l: MappingList | undefined) => l !== undefined && l.extents.length > 0;

function covered(extents: readonly Extent[], allowed: readonly IdRange[]): boolean {
  return (
    subtractRanges(
      extents.map((e) => ({ start: e.outside, count: e.count })),
      allowed,
    ).length === 0
  );
}

/**
 * Checks the maps of a document as the runtime and the kernel would: every mapping list in the
 * kernel's rules (against the parent maps of `env`), a user namespace for the maps and maps for
 * the user namespace, both kinds, no maps with a user namespace joined by path, mount mappings
 * in pairs; for unprivileged callers, the ranges newuidmap/newgidmap would allow; for
 * Kubernetes records, the kubelet's own rules. Throws OciError naming the file and JSON path.
 */
export function checkConfigText(
  text: string,
  file = 'config.json',
  env: CheckEnvironment = {},
  format?: BundleFormat,
): CheckReport {
  const { reader, view } = parse(text, file, format);
  const warnings: string[] = [];
  const privileged = env.privileged ?? true;

  const checkList = (list: MappingList | undefined, direct: boolean) => {
    if (list === undefined || list.extents.length === 0) return;
    const parent = env.parent?.[list.kind];
    const verdict = validateMap(list.extents, {
      kind: list.kind,
      ...(parent === undefined ? {} : { parent }),
      ...(env.pageSize === undefined ? {} : { pageSize: env.pageSize }),
    });
    if (!verdict.ok) {
      const entry = verdict.line === null ? list.path : `${list.path}[${verdict.line - 1}]`;
      throw new OciError(
        'OCI_MAP_REJECTED',
        `${file}: ${entry}: the kernel would refuse this ${list.kind} map (${verdict.errno}): ${verdict.reason}`,
        {
          hint: /spans \d+ extents/.test(verdict.reason ?? '')
            ? "cut the map at this namespace's extents: fill it with 'userns oci' (it splits), or 'userns map split'"
            : `see /proc/self/${list.kind}_map for the IDs this namespace has`,
          data: {
            file,
            path: entry,
            kind: list.kind,
            errno: verdict.errno,
            line: verdict.line,
            map: list.extents.map((e) => [e.inside, e.outside, e.count]),
          },
        },
      );
    }
    if (privileged || !direct) return;
    // Unprivileged: a runtime maps one own ID directly, anything else through newuidmap, which
    // allows the caller's subordinate ranges and its own single ID.
    const own = list.kind === 'uid' ? env.uid : env.gid;
    const ranges = (list.kind === 'uid' ? env.subuid : env.subgid) ?? [];
    const allowed = list.extents.every((e) => (e.count === 1 && e.outside === own) || covered([e], ranges));
    if (!allowed) {
      const bad = list.extents.find((e) => !((e.count === 1 && e.outside === own) || covered([e], ranges)))!;
      throw new OciError(
        'RANGE_NOT_ALLOWED',
        `${file}: ${list.path}: ${list.kind}s ${bad.outside}-${bad.outside + bad.count - 1} (${formatTriple(bad)}) are not yours to map: new${list.kind}map allows only your own ${list.kind} ${own ?? '?'} and your /etc/sub${list.kind} ranges${ranges.length === 0 ? ' (you have none)' : ` (${ranges.map((r) => `${r.start}-${r.start + r.count - 1}`).join(', ')})`}`,
        {
          hint: "map only your subordinate IDs (e.g. 'userns oci --userns auto'); 'userns doctor' shows them",
          data: { file, path: list.path, kind: list.kind },
        },
      );
    }
  };

  checkList(view.uid, true);
  checkList(view.gid, true);
  for (const m of view.mounts) {
    checkList(m.uid, false);
    checkList(m.gid, false);
  }

  let userNamespace: CheckReport['userNamespace'] = 'none';
  if (view.format === 'kubernetes') {
    const u = view.uid?.extents ?? [];
    const g = view.gid?.extents ?? [];
    const rule = (reason: string) =>
      new OciError('KUBERNETES_RULES', `${file}: ${reason}; the kubelet refuses such a record`, {
        hint: 'a pod record has exactly one mapping per kind, the same for uids and gids, from containerId 0',
        data: { file },
      });
    if (u.length !== 1 || g.length !== 1)
      throw rule(`uidMappings has ${u.length} and gidMappings ${g.length} entries (exactly 1 each)`);
    const [a, b] = [u[0]!, g[0]!];
    if (a.inside !== b.inside || a.outside !== b.outside || a.count !== b.count)
      throw rule(`the uid mapping ${formatTriple(a)} differs from the gid mapping ${formatTriple(b)}`);
    if (a.inside !== 0) throw rule(`containerId is ${a.inside}, not 0`);
    if (a.outside % 65536 !== 0 || a.count % 65536 !== 0)
      warnings.push(
        `hostId ${a.outside} and length ${a.count} should be multiples of 65536 (the kubelet's idsPerPod)`,
      );
    userNamespace = 'new';
  } else {
    const maps = nonEmpty(view.uid) || nonEmpty(view.gid);
    const ns = view.userNamespace;
    if (ns !== undefined && ns.path !== null) {
      if (maps) {
        throw reader.fail(
          'OCI_USERNS_PATH',
          `linux.namespaces[${ns.index}]`,
          `joins the user namespace ${ns.path}, whose maps are already written, but linux.uidMappings/gidMappings are set too (runc refuses both)`,
          undefined,
          'remove the path to create a new user namespace, or remove the mappings',
        );
      }
      userNamespace = 'path';
    } else if (ns !== undefined) {
      for (const [list, key] of [
        [view.uid, 'uidMappings'],
        [view.gid, 'gidMappings'],
      ] as const) {
        if (!nonEmpty(list)) {
          throw reader.fail(
            'OCI_MISSING_MAPS',
            `linux.${key}`,
            `is ${list === undefined ? 'missing' : 'empty'}, but linux.namespaces creates a user namespace (the runtime refuses a user namespace without maps)`,
            undefined,
            'fill the maps: userns oci --userns auto BUNDLE/config.json',
          );
        }
      }
      userNamespace = 'new';
    } else if (maps) {
      throw reader.fail(
        'OCI_NO_USER_NAMESPACE',
        'linux.namespaces',
        'has no user namespace, but linux.uidMappings/gidMappings are set (the runtime refuses maps without one)',
        undefined,
        'add {"type": "user"} to linux.namespaces (userns oci does)',
      );
    }
    for (const m of view.mounts) {
      if ((m.uid === undefined) !== (m.gid === undefined) || nonEmpty(m.uid) !== nonEmpty(m.gid)) {
        const missing = nonEmpty(m.uid) ? 'gidMappings' : 'uidMappings';
        throw reader.fail(
          'OCI_MOUNT_MAPS',
          `mounts[${m.index}]`,
          `(${m.destination ?? 'no destination'}) has ${missing === 'gidMappings' ? 'uidMappings' : 'gidMappings'} without ${missing}; an idmapped mount needs both`,
          undefined,
          `userns oci --idmap-mount ${m.destination ?? 'DEST'} fills both`,
        );
      }
      if (nonEmpty(m.uid) || nonEmpty(m.gid)) checkIdmapIsBind(reader, m, warnings);
      if (nonEmpty(m.uid) && !m.options.includes('idmap') && !m.options.includes('ridmap')) {
        warnings.push(
          `mounts[${m.index}] (${m.destination ?? 'no destination'}) has mappings but no "idmap" option (crun requires it)`,
        );
      }
    }
  }
  return {
    format: view.format,
    uidMappings: view.uid?.extents ?? [],
    gidMappings: view.gid?.extents ?? [],
    userNamespace,
    idmappedMounts: view.mounts
      .filter((m) => nonEmpty(m.uid))
      .map((m) => ({
        destination: m.destination ?? null,
        uidMappings: m.uid!.extents,
        gidMappings: m.gid?.extents ?? [],
      })),
    warnings,
  };
}

/**
 * An idmapped mount must be a bind mount (docs/oci-runtime-rules.md): runc takes a mount for a
 * bind mount only when its options hold "bind" or "rbind" (its type is ignored) and refuses
 * uidMappings/gidMappings on any other; crun also takes type "bind" alone for one. Neither:
 * OCI_IDMAP_NOT_BIND. Type "bind" without the option: a warning (crun runs it, runc refuses it).
 */
function checkIdmapIsBind(reader: Reader, m: MountView, warnings: string[]): void {
  const bindOption = m.options.includes('bind') || m.options.includes('rbind');
  if (bindOption) return;
  const where = `mounts[${m.index}]`;
  const dest = m.destination ?? 'no destination';
  if (m.type === 'bind') {
    warnings.push(
      `${where} (${dest}) has uidMappings/gidMappings and type "bind" but no "bind" or "rbind" option: crun takes it for a bind mount, runc does not and refuses it ("id-mapped mounts are only supported for bind-mounts"); add "rbind" to its options`,
    );
    return;
  }
  throw reader.fail(
    'OCI_IDMAP_NOT_BIND',
    where,
    `(${dest}, type ${m.type === undefined ? '(none)' : JSON.stringify(m.type)}${m.source === undefined ? '' : `, source ${m.source}`}) has uidMappings/gidMappings but is not a bind mount: runc idmaps only bind mounts ("id-mapped mounts are only supported for bind-mounts") and refuses the bundle`,
    undefined,
    'idmap a bind mount of a directory instead (type "bind", options ["rbind", "idmap"]), or remove the uidMappings and gidMappings of this mount',
  );
}

// ---------------------------------------------------------------------------------------------
// Filling

/** The maps to write into a config: uid and gid extents (host = outside). */
export interface FillMaps {
  uid: readonly Extent[];
  gid: readonly Extent[];
  /** Destinations of mounts to idmap with the same maps (every mount with that destination). */
  idmapMounts?: readonly string[];
}

/** The filled config text and what changed. */
export interface FillResult {
  text: string;
  format: BundleFormat;
  /** What changed, for messages: e.g. "linux.uidMappings", "user namespace added". */
  changes: string[];
}

const ociList = (extents: readonly Extent[]) =>
  extents.map((e) => ({ containerID: e.inside, hostID: e.outside, size: e.count }));
const k8sList = (extents: readonly Extent[]) =>
  extents.map((e) => ({ hostId: e.outside, containerId: e.inside, length: e.count }));

function sameDestination(a: string, b: string): boolean {
  const norm = (p: string) => (p.length > 1 ? p.replace(/\/+$/, '') : p).replace(/\/{2,}/g, '/');
  return norm(a) === norm(b);
}

/** A Kubernetes per-pod userns record has no mounts: --idmap-mount cannot apply to it. */
export function refuseKubernetesIdmapMounts(maps: Pick<FillMaps, 'idmapMounts'>, file: string): void {
  if ((maps.idmapMounts ?? []).length === 0) return;
  throw new OciError('OCI_MOUNT_NOT_FOUND', `${file}: a Kubernetes userns record has no mounts to idmap`, {
    hint: '--idmap-mount is for OCI config.json files',
    data: { file },
  });
}

/**
 * Writes `maps` into a document's mapping fields, changing nothing else: OCI linux.uidMappings
 * and gidMappings (replaced or added), a user namespace in linux.namespaces (added when
 * missing), and for each `idmapMounts` destination the mount's uidMappings, gidMappings and
 * `idmap` option; Kubernetes uidMappings and gidMappings. Pure: nothing is checked here beyond
 * the document's structure (checkConfigText checks the result).
 */
export function fillConfigText(
  text: string,
  maps: FillMaps,
  file = 'config.json',
  format?: BundleFormat,
): FillResult {
  const p = parse(text, file, format);
  const style = detectStyle(text, p.root);
  const edits: Edit[] = [];
  const changes: string[] = [];
  if (p.view.format === 'kubernetes') {
    edits.push(
      ...setMembers(
        text,
        p.root,
        [
          ['uidMappings', k8sList(maps.uid)],
          ['gidMappings', k8sList(maps.gid)],
        ],
        style,
      ),
    );
    refuseKubernetesIdmapMounts(maps, file);
    changes.push('uidMappings', 'gidMappings');
    return { text: applyEditsOrFail(text, edits, file), format: 'kubernetes', changes };
  }
  const ns = p.view.userNamespace;
  if (ns !== undefined && ns.path !== null) {
    throw p.reader.fail(
      'OCI_USERNS_PATH',
      `linux.namespaces[${ns.index}]`,
      `joins the existing user namespace ${ns.path}: its maps cannot be set here`,
      undefined,
      'remove its "path" to create a new user namespace with these maps',
    );
  }
  const userEntry = { type: 'user' };
  if (p.linux === undefined) {
    const linux = { uidMappings: ociList(maps.uid), gidMappings: ociList(maps.gid), namespaces: [userEntry] };
    edits.push(...setMembers(text, p.root, [['linux', linux]], style));
    changes.push('linux.uidMappings', 'linux.gidMappings', 'user namespace added');
  } else {
    const entries: [string, unknown][] = [
      ['uidMappings', ociList(maps.uid)],
      ['gidMappings', ociList(maps.gid)],
    ];
    changes.push('linux.uidMappings', 'linux.gidMappings');
    if (p.namespaces === undefined) {
      entries.push(['namespaces', [userEntry]]);
      changes.push('user namespace added');
    } else if (ns === undefined) {
      edits.push(appendItem(text, p.namespaces, userEntry, style));
      changes.push('user namespace added');
    }
    edits.push(...setMembers(text, p.linux, entries, style));
  }
  // Destinations are matched as paths (`/data` = `/data/`), so two of them may name one mount:
  // each mount is edited once, or its members and `idmap` would be written twice.
  const idmapped = new Set<number>();
  for (const dest of new Set(maps.idmapMounts ?? [])) {
    const matches = p.view.mounts.filter(
      (m) => m.destination !== undefined && sameDestination(m.destination, dest),
    );
    if (matches.length === 0) {
      const known = p.view.mounts.map((m) => m.destination).filter((d) => d !== undefined);
      throw new OciError('OCI_MOUNT_NOT_FOUND', `${file}: no mount has the destination ${dest}`, {
        hint: known.length === 0 ? 'the config has no mounts' : `mount destinations: ${known.join(', ')}`,
        data: { file, destination: dest, destinations: known },
      });
    }
    for (const m of matches) {
      if (idmapped.has(m.index)) continue;
      idmapped.add(m.index);
      const node = p.mountNodes[m.index]!;
      const entries: [string, unknown][] = [
        ['uidMappings', ociList(maps.uid)],
        ['gidMappings', ociList(maps.gid)],
      ];
      if (!m.options.includes('idmap') && !m.options.includes('ridmap')) {
        const opts = lastMember(node, 'options');
        if (opts === undefined || opts.value.type === 'null') entries.push(['options', ['idmap']]);
        else edits.push(appendItem(text, opts.value as JsonArray, 'idmap', style));
      }
      edits.push(...setMembers(text, node, entries, style));
      changes.push(`idmapped mount ${m.destination}`);
    }
  }
  return { text: applyEditsOrFail(text, edits, file), format: 'oci', changes };
}

/** applyEdits, whose only failure (overlapping edits) is a bug here: reported as an OciError. */
function applyEditsOrFail(text: string, edits: readonly Edit[], file: string): string {
  try {
    return applyEdits(text, edits);
  } catch (error) {
    throw new OciError('OCI_INTERNAL', `${file}: cannot edit the file: ${(error as Error).message}`, {
      hint: 'this is a bug in userns: please report it with the file',
      data: { file },
    });
  }
}

/** A new Kubernetes userns record, compact as the kubelet writes it. */
export function newKubernetesRecord(maps: FillMaps): string {
  return JSON.stringify({ uidMappings: k8sList(maps.uid), gidMappings: k8sList(maps.gid) });
}
