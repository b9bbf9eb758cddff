/**
 * The few facts about the running system that spawning needs, read once per process.
 *
 * /proc is read synchronously here (tiny kernel files; the spawn path stays on one tick).
 * Users, subordinate ranges and newuidmap inspection come from src/system/* and are imported
 * lazily, only on the paths that need them (the rootless and error paths), so that `userns run`
 * as root loads nothing it does not use; so is the podman map parser.
 */
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { parseKernelMap } from '../idmap/formats/kernel.js';
import { IdMap } from '../idmap/idmap.js';
import type { IdRange } from '../idmap/ranges.js';
import type { SubordinateOptions } from '../system/subordinate.js';
import type { UserInfo } from '../system/users.js';

export type Kind = 'uid' | 'gid';

export type { UserInfo } from '../system/users.js';

// ---------------------------------------------------------------------------------------------
// /proc (synchronous: tiny kernel files, read in microseconds; the spawn path stays on one tick)

const ownMaps: Partial<Record<Kind, IdMap>> = {};

const scratch = Buffer.allocUnsafe(8192);

/** A small /proc file in one read (they are generated whole on the first read). */
export function readSmallProcFile(path: string): string {
  const fd = openSync(path, 'r');
  try {
    let length = 0;
    for (;;) {
      const n = readSync(fd, scratch, length, scratch.length - length, null);
      if (n === 0) break;
      length += n;
      if (length === scratch.length)
        return scratch.toString('latin1', 0, length) + readFileSync(fd, 'latin1');
    }
    return scratch.toString('latin1', 0, length);
  } finally {
    closeSync(fd);
  }
}

/** The map of a process's user namespace, as this process sees it (column 2 in our IDs). */
export function readProcMap(pid: number | 'self', kind: Kind): IdMap {
  const path = `/proc/${pid}/${kind}_map`;
  return new IdMap(parseKernelMap(readSmallProcFile(path), { source: path }));
}

/** The current namespace's own map (cannot change while this process lives: it never setns). */
export function ownMap(kind: Kind): IdMap {
  const cached = ownMaps[kind];
  if (cached !== undefined) return cached;
  const map = readProcMap('self', kind);
  ownMaps[kind] = map;
  return map;
}

let privileged: boolean | undefined;

/**
 * Whether this process can write any map directly: CAP_SETUID and CAP_SETGID in its effective
 * set (root in the initial namespace, or root of the namespace it runs in).
 */
export function isPrivileged(): boolean {
  if (privileged !== undefined) return privileged;
  let result = false;
  try {
    const status = readFileSync('/proc/self/status', 'latin1');
    const m = /^CapEff:\s*([0-9a-f]+)/m.exec(status);
    if (m) {
      const caps = BigInt(`0x${m[1]}`);
      result = (caps & (1n << 6n)) !== 0n && (caps & (1n << 7n)) !== 0n;
    }
  } catch {
    result = process.geteuid?.() === 0;
  }
  privileged = result;
  return result;
}

/** The kernel's page size (a map write must be shorter than one page). */
export { pageSize } from '../system/proc.js';

let ownSetgroupsValue: 'allow' | 'deny' | undefined;

/** This process's namespace's setgroups (fixed for its lifetime). */
export function ownSetgroups(): 'allow' | 'deny' {
  ownSetgroupsValue ??= readSetgroups('self');
  return ownSetgroupsValue;
}

export function readSetgroups(pid: number | 'self'): 'allow' | 'deny' {
  return readSmallProcFile(`/proc/${pid}/setgroups`).startsWith('deny') ? 'deny' : 'allow';
}

// ---------------------------------------------------------------------------------------------
// Users and subordinate IDs

/** The user running this process (by euid). */
export async function currentUser(): Promise<UserInfo> {
  const { currentUser: lookup } = await import('../system/users.js');
  return lookup();
}

export interface SubordinateResult {
  ranges: IdRange[];
  source: 'files' | 'libsubid' | 'none';
  /** Where they came from, for messages. */
  file: string;
}

/** The user's ranges in /etc/subuid or /etc/subgid (or libsubid), in file order. */
export async function subordinateRanges(
  user: UserInfo,
  kind: Kind,
  files?: SubordinateOptions,
): Promise<SubordinateResult> {
  const { getSubordinateRanges } = await import('../system/subordinate.js');
  const r = await getSubordinateRanges(user, kind, files);
  return {
    ranges: r.ranges,
    source: r.source,
    file: r.file ?? (kind === 'uid' ? '/etc/subuid' : '/etc/subgid'),
  };
}

// ---------------------------------------------------------------------------------------------
// Map syntax

/** Parses a map in podman --uidmap syntax (loaded lazily: most runs use a mode). */
export async function parseMapText(
  text: string,
  kind: Kind,
  parent: IdMap | undefined,
  source: string,
): Promise<IdMap> {
  const { parsePodmanMap } = await import('../idmap/formats/podman.js');
  return parsePodmanMap(text, { kind, ...(parent ? { parent } : {}), source });
}

// ---------------------------------------------------------------------------------------------
// newuidmap / newgidmap

/** Why newuidmap/newgidmap at `path` is not usable (setuid root or file caps), or undefined. */
export async function toolProblem(
  tool: 'newuidmap' | 'newgidmap',
  path: string,
): Promise<string | undefined> {
  const { inspectNewIdmap } = await import('../system/newidmap.js');
  const info = await inspectNewIdmap(tool, { path });
  return info.usable ? undefined : info.reason;
}

/** A command's path in PATH (or the standard directories), or undefined. */
export { findProgram as findInPath } from '../system/exec.js';

/** A subordinate range nobody has yet (system/subordinate.ts), loaded when needed. */
export async function suggestSubordinateRange(
  files?: SubordinateOptions & { loginDefsPath?: string },
): Promise<IdRange> {
  const { suggestSubordinateRange: suggest } = await import('../system/subordinate.js');
  return suggest(files);
}
