/**
 * Whether what holds a named namespace still holds what state.json records, by what the kernel
 * guarantees: a keeper's PID and start time (a reused PID has another) and the inode of each
 * namespace it holds (/proc/KEEPER/ns/TYPE), valid only where /proc shows the keeper's PID
 * namespace; for the `mount` hold, each bind-mounted file still showing the namespace's inode.
 * (`none` has no holder: its nsfs handles answer, see handles.ts.)
 */
import { lstatSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Namespace, NamespaceId } from '../native/helper.js';
import { isRunning, procPidNamespace, readProcessIdentity } from '../system/proc.js';
import { isMissing, type Paths } from './paths.js';

/** /proc/PID/ns/<file> of each namespace type. */
export const PROC_NS: Record<Namespace, string> = {
  user: 'user',
  mount: 'mnt',
  pid: 'pid',
  uts: 'uts',
  ipc: 'ipc',
  net: 'net',
  cgroup: 'cgroup',
};

/** The recorded keeper: its PID, start time and namespaces. */
export interface KeeperRecord {
  keeperPid: number;
  keeperStartTime: string;
  namespaces: readonly Pick<NamespaceId, 'type' | 'inode'>[];
}

/** The PID namespace this process's /proc shows (read once: it does not change for a process). */
let procPidNs: { value: number | undefined } | undefined;
export function procPidNamespaceOnce(): number | undefined {
  procPidNs ??= { value: procPidNamespace() };
  return procPidNs.value;
}

/** The bind-mounted file of a namespace type under the entry's hold directory (`--hold mount`). */
export function holdFile(paths: Paths, type: Namespace): string {
  return join(paths.hold, PROC_NS[type]);
}

/** What holdProblem needs of a state (a NamespaceState). */
export interface HoldRecord {
  hold: 'keeper' | 'mount' | 'none';
  keeperPid?: number;
  keeperStartTime?: string;
  pidNamespace?: number;
  namespaces: readonly Pick<NamespaceId, 'type' | 'inode'>[];
}

/**
 * Why the holder of `state` no longer holds it (status stale), or cannot be checked from here
 * (status unknown: a keeper in a PID namespace this /proc does not show); undefined = held, or
 * (hold none) nothing to check here. Cheap: a few lstat/stat calls, no process started.
 */
export function holdProblem(
  state: HoldRecord,
  paths: Paths,
): { status: 'stale' | 'unknown'; reason: string } | undefined {
  if (state.hold === 'none') return undefined;
  if (state.hold === 'mount') {
    for (const ns of state.namespaces) {
      const file = holdFile(paths, ns.type);
      const st = lstatSync(file, { throwIfNoEntry: false });
      if (st === undefined)
        return { status: 'stale', reason: `its bind-mounted ${ns.type} namespace file ${file} is missing` };
      if (st.ino !== ns.inode)
        return {
          status: 'stale',
          reason: `${file} is no longer a bind mount of its ${ns.type} namespace (unmounted)`,
        };
    }
    return undefined;
  }
  if (state.keeperPid === undefined || state.keeperStartTime === undefined)
    return { status: 'stale', reason: 'its state names no keeper' };
  if (state.pidNamespace !== undefined) {
    const here = procPidNamespaceOnce();
    if (here !== state.pidNamespace) {
      return {
        status: 'unknown',
        reason: `its keeper ${state.keeperPid} is in PID namespace pid:[${state.pidNamespace}], and /proc here shows ${here === undefined ? 'another one' : `pid:[${here}]`}`,
      };
    }
  }
  const stale = staleReason({
    keeperPid: state.keeperPid,
    keeperStartTime: state.keeperStartTime,
    namespaces: state.namespaces,
  });
  return stale === undefined ? undefined : { status: 'stale', reason: stale };
}

/** Why the recorded keeper and namespaces are not (or no longer) what state.json says; undefined = fine. */
export function staleReason(state: KeeperRecord): string | undefined {
  const info = readProcessIdentity(state.keeperPid);
  if (info === undefined || !info.running) return `its keeper (PID ${state.keeperPid}) is gone`;
  if (info.startTime !== state.keeperStartTime)
    return `its keeper PID ${state.keeperPid} now belongs to another process (start time ${info.startTime}, recorded ${state.keeperStartTime})`;
  for (const ns of state.namespaces) {
    let inode: number;
    try {
      inode = statSync(`/proc/${state.keeperPid}/ns/${PROC_NS[ns.type]}`).ino;
    } catch (error) {
      if (isMissing(error)) return `its keeper (PID ${state.keeperPid}) is gone`;
      return `cannot check its ${ns.type} namespace: ${(error as Error).message}`;
    }
    if (inode !== ns.inode) return `its ${ns.type} namespace changed (inode ${inode}, recorded ${ns.inode})`;
  }
  return undefined;
}

/** SIGTERM, then SIGKILL, to the keeper, only while it is the recorded process. True when it was alive. */
export async function stopKeeper(pid: number, start: string): Promise<boolean> {
  if (!isRunning(pid, start)) return false;
  const signal = (sig: NodeJS.Signals) => {
    try {
      if (isRunning(pid, start)) process.kill(pid, sig);
    } catch {
      // gone meanwhile
    }
  };
  const waitGone = async (ms: number) => {
    const deadline = Date.now() + ms;
    while (isRunning(pid, start) && Date.now() < deadline) await sleep(5);
    return !isRunning(pid, start);
  };
  signal('SIGTERM');
  if (await waitGone(2000)) return true;
  signal('SIGKILL');
  await waitGone(2000);
  return true;
}
