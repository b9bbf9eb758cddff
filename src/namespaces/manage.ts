/** `userns list`, `inspect` and `rm`: named namespaces as they are now. */
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { IdKind } from '../idmap/extent.js';
import { type IdRange, subtractRanges } from '../idmap/ranges.js';
import type { FileLock } from '../state/lock.js';
import { validateName } from '../state/names.js';
import { ensurePrivateDir } from '../state/state-root.js';
import { readIdMapSync, readSetgroupsSync } from '../system/proc.js';
import { cleanAbandoned, currentSubids, lockFor, releaseAllocationOf } from './keeper.js';
import { stopKeeper } from './liveness.js';
import { namespaceRoot, type Paths, pathsFor, type RootOption, removeEntry } from './paths.js';
import {
  examine,
  type NamespaceInfo,
  type NamespaceStatus,
  notFound,
  publicInfo,
  unusable,
} from './state.js';

/** How a user's subordinate ranges changed since a namespace was created. */
export interface SubidChange {
  kind: IdKind;
  /** Ranges that are in the subordinate files now but were not at creation (not mapped). */
  added: IdRange[];
  /** Ranges recorded at creation that are no longer there (still mapped by the namespace). */
  removed: IdRange[];
}

/** What {@link inspectNamespace} shows: the entry, the maps in force, and subordinate-range changes. */
export interface InspectResult extends NamespaceInfo {
  /** The maps in force now (read from /proc/KEEPER) when running. */
  live: { uidMap: [number, number, number][]; gidMap: [number, number, number][]; setgroups: string } | null;
  /** Changes of the subordinate ranges since creation (empty: none, or not applicable). */
  subidChanges: SubidChange[];
  warnings: string[];
}

/** Options of {@link removeNamespace}. */
export interface RemoveOptions extends RootOption {
  /** Also remove broken and unsafe entries (never following a link), and succeed when absent. */
  force?: boolean;
}

/** What {@link removeNamespace} did. */
export interface RemoveResult {
  name: string;
  removed: boolean;
  /** The status the entry had. */
  status: NamespaceStatus | 'absent';
  /** Whether a keeper was signalled (SIGTERM, then SIGKILL when it did not exit). */
  keeperStopped: boolean;
}

/**
 * Every named namespace with its status. Abandoned entries (creator died) and leftovers of
 * interrupted removals are cleaned on the way (under the entry's lock).
 */
export async function listNamespaces(options: RootOption = {}): Promise<NamespaceInfo[]> {
  const root = namespaceRoot(options, false);
  if (root === undefined) return [];
  const nsDir = join(root, 'ns');
  const out: NamespaceInfo[] = [];
  for (const entry of readdirSync(nsDir).sort()) {
    if (entry.startsWith('@trash.')) {
      rmSync(join(nsDir, entry), { recursive: true, force: true });
      continue;
    }
    if (entry.startsWith('@')) continue;
    let paths: Paths;
    try {
      paths = pathsFor(validateName(entry), root);
    } catch {
      continue; // not a name userns makes
    }
    let info = examine(entry, paths, false);
    if (info === undefined) continue;
    if (info.status === 'abandoned' || info.status === 'creating') {
      let held: FileLock | undefined;
      try {
        held = await lockFor(paths, entry, 100);
      } catch {
        // someone is working on it: report what we saw
      }
      if (held !== undefined) {
        let gone = false;
        try {
          info = examine(entry, paths, true);
          if (info?.status === 'abandoned') {
            await cleanAbandoned(info, paths);
            gone = true;
          }
        } finally {
          held.release({ remove: gone || info === undefined });
        }
        if (gone) continue;
      }
      if (info === undefined) continue;
    }
    out.push(publicInfo(info));
  }
  return out;
}

function rangeChanges(kind: IdKind, before: IdRange[], now: IdRange[]): SubidChange | undefined {
  const added = subtractRanges(now, before);
  const removed = subtractRanges(before, now);
  return added.length === 0 && removed.length === 0 ? undefined : { kind, added, removed };
}

/**
 * One namespace in detail: its status and recorded state, the maps in force now (from
 * /proc/KEEPER, null unless running), and how the caller's subordinate ranges changed since it
 * was created (the namespace keeps its maps). Throws NamespaceError NS_NOT_FOUND,
 * InvalidNameError INVALID_NAME.
 */
export async function inspectNamespace(name: string, options: RootOption = {}): Promise<InspectResult> {
  validateName(name, 'namespace name');
  const root = namespaceRoot(options, false);
  if (root === undefined) throw notFound(name);
  const info = examine(name, pathsFor(name, root), false);
  if (info === undefined) throw notFound(name);
  const warnings: string[] = [];
  let live: InspectResult['live'] = null;
  if (info.status === 'running' && info.state !== null) {
    const pid = info.state.keeperPid;
    try {
      live = {
        uidMap: readIdMapSync(pid, 'uid').toJSON(),
        gidMap: readIdMapSync(pid, 'gid').toJSON(),
        setgroups: readSetgroupsSync(pid),
      };
      if (JSON.stringify(live.uidMap) !== JSON.stringify(info.state.uidMap))
        warnings.push('the uid map in force differs from the recorded one');
      if (JSON.stringify(live.gidMap) !== JSON.stringify(info.state.gidMap))
        warnings.push('the gid map in force differs from the recorded one');
    } catch {
      live = null;
    }
  }
  const subidChanges: SubidChange[] = [];
  if (info.state?.subids != null && info.state.creator.uid === (process.geteuid?.() ?? 0)) {
    const now = await currentSubids().catch(() => undefined);
    if (now !== undefined) {
      for (const kind of ['uid', 'gid'] as const) {
        const change = rangeChanges(kind, info.state.subids[kind], now[kind]);
        if (change !== undefined) subidChanges.push(change);
      }
    }
    if (subidChanges.length > 0) {
      warnings.push(
        `your subordinate ${subidChanges.map((c) => `${c.kind}s`).join(' and ')} changed since ${name} was created; ` +
          `the namespace keeps the maps it was created with (a map is written once) — ` +
          `'userns rm ${name}' and create it again to use the new ranges`,
      );
    }
  }
  if (info.status !== 'running' && info.reason !== undefined) warnings.push(`${info.status}: ${info.reason}`);
  return { ...publicInfo(info), live, subidChanges, warnings };
}

/**
 * Removes a named namespace: stops its keeper (SIGTERM, then SIGKILL) and deletes the entry.
 * Stale and abandoned entries are removed too; broken and unsafe ones (never following a link)
 * and absent names only with `force`. A registry allocation it owned is released. Throws
 * NamespaceError NS_NOT_FOUND, NS_CREATING, NS_BROKEN, NS_UNSAFE; LockTimeoutError LOCK_TIMEOUT.
 */
export async function removeNamespace(name: string, options: RemoveOptions = {}): Promise<RemoveResult> {
  validateName(name, 'namespace name');
  const root = namespaceRoot(options, false);
  const absent = (): RemoveResult => {
    if (!options.force) throw notFound(name);
    return { name, removed: false, status: 'absent', keeperStopped: false };
  };
  if (root === undefined) return absent();
  ensurePrivateDir(join(root, 'ns', '@locks'), 'lock directory');
  const paths = pathsFor(name, root);
  const lock = await lockFor(paths, name);
  let removed = false;
  try {
    const info = examine(name, paths, true);
    if (info === undefined) return absent();
    let keeperStopped = false;
    switch (info.status) {
      case 'running':
      case 'stale':
      case 'abandoned':
        if (info.state !== null)
          keeperStopped = await stopKeeper(info.state.keeperPid, info.state.keeperStartTime);
        break;
      case 'creating':
        throw unusable(info, false);
      case 'broken':
      case 'unsafe':
        if (!options.force) throw unusable(info, false);
        break;
    }
    removeEntry(paths);
    removed = true;
    if (info.state?.allocation !== undefined) await releaseAllocationOf(info.state.allocation, root);
    return { name, removed: true, status: info.status, keeperStopped };
  } finally {
    lock.release({ remove: removed });
  }
}
