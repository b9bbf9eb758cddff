/**
 * The state of a named namespace: what state.json holds (schema and checks), and what an entry
 * is now (examine: running, stale, creating, abandoned, broken, unsafe), with the errors for an
 * entry that cannot be used.
 */
import { lstatSync } from 'node:fs';
import { NamespaceError } from '../errors/index.js';
import type { IdRange } from '../idmap/ranges.js';
import { NAMESPACES, type Namespace, type NamespaceId } from '../native/helper.js';
import { holdProblem } from './liveness.js';
import { isMissing, type Paths, readNoFollow } from './paths.js';

/**
 * How a named namespace is kept alive (chosen at create; docs/nsfs-handles.md):
 * - keeper: a small keeper process holds it (PID 1 of its PID namespace, if it has one);
 * - mount: each namespace file is bind-mounted under the entry (`hold/<type>`); no process;
 * - none: nothing holds it; it lives while the processes started in it do.
 */
export type HoldMode = 'keeper' | 'mount' | 'none';
/** Every hold mode, in the order of the documentation (the default first). */
export const HOLD_MODES: readonly HoldMode[] = ['keeper', 'mount', 'none'];

/**
 * What `state.json` holds: version 2 (version 1, written before hold modes, is read as a
 * `keeper` state).
 */
export interface NamespaceState {
  version: 1 | 2;
  name: string;
  /** How it is held (version 1: always keeper). */
  hold: HoldMode;
  /** The keeper (hold keeper only): PID and start time (field 22 of /proc/PID/stat, to detect PID reuse). */
  keeperPid?: number;
  keeperStartTime?: string;
  /**
   * Every namespace, with its identity: the inode of /proc/PID/ns/TYPE and the nsfs file handle
   * (null where the kernel has none: before Linux 6.18, or USERNS_NSFS_HANDLES=0).
   */
  namespaces: NamespaceId[];
  /**
   * The user namespace (inode) userns ran in at creation: a stale handle means "gone" only when
   * asked from there, or by root (an unrelated caller sees ESTALE for live namespaces too).
   */
  creatorUserNamespace?: number;
  /** The maps in force, read back from /proc/PID/{uid,gid}_map at creation: [inside, outside, count]. */
  uidMap: [number, number, number][];
  gidMap: [number, number, number][];
  setgroups: 'allow' | 'deny';
  /** Whether the keeper mounted a fresh /proc (PID + mount namespaces). */
  mountProc: boolean;
  /** IDs `exec` runs as by default (as `run` would: 0:0, or your own IDs with keep-id). */
  user: { uid: number; gid: number };
  createdAt: string;
  /** Who created it (IDs of the namespace userns ran in). */
  creator: { uid: number; gid: number };
  /** The options the namespace was created with (maps as strings). */
  options: StoredOptions;
  /** The creator's subordinate ranges at creation (null when privileged: the maps do not depend on them). */
  subids: { uid: IdRange[]; gid: IdRange[] } | null;
  warnings: string[];
  /** The registry allocation the maps came from (`--userns auto:…`), released by rm. */
  allocation?: string;
  /**
   * The PID namespace (nsfs inode) keeperPid belongs to: the one /proc showed at creation. A
   * check from where /proc shows another cannot judge the keeper (alloc gc says so).
   */
  pidNamespace?: number;
  /** The boot it was created in (/proc/sys/kernel/random/boot_id). */
  bootId?: string;
}

/** The options a named namespace was created with, as recorded in its state. */
export interface StoredOptions {
  userns?: string;
  uidMap?: string;
  gidMap?: string;
  namespaces: Namespace[];
  setgroups?: 'allow' | 'deny';
  user?: number;
  group?: number;
  noSplit?: boolean;
  fallback?: 'none' | 'single';
  /** --mount specs (src/mount/spec.ts text form; a detached source is "fd:N"). */
  mounts?: string[];
}

/**
 * running: what holds it (keeper, bind mounts) holds the recorded namespaces, or (hold none)
 * its handles still reopen. stale: the keeper is gone, its PID was reused, a bind mount is
 * gone, or a namespace identity changed. gone (hold none): its processes all exited, its
 * namespaces no longer exist. unknown: it cannot be checked from here (its keeper runs in a
 * PID namespace this /proc does not show, and no nsfs handle answers): never removed from here.
 * creating: a live process is creating it. abandoned: its creator died before committing.
 * broken: state.json is unreadable or invalid. unsafe: the entry is not a real directory.
 */
export type NamespaceStatus =
  | 'running'
  | 'stale'
  | 'gone'
  | 'unknown'
  | 'creating'
  | 'abandoned'
  | 'broken'
  | 'unsafe';

/** A named namespace as {@link listNamespaces} sees it: name, status, and its state when readable. */
export interface NamespaceInfo {
  name: string;
  /** The entry directory. */
  path: string;
  status: NamespaceStatus;
  /** Why it is not running (or, running, why that was decided without its keeper's PID). */
  reason?: string;
  state: NamespaceState | null;
}

const TYPES = new Set<string>(NAMESPACES);

function isTriples(x: unknown): x is [number, number, number][] {
  return (
    Array.isArray(x) &&
    x.every((t) => Array.isArray(t) && t.length === 3 && t.every((n) => Number.isSafeInteger(n) && n >= 0))
  );
}

/** Checks the shape of a parsed state.json; returns what is wrong, or undefined. */
function stateProblem(s: unknown, name: string): string | undefined {
  if (typeof s !== 'object' || s === null) return 'not a JSON object';
  const o = s as Record<string, unknown>;
  if (o.version !== 1 && o.version !== 2) return `unknown version ${JSON.stringify(o.version)}`;
  if (o.name !== name) return `it names ${JSON.stringify(o.name)}`;
  if (o.version === 1) o.hold = 'keeper';
  if (!HOLD_MODES.includes(o.hold as HoldMode)) return `unknown hold mode ${JSON.stringify(o.hold)}`;
  if (o.hold === 'keeper') {
    if (!Number.isInteger(o.keeperPid) || (o.keeperPid as number) <= 0) return 'bad keeperPid';
    if (typeof o.keeperStartTime !== 'string' || !/^\d+$/.test(o.keeperStartTime))
      return 'bad keeperStartTime';
  }
  if (
    !Array.isArray(o.namespaces) ||
    !o.namespaces.some((n) => n?.type === 'user') ||
    !o.namespaces.every(
      (n) =>
        TYPES.has(n?.type) &&
        Number.isSafeInteger(n?.inode) &&
        (n.handle === null ||
          n.handle === undefined ||
          (typeof n.handle === 'string' && /^[0-9a-f]{1,8}:([0-9a-f]{2}){1,128}$/.test(n.handle))),
    )
  )
    return 'bad namespaces';
  if (o.hold === 'none' && !o.namespaces.every((n) => typeof n?.handle === 'string'))
    return 'hold none without nsfs handles';
  if (!isTriples(o.uidMap) || !isTriples(o.gidMap)) return 'bad maps';
  if (typeof o.user !== 'object' || o.user === null) return 'bad user';
  return undefined;
}

export interface Examined extends NamespaceInfo {
  /** The creator's marker content, when present. */
  marker?: string;
}

/**
 * Parsed state files by path, for exec (a hot path): reused while lstat shows the same file
 * (state.json is only ever replaced by rename, so a new write is a new inode). Never handed out
 * to callers that could modify it (list and inspect read the file).
 */
const stateCache = new Map<string, { key: string; state: NamespaceState }>();

/**
 * What an entry is, from disk and /proc (undefined: there is none). `locked`: the caller holds
 * the entry's lock, so an entry without state and marker cannot be in the middle of a create.
 */
export function examine(name: string, paths: Paths, locked: boolean): Examined | undefined {
  return examineEntry(name, paths, locked, false);
}

/**
 * examine() for exec (a hot path, read-only use of the state): the parsed state.json comes from
 * a cache while lstat shows the same file, and only the keeper's liveness is checked again.
 */
export function examineForExec(name: string, paths: Paths): Examined | undefined {
  return examineEntry(name, paths, false, true);
}

function examineEntry(name: string, paths: Paths, locked: boolean, cached: boolean): Examined | undefined {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(paths.entry);
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
  const base = { name, path: paths.entry, state: null };
  if (st.isSymbolicLink()) return { ...base, status: 'unsafe', reason: 'its entry is a symbolic link' };
  if (!st.isDirectory()) return { ...base, status: 'unsafe', reason: 'its entry is not a directory' };
  let marker: string | undefined;
  let text: string | undefined;
  try {
    // (lstat first: the common case, no marker, then costs no exception.)
    if (lstatSync(paths.marker, { throwIfNoEntry: false }) !== undefined) marker = readNoFollow(paths.marker);
    if (cached && marker === undefined) {
      const sst = lstatSync(paths.state, { throwIfNoEntry: false });
      const key = sst?.isFile() ? `${sst.ino}:${sst.size}:${sst.mtimeMs}:${sst.ctimeMs}` : undefined;
      const hit = stateCache.get(paths.state);
      if (key !== undefined && hit?.key === key) {
        const problem = holdProblem(hit.state, paths);
        return problem === undefined
          ? { ...base, state: hit.state, status: 'running' }
          : { ...base, state: hit.state, ...problem };
      }
      const fresh = examineEntry(name, paths, locked, false);
      if (fresh?.state != null && key !== undefined) {
        if (stateCache.size >= 64) stateCache.delete(stateCache.keys().next().value!);
        stateCache.set(paths.state, { key, state: fresh.state });
      }
      return fresh;
    }
    text = readNoFollow(paths.state);
  } catch (error) {
    return { ...base, status: 'broken', reason: `unreadable: ${(error as Error).message}` };
  }
  let state: NamespaceState | null = null;
  let problem: string | undefined;
  if (text !== undefined) {
    try {
      const parsed: unknown = JSON.parse(text);
      problem = stateProblem(parsed, name);
      if (problem === undefined) state = parsed as NamespaceState;
    } catch (error) {
      problem = `invalid JSON (${(error as Error).message})`;
    }
  }
  if (marker !== undefined) {
    // Not committed. A creator holds the entry's lock until it commits: when we hold it, the
    // creator is gone (abandoned); otherwise it may still be at work (creating).
    if (!locked)
      return { ...base, state, status: 'creating', reason: `being created (${marker.trim()})`, marker };
    return { ...base, state, status: 'abandoned', reason: 'its creator died before finishing', marker };
  }
  if (text === undefined) {
    return locked
      ? { ...base, status: 'abandoned', reason: 'it has no state (its creator died)' }
      : { ...base, status: 'creating', reason: 'it has no state yet' };
  }
  if (state === null) return { ...base, status: 'broken', reason: `state.json: ${problem}` };
  const hold = holdProblem(state, paths);
  if (hold !== undefined) return { ...base, state, ...hold };
  return { ...base, state, status: 'running' };
}

export function notFound(name: string): NamespaceError {
  return new NamespaceError('NS_NOT_FOUND', `no namespace named ${name}`, {
    hint: "'userns list' shows the named namespaces; 'userns create NAME' makes one",
    data: { name },
  });
}

/** The error for an entry that cannot be used (exec) or created over (create). */
export function unusable(info: Examined, forCreate: boolean): NamespaceError {
  const data = { name: info.name, status: info.status, reason: info.reason ?? null, path: info.path };
  switch (info.status) {
    case 'unsafe':
      return new NamespaceError('NS_UNSAFE', `namespace ${info.name}: ${info.reason}; refusing to use it`, {
        hint: `userns never follows links out of its state root; remove it with 'userns rm --force ${info.name}'`,
        data,
      });
    case 'broken':
      return new NamespaceError('NS_BROKEN', `namespace ${info.name} has a broken state: ${info.reason}`, {
        hint: `remove it with 'userns rm --force ${info.name}'`,
        data,
      });
    case 'creating':
      return new NamespaceError('NS_CREATING', `namespace ${info.name} is being created (${info.reason})`, {
        hint: 'try again in a moment',
        data,
      });
    default:
      if (forCreate || info.status === 'running') {
        return new NamespaceError(
          'NS_EXISTS',
          `namespace ${info.name} already exists${info.status === 'running' ? '' : ` (${info.status}: ${info.reason})`}`,
          {
            hint: `use it with 'userns exec ${info.name} -- COMMAND', or remove it first with 'userns rm ${info.name}'`,
            data,
          },
        );
      }
      if (info.status === 'gone')
        return goneError(info.name, info.reason ?? 'its namespaces no longer exist', data);
      if (info.status === 'unknown')
        return new NamespaceError(
          'NS_UNCHECKABLE',
          `namespace ${info.name} cannot be checked from here: ${info.reason}`,
          {
            hint: 'use it from where it was created (the PID namespace its keeper runs in)',
            data,
          },
        );
      return new NamespaceError('NS_STALE', `namespace ${info.name} is stale: ${info.reason}`, {
        hint: `remove it with 'userns rm ${info.name}' and create it again`,
        data,
      });
  }
}

/** NS_GONE: the namespaces of `name` no longer exist (all its processes exited). */
export function goneError(
  name: string,
  reason: string,
  data: Record<string, unknown> = { name },
): NamespaceError {
  return new NamespaceError('NS_GONE', `namespace ${name} is gone: ${reason}`, {
    hint: `remove it with 'userns rm ${name}'; create it again to use the name`,
    data: { ...data, name },
  });
}

export function publicInfo(info: Examined): NamespaceInfo {
  const { marker: _marker, ...rest } = info;
  return rest;
}
