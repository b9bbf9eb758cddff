/**
 * This node's cache of a fleet registry: `<state root>/alloc/fleet-cache.db` (SQLite, opened as
 * state/database.ts opens every database: WAL, fsync at commit, busy timeout, schema version),
 * shared by every userns process of the node.
 *
 * Tables (schema version 1), every row keyed by the registry (its URL with the hosts sorted):
 *   allocations  the allocations this node made or read by name, as last read, with the etcd
 *                revision and time of that read (and the lease, when leased)
 *   leases       the lease of each node agent running here, with its TTL and when its last
 *                successful keepalive was sent (not answered: etcd counts from the request)
 *   pending      allocating transactions sent whose outcome is not known yet, with the process
 *                that sent them: when that process is gone and the allocation exists anyway
 *                (a commit whose answer was lost), the next contact releases it
 *
 * What it is for: when etcd cannot be reached, a node keeps starting containers with the ranges
 * it already holds (served from here, marked offline), and never invents a new one. A leased
 * allocation is served only while its lease cannot have expired: less than its TTL after the
 * last keepalive its agent sent successfully.
 */
import { join } from 'node:path';
import {
  type DatabaseContext,
  databaseError,
  ensureSchema,
  openDatabase,
  type SqliteDatabase,
} from '../../state/database.js';
import { ensurePrivateDir } from '../../state/state-root.js';
import type { Allocation } from '../registry.js';

export const CACHE_FILE = 'fleet-cache.db';
/** "usfc" */
const APPLICATION_ID = 0x75736663;
const SCHEMA_VERSION = 1;

const DDL = `
CREATE TABLE allocations (
  registry TEXT NOT NULL,
  id TEXT NOT NULL,
  name TEXT NOT NULL,
  record TEXT NOT NULL,
  revision INTEGER NOT NULL,
  read_at TEXT NOT NULL,
  lease TEXT,
  PRIMARY KEY (registry, id)
) WITHOUT ROWID;
CREATE INDEX allocations_by_name ON allocations (registry, name);
CREATE TABLE leases (
  registry TEXT NOT NULL,
  node TEXT NOT NULL,
  lease TEXT NOT NULL,
  ttl INTEGER NOT NULL,
  kept_at INTEGER NOT NULL,
  PRIMARY KEY (registry, node)
) WITHOUT ROWID;
CREATE TABLE pending (
  registry TEXT NOT NULL,
  id TEXT NOT NULL,
  node TEXT NOT NULL,
  process TEXT NOT NULL,
  since TEXT NOT NULL,
  PRIMARY KEY (registry, id)
) WITHOUT ROWID;
`;

export interface CachedAllocation {
  allocation: Allocation;
  revision: number;
  readAt: string;
}

export interface CachedLease {
  lease: string;
  ttl: number;
  /** ms since the epoch when the last successful keepalive was sent. */
  keptAt: number;
}

/** A process as pending records it (system/proc.ts selfInProc). */
export interface PendingProcess {
  pid: number;
  startTime: string;
  pidNamespace: number | null;
}

export interface PendingEntry {
  id: string;
  node: string;
  process: PendingProcess;
  since: string;
}

interface AllocationRow {
  record: string;
  revision: number;
  read_at: string;
}

export class FleetCache {
  readonly path: string;
  readonly #dir: string;
  #db: SqliteDatabase | undefined;

  /** `dir`: the registry directory of the state root (`<root>/alloc`). */
  constructor(dir: string) {
    this.#dir = dir;
    this.path = join(dir, CACHE_FILE);
  }

  get #context(): DatabaseContext {
    return {
      path: this.path,
      what: "this node's cache of the fleet registry",
      timeoutMs: 30_000,
    };
  }

  #open(): SqliteDatabase {
    if (this.#db?.open) return this.#db;
    ensurePrivateDir(this.#dir, 'allocation registry');
    const db = openDatabase({ ...this.#context, timeoutMs: 30_000 });
    try {
      ensureSchema(
        db,
        { applicationId: APPLICATION_ID, version: SCHEMA_VERSION, create: (d) => void d.exec(DDL) },
        this.#context,
      );
    } catch (error) {
      db.close();
      throw error;
    }
    this.#db = db;
    return db;
  }

  #run<T>(fn: (db: SqliteDatabase) => T): T {
    const db = this.#open();
    try {
      return db.transaction(() => fn(db)).immediate();
    } catch (error) {
      throw databaseError(error, this.#context);
    }
  }

  /** Records (or refreshes) an allocation as read at `revision`. */
  remember(registry: string, allocation: Allocation, revision: number): void {
    const { offline: _offline, reused: _reused, ...record } = allocation;
    this.#run((db) =>
      db
        .prepare(
          'INSERT OR REPLACE INTO allocations (registry, id, name, record, revision, read_at, lease) VALUES (?, ?, ?, ?, ?, ?, ?)',
        )
        .run(
          registry,
          allocation.id,
          allocation.name,
          JSON.stringify(record),
          revision,
          new Date().toISOString(),
          allocation.lease ?? null,
        ),
    );
  }

  forget(registry: string, id: string): void {
    this.#run((db) => db.prepare('DELETE FROM allocations WHERE registry = ? AND id = ?').run(registry, id));
  }

  /** Forgets every allocation on `lease` (it expired). */
  forgetLease(registry: string, lease: string): number {
    return this.#run(
      (db) =>
        db.prepare('DELETE FROM allocations WHERE registry = ? AND lease = ?').run(registry, lease).changes,
    );
  }

  /** By id, else by name. */
  find(registry: string, idOrName: string): CachedAllocation | undefined {
    const row = this.#run(
      (db) =>
        db
          .prepare(
            'SELECT record, revision, read_at FROM allocations WHERE registry = ? AND (id = ? OR name = ?) ORDER BY id = ? DESC LIMIT 1',
          )
          .get(registry, idOrName, idOrName, idOrName) as AllocationRow | undefined,
    );
    return row === undefined ? undefined : fromRow(row);
  }

  all(registry: string): CachedAllocation[] {
    const rows = this.#run(
      (db) =>
        db
          .prepare('SELECT record, revision, read_at FROM allocations WHERE registry = ? ORDER BY revision')
          .all(registry) as AllocationRow[],
    );
    return rows.map(fromRow);
  }

  /**
   * After a complete read of the registry at `revision`: forgets cached allocations that are gone
   * (released elsewhere, or their lease expired) and refreshes the others.
   */
  reconcile(registry: string, live: readonly Allocation[], revision: number): void {
    const byId = new Map(live.map((a) => [a.id, a]));
    this.#run((db) => {
      const ids = db
        .prepare('SELECT id FROM allocations WHERE registry = ?')
        .pluck()
        .all(registry) as string[];
      const update = db.prepare(
        'UPDATE allocations SET name = ?, record = ?, revision = ?, read_at = ?, lease = ? WHERE registry = ? AND id = ?',
      );
      const remove = db.prepare('DELETE FROM allocations WHERE registry = ? AND id = ?');
      const now = new Date().toISOString();
      for (const id of ids) {
        const a = byId.get(id);
        if (a === undefined) remove.run(registry, id);
        else {
          const { offline: _o, reused: _r, ...record } = a;
          update.run(a.name, JSON.stringify(record), revision, now, a.lease ?? null, registry, id);
        }
      }
    });
  }

  recordLease(registry: string, node: string, lease: CachedLease): void {
    this.#run((db) =>
      db
        .prepare('INSERT OR REPLACE INTO leases (registry, node, lease, ttl, kept_at) VALUES (?, ?, ?, ?, ?)')
        .run(registry, node, lease.lease, lease.ttl, lease.keptAt),
    );
  }

  lease(registry: string, node: string): CachedLease | undefined {
    const row = this.#run(
      (db) =>
        db
          .prepare('SELECT lease, ttl, kept_at FROM leases WHERE registry = ? AND node = ?')
          .get(registry, node) as { lease: string; ttl: number; kept_at: number } | undefined,
    );
    return row === undefined ? undefined : { lease: row.lease, ttl: row.ttl, keptAt: row.kept_at };
  }

  /** The cached lease with this id, whichever node it is of. */
  leaseById(registry: string, lease: string): (CachedLease & { node: string }) | undefined {
    const row = this.#run(
      (db) =>
        db
          .prepare('SELECT node, lease, ttl, kept_at FROM leases WHERE registry = ? AND lease = ?')
          .get(registry, lease) as { node: string; lease: string; ttl: number; kept_at: number } | undefined,
    );
    return row === undefined
      ? undefined
      : { node: row.node, lease: row.lease, ttl: row.ttl, keptAt: row.kept_at };
  }

  dropLease(registry: string, node: string): void {
    this.#run((db) => db.prepare('DELETE FROM leases WHERE registry = ? AND node = ?').run(registry, node));
  }

  addPending(registry: string, entry: PendingEntry): void {
    this.#run((db) =>
      db
        .prepare('INSERT OR REPLACE INTO pending (registry, id, node, process, since) VALUES (?, ?, ?, ?, ?)')
        .run(registry, entry.id, entry.node, JSON.stringify(entry.process), entry.since),
    );
  }

  removePending(registry: string, id: string): void {
    this.#run((db) => db.prepare('DELETE FROM pending WHERE registry = ? AND id = ?').run(registry, id));
  }

  pendings(registry: string): PendingEntry[] {
    const rows = this.#run(
      (db) =>
        db.prepare('SELECT id, node, process, since FROM pending WHERE registry = ?').all(registry) as {
          id: string;
          node: string;
          process: string;
          since: string;
        }[],
    );
    return rows.map((r) => ({ id: r.id, node: r.node, process: JSON.parse(r.process), since: r.since }));
  }

  close(): void {
    if (this.#db?.open) this.#db.close();
    this.#db = undefined;
  }
}

function fromRow(row: AllocationRow): CachedAllocation {
  return { allocation: JSON.parse(row.record) as Allocation, revision: row.revision, readAt: row.read_at };
}
