/**
 * Writing the ID maps of a new user namespace (the helper's PID), the way the kernel demands:
 * split across the current namespace's own map, validated, `setgroups` before `gid_map`, each
 * file in ONE write() — directly when privileged (or for the caller's single own ID), else through
 * newuidmap/newgidmap with the ranges in map order.
 */
import { spawn as spawnChild } from 'node:child_process';
import { closeSync, existsSync, openSync, statSync, writeSync } from 'node:fs';
import { DOCTOR_HINT, NewIdmapError } from '../errors/index.js';
import { type Extent, extent, formatRange, type IdKind } from '../idmap/extent.js';
import { formatKernelMap } from '../idmap/formats/kernel.js';
import { IdMap } from '../idmap/idmap.js';
import { type IdRange, subtractRanges } from '../idmap/ranges.js';
import { splitAcrossParent } from '../idmap/split.js';
import { validateMap } from '../idmap/validate.js';
import { findProgram } from '../system/exec.js';
import { inspectNewIdmap } from '../system/newidmap.js';
import { pageSize, readIdMapSync, readSetgroupsSync } from '../system/proc.js';
import { isPrivileged, ownMap, ownSetgroups } from '../system/self.js';
import { getSubordinateRanges } from '../system/subordinate.js';
import { currentUser } from '../system/users.js';

/** How maps are written: setgroups, splitting, newuidmap/newgidmap paths, privilege override. */
export interface MapWriteOptions {
  /** What /proc/PID/setgroups should say. Default: leave it (allow, unless inherited deny). */
  setgroups?: 'allow' | 'deny';
  /** Write the request as is, without cutting it at the current namespace's extents. */
  noSplit?: boolean;
  /** When unprivileged mapping fails, map only the caller's own IDs (with a warning). */
  fallback?: 'none' | 'single';
  /** Paths of the tools (default: found in PATH). */
  newuidmap?: string;
  newgidmap?: string;
  /** Override the privilege detection (CAP_SETUID + CAP_SETGID). */
  privileged?: boolean;
  /** Called with each warning (fallbacks); default: none. */
  onWarning?: (message: string) => void;
}

export type WriteMethod = 'direct' | 'newuidmap' | 'newgidmap';

/**
 * The maps as they will be written (split and validated) and how: directly or by
 * newuidmap/newgidmap with these arguments.
 */
export interface MapPlan {
  privileged: boolean;
  /** The maps as requested (outside = IDs of the current namespace). */
  requested: { uid: IdMap; gid: IdMap };
  /** What will be written (after the split). */
  uidMap: IdMap;
  gidMap: IdMap;
  uidMethod: 'direct' | 'newuidmap';
  gidMethod: 'direct' | 'newgidmap';
  /** Written to /proc/PID/setgroups before gid_map; null = nothing is written. */
  setgroupsWrite: 'allow' | 'deny' | null;
  /** Argv of the tools ("PID" stands for the helper's PID), null when written directly. */
  newuidmapArgv: string[] | null;
  newgidmapArgv: string[] | null;
  /** Warnings from planning (a fallback taken); writeMaps reports them with its own. */
  warnings: readonly string[];
}

/** The maps as the kernel applied them (read back from /proc). */
export interface AppliedMaps {
  /** Read back from /proc/PID/{uid,gid}_map (outside = IDs of the current namespace). */
  uidMap: IdMap;
  gidMap: IdMap;
  /** /proc/PID/setgroups after writing. */
  setgroups: 'allow' | 'deny';
  warnings: string[];
}

/** `newuidmap PID inside outside count …` (the order of the map is kept). */
export function newidmapArgv(tool: string, pid: number | string, map: IdMap): string[] {
  const argv = [tool, String(pid)];
  for (const e of map.extents) argv.push(String(e.inside), String(e.outside), String(e.count));
  return argv;
}

function isOwnSingle(map: IdMap, own: number): boolean {
  return map.length === 1 && map.extents[0]!.count === 1 && map.extents[0]!.outside === own;
}

/**
 * Computes what writeMaps will do: split, validate (throws NewIdmapError MAP_WRITE_FAILED with
 * the kernel's errno and reason when the kernel would refuse), method and tool argv.
 */
export async function planMaps(
  uidRequest: IdMap,
  gidRequest: IdMap,
  options: MapWriteOptions = {},
): Promise<MapPlan> {
  const privileged = options.privileged ?? isPrivileged();
  const euid = process.geteuid?.() ?? 0;
  const egid = process.getegid?.() ?? 0;
  const page = pageSize();
  const uidMethod = privileged || isOwnSingle(uidRequest, euid) ? 'direct' : 'newuidmap';
  const gidMethod =
    privileged || (isOwnSingle(gidRequest, egid) && options.setgroups !== 'allow') ? 'direct' : 'newgidmap';
  // Unprivileged direct gid write: the kernel requires setgroups deny first.
  const setgroupsWrite =
    options.setgroups === 'deny' || (!privileged && gidMethod === 'direct') ? 'deny' : null;
  const prepared: Record<IdKind, IdMap> = { uid: uidRequest, gid: gidRequest };
  for (const kind of ['uid', 'gid'] as const) {
    const request = prepared[kind];
    const parent = ownMap(kind);
    const map = options.noSplit ? request : splitAcrossParent(request, parent, kind);
    const direct = (kind === 'uid' ? uidMethod : gidMethod) === 'direct';
    const verdict = validateMap(map, {
      kind,
      parent,
      pageSize: page,
      ...(direct && !privileged
        ? {
            writer: {
              capSetid: false,
              capSetfcap: false,
              euid,
              egid,
              isOwner: true,
              setgroups: 'deny' as const,
            },
          }
        : {}),
    });
    // With noSplit the kernel gets the request as given and answers itself (explained on failure).
    if (!verdict.ok && !(options.noSplit && verdict.errno === 'EPERM')) {
      throw new NewIdmapError(
        'MAP_WRITE_FAILED',
        `the kernel refuses this ${kind} map (${verdict.errno}): ${verdict.reason}`,
        {
          hint: DOCTOR_HINT,
          data: { kind, errno: verdict.errno, line: verdict.line, map: map.toJSON(), predicted: true },
        },
      );
    }
    prepared[kind] = map;
  }
  const tool = (name: 'newuidmap' | 'newgidmap', explicit: string | undefined) =>
    explicit ?? findProgram(name) ?? name;
  return {
    privileged,
    requested: { uid: uidRequest, gid: gidRequest },
    uidMap: prepared.uid,
    gidMap: prepared.gid,
    uidMethod,
    gidMethod,
    setgroupsWrite,
    newuidmapArgv:
      uidMethod === 'direct' ? null : newidmapArgv(tool('newuidmap', options.newuidmap), 'PID', prepared.uid),
    newgidmapArgv:
      gidMethod === 'direct' ? null : newidmapArgv(tool('newgidmap', options.newgidmap), 'PID', prepared.gid),
    warnings: [],
  };
}

/** One write() of the whole text at offset 0, as the kernel demands. Returns the errno code. */
export function writeProcFile(path: string, text: string): string | null {
  let fd: number;
  try {
    fd = openSync(path, 'w');
  } catch (error) {
    return (error as NodeJS.ErrnoException).code ?? 'EIO';
  }
  try {
    const written = writeSync(fd, text, null, 'latin1');
    return written === text.length ? null : 'SHORT_WRITE';
  } catch (error) {
    return (error as NodeJS.ErrnoException).code ?? 'EIO';
  } finally {
    closeSync(fd);
  }
}

function writeMapDirect(pid: number, kind: IdKind, map: IdMap): void {
  const errno = writeProcFile(`/proc/${pid}/${kind}_map`, formatKernelMap(map.extents));
  if (errno === null) return;
  const verdict = validateMap(map, { kind, parent: ownMap(kind) });
  const why = verdict.ok
    ? errno === 'EPERM'
      ? 'this process may not map these IDs (it needs CAP_SETUID/CAP_SETGID, or only its own ID with setgroups deny)'
      : 'the kernel did not say more'
    : verdict.reason;
  const spans = !verdict.ok && /spans \d+ extents/.test(verdict.reason ?? '');
  throw new NewIdmapError('MAP_WRITE_FAILED', `writing /proc/${pid}/${kind}_map failed (${errno}): ${why}`, {
    hint: spans
      ? `without --no-split (noSplit) userns cuts each line at the current namespace's extents; ${DOCTOR_HINT}`
      : DOCTOR_HINT,
    data: { kind, errno, map: map.toJSON(), predicted: false },
  });
}

function runTool(
  argv: string[],
): Promise<{ code: number | null; stderr: string; spawnError?: NodeJS.ErrnoException }> {
  return new Promise((resolve) => {
    const child = spawnChild(argv[0]!, argv.slice(1), {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
    });
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      stderr += d;
    });
    child.on('error', (error) => resolve({ code: null, stderr, spawnError: error }));
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

function isSetuidRoot(path: string): boolean | undefined {
  try {
    const st = statSync(path);
    return (st.mode & 0o4000) !== 0 && st.uid === 0;
  } catch {
    return undefined;
  }
}

/** NEWUIDMAP_MISSING / NEWGIDMAP_MISSING: the tool is not there (the run's error and the dry run's). */
function toolMissingError(kind: IdKind, toolPath: string, argv: string[]): NewIdmapError {
  const tool = kind === 'uid' ? 'newuidmap' : 'newgidmap';
  return new NewIdmapError(
    kind === 'uid' ? 'NEWUIDMAP_MISSING' : 'NEWGIDMAP_MISSING',
    `${tool} is needed to map more than your own ${kind} without privileges, and ${toolPath === tool ? 'it is not in PATH' : `${toolPath} does not exist`}`,
    {
      hint: `install it (Debian/Ubuntu: apt-get install uidmap; Fedora: shadow-utils), or use --userns self; ${DOCTOR_HINT}`,
      data: { tool, path: toolPath, argv },
    },
  );
}

/**
 * RANGE_NOT_ALLOWED: newuidmap/newgidmap refuses the line `denied` (inside/outside/count) for
 * this user. The same error whether the tool said so (`stderr`) or the dry run predicted it.
 */
async function rangeNotAllowedError(
  kind: IdKind,
  denied: Extent,
  stderr: string | null,
): Promise<NewIdmapError> {
  const tool = kind === 'uid' ? 'newuidmap' : 'newgidmap';
  const user = await currentUser();
  const sub = await getSubordinateRanges(user, kind);
  const file = sub.file ?? (kind === 'uid' ? '/etc/subuid' : '/etc/subgid');
  const has = sub.ranges.length
    ? `${user.name} has ${sub.ranges.map((x) => formatRange(x.start, x.count)).join(', ')}`
    : `${user.name} has no subordinate ${kind}s there`;
  return new NewIdmapError(
    'RANGE_NOT_ALLOWED',
    `${kind}s ${formatRange(denied.outside, denied.count)} (inside ${formatRange(denied.inside, denied.count)}) are not in ${file} for ${user.name}; ${has} (and may map its own ${kind} ${kind === 'uid' ? user.uid : (process.getgid?.() ?? user.gid)})`,
    {
      hint: `ask an administrator to add a range (usermod --add-sub${kind}s START-END ${user.name}), or map only your ranges; ${DOCTOR_HINT}`,
      data: {
        kind,
        tool,
        user: user.name,
        denied: { inside: denied.inside, outside: denied.outside, count: denied.count },
        available: sub.ranges,
        stderr,
      },
    },
  );
}

/**
 * The first line newuidmap/newgidmap would refuse, as shadow's verify_range() decides
 * (docs/kernel-rules.md, "newuidmap and newgidmap"): a line is allowed when the caller's subordinate ranges cover its
 * outside range (several adjacent ranges may), or when it maps one ID, the caller's own real
 * uid (newgidmap: real gid). undefined: every line is allowed.
 */
export function firstRefusedByTool(map: IdMap, own: number, ranges: readonly IdRange[]): Extent | undefined {
  return map.extents.find(
    (e) =>
      !(e.count === 1 && e.outside === own) &&
      subtractRanges([{ start: e.outside, count: e.count }], ranges).length > 0,
  );
}

/**
 * What writeMaps would meet without running anything, for a dry run: a tool that is not there
 * (NEWUIDMAP_MISSING) and a range the tool refuses (RANGE_NOT_ALLOWED), with the same errors the
 * run gives; with `fallback: 'single'`, the plan the run falls back to (and its warning)
 * instead. Checks that need a process (the tool's setuid bit or file capabilities, the kernel's
 * answer) are left to the run.
 */
export async function predictToolFailures(plan: MapPlan, options: MapWriteOptions = {}): Promise<MapPlan> {
  const warnings = [...plan.warnings];
  const result: MapPlan = { ...plan, warnings };
  for (const kind of ['uid', 'gid'] as const) {
    const uid = kind === 'uid';
    if ((uid ? plan.uidMethod : plan.gidMethod) === 'direct') continue;
    const argv = (uid ? plan.newuidmapArgv : plan.newgidmapArgv)!;
    const toolPath = argv[0]!;
    let error: NewIdmapError | undefined;
    if (!(toolPath.includes('/') ? existsSync(toolPath) : findProgram(toolPath) !== undefined))
      error = toolMissingError(kind, toolPath, argv);
    else {
      const own = uid ? (process.getuid?.() ?? 0) : (process.getgid?.() ?? 0);
      const { ranges } = await getSubordinateRanges(await currentUser(), kind);
      const denied = firstRefusedByTool(uid ? plan.uidMap : plan.gidMap, own, ranges);
      if (denied !== undefined) error = await rangeNotAllowedError(kind, denied, null);
    }
    if (error === undefined) continue;
    if (options.fallback !== 'single' || !FALLBACK_CODES.has(error.code)) throw error;
    const single = singleMap(
      uid ? plan.requested.uid : plan.requested.gid,
      uid ? (process.geteuid?.() ?? 0) : (process.getegid?.() ?? 0),
    );
    warnings.push(
      `${error.message}; falling back to a single-ID ${kind} map ${single}${uid ? '' : ' with setgroups deny'} (only ${kind} ${uid ? process.geteuid?.() : process.getegid?.()} is mapped)`,
    );
    if (uid) {
      result.uidMap = single;
      result.uidMethod = 'direct';
      result.newuidmapArgv = null;
    } else {
      result.gidMap = single;
      result.gidMethod = 'direct';
      result.newgidmapArgv = null;
      result.setgroupsWrite = 'deny';
    }
  }
  return result;
}

/** Runs newuidmap/newgidmap and turns its failures into typed errors. */
async function writeWithTool(pid: number, kind: IdKind, map: IdMap, toolPath: string): Promise<void> {
  const tool = kind === 'uid' ? 'newuidmap' : 'newgidmap';
  const TOOL = kind === 'uid' ? 'NEWUIDMAP' : 'NEWGIDMAP';
  const argv = newidmapArgv(toolPath, pid, map);
  const r = await runTool(argv);
  if (r.code === 0) return;
  if (r.spawnError !== undefined) {
    if (r.spawnError.code === 'ENOENT') throw toolMissingError(kind, toolPath, argv);
    throw new NewIdmapError(`${TOOL}_FAILED`, `cannot run ${toolPath}: ${r.spawnError.message}`, {
      hint: `install it (Debian/Ubuntu: apt-get install uidmap; Fedora: shadow-utils), or use --userns self; ${DOCTOR_HINT}`,
      data: { tool, path: toolPath, argv },
    });
  }
  const stderr = r.stderr.trim();
  const notAllowed = /(uid|gid) range \[(\d+)-(\d+)\) -> \[(\d+)-(\d+)\) not allowed/.exec(stderr);
  if (notAllowed) {
    const [inside, insideEnd, outside] = notAllowed.slice(2).map(Number) as [number, number, number];
    throw await rangeNotAllowedError(kind, extent(inside, outside, insideEnd - inside), stderr);
  }
  const setuid = isSetuidRoot(toolPath);
  if (setuid === false) {
    const reason = await inspectNewIdmap(tool, { path: toolPath }).then(
      (info) => (info.usable ? undefined : info.reason),
      () => undefined,
    );
    throw new NewIdmapError(
      `${TOOL}_NOT_SETUID`,
      `${toolPath} is not setuid root (and has no usable file capabilities), so it cannot write ${kind}_map: ${stderr || `exit ${r.code}`}`,
      {
        hint: `reinstall it (Debian/Ubuntu: apt-get install --reinstall uidmap) or run: chmod u+s ${toolPath}; ${DOCTOR_HINT}`,
        data: { tool, path: toolPath, argv, stderr, reason: reason ?? null },
      },
    );
  }
  const errno = /Operation not permitted/.test(stderr)
    ? 'EPERM'
    : /Invalid argument/.test(stderr)
      ? 'EINVAL'
      : null;
  const verdict = validateMap(map, { kind, parent: ownMap(kind) });
  throw new NewIdmapError(
    errno === null ? `${TOOL}_FAILED` : 'MAP_WRITE_FAILED',
    `${tool} failed${errno ? ` (${errno})` : ''}: ${stderr || `exit ${r.code}`}${verdict.ok ? '' : `; ${verdict.reason}`}`,
    { hint: DOCTOR_HINT, data: { kind, tool, argv, errno, stderr } },
  );
}

const FALLBACK_CODES = new Set([
  'NEWUIDMAP_MISSING',
  'NEWGIDMAP_MISSING',
  'NEWUIDMAP_NOT_SETUID',
  'NEWGIDMAP_NOT_SETUID',
  'NEWUIDMAP_FAILED',
  'NEWGIDMAP_FAILED',
  'RANGE_NOT_ALLOWED',
]);

/** The single-ID map of the caller: the inside ID the request gave it, else 0. */
export function singleMap(request: IdMap, own: number): IdMap {
  const inside = request.toInside(own) ?? 0;
  return new IdMap([extent(inside, own, 1)]);
}

/**
 * Writes the planned maps for the helper `pid` and reads back what is in force.
 * Throws NewIdmapError (or MapError) when the maps cannot be written.
 */
export async function writeMaps(
  pid: number,
  plan: MapPlan,
  options: MapWriteOptions = {},
): Promise<AppliedMaps> {
  const warnings: string[] = [];
  const warn = (message: string) => {
    warnings.push(message);
    options.onWarning?.(message);
  };
  for (const message of plan.warnings) warn(message);
  const euid = process.geteuid?.() ?? 0;
  const egid = process.getegid?.() ?? 0;

  const setgroups = (value: 'allow' | 'deny') => {
    const errno = writeProcFile(`/proc/${pid}/setgroups`, `${value}\n`);
    if (errno !== null) {
      throw new NewIdmapError(
        'SETGROUPS_WRITE_FAILED',
        `writing ${value} to /proc/${pid}/setgroups failed (${errno})`,
        {
          hint:
            value === 'allow'
              ? `setgroups is denied in the current namespace and cannot be re-allowed in a child; ${DOCTOR_HINT}`
              : DOCTOR_HINT,
          data: { errno, value },
        },
      );
    }
  };
  if (plan.setgroupsWrite !== null) setgroups(plan.setgroupsWrite);

  /** Writes one kind's map directly or through its tool; on a tool failure, maybe falls back. */
  const writeKind = async (kind: IdKind) => {
    const uid = kind === 'uid';
    const map = uid ? plan.uidMap : plan.gidMap;
    if ((uid ? plan.uidMethod : plan.gidMethod) === 'direct') return writeMapDirect(pid, kind, map);
    const tool = uid
      ? (plan.newuidmapArgv?.[0] ?? options.newuidmap ?? 'newuidmap')
      : (plan.newgidmapArgv?.[0] ?? options.newgidmap ?? 'newgidmap');
    try {
      await writeWithTool(pid, kind, map, tool);
    } catch (error) {
      const fallback =
        options.fallback === 'single' && error instanceof NewIdmapError && FALLBACK_CODES.has(error.code);
      if (!fallback) throw error;
      const own = uid ? euid : egid;
      const single = singleMap(uid ? plan.requested.uid : plan.requested.gid, own);
      const deny = uid ? '' : ' with setgroups deny';
      warn(
        `${error.message}; falling back to a single-ID ${kind} map ${single}${deny} (only ${kind} ${own} is mapped)`,
      );
      // An unprivileged single-ID gid map needs setgroups deny first.
      if (!uid && readSetgroupsSync(pid) !== 'deny') setgroups('deny');
      writeMapDirect(pid, kind, single);
    }
  };
  if (plan.uidMethod === 'direct' && plan.gidMethod === 'direct') {
    // The common privileged case: two synchronous writes, no tool, no extra event-loop turns.
    writeMapDirect(pid, 'uid', plan.uidMap);
    writeMapDirect(pid, 'gid', plan.gidMap);
  } else {
    const results = await Promise.allSettled([writeKind('uid'), writeKind('gid')]);
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  }

  // Nothing wrote setgroups: a new namespace inherits its parent's (ours), read once per process.
  const untouched = plan.setgroupsWrite === null && plan.gidMethod === 'direct' && warnings.length === 0;
  const inForce = untouched ? ownSetgroups() : readSetgroupsSync(pid);
  if (options.setgroups === 'allow' && inForce === 'deny') {
    throw new NewIdmapError(
      'SETGROUPS_DENIED',
      `setgroups allow was requested but /proc/${pid}/setgroups says deny` +
        (plan.gidMethod === 'newgidmap'
          ? ' (newgidmap writes deny when no gid range came from /etc/subgid)'
          : ''),
      { hint: `map gids from /etc/subgid, or use setgroups deny; ${DOCTOR_HINT}` },
    );
  }
  return {
    uidMap: readIdMapSync(pid, 'uid'),
    gidMap: readIdMapSync(pid, 'gid'),
    setgroups: inForce,
    warnings,
  };
}

/** For messages: a map as kernel text lines. */
export function mapLines(map: IdMap | readonly Extent[]): string {
  return formatKernelMap(map instanceof IdMap ? map.extents : map).trimEnd();
}
