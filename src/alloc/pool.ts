import { readFileSync } from 'node:fs';
import { UsageError, UsernsError } from '../errors/index.js';
import { formatRange, type IdKind, INVALID_ID } from '../idmap/extent.js';
import { type IdRange, intersectRanges, rangesSize, subtractRanges } from '../idmap/ranges.js';
import {
  getSubordinateRanges,
  type SubordinateOptions,
  suggestSubordinateRange,
} from '../system/subordinate.js';
import { currentUser, lookupUser } from '../system/users.js';

/**
 * The pools IDs are allocated from, uid and gid separately (they are never assumed equal):
 *
 * 1. `--uid-pool`/`--gid-pool`/`--pool` (both kinds) given by the caller;
 * 2. root: the `uidPool`/`gidPool`/`pool` of the configuration file (/etc/userns/alloc.json);
 * 3. root: the subordinate ranges of the `containers` user (podman's rootful --userns=auto), if
 *    it has some; else systemd's container range 0x80000–0x6FFFFFFF (nspawn pick, nsresourced);
 * 4. not root: the caller's own subordinate ranges (the IDs newuidmap lets them map). A pool
 *    given by a non-root caller must lie inside them.
 *
 * Pools are normalized (sorted, merged) and never contain 4294967295, (u32)-1.
 */

export const SYSTEMD_CONTAINER_RANGE: IdRange = Object.freeze({
  start: 0x80000,
  count: 0x70000000 - 0x80000,
});
/** Root's pool configuration: `{"pool": ["START:COUNT", …]}` or `uidPool`/`gidPool` (optional file). */
export const DEFAULT_CONFIG_PATH = '/etc/userns/alloc.json';

/** The configuration file in force: $USERNS_ALLOC_CONFIG when set, else /etc/userns/alloc.json. */
export function configPath(): string {
  return process.env.USERNS_ALLOC_CONFIG || DEFAULT_CONFIG_PATH;
}

/** The IDs one kind (uids or gids) may be allocated from. */
export interface Pool {
  ranges: IdRange[];
  /** Where the ranges came from, in words. */
  source: string;
}

/** The uid pool and the gid pool (allocations take the same range from each when they can). */
export interface Pools {
  uid: Pool;
  gid: Pool;
  /**
   * What the lookup of the pools found wrong and worked around (a malformed or overflowing
   * `containers` line…): printed on stderr and in --json by the CLI, never dropped.
   */
  warnings?: string[];
}

/**
 * Where {@link resolvePools} takes the pools from: explicit ranges, the configuration file, the
 * caller (its subordinate ranges when not root).
 */
export interface PoolOptions {
  /** The same ranges for uids and gids. */
  pool?: readonly IdRange[];
  uidPool?: readonly IdRange[];
  gidPool?: readonly IdRange[];
  /** Configuration file (root only); default $USERNS_ALLOC_CONFIG or /etc/userns/alloc.json, missing = none. */
  configPath?: string;
  /** Whose pools (default: the caller). */
  euid?: number;
  subordinate?: SubordinateOptions;
  /** passwd file to find users in instead of NSS (tests). */
  passwdPath?: string;
}

/** Normalizes and drops (u32)-1 and anything past it. */
export function clipPool(ranges: Iterable<IdRange>): IdRange[] {
  return intersectRanges(ranges, [{ start: 0, count: INVALID_ID }]);
}

/** `[100000-165535, …]` (inclusive ranges), or `[] (empty)`: a pool in messages. */
export function formatPool(ranges: readonly IdRange[]): string {
  if (ranges.length === 0) return '[] (empty)';
  return `[${ranges.map((r) => formatRange(r.start, r.count)).join(', ')}]`;
}

/** `START:COUNT` (decimal or 0x hex), as given to --pool. */
export function parsePoolArgument(text: string, option = '--pool'): IdRange {
  const m = /^(0x[0-9a-fA-F]+|[0-9]+):(0x[0-9a-fA-F]+|[0-9]+)$/.exec(text.trim());
  const start = m ? Number(m[1]) : Number.NaN;
  const count = m ? Number(m[2]) : Number.NaN;
  if (
    !m ||
    !Number.isSafeInteger(start) ||
    !Number.isSafeInteger(count) ||
    count < 1 ||
    start + count > INVALID_ID
  ) {
    throw new UsageError(
      `${option} ${JSON.stringify(text)}: expected START:COUNT with COUNT ≥ 1 and START+COUNT ≤ 4294967295`,
      {
        hint: `e.g. ${option} 524288:1879048192`,
      },
    );
  }
  return { start, count };
}

interface ConfigFile {
  pool?: IdRange[];
  uidPool?: IdRange[];
  gidPool?: IdRange[];
}

/** Pool ranges of a configuration value: a list of "START:COUNT" or {"start","count"} (ALLOC_CONFIG otherwise). */
export function configRanges(value: unknown, where: string): IdRange[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value))
    throw new UsernsError('ALLOC_CONFIG', `${where}: expected a list of "START:COUNT" or {"start","count"}`);
  return value.map((v) => {
    if (typeof v === 'string') return parsePoolArgument(v, where);
    if (
      v !== null &&
      typeof v === 'object' &&
      Number.isSafeInteger(v.start) &&
      Number.isSafeInteger(v.count)
    ) {
      return parsePoolArgument(`${v.start}:${v.count}`, where);
    }
    throw new UsernsError(
      'ALLOC_CONFIG',
      `${where}: ${JSON.stringify(v)} is not "START:COUNT" or {"start","count"}`,
    );
  });
}

/** Reads the pool settings of the configuration file; a missing file is no settings. */
export function readPoolConfig(path: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new UsernsError('ALLOC_CONFIG', `cannot read ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new UsernsError('ALLOC_CONFIG', `${path}: not valid JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const out: ConfigFile = {};
  const pool = configRanges(json.pool, `${path}: pool`);
  const uidPool = configRanges(json.uidPool, `${path}: uidPool`);
  const gidPool = configRanges(json.gidPool, `${path}: gidPool`);
  if (pool) out.pool = pool;
  if (uidPool) out.uidPool = uidPool;
  if (gidPool) out.gidPool = gidPool;
  return out;
}

function given(
  options: { pool?: readonly IdRange[]; uidPool?: readonly IdRange[]; gidPool?: readonly IdRange[] },
  kind: IdKind,
) {
  const own = kind === 'uid' ? options.uidPool : options.gidPool;
  return own ?? options.pool;
}

/**
 * The problems of a subordinate ID file that are on lines of `user` (malformed, overflowing):
 * "FILE:LINE: reason".
 */
function problemsOf(
  sub: { problems: readonly { line: number; message: string; source?: string | undefined }[]; file?: string },
  user: { name: string; uid: number },
): string[] {
  if (sub.file === undefined || sub.problems.length === 0) return [];
  let lines: string[];
  try {
    lines = readFileSync(sub.file, 'utf8').split('\n');
  } catch {
    return [];
  }
  return sub.problems
    .filter((p) => p.source === sub.file)
    .filter((p) => {
      const owner = (lines[p.line - 1] ?? '').split(':')[0];
      return owner === user.name || owner === String(user.uid);
    })
    .map((p) => p.message);
}

/**
 * The pools an allocation draws from. Root: explicit ranges, else /etc/userns/alloc.json, else the
 * subordinate ranges of the user `containers`, else systemd's container range 0x80000–0x6FFFFFFF.
 * Others: their own subordinate ranges (explicit ranges must lie inside them).
 *
 * @throws AllocError when a pool is empty or an explicit range is not the caller's; ParseError for a
 * malformed configuration file (file and line).
 */
export async function resolvePools(options: PoolOptions = {}): Promise<Pools> {
  const euid = options.euid ?? process.geteuid?.() ?? 0;
  const out: Partial<Pools> = {};
  const warnings: string[] = [];
  const lookup =
    options.passwdPath === undefined ? {} : { passwdPath: options.passwdPath, getentPath: '/nonexistent' };
  if (euid === 0) {
    let config: ConfigFile | undefined;
    let containers: Awaited<ReturnType<typeof lookupUser>> | null = null;
    for (const kind of ['uid', 'gid'] as const) {
      const explicit = given(options, kind);
      if (explicit !== undefined) {
        out[kind] = { ranges: clipPool(explicit), source: '--pool' };
        continue;
      }
      config ??= readPoolConfig(options.configPath ?? configPath());
      const configured = given(config, kind);
      if (configured !== undefined) {
        out[kind] = { ranges: clipPool(configured), source: options.configPath ?? configPath() };
        continue;
      }
      // podman's rootful auto user namespaces: the `containers` user's subordinate ranges. The
      // user need not exist in passwd; /etc/subuid is keyed by the name.
      if (containers === null) containers = await lookupUser('containers', lookup);
      const owner = { name: 'containers', uid: containers?.uid ?? -1 };
      const sub = await getSubordinateRanges(owner, kind, options.subordinate);
      const broken = problemsOf(sub, owner);
      if (sub.ranges.length > 0) {
        for (const b of broken)
          warnings.push(
            `${b}: this line of user "containers" is ignored; its other ${kind} ranges are the pool`,
          );
        out[kind] = {
          ranges: clipPool(sub.ranges),
          source: `subordinate ${kind}s of user "containers" (${sub.file ?? sub.getsubids ?? sub.source})`,
        };
        continue;
      }
      for (const b of broken)
        warnings.push(
          `${b}: this line of user "containers" is ignored, so the ${kind} pool is the systemd container range instead (fix the line, or give --pool)`,
        );
      out[kind] = { ranges: [SYSTEMD_CONTAINER_RANGE], source: 'systemd container range 0x80000-0x6FFFFFFF' };
    }
    if (warnings.length > 0) out.warnings = warnings;
    return out as Pools;
  }
  const user = await currentUser(lookup);
  for (const kind of ['uid', 'gid'] as const) {
    const sub = await getSubordinateRanges(user, kind, options.subordinate);
    const own = clipPool(sub.ranges);
    const where = sub.file ?? sub.getsubids ?? (kind === 'uid' ? '/etc/subuid' : '/etc/subgid');
    if (own.length === 0) {
      // A range nobody has yet (the one doctor proposes), not a fixed one another user may own.
      const free = await suggestSubordinateRange(options.subordinate);
      const broken = problemsOf(sub, user);
      throw new UsernsError(
        'ALLOC_NO_POOL',
        `user ${user.name} has no subordinate ${kind}s to allocate from (${where})${broken.length > 0 ? `: ${broken.join('; ')}` : ''}`,
        {
          hint: `ask an administrator to add a free range: usermod --add-sub${kind}s ${formatRange(free.start, free.count)} ${user.name}`,
          data: { kind, user: user.name, source: where },
        },
      );
    }
    const explicit = given(options, kind);
    if (explicit !== undefined) {
      const clipped = clipPool(explicit);
      const outside = subtractRanges(clipped, own);
      if (outside.length > 0) {
        throw new UsageError(
          `the ${kind} pool ${formatPool(clipped)} is not inside your subordinate ${kind}s ${formatPool(own)} (${where}): ${formatPool(outside)} would not be mappable`,
          { hint: 'as an unprivileged user you can only allocate from your own subordinate ranges' },
        );
      }
      out[kind] = { ranges: clipped, source: '--pool' };
    } else out[kind] = { ranges: own, source: `your subordinate ${kind}s (${where})` };
    for (const b of problemsOf(sub, user)) warnings.push(`${b}: this line of yours is ignored`);
  }
  if (warnings.length > 0) out.warnings = warnings;
  return out as Pools;
}

/** The number of IDs in a pool. */
export function poolSize(pool: Pool): number {
  return rangesSize(pool.ranges);
}
