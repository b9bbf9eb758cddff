/**
 * ID maps for OCI bundles (runc, crun, podman) and Kubernetes per-pod userns records:
 * `userns oci` and its API.
 *
 *   import { fillOciConfig, checkOciConfig } from 'userns/oci';
 *   await fillOciConfig('bundle/config.json', { allocate: 'size=65536', idmapMounts: ['/data'] });
 *   await checkOciConfig('bundle/config.json');   // throws OciError naming the JSON path
 *
 * The maps are resolved as `userns run` resolves them (modes, podman syntax, the allocation
 * registry), cut at this namespace's own extents (a nested caller), checked as the kernel, the
 * runtime and newuidmap would, and written atomically into the file, which keeps every other
 * byte (see json-edit.ts).
 *
 * @module userns/oci
 */
import { createHash } from 'node:crypto';
import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  fstatSync,
  lstatSync,
  openSync,
  realpathSync,
  statSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import * as alloc from '../alloc/index.js';
import { OciError, SymlinkRefusedError, UsernsError } from '../errors/index.js';
import type { Extent } from '../idmap/extent.js';
import { byKind } from '../idmap/formats/kinds.js';
import { parseKubernetesUserns } from '../idmap/formats/kubernetes.js';
import { IdMap } from '../idmap/idmap.js';
import type { MapSpec } from '../maps/modes.js';
import { modeContext, needsSubordinate, parseModeSpec, resolveMapSpec } from '../maps/modes.js';
import { planMaps } from '../maps/write-maps.js';
import type { SpawnOptions } from '../spawn/spawn.js';
import { writeFileAtomic } from '../state/atomic.js';
import { validateName } from '../state/names.js';
import { CONFIG_INPUT_LIMIT, readFdBounded } from '../system/bounded-read.js';
import { openDirectoryNoFollow } from '../system/no-follow.js';
import { pageSize } from '../system/proc.js';
import { isPrivileged, ownMap } from '../system/self.js';
import { getSubordinateRanges } from '../system/subordinate.js';
import { currentUser } from '../system/users.js';
import {
  type BundleFormat,
  type CheckEnvironment,
  type CheckReport,
  checkConfigText,
  fillConfigText,
  newKubernetesRecord,
  refuseKubernetesIdmapMounts,
} from './config.js';
import { hostChecks } from './host-checks.js';

/** Options of {@link checkOciConfig} and {@link fillOciConfig}. */
export interface OciOptions {
  /** The file's format (default: detected; required to create a Kubernetes record). */
  format?: BundleFormat;
  /** Cut the maps at this namespace's extents (default true), as `userns run` does. */
  noSplit?: boolean;
}

/**
 * Options of {@link fillOciConfig}: where the maps come from (a mode, maps, a Kubernetes record, an
 * allocation) and which mounts to idmap.
 */
export interface OciFillOptions extends OciOptions {
  /** A mode ('auto' by default, 'self', 'keep-id', 'identity') or 'auto:size=N,…' (= allocate). */
  userns?: SpawnOptions['userns'] | `auto:${string}`;
  /** podman syntax, a mode, or an IdMap; outside IDs = IDs of the namespace the runtime runs in. */
  uidMap?: MapSpec;
  /** Default: the uid map's spec. */
  gidMap?: MapSpec;
  /** The maps of a Kubernetes userns record (a file path). */
  fromKubernetes?: string;
  /**
   * Take the maps from the allocation registry: true, or podman's auto options
   * `size=N[,policy=P][,uidmapping=M][,gidmapping=M]`. The allocation is named `allocationName`
   * (default: the bundle's directory name and a hash of its real path, `userdata-0123456789ab`,
   * so each bundle has its own); an allocation of that name is reused, so filling a bundle again
   * keeps its IDs. It stays until `userns alloc release NAME`.
   */
  allocate?: boolean | string;
  allocationName?: string;
  /** State root of the allocation registry. */
  stateRoot?: string;
  /** Mount destinations to idmap with the container's maps (mount uidMappings/gidMappings + `idmap`). */
  idmapMounts?: readonly string[];
  /** Validate only: compute and check the result, write nothing, allocate nothing. */
  check?: boolean;
  /** Unprivileged modes without subordinate IDs: map only the caller (with a warning). */
  fallback?: 'none' | 'single';
}

/** What {@link fillOciConfig} wrote (or, with `check`, would write). */
export interface OciResult {
  /** The file (a bundle directory resolves to its config.json). */
  file: string;
  format: BundleFormat;
  /** The file was (or, with check, would be) changed. */
  changed: boolean;
  written: boolean;
  /** What was filled, e.g. "linux.uidMappings", "user namespace added", "idmapped mount /data". */
  changes: string[];
  report: CheckReport;
  /** The allocation the maps came from, and whether it existed already. */
  allocation: { id: string; name: string; size: number; reused: boolean } | null;
  warnings: string[];
}

/**
 * A bundle directory means its config.json. A link to a directory gives the path through the
 * link, which is then refused when it is opened (OCI_BUNDLE_SYMLINK).
 */
export function configPath(path: string): string {
  try {
    const st = lstatSync(path);
    if (st.isDirectory() || (st.isSymbolicLink() && statSync(path).isDirectory()))
      return join(path, 'config.json');
  } catch {
    // a file that does not exist yet (Kubernetes record) or an error reported on reading
  }
  return path;
}

/**
 * Opens the directory of `file` without following a link that others could have placed, the
 * directory itself never being one (see system/no-follow.ts), and runs `use` with the path of
 * `file` through that descriptor (`/proc/self/fd/N/NAME`): whatever is swapped meanwhile, the
 * read and the write stay in that directory.
 */
async function inPinnedDirectory<T>(file: string, use: (at: string) => T | Promise<T>): Promise<T> {
  let dirFd: number;
  try {
    dirFd = openDirectoryNoFollow(dirname(file));
  } catch (error) {
    if (error instanceof SymlinkRefusedError) {
      throw new OciError(
        'OCI_BUNDLE_SYMLINK',
        `${error.message}; refusing to read or write ${file} through it`,
        {
          hint: 'give the real bundle directory (the path the link points to)',
          data: { file, ...error.data },
        },
      );
    }
    throw readError(file, error);
  }
  try {
    return await use(join(`/proc/self/fd/${dirFd}`, basename(file)));
  } finally {
    closeSync(dirFd);
  }
}

function readError(file: string, error: unknown): OciError {
  const code = (error as NodeJS.ErrnoException).code ?? 'EIO';
  return new OciError('OCI_READ_FAILED', `cannot read ${file}: ${(error as Error).message}`, {
    hint:
      code === 'ENOENT'
        ? "give BUNDLE/config.json (make one with 'runc spec --rootless'), or --format kubernetes to create a Kubernetes record"
        : 'check the path and its permissions',
    data: { file, errno: code },
  });
}

function symlinkError(file: string): OciError {
  return new OciError(
    'OCI_CONFIG_SYMLINK',
    `${file} is a symbolic link: userns reads and replaces only the file itself, never a link's target`,
    {
      hint: 'give the real file (the path the link points to), or replace the link with a copy',
      data: { file },
    },
  );
}

/** The file to fill: its text, and the mode and owner its replacement keeps. */
interface ConfigFile {
  text: string;
  mode: number;
  uid: number;
  gid: number;
}

/**
 * Reads the file to fill, never through a symbolic link (refused: OCI_CONFIG_SYMLINK). Its mode
 * and owner come from the descriptor read, not from a path that could be swapped meanwhile.
 */
function readConfigFile(file: string, at = file): ConfigFile {
  let fd: number;
  try {
    if (lstatSync(at).isSymbolicLink()) throw symlinkError(file);
    fd = openSync(at, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (error) {
    if (error instanceof OciError) throw error;
    // O_NOFOLLOW: a link put there after the lstat.
    if ((error as NodeJS.ErrnoException).code === 'ELOOP') throw symlinkError(file);
    throw readError(file, error);
  }
  try {
    const st = fstatSync(fd);
    const text = readFdBounded(fd, CONFIG_INPUT_LIMIT, file).toString('utf8');
    return { text, mode: st.mode, uid: st.uid, gid: st.gid };
  } catch (error) {
    if (error instanceof UsernsError) throw error;
    throw readError(file, error);
  } finally {
    closeSync(fd);
  }
}

/** The environment maps are checked in: this namespace, this caller. */
async function checkEnvironment(privileged: boolean): Promise<CheckEnvironment> {
  const env: CheckEnvironment = {
    parent: { uid: ownMap('uid'), gid: ownMap('gid') },
    privileged,
    pageSize: pageSize(),
    uid: process.geteuid?.() ?? 0,
    gid: process.getegid?.() ?? 0,
  };
  if (!privileged) {
    const user = await currentUser();
    const [u, g] = await Promise.all([getSubordinateRanges(user, 'uid'), getSubordinateRanges(user, 'gid')]);
    env.subuid = u.ranges;
    env.subgid = g.ranges;
  }
  return env;
}

/**
 * Checks a config.json (or a bundle directory's) or a Kubernetes userns record as it is, in this
 * namespace and for this caller (see checkConfigText): the report lists the maps and warnings.
 * Throws OciError (OCI_READ_FAILED, OCI_INVALID with the JSON path and line, OCI_MAP_REJECTED,
 * RANGE_NOT_ALLOWED, …) for what the runtime or the kernel would refuse.
 */
export async function checkOciConfig(path: string, options: OciOptions = {}): Promise<CheckReport> {
  const file = configPath(path);
  const privileged = isPrivileged();
  const env = await checkEnvironment(privileged);
  return inPinnedDirectory(file, (at) => {
    const text = readConfigFile(file, at).text;
    const report = checkConfigText(text, file, env, options.format);
    // What the runtime would refuse on this machine (idmapped mounts, reaching root.path).
    report.warnings.push(
      ...hostChecks(text, file, dirname(at), privileged, { strict: true, format: options.format }),
    );
    return report;
  });
}

interface Resolved {
  uid: IdMap;
  gid: IdMap;
  allocation: OciResult['allocation'];
  release: () => Promise<void>;
  warnings: string[];
}

/**
 * The allocation's name: the explicit one, or `<bundle directory name>-<12 hex digits of the
 * SHA-256 of the directory's real path>`, so a bundle filled again gets its own allocation back
 * and another bundle with the same directory name (podman's …/<id>/userdata) never shares it.
 */
function allocationNameFor(file: string, explicit: string | undefined): { name: string; base: string } {
  if (explicit !== undefined) return { name: explicit, base: explicit };
  let dir = resolve(dirname(file));
  try {
    dir = realpathSync(dir);
  } catch {
    // a directory that does not exist: reported on writing
  }
  const hash = createHash('sha256').update(dir).digest('hex').slice(0, 12);
  // At most 128 characters in all (src/state/names.ts): the directory name is cut, the hash kept.
  const base = basename(dir).slice(0, 128 - 1 - hash.length);
  return { name: `${base}-${hash}`, base };
}

async function fromRegistry(file: string, options: OciFillOptions, autoOptions: string): Promise<Resolved> {
  const request = alloc.parseAutoUserns(autoOptions === '' ? 'auto' : `auto:${autoOptions}`)!;
  const { name, base } = allocationNameFor(file, options.allocationName);
  try {
    validateName(base, 'allocation name');
    validateName(name, 'allocation name');
  } catch (error) {
    throw new OciError('OCI_INVALID_NAME', `${(error as Error).message} (the bundle's directory name)`, {
      hint: 'name the allocation yourself: --name NAME',
      data: { file, name },
    });
  }
  const location = options.stateRoot === undefined ? {} : { root: options.stateRoot };
  const toResult = (
    a: { id: string; name: string; size: number; uidMap: Extent[]; gidMap: Extent[] },
    reused: boolean,
  ) => ({
    uid: new IdMap(a.uidMap),
    gid: new IdMap(a.gidMap),
    allocation: { id: a.id, name: a.name, size: a.size, reused },
    warnings: [],
  });
  try {
    const a = await alloc.allocate({ ...request, ...location, name });
    // A fleet registry returns the existing allocation of this name (reused): not ours to release.
    if (a.reused) return { ...toResult(a, true), release: async () => {} };
    return {
      ...toResult(a, false),
      release: async () => void (await alloc.releaseAllocation(a.id, location)),
    };
  } catch (error) {
    if (!(error instanceof UsernsError) || error.code !== alloc.ALLOC_NAME_TAKEN) throw error;
  }
  const existing = (await alloc.listAllocations(location)).find((a) => a.name === name);
  if (existing === undefined)
    throw new OciError('OCI_ALLOCATION_GONE', `allocation ${name} vanished while it was looked up`);
  if (request.size !== undefined && request.size !== existing.size) {
    throw new OciError(
      'OCI_ALLOCATION_MISMATCH',
      `allocation ${name} (${existing.id}) exists with ${existing.size} IDs, not the ${request.size} asked for`,
      {
        hint: `release it first (userns alloc release ${name}), or ask for its size`,
        data: { name, id: existing.id, size: existing.size },
      },
    );
  }
  return { ...toResult(existing, true), release: async () => {} };
}

async function resolveMaps(file: string, options: OciFillOptions, privileged: boolean): Promise<Resolved> {
  const mode = options.userns;
  if (options.allocate !== undefined && options.allocate !== false) {
    return fromRegistry(file, options, options.allocate === true ? '' : options.allocate);
  }
  if (mode?.startsWith('auto:')) return fromRegistry(file, options, mode.slice(5));
  if (options.fromKubernetes !== undefined) {
    const source = options.fromKubernetes;
    const text = await inPinnedDirectory(source, (at) => readConfigFile(source, at).text);
    const { uid, gid } = byKind(parseKubernetesUserns(text, { source }));
    return {
      uid: new IdMap(uid),
      gid: new IdMap(gid),
      allocation: null,
      release: async () => {},
      warnings: [],
    };
  }
  const uidSpec = options.uidMap;
  const gidSpec = options.gidMap ?? options.uidMap;
  const ctx = await modeContext({ subordinate: needsSubordinate([uidSpec, gidSpec], privileged) });
  ctx.privileged = privileged;
  ctx.fallback = options.fallback ?? 'none';
  ctx.warnings = [];
  const parsed = mode === undefined ? undefined : parseModeSpec(mode);
  const fallbackMode = parsed?.mode ?? 'auto';
  const [uid, gid] = await Promise.all([
    resolveMapSpec(uidSpec, 'uid', ctx, fallbackMode, parsed?.keepId),
    resolveMapSpec(gidSpec, 'gid', ctx, fallbackMode, parsed?.keepId),
  ]);
  return { uid, gid, allocation: null, release: async () => {}, warnings: ctx.warnings };
}

/**
 * Fills the ID maps of an OCI config.json (or a Kubernetes userns record) and writes it
 * atomically, keeping every other field, its order and the file's layout. Throws (writing
 * nothing, and releasing an allocation it made) when the maps or the resulting file would be
 * refused: OciError, MapError NOT_MAPPED_IN_PARENT, NewIdmapError, AllocError, ParseError.
 */
export async function fillOciConfig(path: string, options: OciFillOptions = {}): Promise<OciResult> {
  const file = configPath(path);
  // The bundle directory is pinned for the whole fill: the read and the atomic replace go
  // through /proc/self/fd/N, so a directory swapped for a link in between cannot redirect them.
  return inPinnedDirectory(file, (at) => fillPinned(file, at, options));
}

async function fillPinned(file: string, at: string, options: OciFillOptions): Promise<OciResult> {
  const privileged = isPrivileged();
  let source: ConfigFile | undefined;
  try {
    source = readConfigFile(file, at);
  } catch (error) {
    // A Kubernetes record may be created.
    if (!(options.format === 'kubernetes' && (error as UsernsError).data?.errno === 'ENOENT')) throw error;
  }
  const original = source?.text;
  if (options.check && (options.allocate || options.userns?.startsWith('auto:'))) {
    throw new OciError('OCI_CHECK_ALLOCATE', '--check validates only; it does not allocate', {
      hint: 'allocate without --check, or check the file as it is',
    });
  }
  const resolved = await resolveMaps(file, options, privileged);
  try {
    // Split and validated as `userns run` would write them (throws MAP_WRITE_FAILED, NOT_MAPPED_IN_PARENT).
    const plan = await planMaps(resolved.uid, resolved.gid, {
      privileged,
      ...(options.noSplit ? { noSplit: true } : {}),
    });
    const maps = {
      uid: plan.uidMap.extents,
      gid: plan.gidMap.extents,
      idmapMounts: options.idmapMounts ?? [],
    };
    let text: string;
    let changes: string[];
    if (original === undefined) {
      refuseKubernetesIdmapMounts(maps, file);
      text = newKubernetesRecord(maps);
      changes = ['uidMappings', 'gidMappings', 'created'];
    } else {
      ({ text, changes } = fillConfigText(original, maps, file, options.format));
    }
    const report = checkConfigText(text, file, await checkEnvironment(privileged), options.format);
    // A check refuses what the runtime would refuse here; a fill writes the maps and warns.
    report.warnings.push(
      ...hostChecks(text, file, dirname(at), privileged, {
        strict: options.check === true,
        format: options.format,
      }),
    );
    const changed = text !== original;
    let written = false;
    if (changed && !options.check) {
      writeConfig(file, text, source, at);
      written = true;
    }
    return {
      file,
      format: report.format,
      changed,
      written,
      changes,
      report,
      allocation: resolved.allocation,
      warnings: [...resolved.warnings, ...report.warnings],
    };
  } catch (error) {
    await resolved.release().catch(() => {});
    throw error;
  }
}

/**
 * Atomic replace (temp + fsync + rename) of the file itself (never a link's target: refused on
 * reading), keeping the original's permission bits (never setuid, setgid or sticky) and owner.
 * Both are set on the temp file by its descriptor before the rename; nothing is done by path
 * after it, so a file swapped in meanwhile is never chmodded or chowned.
 */
function writeConfig(file: string, text: string, source: ConfigFile | undefined, at = file): void {
  const mode = source === undefined ? 0o644 : source.mode & 0o777;
  try {
    writeFileAtomic(at, text, mode, {
      beforeRename: (fd) => {
        if (source !== undefined) {
          const st = fstatSync(fd);
          if (st.uid !== source.uid || st.gid !== source.gid) {
            try {
              fchownSync(fd, source.uid, source.gid);
            } catch {
              // not permitted (unprivileged): the file is ours now, as any editor would leave it
            }
          }
        }
        fchmodSync(fd, mode); // the umask; after the chown, which may clear mode bits
      },
    });
  } catch (error) {
    throw new OciError('OCI_WRITE_FAILED', `cannot write ${file}: ${(error as Error).message}`, {
      hint: 'the directory must be writable (the file is replaced by a rename)',
      data: { file, errno: (error as NodeJS.ErrnoException).code ?? null },
    });
  }
}

export { OciError } from '../errors/index.js';
export {
  type BundleFormat,
  type CheckEnvironment,
  type CheckReport,
  type ConfigView,
  checkConfigText,
  detectFormat,
  type FillMaps,
  type FillResult,
  fillConfigText,
  type MappingList,
  type MountView,
  newKubernetesRecord,
  readConfigView,
} from './config.js';
