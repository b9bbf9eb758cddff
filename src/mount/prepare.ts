/**
 * From MountSpecs to what the helper does: the `--mount` arguments (known before the namespace's
 * maps are), then the user namespaces for the idmapped ones (known once the maps are planned),
 * which the helper reads on its control fd before it unshares (src/native/protocol.md, "Mounts").
 *
 * Direction (docs/kernel-rules.md, "Idmapped mounts"): a mount idmapped with user namespace U shows on-disk ID
 * d as U's outside ID for inside ID d. For a namespace with map C (inside → IDs of this
 * namespace), `idmap` uses U = C (on-disk d appears inside as d) and `idmap=M` (inside → on
 * disk) uses U = compose(M⁻¹, C) (on-disk M(i) appears inside as i).
 */
import { lstatSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { MountError } from '../errors/index.js';
import { compose } from '../idmap/compose.js';
import type { IdKind } from '../idmap/extent.js';
import { IdMap } from '../idmap/idmap.js';
import type { HelperMount } from '../native/helper.js';
import { formatMountSpec, type MountSpec, toMap } from './spec.js';
import { type UsernsFdLease, type UsernsFdOptions, usernsFd } from './userns-fd.js';

/** A mount as it will be made: absolute paths, and the maps of an idmapped one's user namespace. */
export interface PlannedMount {
  source: string;
  target: string;
  readOnly: boolean;
  recursive: boolean;
  /** The source is a detached mount (an fd), attached as it is. */
  detached: boolean;
  /** The mount's user namespace maps (inside = on disk, outside = IDs of this namespace), or null. */
  userns: { uidMap: IdMap; gidMap: IdMap } | null;
}

function kindOf(path: string): 'directory' | 'file' | undefined {
  try {
    return statSync(path).isDirectory() ? 'directory' : 'file';
  } catch {
    return undefined;
  }
}

/**
 * The helper's mounts, in order (each idmapped one gets the next user-namespace index). Checks
 * what can be checked now: sources and targets exist, directory on directory, file on file.
 */
export function helperMountsFor(specs: readonly MountSpec[]): HelperMount[] {
  let next = 0;
  return specs.map((spec) => {
    const text = formatMountSpec(spec);
    const detached = typeof spec.source !== 'string';
    const source =
      typeof spec.source === 'string' ? spec.source : `/proc/${process.pid}/fd/${spec.source.fd}`;
    if (!spec.target.startsWith('/'))
      throw new MountError('MOUNT_SPEC_INVALID', `--mount ${text}: the target must be an absolute path`);
    if (detached && spec.idmap)
      throw new MountError(
        'IDMAP_ALREADY_IDMAPPED',
        `--mount ${text}: a detached mount keeps the idmap it was made with; it cannot be idmapped again`,
        { hint: 'make the detached mount with the map you want (openIdmappedMount)' },
      );
    const sourceKind = kindOf(source);
    if (sourceKind === undefined) {
      throw detached
        ? new MountError(
            'MOUNT_SOURCE_MISSING',
            `--mount ${text}: fd ${(spec.source as { fd: number }).fd} is not open`,
          )
        : new MountError('MOUNT_SOURCE_MISSING', `mount source ${source} does not exist`, {
            hint: 'create it, or fix the path',
            data: { source },
          });
    }
    // move_mount does not follow a symbolic link in the last component of the target (the
    // kernel says EINVAL): refuse it here, in words, with the path to use instead.
    const targetLink = symlinkTarget(spec.target);
    if (targetLink !== undefined)
      throw new MountError(
        'MOUNT_TARGET_SYMLINK',
        `mount target ${spec.target} is a symbolic link (to ${targetLink}); a mount target cannot be one`,
        {
          hint: `give the real path as the target: ${targetLink}`,
          data: { target: spec.target, realTarget: targetLink },
        },
      );
    const targetKind = kindOf(spec.target);
    if (targetKind === undefined && !safeLstat(spec.target))
      throw new MountError('MOUNT_TARGET_MISSING', `mount target ${spec.target} does not exist`, {
        hint: 'create the directory (or file) first',
        data: { target: spec.target },
      });
    if (targetKind !== undefined && targetKind !== sourceKind)
      throw new MountError(
        'MOUNT_TYPE_MISMATCH',
        `cannot mount ${source} (a ${sourceKind}) on ${spec.target} (a ${targetKind})`,
        { hint: 'mount a directory on a directory, a file on a file', data: { source, target: spec.target } },
      );
    const mount: HelperMount = {
      source,
      target: spec.target,
      ...(spec.readOnly ? { readOnly: true } : {}),
      ...(spec.recursive ? { recursive: true } : {}),
      ...(detached ? { detached: true } : {}),
    };
    if (spec.idmap) mount.userns = next++;
    return mount;
  });
}

/**
 * When `path` is a symbolic link: the path it leads to (fully resolved, or, for a dangling link,
 * its target made absolute). undefined when it is not a link (or does not exist).
 */
function symlinkTarget(path: string): string | undefined {
  try {
    if (!lstatSync(path).isSymbolicLink()) return undefined;
  } catch {
    return undefined;
  }
  try {
    return realpathSync(path);
  } catch {
    try {
      return resolve(dirname(path), readlinkSync(path));
    } catch {
      return '?';
    }
  }
}

function safeLstat(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** compose(M⁻¹, C), refusing IDs of M that C does not map. */
function throughContainer(m: IdMap, c: IdMap, kind: IdKind, spec: string): IdMap {
  const out: { inside: number; outside: number; count: number }[] = [];
  for (const e of m.extents) {
    const pieces = compose(new IdMap([{ inside: e.outside, outside: e.inside, count: e.count }]), c).extents;
    let covered = 0;
    for (const p of pieces) covered += p.count;
    if (covered < e.count) {
      // The first inside ID of this line that the namespace's map leaves out.
      const sorted = [...pieces].sort((a, b) => a.inside - b.inside);
      let disk = e.outside;
      for (const p of sorted) {
        if (p.inside > disk) break;
        disk = Math.max(disk, p.inside + p.count);
      }
      const id = e.inside + (disk - e.outside);
      throw new MountError(
        'IDMAP_ID_NOT_MAPPED',
        `--mount ${spec}: ${kind} ${id} (inside) is not in the namespace's ${kind} map, so no on-disk ${kind} can appear as it`,
        {
          hint: `map ${kind} ${id} in the namespace (--${kind}map), or change the idmap`,
          data: { kind, id, map: c.toJSON() },
        },
      );
    }
    out.push(...pieces);
  }
  return new IdMap(out);
}

/** Each mount with its user namespace's maps, given the namespace's maps in force. */
export function planMountMaps(specs: readonly MountSpec[], uidMap: IdMap, gidMap: IdMap): PlannedMount[] {
  const helper = helperMountsFor(specs);
  return specs.map((spec, i) => {
    const h = helper[i]!;
    let userns: PlannedMount['userns'] = null;
    if (spec.idmap === true) {
      userns = { uidMap, gidMap };
    } else if (spec.idmap) {
      const text = formatMountSpec(spec);
      const u = toMap(spec.idmap.uidMap, 'uid');
      const g =
        spec.idmap.gidMap === undefined ? toMap(spec.idmap.uidMap, 'gid') : toMap(spec.idmap.gidMap, 'gid');
      if (u.length === 0 || g.length === 0)
        throw new MountError(
          'IDMAP_MAP_EMPTY',
          `--mount ${text}: the idmap has no ${u.length === 0 ? 'uid' : 'gid'} lines`,
        );
      userns = {
        uidMap: throughContainer(u, uidMap, 'uid', text),
        gidMap: throughContainer(g, gidMap, 'gid', text),
      };
    }
    return {
      source: h.source,
      target: h.target,
      readOnly: h.readOnly === true,
      recursive: h.recursive === true,
      detached: h.detached === true,
      userns,
    };
  });
}

/**
 * The user-namespace paths for the helper's "userns" line (one per idmapped mount, in order),
 * from the cache or made now. `release` once the helper has opened them (after "ready").
 */
export async function mountNamespacePaths(
  planned: readonly PlannedMount[],
  options: UsernsFdOptions = {},
): Promise<{
  /** `/proc/<pid>/fd/<fd>` of each idmapped mount's user namespace, in order. */
  paths: string[];
  /** Gives the leases back to the cache (call once the helper has opened them). */
  release: () => void;
}> {
  if (planned.every((m) => m.userns === null)) return { paths: [], release: () => {} };
  const leases: UsernsFdLease[] = [];
  const release = () => {
    for (const l of leases) l.release();
  };
  try {
    for (const m of planned) {
      if (m.userns !== null) leases.push(await usernsFd(m.userns.uidMap, m.userns.gidMap, options));
    }
  } catch (error) {
    release();
    throw error;
  }
  return { paths: leases.map((l) => l.path), release };
}
