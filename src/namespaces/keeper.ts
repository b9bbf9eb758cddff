/**
 * The keeper of a named namespace: the helper in hold mode, detached, PID 1 of the new PID
 * namespace when there is one (src/native/protocol.md "Hold mode"). Starting it with the maps
 * written exactly as `userns run` would write them, the lock that serialises create and rm, and
 * the cleanup of an entry whose creator died.
 */
import { lstatSync, readdirSync, rmdirSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { releaseAllocation } from '../alloc/index.js';
import { NamespaceError } from '../errors/index.js';
import type { IdRange } from '../idmap/ranges.js';
import { writeMaps } from '../maps/write-maps.js';
import { helperMountsFor, mountNamespacePaths } from '../mount/prepare.js';
import { type HelperHandle, launchHelper, NAMESPACES } from '../native/helper.js';
import { unbindFiles } from '../native/nsfs.js';
import { explainSpawnFailure } from '../spawn/explain.js';
import { planArgv, type SpawnOptions } from '../spawn/spawn.js';
import { acquireFileLock, type FileLock } from '../state/lock.js';
import {
  bootId,
  procPidNamespace,
  readIdMapSync,
  readSetgroupsSync,
  runningStartTime,
} from '../system/proc.js';
import { isPrivileged } from '../system/self.js';
import { getSubordinateRanges } from '../system/subordinate.js';
import { currentUser } from '../system/users.js';
import { handlesDisabled } from './handles.js';
import { PROC_NS, stopKeeper } from './liveness.js';
import { isMissing, type Paths, removeEntry } from './paths.js';
import type { Examined, NamespaceState, StoredOptions } from './state.js';

/**
 * What startKeeper needs: the spawn options of the maps (explicit: an `auto:…` mode already
 * resolved) and of the namespaces, what state.json records as the options (the caller's), and
 * the hold: `keeper` (a detached keeper process) or `mount` (the helper holds the namespaces
 * only until commit(); the caller bind-mounts them meanwhile: handle.pid is their process).
 */
export type KeeperOptions = SpawnOptions & { stored: StoredOptions; hold?: 'keeper' | 'mount' };

/** The caller's subordinate ranges now (recorded at creation; inspect compares them later). */
export async function currentSubids(): Promise<{ uid: IdRange[]; gid: IdRange[] }> {
  const user = await currentUser();
  const [u, g] = await Promise.all([getSubordinateRanges(user, 'uid'), getSubordinateRanges(user, 'gid')]);
  return { uid: u.ranges.map((r) => ({ ...r })), gid: g.ranges.map((r) => ({ ...r })) };
}

/**
 * Starts a keeper holding new namespaces with the maps of `options` (explicit: an `auto:…` mode
 * was resolved by the caller), writes the maps, and returns the state to record. The keeper
 * waits for handle.commit() and exits by itself when the report socket closes before.
 */
export async function startKeeper(
  name: string,
  options: KeeperOptions,
): Promise<{ handle: HelperHandle; state: NamespaceState }> {
  const privileged = options.privileged ?? isPrivileged();
  const { stored: _stored, ...mapping } = options;
  const spawnOptions: SpawnOptions = { ...mapping, privileged, namespaces: options.namespaces ?? [] };
  const subids = privileged ? Promise.resolve(null) : currentSubids();
  subids.catch(() => {});
  // The maps (split, validated, method) and the namespaces, exactly as `run` would make them.
  const plan = await planArgv([], spawnOptions);
  // --mount: attached by the helper before it unshares, so the keeper's mount namespace has them.
  const mounts = options.mounts?.length ? helperMountsFor(options.mounts) : undefined;
  const forMounts =
    mounts === undefined
      ? undefined
      : await mountNamespacePaths(plan.mounts, {
          privileged,
          ...(options.helperPath === undefined ? {} : { helperPath: options.helperPath }),
        });
  const hold = options.hold ?? 'keeper';
  let handle: HelperHandle;
  try {
    handle = await launchHelper({
      mode: 'hold',
      ...(hold === 'mount' ? { noKeeper: true } : {}),
      ...(handlesDisabled() ? { noHandles: true } : {}),
      namespaces: plan.namespaces,
      command: [],
      explain: explainSpawnFailure,
      reportNamespaces: true,
      mountProc: plan.mountProc,
      user: null,
      setgroupsCall: false,
      stdio: 'ignore',
      ...(mounts === undefined ? {} : { mounts, mountNamespaces: forMounts!.paths }),
      ...(options.helperPath === undefined ? {} : { helperPath: options.helperPath }),
    });
  } finally {
    forMounts?.release();
  }
  let keeperPid: number | undefined;
  try {
    const applied = await writeMaps(handle.pid, plan, spawnOptions);
    // The maps as the kernel applied them, read while the helper surely holds the namespaces.
    const uidMap = readIdMapSync(handle.pid, 'uid').toJSON();
    const gidMap = readIdMapSync(handle.pid, 'gid').toJSON();
    const setgroups = readSetgroupsSync(handle.pid);
    await handle.go();
    const common = {
      version: 2 as const,
      name,
      hold,
      namespaces: handle.namespaceIds
        .map((n) => ({ type: n.type, inode: n.inode, handle: n.handle }))
        .sort((x, y) => NAMESPACES.indexOf(x.type) - NAMESPACES.indexOf(y.type)),
      creatorUserNamespace: statSync('/proc/self/ns/user').ino,
      uidMap,
      gidMap,
      setgroups,
      mountProc: plan.mountProc,
      user: { uid: plan.user, gid: plan.group },
      createdAt: new Date().toISOString(),
      creator: { uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 },
      options: options.stored,
      subids: await subids.catch(() => null),
      warnings: applied.warnings,
    };
    const boot = bootId();
    if (hold === 'mount') {
      // No process will remain: the PID namespace of /proc does not matter.
      const state: NamespaceState = { ...common };
      if (boot !== undefined) state.bootId = boot;
      return { handle, state };
    }
    const line = handle.reports.find((l) => l.startsWith('keeper '));
    keeperPid = line === undefined ? undefined : Number(line.slice(7));
    if (keeperPid === undefined || !Number.isInteger(keeperPid)) {
      throw new NamespaceError('NS_KEEPER_FAILED', 'the helper did not report its keeper process', {
        data: { reports: handle.reports },
      });
    }
    const start = runningStartTime(keeperPid);
    if (start === undefined) {
      throw new NamespaceError('NS_KEEPER_FAILED', `the keeper (PID ${keeperPid}) exited at once`);
    }
    // The keeper must hold exactly the namespaces the helper created.
    for (const ns of handle.namespaceIds) {
      const inode = statSync(`/proc/${keeperPid}/ns/${PROC_NS[ns.type]}`).ino;
      if (inode !== ns.inode) {
        throw new NamespaceError(
          'NS_KEEPER_FAILED',
          `the keeper's ${ns.type} namespace is ${inode}, the helper created ${ns.inode}`,
        );
      }
    }
    const state: NamespaceState = { ...common, keeperPid, keeperStartTime: start };
    const pidNamespace = procPidNamespace();
    if (pidNamespace !== undefined) state.pidNamespace = pidNamespace;
    if (boot !== undefined) state.bootId = boot;
    return { handle, state };
  } catch (error) {
    // Before commit the keeper exits by itself once the report socket closes; make sure.
    await handle.abort(String((error as Error)?.message ?? error));
    if (keeperPid !== undefined) {
      const start = runningStartTime(keeperPid);
      if (start !== undefined) await stopKeeper(keeperPid, start);
    }
    throw error;
  }
}

/**
 * The flock(2) lock of entry `name` (create and rm hold it from start to end; the kernel drops it
 * when its holder dies, which is how a dead creator is told apart from a live one).
 */
export function lockFor(paths: Paths, name: string, timeoutMs?: number): Promise<FileLock> {
  return acquireFileLock(paths.lock, {
    what: `namespace ${name}`,
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  });
}

/** Releases the registry allocation a namespace owned (`--userns auto:…`), if it still exists. */
export async function releaseAllocationOf(id: string, root: string): Promise<void> {
  await releaseAllocation(id, { root });
}

/**
 * Unmounts and unlinks every file under the entry's hold directory (`--hold mount`), then the
 * directory: unlinking after the unmount also detaches the copies other mount namespaces made
 * of the binds (docs/nsfs-handles.md section 7.4). Never follows a link. Returns the files whose
 * unmount failed (other than "not mounted"), with the errno.
 */
export function releaseBinds(paths: Paths): { file: string; errno: string }[] {
  let names: string[];
  try {
    names = readdirSync(paths.hold);
  } catch (error) {
    if (isMissing(error)) return [];
    throw error;
  }
  const files = names.map((n) => join(paths.hold, n));
  const results = unbindFiles(files.filter((f) => !lstatSync(f).isSymbolicLink()));
  const failed: { file: string; errno: string }[] = [];
  let k = 0;
  for (const file of files) {
    if (lstatSync(file).isSymbolicLink()) {
      unlinkSync(file);
      continue;
    }
    const errno = results[k++];
    if (errno !== null && errno !== 'EINVAL' && errno !== undefined) {
      failed.push({ file, errno });
      continue;
    }
    unlinkSync(file);
  }
  if (failed.length === 0) rmdirSync(paths.hold);
  return failed;
}

/** Removes an abandoned entry: stops the keeper it recorded (if that very process still runs), unmounts its binds. */
export async function cleanAbandoned(info: Examined, paths: Paths): Promise<void> {
  if (info.state?.keeperPid !== undefined && info.state.keeperStartTime !== undefined)
    await stopKeeper(info.state.keeperPid, info.state.keeperStartTime);
  releaseBinds(paths);
  removeEntry(paths);
  if (info.state?.allocation !== undefined) await releaseAllocationOf(info.state.allocation, paths.root);
}
