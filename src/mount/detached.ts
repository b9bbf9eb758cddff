/**
 * Detached (idmapped) mounts for callers that build their own mount trees, and the probe that
 * tells whether a filesystem supports idmapped mounts.
 *
 * Node cannot call open_tree/mount_setattr/move_mount, nor receive a descriptor from another
 * process, so the helper makes the detached mount (its mount mode) and keeps it open; this
 * process opens it again through /proc/<helper>/fd/<n> (an O_PATH descriptor on the same mount).
 * The helper must live while the mount is detached (closing its descriptor dissolves a detached
 * mount): it stays until close(), or until this process exits (it dies with its parent). Pass
 * `fd` to a process that attaches it (move_mount), e.g. spawn()'s `mounts: [{ source: { fd } }]`.
 */
import { spawn as spawnChild } from 'node:child_process';
import { closeSync, openSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Duplex, Writable } from 'node:stream';
import { MountError, SpawnError } from '../errors/index.js';
import { IdMap } from '../idmap/idmap.js';
import { type HelperMount, helperArgs, helperPath, parseFailure } from '../native/helper.js';
import { O_PATH } from '../system/open-flags.js';
import { explainMountLaunch, fsTypeOf } from './errors.js';
import { type IdmapMaps, toMap } from './spec.js';
import { type UsernsFdLease, usernsFd } from './userns-fd.js';

/** How to make a detached mount: read-only, recursive, idmapped. */
export interface DetachedMountOptions {
  /**
   * Idmap it: inside = IDs as seen through the mount (IDs of this namespace), outside = IDs on
   * disk; e.g. `{ uidMap: '0:1000:1' }` shows files owned by 1000 as owned by 0.
   */
  idmap?: IdmapMaps;
  readOnly?: boolean;
  /** Submounts too (rbind); idmapping then needs every one of them to support it. */
  recursive?: boolean;
  helperPath?: string;
  privileged?: boolean;
}

/** A detached (idmapped) mount made by {@link openIdmappedMount} or {@link openDetachedMount}. */
export interface DetachedMount {
  /** An O_PATH descriptor of this process on the detached mount (inheritable by children via stdio). */
  fd: number;
  /** /proc/<pid>/fd/<fd>. */
  path: string;
  source: string;
  idmapped: boolean;
  readOnly: boolean;
  /** PID of the helper that keeps the mount detached. */
  holderPid: number;
  /** Closes the descriptor and lets the helper go (the mount dissolves unless it was attached). */
  close(): Promise<void>;
}

/**
 * A detached copy of the mount at `source` (bind, or rbind with `recursive`), made read-only
 * and/or idmapped. Throws MountError with the kernel's refusal in words (IDMAP_UNSUPPORTED_FS,
 * IDMAP_NOT_PRIVILEGED, IDMAP_ALREADY_IDMAPPED, IDMAP_KERNEL_TOO_OLD, MOUNT_SOURCE_MISSING, …).
 */
export async function openDetachedMount(
  source: string,
  options: DetachedMountOptions = {},
): Promise<DetachedMount> {
  const path = resolve(source);
  try {
    statSync(path);
  } catch {
    throw new MountError('MOUNT_SOURCE_MISSING', `mount source ${path} does not exist`, {
      data: { source: path },
    });
  }
  let lease: UsernsFdLease | undefined;
  if (options.idmap !== undefined) {
    const u = toMap(options.idmap.uidMap, 'uid');
    const g =
      options.idmap.gidMap === undefined
        ? toMap(options.idmap.uidMap, 'gid')
        : toMap(options.idmap.gidMap, 'gid');
    if (u.length === 0 || g.length === 0)
      throw new MountError(
        'IDMAP_MAP_EMPTY',
        `the ${u.length === 0 ? 'uid' : 'gid'} map of the idmapped mount of ${path} is empty`,
        {
          hint: 'give at least one inside:ondisk:count triple',
        },
      );
    lease = await usernsFd(u.invert(), g.invert(), {
      ...(options.helperPath === undefined ? {} : { helperPath: options.helperPath }),
      ...(options.privileged === undefined ? {} : { privileged: options.privileged }),
    });
  }
  try {
    return await hold(path, options, lease);
  } finally {
    lease?.release();
  }
}

/** openDetachedMount with an idmap (inside = IDs seen through the mount, outside = IDs on disk). */
export function openIdmappedMount(
  source: string,
  maps: IdmapMaps | IdMap | string,
  options: Omit<DetachedMountOptions, 'idmap'> = {},
): Promise<DetachedMount> {
  const idmap = typeof maps === 'string' || maps instanceof IdMap ? { uidMap: maps } : maps;
  return openDetachedMount(source, { ...options, idmap });
}

function hold(
  source: string,
  options: DetachedMountOptions,
  lease: UsernsFdLease | undefined,
): Promise<DetachedMount> {
  const mount: HelperMount = {
    source,
    target: '',
    ...(options.readOnly ? { readOnly: true } : {}),
    ...(options.recursive ? { recursive: true } : {}),
    ...(lease === undefined ? {} : { userns: 0 }),
  };
  const child = spawnChild(helperPath(options.helperPath), helperArgs({ mode: 'mount', mounts: [mount] }), {
    stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'],
  });
  const report = child.stdio[3] as Duplex;
  const control = child.stdio[4] as Writable;
  control.on('error', () => {});
  report.on('error', () => {});
  if (lease !== undefined) control.write(`userns ${lease.path}\n`);
  // 'exit', or 'error' when it could not be started (then no 'exit' follows).
  const exited = new Promise<void>((res) => {
    if (child.exitCode !== null || child.signalCode !== null) res();
    else {
      child.once('exit', () => res());
      child.once('error', () => res());
    }
  });
  return new Promise<DetachedMount>((resolvePromise, reject) => {
    let buffered = '';
    let helperFd: number | undefined;
    let settled = false;
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      report.destroy();
      control.destroy();
      void exited.then(() => reject(error));
    };
    // Not started (EACCES, ENOENT, …): there is nothing to wait for, reject at once.
    child.on('error', (error) => {
      if (settled) return;
      settled = true;
      report.destroy();
      control.destroy();
      reject(
        new SpawnError('HELPER_DIED', `cannot start the userns helper: ${error.message}`, { cause: error }),
      );
    });
    report.setEncoding('utf8');
    report.on('data', (chunk: string) => {
      buffered += chunk;
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        const m = /^mount 0 (\d+)$/.exec(line);
        if (m !== null) helperFd = Number(m[1]);
        else if (line.startsWith('error ')) {
          const failure = parseFailure(line);
          fail(
            failure === undefined
              ? new SpawnError(
                  'HELPER_PROTOCOL',
                  `unexpected report from the helper: ${JSON.stringify(line)}`,
                )
              : explainMountLaunch(failure, { mounts: [mount] }),
          );
        } else if (line === 'held' && helperFd !== undefined && !settled) {
          let fd: number;
          try {
            fd = openSync(`/proc/${child.pid}/fd/${helperFd}`, O_PATH);
          } catch (error) {
            fail(
              new MountError('MOUNT_FAILED', `cannot open the detached mount: ${(error as Error).message}`),
            );
            return;
          }
          settled = true;
          child.unref();
          (report as Duplex & { unref?: () => void }).unref?.();
          (control as Writable & { unref?: () => void }).unref?.();
          let closed = false;
          resolvePromise({
            fd,
            path: `/proc/${process.pid}/fd/${fd}`,
            source,
            idmapped: lease !== undefined,
            readOnly: options.readOnly === true,
            holderPid: child.pid ?? -1,
            async close() {
              if (closed) return;
              closed = true;
              closeSync(fd);
              child.ref(); // wait for it, even when nothing else keeps this process alive
              report.destroy();
              control.destroy();
              await exited;
            },
          });
        }
      }
    });
    report.on('end', () =>
      fail(new SpawnError('HELPER_DIED', 'the userns helper exited before making the detached mount')),
    );
  });
}

/** What {@link probeIdmapSupport} found out about a filesystem. */
export interface IdmapSupport {
  /** Whether idmapped mounts of this filesystem can be made (here, by this process). */
  supported: boolean;
  fsType: string;
  /** Device number of the filesystem (the cache key). */
  dev: number;
  /** Why not (the MountError's code and message), when not supported. */
  code?: string;
  reason?: string;
  /** The answer came from the cache. */
  cached: boolean;
}

const probeCache = new Map<number, Promise<Omit<IdmapSupport, 'cached'>>>();

/**
 * Whether the filesystem of `path` supports idmapped mounts: tries one on a detached clone and
 * caches the answer per filesystem (device number). Throws (uncached) when the answer is not
 * about the filesystem: not privileged over it, already idmapped, path missing.
 */
export async function probeIdmapSupport(
  path: string,
  options: Pick<DetachedMountOptions, 'helperPath' | 'privileged'> = {},
): Promise<IdmapSupport> {
  const full = resolve(path);
  let dev: number;
  try {
    dev = statSync(full).dev;
  } catch {
    throw new MountError('MOUNT_SOURCE_MISSING', `${full} does not exist`, { data: { source: full } });
  }
  const cached = probeCache.get(dev);
  if (cached !== undefined) return { ...(await cached), cached: true };
  const fsType = fsTypeOf(full);
  const euid = process.geteuid?.() ?? 0;
  const egid = process.getegid?.() ?? 0;
  const attempt = (async () => {
    try {
      const m = await openDetachedMount(full, {
        ...options,
        idmap: {
          uidMap: new IdMap([{ inside: euid, outside: euid, count: 1 }]),
          gidMap: new IdMap([{ inside: egid, outside: egid, count: 1 }]),
        },
      });
      await m.close();
      return { supported: true, fsType, dev };
    } catch (error) {
      if (
        error instanceof MountError &&
        (error.code === 'IDMAP_UNSUPPORTED_FS' || error.code === 'IDMAP_KERNEL_TOO_OLD')
      )
        return { supported: false, fsType, dev, code: error.code, reason: error.message };
      throw error;
    }
  })();
  probeCache.set(dev, attempt);
  attempt.catch(() => probeCache.delete(dev));
  return { ...(await attempt), cached: false };
}

/** Forgets every probe answer. */
export function clearIdmapProbeCache(): void {
  probeCache.clear();
}
