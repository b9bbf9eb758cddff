import { randomBytes } from 'node:crypto';
import { closeSync, constants, existsSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { AllocError, StateFileError, UsernsError } from '../errors/index.js';
import { type Extent, extent, type IdKind } from '../idmap/extent.js';
import {
  type IdRange,
  intersectRanges,
  normalizeRanges,
  rangesSize,
  subtractRanges,
} from '../idmap/ranges.js';
import { validateMap } from '../idmap/validate.js';
import { writeFileAtomic } from '../state/atomic.js';
import {
  type DatabaseContext,
  databaseError,
  databaseFiles,
  ensureSchema,
  openDatabase,
  openMemoryDatabase,
  type Schema,
  type SqliteDatabase,
  type SqliteStatement,
  type SqliteTransaction,
} from '../state/database.js';
import { acquireFileLock } from '../state/lock.js';
import { ensurePrivateDir } from '../state/state-root.js';
import { bootId, processLiveness, procPidNamespace } from '../system/proc.js';
import type { AllocationRegistry } from './backend.js';
import { FreeSpace } from './free-space.js';
import {
  LEGACY_JOURNAL,
  LEGACY_SNAPSHOT,
  LEGACY_TOMBSTONE_FORMAT,
  type LegacyAllocation,
  readLegacyRegistry,
} from './legacy-journal.js';
import {
  checkRequest,
  type HolderLookup,
  nameTaken,
  ownerLiveness,
  place,
  recordedHolder,
  reuseMatching,
} from './placement.js';
import { formatPolicy, type Policy } from './policy.js';
import { formatPool, type Pools } from './pool.js';
import { type Exclusion, exclusionsIn, SystemTaken, type SystemTakenOptions } from './system-taken.js';

export { crc32, decodeLine, encodeLine } from './legacy-journal.js';

/**
 * The allocation registry: one SQLite database, `<root>/alloc/registry.db` (state/database.ts
 * opens it: WAL, synchronous=FULL, busy timeout, schema version).
 *
 * Tables (schema version 1):
 *   registry     one row: `seq`, the last sequence number handed out (allocations and releases
 *                share it: a total order of every operation), `trimmed` (releases up to it are
 *                no longer in `releases`) and `migrated` (what was brought over from the old files)
 *   allocations  one row per live allocation (maps as JSON triples, the holder as JSON)
 *   ranges       the host IDs each allocation reserves, (kind, start) as primary key; a trigger
 *                refuses a range that overlaps another of the same kind, so two live
 *                allocations can never share an ID, whatever a client computes
 *   releases     recent releases (seq, allocation, its creation seq, its ranges), so that a
 *                process can bring its in-memory free-space index up to date cheaply
 *
 * Every allocate, release and gc is one IMMEDIATE transaction: it takes SQLite's write lock (an
 * fcntl lock, dropped by the kernel when its holder dies, so never "stale" and never decided
 * from a PID), waits up to the busy timeout for another writer, reads `seq`, and applies what
 * other processes did since its last look to its in-memory index (O(changes)); when it is too far
 * behind it rebuilds the index from `ranges`. A killed process leaves at most an uncommitted
 * transaction, which SQLite rolls back.
 *
 * On first open, a registry the old code wrote (`snapshot.json` + `journal`, see
 * legacy-journal.ts) is migrated in the same transaction that creates the schema; the old
 * files are then kept as `*.pre-sqlite` and `snapshot.json` becomes a tombstone that makes an
 * old userns refuse to use the directory (instead of handing out IDs from a stale copy).
 *
 * `registry.reserve` is a 256 KiB file that is deleted when a release or gc finds the disk full,
 * so that freeing IDs always works; it is recreated when there is space again.
 */

export interface Allocation {
  /** Stable identifier: 12 hex digits. */
  id: string;
  /** Unique among live allocations; the id when none was given. */
  name: string;
  /** UID of the process that made it. */
  owner: number;
  /** ISO 8601 creation time. */
  created: string;
  /** The policy it was placed by: first-fit, slot:SIZE or base:N. */
  policy: string;
  /** IDs mapped from 0 (before passthrough mappings). */
  size: number;
  /** The uid map to write (inside → host), passthrough mappings included. */
  uidMap: Extent[];
  gidMap: Extent[];
  /** Host uids reserved for it: its block, plus any passthrough IDs that came from the pool. */
  uids: IdRange[];
  gids: IdRange[];
  /** A named namespace it belongs to: `alloc gc` releases it once the namespace is gone. */
  namespace?: string;
  /** A process it belongs to (`userns run --userns auto`): released by gc once it is gone. */
  holder?: Holder;
  /** The registry sequence number of its creation (a total order of all operations). */
  seq: number;
  /** Fleet registry: the node that made it (fleet/registry.ts). */
  node?: string;
  /** Fleet registry: the etcd lease it lives on (it goes when that node's lease expires); absent: persistent. */
  lease?: string;
  /** Fleet registry: the other live nodes that use it (named allocations read by another node). */
  holders?: string[];
  /** The fleet registry it lives in (etcd://…, without credentials); absent: the local registry. */
  registry?: string;
  /** allocate() returned an allocation that existed already under this name (`reuse`). */
  reused?: boolean;
  /**
   * Served from this node's cache because the fleet registry could not be reached: the
   * allocation as it was when it was last read (`readAt`, etcd revision `revision`).
   */
  offline?: { readAt: string; revision: number; reason: string };
}

/**
 * A process an allocation belongs to. `pid` is valid in the PID namespace `pidNamespace` (the
 * inode of its nsfs file; system/proc.ts procPidNamespace): gc checks the process only from a
 * place whose /proc shows that namespace, and otherwise says it cannot check from here.
 */
export interface Holder {
  pid: number;
  /** Field 22 of /proc/PID/stat when the allocation was made (tells a reused PID apart). */
  startTime: string;
  /**
   * Absent for records the old registry wrote (their namespace was not recorded). In a request,
   * absent means "the namespace of this process's /proc" and null "unknown" (never judged).
   */
  pidNamespace?: number | null;
  /** The boot it was recorded in (system/proc.ts bootId): a holder of another boot is gone. */
  boot?: string;
}

/**
 * What an allocation registry's `allocate()` is asked for: `size` IDs from inside 0, placed by `policy` in
 * `pools`, with an optional unique name, owner (named namespace or process) and extra mappings.
 */
export interface AllocationRequest {
  size: number;
  policy: Policy;
  /** The pools (the local registry needs them; a fleet registry takes its own from its configuration). */
  pools?: Pools;
  name?: string;
  /**
   * When an allocation of this name exists: return it (when its size and passthrough mappings
   * match the request, else ALLOC_NAME_MISMATCH) instead of failing with ALLOC_NAME_TAKEN.
   * Default: false for the local registry, true for a fleet registry ("first come allocates,
   * later ones read it").
   */
  reuse?: boolean;
  /**
   * Fleet registry: tie the allocation to this node's lease ('node'; NODE_NOT_REGISTERED when no
   * agent keeps one), only when there is one ('auto'), or never ('none', the default: persistent).
   */
  lease?: 'node' | 'auto' | 'none';
  /**
   * What the caller did not choose: a registry with defaults of its own (a fleet's
   * configuration names a policy) may replace the policy, and then the size by the slot size.
   */
  defaults?: { policy?: boolean; size?: boolean };
  namespace?: string;
  /** A PID as this process's /proc shows it (pidNamespace defaults to that of /proc). */
  holder?: Holder;
  /** podman `uidmapping=`: extra inside → host mappings punched into the map. */
  uidPassthrough?: readonly Extent[];
  gidPassthrough?: readonly Extent[];
}

/** How much of one kind's pool is used: sizes in IDs, `largestFree` the largest free block. */
export interface KindUsage {
  pool: IdRange[];
  source: string;
  poolSize: number;
  free: number;
  used: number;
  largestFree: number;
  /** IDs of the pool no allocation holds but that are not free, and why (system-taken.ts). */
  excluded: Exclusion[];
}

/** Tuning and test options of a Registry (the registry's database and index, registry.ts). */
export interface RegistryOptions {
  /** IDs taken by passwd/group entries, users' subordinate ranges and systemd-nsresourced; null = ignore them (tests). */
  systemTaken?: SystemTakenOptions | null;
  /** How long a writer waits for the database lock (default 30 s), then LOCK_TIMEOUT. */
  lockTimeoutMs?: number;
  /** Releases kept for other processes' incremental updates (default 4096). */
  releaseLog?: number;
}

/** Whether a gc candidate's owner is gone; 'unknown' keeps it (with a reason). */
export type Liveness = 'alive' | 'dead' | 'unknown';

/** What {@link collectGarbage} did: the allocations released, and those kept because their owner could not be checked. */
export interface GcResult {
  released: Allocation[];
  /** Allocations whose owner could not be checked from here, with why: kept. */
  kept: { allocation: Allocation; reason: string }[];
}

/**
 * No block of the requested size is free in a pool (the error's data has the largest free block and the free total).
 */
export const ALLOC_EXHAUSTED = 'ALLOC_EXHAUSTED';
/** An allocation of that name exists already. */
export const ALLOC_NAME_TAKEN = 'ALLOC_NAME_TAKEN';
/** No allocation has that id or name. */
export const ALLOC_NOT_FOUND = 'ALLOC_NOT_FOUND';

/** The database file in a registry directory. */
export const REGISTRY_FILE = 'registry.db';
const RESERVE_FILE = 'registry.reserve';
const RESERVE_BYTES = 256 * 1024;
/** "usns" */
const APPLICATION_ID = 0x75736e73;
/** The version of the registry database's schema (`PRAGMA user_version`); a newer one is refused. */
export const REGISTRY_SCHEMA_VERSION = 1;

const DDL = `
CREATE TABLE registry (
  one INTEGER PRIMARY KEY CHECK (one = 1),
  seq INTEGER NOT NULL,
  trimmed INTEGER NOT NULL DEFAULT 0,
  migrated TEXT
);
INSERT INTO registry (one, seq) VALUES (1, 0);
CREATE TABLE allocations (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  owner INTEGER NOT NULL,
  created TEXT NOT NULL,
  policy TEXT NOT NULL,
  size INTEGER NOT NULL CHECK (size >= 1),
  seq INTEGER NOT NULL UNIQUE,
  uid_map TEXT NOT NULL,
  gid_map TEXT NOT NULL,
  namespace TEXT,
  holder TEXT
) WITHOUT ROWID;
CREATE TABLE ranges (
  kind TEXT NOT NULL CHECK (kind IN ('uid', 'gid')),
  start INTEGER NOT NULL CHECK (start >= 0),
  count INTEGER NOT NULL CHECK (count >= 1 AND start + count <= 4294967295),
  allocation TEXT NOT NULL,
  PRIMARY KEY (kind, start)
) WITHOUT ROWID;
CREATE INDEX ranges_of_allocation ON ranges (allocation);
CREATE TRIGGER ranges_never_overlap BEFORE INSERT ON ranges
WHEN (SELECT start + count > NEW.start FROM ranges
      WHERE kind = NEW.kind AND start < NEW.start + NEW.count ORDER BY start DESC LIMIT 1)
BEGIN SELECT RAISE(ABORT, 'userns: two allocations would share IDs'); END;
CREATE TABLE releases (
  seq INTEGER PRIMARY KEY,
  allocation TEXT NOT NULL,
  created INTEGER NOT NULL,
  ranges TEXT NOT NULL
);
`;

interface AllocationRow {
  id: string;
  name: string;
  owner: number;
  created: string;
  policy: string;
  size: number;
  seq: number;
  uid_map: string;
  gid_map: string;
  namespace: string | null;
  holder: string | null;
}

interface RangeRow {
  kind: IdKind;
  start: number;
  count: number;
  allocation: string;
}

type Triple = [number, number, number];

function mapJson(map: readonly Extent[]): string {
  return JSON.stringify(map.map((e) => [e.inside, e.outside, e.count]));
}

function fromRow(row: AllocationRow, ranges: readonly RangeRow[]): Allocation {
  const a: Allocation = {
    id: row.id,
    name: row.name,
    owner: row.owner,
    created: row.created,
    policy: row.policy,
    size: row.size,
    uidMap: (JSON.parse(row.uid_map) as Triple[]).map(([i, o, c]) => extent(i, o, c)),
    gidMap: (JSON.parse(row.gid_map) as Triple[]).map(([i, o, c]) => extent(i, o, c)),
    uids: ranges.filter((r) => r.kind === 'uid').map(({ start, count }) => ({ start, count })),
    gids: ranges.filter((r) => r.kind === 'gid').map(({ start, count }) => ({ start, count })),
    seq: row.seq,
  };
  if (row.namespace !== null) a.namespace = row.namespace;
  if (row.holder !== null) a.holder = JSON.parse(row.holder) as Holder;
  return a;
}

interface ReleasedRow {
  allocation: Allocation;
  seq: number;
  /** [kind, start, count] of every range it reserved. */
  ranges: [string, number, number][];
}

interface IndexEntry {
  kind: IdKind;
  pool: IdRange[];
  taken: IdRange[];
  takenVersion: number;
  free: FreeSpace;
}

interface Statements {
  head: SqliteStatement;
  setSeq: SqliteStatement;
  trim: SqliteStatement;
  setTrimmed: SqliteStatement;
  byIdOrName: SqliteStatement;
  rangesOf: SqliteStatement;
  rangeBefore: SqliteStatement;
  insertAllocation: SqliteStatement;
  insertRange: SqliteStatement;
  deleteAllocation: SqliteStatement;
  deleteRanges: SqliteStatement;
  insertRelease: SqliteStatement;
  releasesSince: SqliteStatement;
  rangesSince: SqliteStatement;
  rangesOfKind: SqliteStatement;
  all: SqliteStatement;
  allRanges: SqliteStatement;
}

function prepare(db: SqliteDatabase): Statements {
  return {
    head: db.prepare('SELECT seq, trimmed FROM registry WHERE one = 1'),
    setSeq: db.prepare('UPDATE registry SET seq = ? WHERE one = 1'),
    trim: db.prepare('DELETE FROM releases WHERE seq <= ?'),
    setTrimmed: db.prepare('UPDATE registry SET trimmed = ? WHERE one = 1'),
    byIdOrName: db.prepare(
      'SELECT * FROM allocations WHERE id = :key OR name = :key ORDER BY id = :key DESC LIMIT 1',
    ),
    rangesOf: db.prepare(
      'SELECT kind, start, count, allocation FROM ranges WHERE allocation = ? ORDER BY kind DESC, start',
    ),
    rangeBefore: db.prepare(
      'SELECT kind, start, count, allocation FROM ranges WHERE kind = ? AND start < ? ORDER BY start DESC LIMIT 1',
    ),
    insertAllocation: db.prepare(
      'INSERT INTO allocations (id, name, owner, created, policy, size, seq, uid_map, gid_map, namespace, holder) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    insertRange: db.prepare('INSERT INTO ranges (kind, start, count, allocation) VALUES (?, ?, ?, ?)'),
    deleteAllocation: db.prepare('DELETE FROM allocations WHERE id = ?'),
    deleteRanges: db.prepare('DELETE FROM ranges WHERE allocation = ?'),
    insertRelease: db.prepare('INSERT INTO releases (seq, allocation, created, ranges) VALUES (?, ?, ?, ?)'),
    releasesSince: db.prepare('SELECT created, ranges FROM releases WHERE seq > ? ORDER BY seq'),
    rangesSince: db.prepare(
      'SELECT r.kind, r.start, r.count FROM allocations a JOIN ranges r ON r.allocation = a.id WHERE a.seq > ?',
    ),
    rangesOfKind: db.prepare('SELECT start, count FROM ranges WHERE kind = ?'),
    all: db.prepare('SELECT * FROM allocations ORDER BY seq'),
    allRanges: db.prepare('SELECT kind, start, count, allocation FROM ranges ORDER BY kind DESC, start'),
  };
}

/**
 * The allocation registry of one state root (`<root>/alloc/`): every process sees the same
 * allocations, changes are made under a cross-process lock and survive crashes. Use the
 * functions of `userns/alloc` ({@link allocate}, {@link release}, {@link gc}) unless you need to
 * keep one open.
 */
export class Registry implements AllocationRegistry {
  readonly backend = 'local' as const;
  readonly poolsFromRegistry = false;
  readonly dir: string;
  /** The database file. */
  readonly path: string;
  readonly #options: RegistryOptions;
  readonly #systemTaken: SystemTaken | undefined;
  #db: SqliteDatabase | undefined;
  #sql: Statements | undefined;
  /** The connection's transaction function (see #transaction). */
  #run: SqliteTransaction<[() => unknown], unknown> | undefined;
  /** The registry seq the in-memory indexes reflect (-1: none). */
  #cachedSeq = -1;
  #indexes: IndexEntry[] = [];
  #reserveMissing = false;
  /** What the first open migrated from the old files (undefined: nothing). */
  migration: { from: string[]; allocations: number; warnings: string[] } | undefined;

  constructor(dir: string, options: RegistryOptions = {}) {
    this.dir = dir;
    this.path = join(dir, REGISTRY_FILE);
    this.#options = options;
    this.#systemTaken = options.systemTaken === null ? undefined : new SystemTaken(options.systemTaken ?? {});
  }

  /** The database file. */
  get location(): string {
    return this.path;
  }

  /** The pools come from this machine's configuration (pool.ts), not from the registry. */
  async registryPools(): Promise<undefined> {
    return undefined;
  }

  get #context(): DatabaseContext {
    return {
      path: this.path,
      what: 'the allocation registry',
      recover: `userns alloc recover --root ${join(this.dir, '..')}`,
      timeoutMs: this.#options.lockTimeoutMs ?? 30_000,
      fullHint: "; releasing still works: 'userns alloc release ID', 'userns alloc gc'",
    };
  }

  // --- opening and migration -------------------------------------------------------------------

  #open(): { db: SqliteDatabase; sql: Statements } {
    if (this.#db?.open && this.#sql !== undefined) return { db: this.#db, sql: this.#sql };
    ensurePrivateDir(this.dir, 'allocation registry');
    const context = this.#context;
    const db = openDatabase({ ...context, timeoutMs: context.timeoutMs! });
    let migrated: Registry['migration'];
    const schema: Schema = {
      applicationId: APPLICATION_ID,
      version: REGISTRY_SCHEMA_VERSION,
      create: (db) => {
        db.exec(DDL);
        migrated = migrateLegacy(db, this.dir);
      },
    };
    try {
      ensureSchema(db, schema, context);
      this.#retireLegacyFiles(db);
    } catch (error) {
      db.close();
      throw databaseError(error, context);
    }
    this.migration = migrated;
    this.#db = db;
    this.#sql = prepare(db);
    this.#run = undefined;
    this.#cachedSeq = -1;
    this.#indexes = [];
    this.#ensureReserve();
    return { db, sql: this.#sql };
  }

  /**
   * After a migration committed: the old files become `*.pre-sqlite` (kept for reference) and
   * snapshot.json a tombstone that an older userns refuses ("the snapshot does not have the
   * expected fields"), instead of handing out IDs from its stale copy. Idempotent: a process
   * killed half-way is finished by the next open.
   */
  #retireLegacyFiles(db: SqliteDatabase): void {
    const migrated = db.prepare('SELECT migrated FROM registry WHERE one = 1').pluck().get();
    if (migrated === null || migrated === undefined) return;
    const snapshot = join(this.dir, LEGACY_SNAPSHOT);
    const journal = join(this.dir, LEGACY_JOURNAL);
    const tombstoned = (() => {
      try {
        return readLegacyRegistry(this.dir) === undefined;
      } catch {
        return false;
      }
    })();
    if (tombstoned && !existsSync(journal)) return;
    for (const file of [journal, ...(tombstoned ? [] : [snapshot])]) {
      try {
        renameSync(file, `${file}.pre-sqlite`);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
    }
    writeFileAtomic(
      snapshot,
      `${JSON.stringify({
        format: LEGACY_TOMBSTONE_FORMAT,
        database: REGISTRY_FILE,
        note: 'this registry now lives in registry.db (SQLite); the old files are kept as *.pre-sqlite',
      })}\n`,
    );
  }

  #ensureReserve(): void {
    const path = join(this.dir, RESERVE_FILE);
    if (existsSync(path)) {
      this.#reserveMissing = false;
      return;
    }
    const temp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
    try {
      const fd = openSync(
        temp,
        constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW,
        0o600,
      );
      try {
        writeSync(fd, Buffer.alloc(RESERVE_BYTES));
      } finally {
        closeSync(fd);
      }
      renameSync(temp, path);
      this.#reserveMissing = false;
    } catch {
      // No space (or another problem): try again after the next successful write.
      try {
        unlinkSync(temp);
      } catch {
        /* not created */
      }
      this.#reserveMissing = true;
    }
  }

  /** Frees the reserve so that a release can be written on a full disk; false if there was none. */
  #dropReserve(): boolean {
    try {
      unlinkSync(join(this.dir, RESERVE_FILE));
      this.#reserveMissing = true;
      return true;
    } catch {
      return false;
    }
  }

  // --- transactions ----------------------------------------------------------------------------

  /**
   * Runs `fn` in one transaction (IMMEDIATE when writing), with the indexes brought up to date.
   *
   * `syncAtCommit: false` (releases): the commit is atomic and survives the process being killed,
   * but its fsync is left to the next commit that syncs (every allocation's) or to the next
   * checkpoint. The write-ahead log is appended in commit order and synced as a whole, and SQLite
   * replays it only up to the first frame that fails its running checksum, so an allocation that
   * survives a power cut carries every release committed before it. A power cut can therefore
   * bring back a release that was never followed by an allocation (its IDs stay reserved until
   * released again: a leak, never two holders), but never lose an allocation: the one direction
   * in which a lost commit hands the same IDs out twice (README, "Locking and crashes").
   */
  #transaction<T>(write: boolean, fn: (sql: Statements) => T, syncAtCommit = true): T {
    const { db, sql } = this.#open();
    // One transaction function per connection (better-sqlite3 builds its wrappers on every
    // db.transaction() call), given the work as its argument.
    this.#run ??= db.transaction((work: () => unknown) => work());
    const run = this.#run;
    const work = () => {
      this.#sync(sql);
      return fn(sql);
    };
    const deferSync = write && !syncAtCommit;
    try {
      if (deferSync) db.pragma('synchronous = NORMAL');
      return (write ? run.immediate(work) : run.deferred(work)) as T;
    } catch (error) {
      if (!(error instanceof UsernsError)) {
        // The transaction did not commit: what this process believed may be wrong.
        this.#cachedSeq = -1;
        this.#indexes = [];
      }
      throw databaseError(error, this.#context);
    } finally {
      if (deferSync && db.open) db.pragma('synchronous = FULL');
    }
  }

  /**
   * A releasing transaction (its fsync deferred, see #transaction) that, on a full disk, gives
   * up the reserve and tries once more.
   */
  #freeing<T>(fn: (sql: Statements) => T): T {
    try {
      return this.#transaction(true, fn, false);
    } catch (error) {
      if (!(error instanceof StateFileError && error.code === 'NO_SPACE') || !this.#dropReserve())
        throw error;
      return this.#transaction(true, fn, false);
    }
  }

  /** Applies what other processes committed since this one last looked. */
  #sync(sql: Statements): void {
    const head = sql.head.get() as { seq: number; trimmed: number };
    if (head.seq === this.#cachedSeq) return;
    if (this.#cachedSeq < 0 || this.#cachedSeq < head.trimmed || this.#indexes.length === 0) {
      this.#indexes = []; // rebuilt from `ranges` when next needed
      this.#cachedSeq = head.seq;
      return;
    }
    const since = this.#cachedSeq;
    // Releases first (their IDs may have been handed out again since), and only of allocations
    // the indexes knew (created before `since`); then the allocations made since.
    for (const r of sql.releasesSince.all(since) as { created: number; ranges: string }[]) {
      if (r.created > since) continue;
      this.#releaseInIndexes(JSON.parse(r.ranges) as [string, number, number][]);
    }
    for (const r of sql.rangesSince.all(since) as RangeRow[])
      for (const ix of this.#indexes) if (ix.kind === r.kind) ix.free.carve(r.start, r.count);
    this.#cachedSeq = head.seq;
  }

  #releaseInIndexes(ranges: readonly [string, number, number][]): void {
    for (const ix of this.#indexes) {
      const mine = ranges.filter(([k]) => k === ix.kind).map(([, start, count]) => ({ start, count }));
      for (const r of subtractRanges(intersectRanges(mine, ix.pool), ix.taken))
        ix.free.release(r.start, r.count);
    }
  }

  // --- the free-space index --------------------------------------------------------------------

  #taken(kind: IdKind): { ranges: IdRange[]; version: number } {
    if (this.#systemTaken === undefined) return { ranges: [], version: 0 };
    const t = this.#systemTaken.get();
    return { ranges: kind === 'uid' ? t.uid : t.gid, version: this.#systemTaken.version };
  }

  /** The free space of `pool` (built on first use from `ranges`: O(n log n); then kept up to date). */
  #index(sql: Statements, kind: IdKind, pool: readonly IdRange[]): IndexEntry {
    const taken = this.#taken(kind);
    const normalized = normalizeRanges(pool);
    const key = JSON.stringify(normalized);
    const found = this.#indexes.find((ix) => ix.kind === kind && JSON.stringify(ix.pool) === key);
    if (found !== undefined && found.takenVersion === taken.version) return found;
    if (found !== undefined) this.#indexes.splice(this.#indexes.indexOf(found), 1);
    const used: IdRange[] = [...taken.ranges, ...(sql.rangesOfKind.all(kind) as IdRange[])];
    const entry: IndexEntry = {
      kind,
      pool: normalized,
      taken: taken.ranges,
      takenVersion: taken.version,
      free: new FreeSpace(subtractRanges(normalized, used)),
    };
    this.#indexes.push(entry);
    if (this.#indexes.length > 8) this.#indexes.shift();
    return entry;
  }

  // --- operations ------------------------------------------------------------------------------

  /**
   * Checks a request and the holder it records (before anything is read).
   */
  #checkRequest(request: AllocationRequest): Holder | undefined {
    checkRequest(request);
    if (request.pools === undefined) throw new TypeError('the local registry needs the pools of the request');
    return recordedHolder(request.holder);
  }

  /**
   * The allocation `request` gets now, in transaction `sql` (not recorded): the existing one of
   * its name when `reuse` allows (marked `reused`), else a new placement (placement.ts).
   */
  #place(sql: Statements, request: AllocationRequest, holder: Holder | undefined): Allocation {
    const pools = request.pools!;
    const name = request.name;
    if (name !== undefined) {
      const other = sql.byIdOrName.get({ key: name }) as AllocationRow | undefined;
      if (other !== undefined && (other.name === name || !request.reuse)) {
        const existing = fromRow(other, sql.rangesOf.all(other.id) as RangeRow[]);
        if (request.reuse && other.name === name) return reuseMatching(existing, request);
        throw nameTaken(name, existing);
      }
    }
    const uidIx = this.#index(sql, 'uid', pools.uid.ranges);
    const gidIx = this.#index(sql, 'gid', pools.gid.ranges);
    const holderOf: HolderLookup = (kind, r) => {
      // Ranges never overlap, so the last one starting before r's end is the only candidate.
      const last = sql.rangeBefore.get(kind, r.start + r.count) as RangeRow | undefined;
      if (last === undefined || last.start + last.count <= r.start) return undefined;
      const row = sql.byIdOrName.get({ key: last.allocation }) as AllocationRow;
      return { id: row.id, name: row.name };
    };
    const placed = place(
      request,
      {
        uid: { pool: pools.uid, free: uidIx.free, taken: uidIx.taken },
        gid: { pool: pools.gid, free: gidIx.free, taken: gidIx.taken },
      },
      holderOf,
    );
    let id = randomBytes(6).toString('hex');
    while (sql.byIdOrName.get({ key: id }) !== undefined) id = randomBytes(6).toString('hex');
    const a: Allocation = {
      id,
      name: name ?? id,
      owner: process.geteuid?.() ?? 0,
      created: new Date().toISOString(),
      policy: formatPolicy(request.policy),
      size: request.size,
      ...placed,
      seq: this.#cachedSeq + 1,
    };
    if (request.namespace !== undefined) a.namespace = request.namespace;
    if (holder !== undefined) a.holder = holder;
    return a;
  }

  /**
   * Allocates uid and gid ranges for one container. With `reuse`, an existing allocation of the
   * same name is returned (marked `reused`) when it matches the request (size and passthrough
   * mappings), instead of ALLOC_NAME_TAKEN.
   */
  async allocate(request: AllocationRequest): Promise<Allocation> {
    const holder = this.#checkRequest(request);
    await this.#systemTaken?.refresh();
    let reused: Allocation | undefined;
    const allocation = this.#transaction(true, (sql) => {
      const a = this.#place(sql, request, holder);
      if (a.reused) {
        reused = a;
        return a;
      }
      insertAllocation(sql, a);
      sql.setSeq.run(a.seq);
      return a;
    });
    if (reused !== undefined) return reused;
    // Committed: the indexes follow (sync() saw everything up to seq - 1 in this transaction).
    for (const ix of this.#indexes)
      for (const r of ix.kind === 'uid' ? allocation.uids : allocation.gids) ix.free.carve(r.start, r.count);
    this.#cachedSeq = allocation.seq;
    if (this.#reserveMissing) this.#ensureReserve();
    return allocation;
  }

  /**
   * What allocate() would return now, recording nothing (a dry run): the same checks and the
   * same placement, in a read transaction. A registry that does not exist yet is not created:
   * the placement is made in an empty database in memory.
   */
  async preview(request: AllocationRequest): Promise<Allocation> {
    const holder = this.#checkRequest(request);
    await this.#systemTaken?.refresh();
    if (existsSync(this.dir)) return this.#transaction(false, (sql) => this.#place(sql, request, holder));
    const db = openMemoryDatabase();
    try {
      db.exec(DDL);
      const saved = { seq: this.#cachedSeq, indexes: this.#indexes };
      this.#cachedSeq = 0;
      this.#indexes = [];
      try {
        return this.#place(prepare(db), request, holder);
      } finally {
        this.#cachedSeq = saved.seq;
        this.#indexes = saved.indexes;
      }
    } finally {
      db.close();
    }
  }

  /** Deletes `a` (a row read in this transaction) and logs the release; returns its seq. */
  #releaseRow(sql: Statements, row: AllocationRow): ReleasedRow {
    const ranges = sql.rangesOf.all(row.id) as RangeRow[];
    const allocation = fromRow(row, ranges);
    const seq = this.#cachedSeq + 1;
    const logged = ranges.map((r) => [r.kind, r.start, r.count] as [string, number, number]);
    sql.deleteRanges.run(row.id);
    sql.deleteAllocation.run(row.id);
    sql.insertRelease.run(seq, row.id, row.seq, JSON.stringify(logged));
    sql.setSeq.run(seq);
    this.#cachedSeq = seq; // (inside the transaction; reset if it does not commit)
    const keep = this.#options.releaseLog ?? 4096;
    if (seq % 256 === 0 && seq > keep) {
      sql.trim.run(seq - keep);
      sql.setTrimmed.run(seq - keep);
    }
    return { allocation, seq, ranges: logged };
  }

  /** Releases by id or name; returns the allocation and the sequence number of the release. */
  async release(
    idOrName: string,
    options: { ifExists?: boolean; force?: boolean } = {},
  ): Promise<{ allocation: Allocation; seq: number } | undefined> {
    const result = this.#freeing((sql) => {
      const row = sql.byIdOrName.get({ key: idOrName }) as AllocationRow | undefined;
      if (row === undefined) {
        if (options.ifExists) return undefined;
        throw new AllocError(
          ALLOC_NOT_FOUND,
          `no allocation has the id or name ${JSON.stringify(idOrName)}`,
          {
            hint: "'userns alloc list' shows the live allocations",
            data: { idOrName },
          },
        );
      }
      const euid = process.geteuid?.() ?? 0;
      if (euid !== 0 && row.owner !== euid) {
        throw new AllocError(
          'ALLOC_NOT_OWNER',
          `allocation ${row.name} (${row.id}) belongs to uid ${row.owner}, not to you`,
          {
            hint: 'only its owner or root can release it',
            data: { id: row.id, owner: row.owner },
          },
        );
      }
      return this.#releaseRow(sql, row);
    });
    if (result === undefined) return undefined;
    this.#releaseInIndexes(result.ranges);
    if (this.#reserveMissing) this.#ensureReserve();
    return { allocation: result.allocation, seq: result.seq };
  }

  /** Every live allocation, in creation order. */
  async list(): Promise<Allocation[]> {
    return this.#transaction(false, (sql) => readAll(sql));
  }

  /**
   * Releases the allocations whose owner is provably gone, in one transaction: those of a named
   * namespace that `isNamespaceAlive` says is gone (false or 'dead'), and those of a process
   * that has exited (checked only where /proc shows the PID namespace the PID belongs to). An
   * owner that cannot be checked from here is kept and reported with the reason.
   */
  async collectGarbage(
    isNamespaceAlive: (name: string) => Promise<boolean | Liveness | { liveness: Liveness; reason?: string }>,
  ): Promise<GcResult> {
    const candidates = (await this.list()).filter((a) => a.holder !== undefined || a.namespace !== undefined);
    const dead: Allocation[] = [];
    const kept: GcResult['kept'] = [];
    const here = procPidNamespace();
    for (const a of candidates) {
      const verdict = await ownerLiveness(a, isNamespaceAlive, here);
      if (verdict.liveness === 'dead') dead.push(a);
      else if (verdict.liveness === 'unknown')
        kept.push({ allocation: a, reason: verdict.reason ?? 'cannot check from here' });
    }
    if (dead.length === 0) return { released: [], kept };
    const released = this.#freeing((sql) => {
      const out: ReleasedRow[] = [];
      for (const a of dead) {
        const row = sql.byIdOrName.get({ key: a.id }) as AllocationRow | undefined;
        // Still the very allocation that was judged (not released and made again meanwhile).
        if (row !== undefined && row.id === a.id && row.seq === a.seq) out.push(this.#releaseRow(sql, row));
      }
      return out;
    });
    for (const r of released) this.#releaseInIndexes(r.ranges);
    if (this.#reserveMissing) this.#ensureReserve();
    return { released: released.map((r) => r.allocation), kept };
  }

  /** As collectGarbage, returning only the released allocations. */
  async gc(isNamespaceAlive: (name: string) => Promise<boolean | Liveness>): Promise<Allocation[]> {
    return (await this.collectGarbage(isNamespaceAlive)).released;
  }

  /** Free and used IDs per pool, and what is excluded from each. */
  async usage(pools?: Pools): Promise<{ uid: KindUsage; gid: KindUsage }> {
    if (pools === undefined) throw new TypeError('the local registry needs the pools to count');
    await this.#systemTaken?.refresh();
    return this.#transaction(false, (sql) => {
      const one = (kind: IdKind): KindUsage => {
        const pool = pools[kind];
        const ix = this.#index(sql, kind, pool.ranges);
        const poolSize = rangesSize(pool.ranges);
        const why = this.#systemTaken?.get().why[kind] ?? [];
        return {
          pool: ix.pool,
          source: pool.source,
          poolSize,
          free: ix.free.total,
          used: poolSize - ix.free.total,
          largestFree: ix.free.largest,
          excluded: exclusionsIn(why, ix.pool),
        };
      };
      return { uid: one('uid'), gid: one('gid') };
    });
  }

  /**
   * Checks the registry as stored: SQLite's own quick_check, then no two live allocations
   * overlap (uids or gids), names and ids are unique, every map is one the kernel accepts, every
   * range belongs to an allocation and the sequence numbers are in order. Returns the problems
   * found (empty = consistent) and the allocations.
   */
  async verify(): Promise<{ problems: string[]; allocations: Allocation[] }> {
    return this.#transaction(false, (sql) => {
      const { db } = this.#open();
      const problems: string[] = [];
      const quick = db.prepare('PRAGMA quick_check').pluck().all() as string[];
      if (quick.length !== 1 || quick[0] !== 'ok') problems.push(...quick.map((q) => `sqlite: ${q}`));
      const all = readAll(sql);
      const head = sql.head.get() as { seq: number };
      const ids = new Set(all.map((a) => a.id));
      const names = new Set<string>();
      for (const a of all) {
        if (names.has(a.name)) problems.push(`duplicate name ${a.name}`);
        names.add(a.name);
        if (a.seq > head.seq)
          problems.push(`${a.id}: sequence number ${a.seq} after the registry's ${head.seq}`);
        if (a.uids.length === 0 || a.gids.length === 0)
          problems.push(`${a.id}: reserves no ${a.uids.length === 0 ? 'uids' : 'gids'}`);
        for (const kind of ['uid', 'gid'] as const) {
          const v = validateMap(kind === 'uid' ? a.uidMap : a.gidMap, { kind });
          if (!v.ok) problems.push(`${a.id}: ${kind} map invalid: ${v.reason}`);
        }
      }
      const rows = sql.allRanges.all() as RangeRow[];
      for (const r of rows)
        if (!ids.has(r.allocation))
          problems.push(`range ${r.kind} ${r.start} belongs to no allocation (${r.allocation})`);
      for (const kind of ['uid', 'gid'] as const) {
        const spans = rows.filter((r) => r.kind === kind).sort((x, y) => x.start - y.start);
        for (let i = 1; i < spans.length; i++) {
          const p = spans[i - 1]!;
          const q = spans[i]!;
          if (q.start < p.start + p.count)
            problems.push(`${kind}s of ${p.allocation} and ${q.allocation} overlap at ${q.start}`);
        }
      }
      return { problems, allocations: all };
    });
  }

  /** Runs `fn` (synchronous) inside one IMMEDIATE transaction: holds the registry's write lock. */
  withLock<T>(fn: () => T): T {
    return this.#transaction(true, () => fn());
  }

  /** What the first open of this database brought over from the old files, as recorded in it. */
  async migrated(): Promise<
    { from: string[]; allocations: number; seq: number; at: string; warnings: string[] } | undefined
  > {
    return this.#transaction(false, () => {
      const text = this.#db!.prepare('SELECT migrated FROM registry WHERE one = 1').pluck().get();
      return typeof text === 'string' ? JSON.parse(text) : undefined;
    });
  }

  /** Closes the database (the registry reopens it when used again). */
  close(): void {
    if (this.#db?.open) this.#db.close();
    this.#db = undefined;
    this.#sql = undefined;
    this.#run = undefined;
    this.#cachedSeq = -1;
    this.#indexes = [];
  }
}

function insertAllocation(sql: Statements, a: Allocation | LegacyAllocation): void {
  sql.insertAllocation.run(
    a.id,
    a.name,
    a.owner,
    a.created,
    a.policy,
    a.size,
    a.seq,
    mapJson(a.uidMap),
    mapJson(a.gidMap),
    a.namespace ?? null,
    a.holder === undefined ? null : JSON.stringify(a.holder),
  );
  for (const r of a.uids) sql.insertRange.run('uid', r.start, r.count, a.id);
  for (const r of a.gids) sql.insertRange.run('gid', r.start, r.count, a.id);
}

function readAll(sql: Statements): Allocation[] {
  const byAllocation = new Map<string, RangeRow[]>();
  for (const r of sql.allRanges.all() as RangeRow[]) {
    const list = byAllocation.get(r.allocation);
    if (list === undefined) byAllocation.set(r.allocation, [r]);
    else list.push(r);
  }
  return (sql.all.all() as AllocationRow[]).map((row) => fromRow(row, byAllocation.get(row.id) ?? []));
}

/** Whether a holder process still runs, judged only where /proc shows its PID namespace. */
export function holderLiveness(
  holder: Holder,
  here = procPidNamespace(),
): { liveness: Liveness; reason?: string } {
  const boot = bootId();
  if (holder.boot !== undefined && boot !== undefined && holder.boot !== boot) return { liveness: 'dead' };
  if (typeof holder.pidNamespace !== 'number') {
    return {
      liveness: 'unknown',
      reason: `its process ${holder.pid} was recorded without its PID namespace (by an older userns, or from where /proc did not show it): cannot check it; release it by hand once that process is gone`,
    };
  }
  if (here === undefined || here !== holder.pidNamespace) {
    return {
      liveness: 'unknown',
      reason: `its process ${holder.pid} is in PID namespace pid:[${holder.pidNamespace}], and /proc here shows ${here === undefined ? 'another one' : `pid:[${here}]`}: cannot check from here`,
    };
  }
  const liveness = processLiveness(holder.pid, holder.startTime);
  return liveness === 'unknown'
    ? { liveness, reason: `/proc/${holder.pid} cannot be read here (hidepid?)` }
    : { liveness };
}

/**
 * Inserts allocations into a new registry (inside the creating transaction), in sequence order.
 * Allocations that overlap (the old lock could be broken from another PID namespace) keep their
 * maps, but each reserves only the IDs no earlier one holds; the overlap is reported as a
 * warning. Returns the warnings.
 */
function importAllocations(
  db: SqliteDatabase,
  allocations: readonly (Allocation | LegacyAllocation)[],
  seq: number,
  record: Record<string, unknown>,
): string[] {
  const sql = prepare(db);
  const warnings: string[] = [];
  const held = { uid: [] as IdRange[], gid: [] as IdRange[] };
  const here = procPidNamespace();
  for (const a of [...allocations].sort((x, y) => x.seq - y.seq)) {
    const copy: Allocation = { ...a };
    // A holder without a PID namespace (old records) that runs in this /proc with the recorded
    // start time is that very process.
    if (
      a.holder !== undefined &&
      typeof (a.holder as Holder).pidNamespace !== 'number' &&
      here !== undefined &&
      processLiveness(a.holder.pid, a.holder.startTime) === 'alive'
    )
      copy.holder = { ...a.holder, pidNamespace: here };
    for (const kind of ['uid', 'gid'] as const) {
      const own = normalizeRanges(kind === 'uid' ? a.uids : a.gids);
      const free = subtractRanges(own, held[kind]);
      if (rangesSize(free) !== rangesSize(own)) {
        warnings.push(
          `allocation ${a.name} (${a.id}) shares ${kind}s ${formatPool(subtractRanges(own, free))} with an earlier allocation: one of the two containers should get new IDs`,
        );
      }
      held[kind] = normalizeRanges([...held[kind], ...free]);
      if (kind === 'uid') copy.uids = free;
      else copy.gids = free;
    }
    insertAllocation(sql, copy);
  }
  const maxSeq = Math.max(seq, ...allocations.map((a) => a.seq));
  db.prepare('UPDATE registry SET seq = ?, trimmed = ?, migrated = ? WHERE one = 1').run(
    maxSeq,
    maxSeq,
    JSON.stringify({
      ...record,
      allocations: allocations.length,
      seq: maxSeq,
      at: new Date().toISOString(),
      warnings,
    }),
  );
  return warnings;
}

/**
 * Brings the old registry of `dir` (if any) into the new schema, inside the creating
 * transaction. Allocations keep their ids, names, sequence numbers and ranges. Holders recorded
 * by the old code carry no PID namespace: gc says it cannot check them, unless the process runs
 * here (then it is recorded with this /proc's namespace).
 */
function migrateLegacy(db: SqliteDatabase, dir: string): Registry['migration'] {
  const legacy = readLegacyRegistry(dir);
  if (legacy === undefined) return undefined;
  const warnings = importAllocations(db, legacy.allocations, legacy.seq, {
    from: legacy.files,
    ...(legacy.skippedTail === undefined ? {} : { skippedTornRecordAt: legacy.skippedTail }),
  });
  return { from: legacy.files, allocations: legacy.allocations.length, warnings };
}

/**
 * The IDs of every allocation a damaged registry still names. A scan stops at the first
 * damaged page, so the allocations table is read from both ends, and the index of ranges by
 * allocation (a separate b-tree) from both ends too: rows on one damaged leaf are then still
 * named by the index, and their loss is counted instead of going unnoticed.
 * `complete`: at least one of the scans read its whole b-tree (every allocation has ranges,
 * so a whole index scan names them all).
 */
function listSalvageableIds(db: SqliteDatabase): { ids: Set<string>; complete: boolean } {
  const ids = new Set<string>();
  let complete = false;
  for (const text of [
    'SELECT id FROM allocations ORDER BY id',
    'SELECT id FROM allocations ORDER BY id DESC',
    'SELECT allocation FROM ranges INDEXED BY ranges_of_allocation ORDER BY allocation',
    'SELECT allocation FROM ranges INDEXED BY ranges_of_allocation ORDER BY allocation DESC',
  ]) {
    try {
      for (const id of db.prepare(text).pluck().iterate() as IterableIterator<string>) ids.add(id);
      complete = true;
    } catch {
      // Damaged page: keep what this scan read before it.
    }
  }
  return { ids, complete };
}

/** What `userns alloc recover` ({@link recoverAllocations}) did with a damaged registry. */
export interface RecoverResult {
  /** Whether the registry was damaged (nothing is done when it was not). */
  damaged: boolean;
  /** What was wrong. */
  problems: string[];
  /** Where the damaged file now is (with its -wal/-shm beside it, same suffix). */
  movedTo?: string;
  /** Allocations read back from the damaged file into the new one. */
  salvaged: Allocation[];
  /**
   * Allocations the damaged file names but whose row or ranges could not be read (null: no
   * scan of the file could list every allocation, so how many were lost is unknown).
   */
  lost: number | null;
  warnings: string[];
}

/**
 * Recovers a damaged registry database: moves it (and its -wal/-shm) aside as
 * `registry.db.damaged-TIME`, reads every allocation that can still be read from it, and
 * creates a new registry holding those. Never run by itself: REGISTRY_CORRUPT's hint names it.
 * A registry that is not damaged is left alone (damaged: false).
 */
export async function recoverRegistry(dir: string, options: RegistryOptions = {}): Promise<RecoverResult> {
  ensurePrivateDir(dir, 'allocation registry');
  const lock = await acquireFileLock(join(dir, 'recover.lock'), { what: `the recovery of ${dir}` });
  try {
    const path = join(dir, REGISTRY_FILE);
    const problems: string[] = [];
    const probe = new Registry(dir, { ...options, systemTaken: null });
    try {
      problems.push(...(await probe.verify()).problems);
    } catch (error) {
      if (!(error instanceof StateFileError && error.code === 'REGISTRY_CORRUPT')) throw error;
      problems.push(error.message);
    } finally {
      probe.close();
    }
    if (problems.length === 0) return { damaged: false, problems, salvaged: [], lost: 0, warnings: [] };
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
    const movedTo = `${path}.damaged-${stamp}-${randomBytes(3).toString('hex')}`;
    for (const file of databaseFiles(path)) {
      try {
        renameSync(file, movedTo + file.slice(path.length));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
    }
    const salvaged: Allocation[] = [];
    let lost: number | null = null;
    let seq = 0;
    try {
      const old = openDatabase({ path: movedTo, what: 'the damaged registry', readonly: true });
      try {
        const sql = prepare(old);
        try {
          seq = Number((sql.head.get() as { seq: number }).seq) || 0;
        } catch {
          /* unreadable: the highest allocation seq will do */
        }
        const { ids, complete } = listSalvageableIds(old);
        const byId = old.prepare('SELECT * FROM allocations WHERE id = ?');
        let unreadable = 0;
        for (const id of ids) {
          try {
            const row = byId.get(id) as AllocationRow | undefined;
            if (row === undefined) throw new Error('no row');
            salvaged.push(fromRow(row, sql.rangesOf.all(id) as RangeRow[]));
          } catch {
            unreadable++;
          }
        }
        lost = complete ? unreadable : null;
      } finally {
        old.close();
      }
    } catch {
      // Not even the list of allocations can be read: start empty.
    }
    let warnings: string[] = [];
    const db = openDatabase({ path, what: 'the allocation registry' });
    try {
      ensureSchema(
        db,
        {
          applicationId: APPLICATION_ID,
          version: REGISTRY_SCHEMA_VERSION,
          create: (db) => {
            db.exec(DDL);
            warnings = importAllocations(db, salvaged, seq, { from: [movedTo], recovered: true, lost });
          },
        },
        { path, what: 'the allocation registry' },
      );
    } finally {
      db.close();
    }
    return { damaged: true, problems, movedTo, salvaged, lost, warnings };
  } finally {
    lock.release();
  }
}
