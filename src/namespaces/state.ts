/**
 * The state of a named namespace: what state.json holds (schema and checks), and what an entry
 * is now (examine: running, stale, creating, abandoned, broken, unsafe), with the errors for an
 * entry that cannot be used.
 */
import { lstatSync } from 'node:fs';
import { NamespaceError } from '../errors/index.js';
import type { IdRange } from '../idmap/ranges.js';
import { NAMESPACES, type Namespace, type NamespaceId } from '../native/helper.js';
import { staleReason } from './liveness.js';
import { isMissing, type Paths, readNoFollow } from './paths.js';

/** What `state.json` holds (version 1). */
export interface NamespaceState {
  version: 1;
  name: string;
  /** The keeper: PID and start time (field 22 of /proc/PID/stat, to detect PID reuse). */
  keeperPid: number;
  keeperStartTime: string;
  /** Every namespace held, with its identity (inode of /proc/KEEPER/ns/TYPE, nsfs handle). */
  namespaces: NamespaceId[];
  /** The maps in force, read back from /proc/KEEPER/{uid,gid}_map: [inside, outside, count]. */
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
 * running: the keeper lives and holds the recorded namespaces. stale: the keeper is gone, its
 * PID was reused, or a namespace identity changed. creating: a live process is creating it.
 * abandoned: its creator died before committing. broken: state.json is unreadable or invalid.
 * unsafe: the entry is not a real directory (a symlink, a file).
 */
export type NamespaceStatus = 'running' | 'stale' | 'creating' | 'abandoned' | 'broken' | 'unsafe';

/** A named namespace as {@link listNamespaces} sees it: name, status, and its state when readable. */
export interface NamespaceInfo {
  name: string;
  /** The entry directory. */
  path: string;
  status: NamespaceStatus;
  /** Why it is not running. */
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
  if (o.version !== 1) return `unknown version ${JSON.stringify(o.version)}`;
  if (o.name !== name) return `it names ${JSON.stringify(o.name)}`;
  if (!Number.isInteger(o.keeperPid) || (o.keeperPid as number) <= 0) return 'bad keeperPid';
  if (typeof o.keeperStartTime !== 'string' || !/^\d+$/.test(o.keeperStartTime)) return 'bad keeperStartTime';
  if (
    !Array.isArray(o.namespaces) ||
    !o.namespaces.some((n) => n?.type === 'user') ||
    !o.namespaces.every((n) => TYPES.has(n?.type) && Number.isSafeInteger(n?.inode))
  )
    return 'bad namespaces';
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
        const stale = staleReason(hit.state);
        return stale === undefined
          ? { ...base, state: hit.state, status: 'running' }
          : { ...base, state: hit.state, status: 'stale', reason: stale };
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
  const stale = staleReason(state);
  if (stale !== undefined) return { ...base, state, status: 'stale', reason: stale };
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
      return new NamespaceError('NS_STALE', `namespace ${info.name} is stale: ${info.reason}`, {
        hint: `remove it with 'userns rm ${info.name}' and create it again`,
        data,
      });
  }
}

export function publicInfo(info: Examined): NamespaceInfo {
  const { marker: _marker, ...rest } = info;
  return rest;
}
