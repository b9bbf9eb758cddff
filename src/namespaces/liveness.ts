/**
 * Whether a keeper still holds what state.json records, by what the kernel guarantees: the
 * keeper's PID and start time (a reused PID has another), and the inode of each namespace it
 * holds (/proc/KEEPER/ns/TYPE).
 */
import { statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Namespace, NamespaceId } from '../native/helper.js';
import { isRunning, readProcessIdentity } from '../system/proc.js';
import { isMissing } from './paths.js';

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
