/**
 * Facts about this process that cannot change while it lives (it never calls setns): whether it
 * may write any map (CAP_SETUID + CAP_SETGID), its user namespace's own maps and setgroups.
 * Each is read once, on first use.
 */
import { readFileSync } from 'node:fs';
import type { IdKind } from '../idmap/extent.js';
import type { IdMap } from '../idmap/idmap.js';
import { readIdMapSync, readSetgroupsSync } from './proc.js';

const ownMaps: Partial<Record<IdKind, IdMap>> = {};
let privileged: boolean | undefined;
let ownSetgroupsValue: 'allow' | 'deny' | undefined;

/** The current namespace's own map (column 1 = IDs of this namespace, column 2 = its parent's). */
export function ownMap(kind: IdKind): IdMap {
  const cached = ownMaps[kind];
  if (cached !== undefined) return cached;
  const map = readIdMapSync('self', kind);
  ownMaps[kind] = map;
  return map;
}

/**
 * Whether this process can write any map directly: CAP_SETUID and CAP_SETGID in its effective
 * set (root in the initial namespace, or root of the namespace it runs in). From CapEff in
 * /proc/self/status; the euid when that cannot be read.
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

let sysAdmin: boolean | undefined;

/**
 * Whether this process has CAP_SYS_ADMIN in its effective set (from CapEff; the euid when that
 * cannot be read): needed to bind-mount namespace files in its mount namespace, when that
 * namespace is owned by its user namespace.
 */
export function hasSysAdmin(): boolean {
  if (sysAdmin !== undefined) return sysAdmin;
  let result = false;
  try {
    const m = /^CapEff:\s*([0-9a-f]+)/m.exec(readFileSync('/proc/self/status', 'latin1'));
    if (m) result = (BigInt(`0x${m[1]}`) & (1n << 21n)) !== 0n;
  } catch {
    result = process.geteuid?.() === 0;
  }
  sysAdmin = result;
  return result;
}

/** This process's namespace's setgroups (a new namespace inherits it). */
export function ownSetgroups(): 'allow' | 'deny' {
  ownSetgroupsValue ??= readSetgroupsSync('self');
  return ownSetgroupsValue;
}
