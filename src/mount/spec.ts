/**
 * `--mount SRC:DST[:OPTIONS]` and the MountSpec of the API.
 *
 * OPTIONS, comma-separated: `ro` | `rw` (default), `bind` (default) | `rbind` (submounts too),
 * `idmap` (the namespace's own maps: every ID on disk appears inside as itself) and
 * `idmap=MAP` with MAP = `[u|g]INSIDE:ONDISK[:COUNT]` triples (more triples follow after commas):
 * on-disk ID ONDISK appears inside as INSIDE, e.g. `idmap=0:1000` shows files owned by 1000 as
 * root's. A triple with `u` or `g` is for uids or gids only; without, for both.
 */
import { resolve } from 'node:path';
import { MountError } from '../errors/index.js';
import { type Extent, extent, type IdKind, MAX_MAPPABLE_ID } from '../idmap/extent.js';
import { IdMap } from '../idmap/idmap.js';

/** Maps of an idmapped mount, as `inside:ondisk:count` (inside = IDs as seen through the mount). */
export interface IdmapMaps {
  /** An IdMap (inside = ID seen, outside = ID on disk) or `inside:ondisk[:count],…` text. */
  uidMap?: IdMap | string;
  /** Default: the uid map. */
  gidMap?: IdMap | string;
}

/**
 * A bind mount made in the new mount namespace before the command starts (`--mount
 * SRC:DST[:OPTIONS]`).
 */
export interface MountSpec {
  /** A path, or a detached mount (openIdmappedMount().fd), which then keeps its own idmap. */
  source: string | { fd: number };
  /** Where it appears inside (resolved against the current directory). */
  target: string;
  readOnly?: boolean;
  /** rbind: submounts of the source too. */
  recursive?: boolean;
  /**
   * true: the namespace's own maps, so that on-disk ID N appears inside as N; or explicit maps
   * (inside = the namespace's IDs, outside = on-disk IDs). Default: no idmap.
   */
  idmap?: boolean | IdmapMaps;
}

const HINT =
  "write SRC:DST[:OPTIONS] with OPTIONS from ro, rw, bind, rbind, idmap, idmap=INSIDE:ONDISK[:COUNT]; see 'userns run --help'";

function invalid(text: string, reason: string): MountError {
  return new MountError('MOUNT_SPEC_INVALID', `--mount ${text}: ${reason}`, {
    hint: HINT,
    data: { spec: text },
  });
}

const TRIPLE = /^([ug]?)(\d+):(\d+)(?::(\d+))?$/;

/** `[u|g]INSIDE:ONDISK[:COUNT]` → the extent and which kinds it is for. */
function parseIdmapTriple(text: string, spec: string): { kind: '' | 'u' | 'g'; extent: Extent } {
  const m = TRIPLE.exec(text);
  if (m === null) throw invalid(spec, `'${text}' is not a map triple [u|g]INSIDE:ONDISK[:COUNT]`);
  const [inside, ondisk, count] = [Number(m[2]), Number(m[3]), m[4] === undefined ? 1 : Number(m[4])];
  if (count < 1 || inside + count - 1 > MAX_MAPPABLE_ID || ondisk + count - 1 > MAX_MAPPABLE_ID)
    throw invalid(spec, `'${text}': IDs must be within 0…${MAX_MAPPABLE_ID} and the count at least 1`);
  return { kind: m[1] as '' | 'u' | 'g', extent: extent(inside, ondisk, count) };
}

/** Parses one `--mount` value. Relative paths are resolved against `cwd`. */
export function parseMountSpec(text: string, cwd = process.cwd()): MountSpec {
  const first = text.indexOf(':');
  if (first <= 0) throw invalid(text, 'expected SRC:DST');
  const second = text.indexOf(':', first + 1);
  const src = text.slice(0, first);
  const dst = second < 0 ? text.slice(first + 1) : text.slice(first + 1, second);
  if (dst === '') throw invalid(text, 'the target DST is empty');
  const spec: MountSpec = { source: resolve(cwd, src), target: resolve(cwd, dst) };
  if (second < 0) return spec;
  const words = text.slice(second + 1).split(',');
  let uid: Extent[] | undefined;
  let gid: Extent[] | undefined;
  let inMap = false;
  const seen = new Set<string>();
  const once = (name: string) => {
    if (seen.has(name)) throw invalid(text, `'${name}' conflicts with an earlier option`);
    seen.add(name);
  };
  const addTriple = (word: string) => {
    const t = parseIdmapTriple(word, text);
    if (t.kind !== 'g') uid = [...(uid ?? []), t.extent];
    if (t.kind !== 'u') gid = [...(gid ?? []), t.extent];
  };
  for (const word of words) {
    if (inMap && TRIPLE.test(word)) {
      addTriple(word);
      continue;
    }
    inMap = false;
    if (word === 'ro' || word === 'rw') {
      once('ro/rw');
      spec.readOnly = word === 'ro';
    } else if (word === 'bind' || word === 'rbind') {
      once('bind/rbind');
      spec.recursive = word === 'rbind';
    } else if (word === 'idmap') {
      once('idmap');
      spec.idmap = true;
    } else if (word.startsWith('idmap=')) {
      once('idmap');
      inMap = true;
      addTriple(word.slice(6));
    } else {
      throw invalid(text, word === '' ? 'empty option' : `unknown option '${word}'`);
    }
  }
  if (seen.has('idmap') && spec.idmap !== true) {
    if (uid === undefined || gid === undefined)
      throw new MountError(
        'IDMAP_MAP_EMPTY',
        `--mount ${text}: the idmap has no ${uid === undefined ? 'uid' : 'gid'} lines`,
        { hint: 'give triples without u/g (both kinds), or both u… and g… triples', data: { spec: text } },
      );
    spec.idmap = { uidMap: new IdMap(uid), gidMap: new IdMap(gid) };
  }
  return spec;
}

/** The text form of a spec (for state files and messages); a detached source is `fd:N`. */
export function formatMountSpec(spec: MountSpec): string {
  const src = typeof spec.source === 'string' ? spec.source : `fd:${spec.source.fd}`;
  const options: string[] = [];
  if (spec.readOnly) options.push('ro');
  if (spec.recursive) options.push('rbind');
  if (spec.idmap === true) options.push('idmap');
  else if (spec.idmap) {
    const u = toMap(spec.idmap.uidMap, 'uid');
    const g = toMap(spec.idmap.gidMap ?? spec.idmap.uidMap, 'gid');
    const triples =
      u.toString() === g.toString()
        ? u.extents.map((e) => `${e.inside}:${e.outside}:${e.count}`)
        : [
            ...u.extents.map((e) => `u${e.inside}:${e.outside}:${e.count}`),
            ...g.extents.map((e) => `g${e.inside}:${e.outside}:${e.count}`),
          ];
    options.push(`idmap=${triples.join(',')}`);
  }
  return `${src}:${spec.target}${options.length === 0 ? '' : `:${options.join(',')}`}`;
}

/** An IdmapMaps entry as an IdMap (inside = seen, outside = on disk). */
export function toMap(map: IdMap | string | undefined, kind: IdKind): IdMap {
  if (map === undefined) return new IdMap([]);
  if (map instanceof IdMap) return map;
  const extents: Extent[] = [];
  for (const word of map.split(',').filter((w) => w !== '')) {
    const t = parseIdmapTriple(word, map);
    if (t.kind === '' || t.kind === (kind === 'uid' ? 'u' : 'g')) extents.push(t.extent);
  }
  return new IdMap(extents);
}
