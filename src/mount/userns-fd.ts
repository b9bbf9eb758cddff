/**
 * User-namespace file descriptors for arbitrary maps, the cheap way (as runc does): the helper
 * creates a user namespace and stops, we write its maps, open /proc/PID/ns/user and let the
 * helper exit without running anything. The fd keeps the namespace alive; one per map pair is
 * cached for the life of the process (at most MAX_CACHED, least recently used closed first).
 *
 * The maps are user-namespace maps: inside = ID on disk, outside = ID of this namespace.
 */
import { closeSync, openSync } from 'node:fs';
import { MountError } from '../errors/index.js';
import { parseTriples } from '../idmap/formats/triples.js';
import { IdMap } from '../idmap/idmap.js';
import { planMaps, writeMaps } from '../maps/write-maps.js';
import { launchHelper } from '../native/helper.js';
import { explainMountLaunch } from './errors.js';

const MAX_CACHED = 32;

interface Entry {
  fd: Promise<number>;
  pins: number;
  used: number;
}

const cache = new Map<string, Entry>();
const stats = { created: 0, hits: 0 };
let clock = 0;

/** A leased descriptor of a cached user namespace; call `release()` when done. */
export interface UsernsFdLease {
  /** An fd of this process on the user namespace (O_RDONLY, close-on-exec). */
  fd: number;
  /** `/proc/<our pid>/fd/<fd>`: how the helper opens it. */
  path: string;
  /** Whether it came from the cache. */
  cached: boolean;
  /** Lets the cache close it again (when evicted). Call once. */
  release(): void;
}

/** Options of {@link usernsFd}. */
export interface UsernsFdOptions {
  helperPath?: string;
  /** Override the privilege detection (as SpawnOptions.privileged). */
  privileged?: boolean;
}

async function create(uidMap: IdMap, gidMap: IdMap, options: UsernsFdOptions): Promise<number> {
  for (const [kind, map] of [
    ['uid', uidMap],
    ['gid', gidMap],
  ] as const) {
    if (map.length === 0)
      throw new MountError('IDMAP_MAP_EMPTY', `the ${kind} map of an idmapped mount is empty`, {
        hint: 'give at least one inside:ondisk:count triple for uids and gids',
      });
  }
  // Split and validated as for any namespace we create; the kernel's EINVAL/EPERM explained.
  const plan = await planMaps(
    uidMap,
    gidMap,
    options.privileged === undefined ? {} : { privileged: options.privileged },
  );
  const handle = await launchHelper({
    namespaces: [],
    command: ['true'],
    explain: explainMountLaunch,
    user: null,
    setgroupsCall: false,
    stdio: 'ignore',
    ...(options.helperPath === undefined ? {} : { helperPath: options.helperPath }),
  });
  try {
    await writeMaps(handle.pid, plan);
    const fd = openSync(`/proc/${handle.pid}/ns/user`, 'r');
    stats.created++;
    return fd;
  } finally {
    await handle.abort('userns fd taken');
  }
}

function evict(): void {
  while (cache.size > MAX_CACHED) {
    let oldest: [string, Entry] | undefined;
    for (const item of cache) {
      if (item[1].pins === 0 && (oldest === undefined || item[1].used < oldest[1].used)) oldest = item;
    }
    if (oldest === undefined) return;
    cache.delete(oldest[0]);
    oldest[1].fd.then(closeSync, () => {});
  }
}

/**
 * An fd on a user namespace with exactly these maps (inside = on disk, outside = IDs of this
 * namespace), from the cache or made now. Hold the lease while something opens `path`.
 */
export async function usernsFd(
  uidMap: IdMap | string,
  gidMap: IdMap | string = uidMap,
  options: UsernsFdOptions = {},
): Promise<UsernsFdLease> {
  const uid = typeof uidMap === 'string' ? parseUsernsMap(uidMap) : uidMap;
  const gid = typeof gidMap === 'string' ? parseUsernsMap(gidMap) : gidMap;
  const key = `${uid.toString()}|${gid.toString()}`;
  let entry = cache.get(key);
  const cached = entry !== undefined;
  if (entry === undefined) {
    entry = { fd: create(uid, gid, options), pins: 0, used: 0 };
    cache.set(key, entry);
    // A failed creation is not cached.
    entry.fd.catch(() => {
      if (cache.get(key) === entry) cache.delete(key);
    });
  } else {
    stats.hits++;
  }
  entry.pins++;
  entry.used = ++clock;
  let fd: number;
  try {
    fd = await entry.fd;
  } catch (error) {
    entry.pins--;
    throw error;
  }
  evict();
  let released = false;
  const e = entry;
  return {
    fd,
    path: `/proc/${process.pid}/fd/${fd}`,
    cached,
    release() {
      if (released) return;
      released = true;
      e.pins--;
      evict();
    },
  };
}

function parseUsernsMap(text: string): IdMap {
  return new IdMap(parseTriples(text, { source: 'user namespace map' }));
}

/** Closes every cached fd that is not in use (their user namespaces go away). */
export function clearUsernsFdCache(): void {
  for (const [key, entry] of cache) {
    if (entry.pins > 0) continue;
    cache.delete(key);
    entry.fd.then(closeSync, () => {});
  }
}

/** Cache statistics: namespaces made, cache hits, fds held. */
export function usernsFdCacheStats(): { created: number; hits: number; size: number } {
  return { ...stats, size: cache.size };
}
