/**
 * SQLite database files of the state root (the allocation registry is one), through
 * better-sqlite3, loaded only when a database is opened: everything else in userns works without
 * the native binding (installed with --ignore-scripts, or built for another Node).
 *
 * Every database is opened the same way:
 * - refused, with a typed error naming the path, when the file or its -wal/-shm/-journal
 *   companions are a symbolic link or not a regular file (SQLite itself would follow a link);
 * - WAL journal (readers never block the writer; a commit is one append to the -wal file),
 *   synchronous=FULL (the -wal file is fsynced at every commit, so a committed transaction
 *   survives a power cut, as podman's own SQLite state does); a caller may lower it to NORMAL
 *   around a commit whose loss is harmless (the registry's releases), and restores FULL after;
 * - a busy timeout: a writer waits for the lock instead of failing (SQLite's locks are fcntl(2)
 *   locks the kernel keeps and drops when their holder dies, so no PID is ever consulted);
 * - `application_id` marks the file as userns's, `user_version` holds its schema version: a file
 *   of another program or of a newer schema is refused, never rewritten.
 *
 * SQLite errors become typed errors: SQLITE_FULL → NO_SPACE, SQLITE_CORRUPT/NOTADB →
 * REGISTRY_CORRUPT (with the recovery command; a damaged file is never rebuilt silently),
 * SQLITE_BUSY → LOCK_TIMEOUT.
 *
 * Never open the database file with node:fs while a connection is open in this process:
 * closing any descriptor of a file drops every fcntl lock this process holds on it.
 */
import { closeSync, constants, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { StateFileError } from '../errors/index.js';
import { checkFileOrMissing, isNoSpace, stateFileError } from './files.js';

/** The part of better-sqlite3's API userns uses. */
export interface SqliteStatement {
  run(...params: unknown[]): { changes: number };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
  iterate(...params: unknown[]): IterableIterator<unknown>;
  pluck(on?: boolean): SqliteStatement;
}

export type SqliteTransaction<A extends unknown[], R> = ((...args: A) => R) & {
  deferred: (...args: A) => R;
  immediate: (...args: A) => R;
};

export interface SqliteDatabase {
  prepare(sql: string): SqliteStatement;
  exec(sql: string): SqliteDatabase;
  pragma(sql: string, options?: { simple?: boolean }): unknown;
  transaction<A extends unknown[], R>(fn: (...args: A) => R): SqliteTransaction<A, R>;
  close(): void;
  readonly open: boolean;
  readonly inTransaction: boolean;
}

type DatabaseConstructor = new (
  path: string,
  options?: { timeout?: number; readonly?: boolean; fileMustExist?: boolean },
) => SqliteDatabase;

let loaded: DatabaseConstructor | undefined;

function unavailable(cause: unknown): StateFileError {
  return new StateFileError(
    'REGISTRY_UNAVAILABLE',
    `the SQLite binding (better-sqlite3) cannot be loaded: ${(cause as Error)?.message?.split('\n')[0] ?? cause}`,
    {
      hint: 'the allocation registry needs it (named namespaces, run, map and the rest do not): build it with "npm rebuild better-sqlite3" in the userns installation (needs a C++ compiler, make and python3)',
      cause,
    },
  );
}

function sqlite(): DatabaseConstructor {
  if (loaded === undefined) {
    try {
      loaded = createRequire(import.meta.url)('better-sqlite3') as DatabaseConstructor;
    } catch (error) {
      throw unavailable(error);
    }
  }
  return loaded;
}

export interface DatabaseContext {
  /** The database file. */
  path: string;
  /** What it is, for messages ("the allocation registry"). */
  what: string;
  /** The command that recovers a damaged file, for REGISTRY_CORRUPT's hint. */
  recover?: string;
  /** Busy timeout, for LOCK_TIMEOUT's message. */
  timeoutMs?: number;
  /** Appended to NO_SPACE's hint (what still works on a full disk). */
  fullHint?: string;
}

/** The typed error for anything a SQLite call threw. */
export function databaseError(error: unknown, context: DatabaseContext): Error {
  if (error instanceof StateFileError) return error;
  const code = String((error as { code?: unknown })?.code ?? '');
  const message = (error as Error)?.message ?? String(error);
  const { path, what } = context;
  if (!code.startsWith('SQLITE_')) {
    if (isNoSpace(error) || /ENOSPC|EDQUOT/.test(code)) return stateFileError(error, path, what);
    return error as Error;
  }
  if (code.startsWith('SQLITE_FULL')) {
    return new StateFileError('NO_SPACE', `no space left to write ${what} ${path} (${message})`, {
      hint: `free space on the file system that holds it (df ${path})${context.fullHint ?? ''}`,
      data: { path, errno: 'ENOSPC', sqlite: code },
      cause: error,
    });
  }
  if (code.startsWith('SQLITE_CORRUPT') || code.startsWith('SQLITE_NOTADB')) {
    return new StateFileError('REGISTRY_CORRUPT', `${what} ${path} is damaged: ${message}`, {
      hint:
        context.recover === undefined
          ? `move it aside (mv ${path} ${path}.damaged) and keep it for a bug report`
          : `nothing was changed; '${context.recover}' moves it aside, keeps it for a bug report and rebuilds ${what} from what can still be read`,
      data: { path, sqlite: code },
      cause: error,
    });
  }
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    const seconds = context.timeoutMs === undefined ? '' : ` for ${context.timeoutMs / 1000} s`;
    return new StateFileError(
      'LOCK_TIMEOUT',
      `waited${seconds} for the lock on ${what} ${path}; another process holds it`,
      {
        hint: 'another userns process is working on it; try again',
        data: { path, sqlite: code },
        cause: error,
      },
    );
  }
  if (code.startsWith('SQLITE_CANTOPEN')) {
    // Why: a planted link or directory says more than "unable to open database file".
    checkFileOrMissing(path, what);
  }
  return new StateFileError('STATE_FILE_ERROR', `cannot use ${what} ${path}: ${message}`, {
    data: { path, sqlite: code },
    cause: error,
  });
}

/** Runs `fn`, translating what SQLite throws. */
export function withDatabaseErrors<T>(context: DatabaseContext, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    throw databaseError(error, context);
  }
}

export interface OpenOptions extends DatabaseContext {
  /** How long a writer waits for another's lock (default 30 s). */
  timeoutMs?: number;
  /** Open an existing file read-only (for salvage): no WAL switch, no schema. */
  readonly?: boolean;
}

/** The companion files SQLite opens by name beside a database. */
export function databaseFiles(path: string): string[] {
  return [path, `${path}-wal`, `${path}-shm`, `${path}-journal`];
}

/** Opens (creating if needed) a database file with the settings above. */
export function openDatabase(options: OpenOptions): SqliteDatabase {
  for (const file of databaseFiles(options.path)) checkFileOrMissing(file, options.what);
  const Database = sqlite();
  if (!options.readonly) {
    // Created 0600 here (SQLite would make it 0644; its -wal and -shm copy the mode), never
    // through a link. Closed before SQLite opens it: this process holds no lock on it yet.
    try {
      closeSync(
        openSync(
          options.path,
          constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW,
          0o600,
        ),
      );
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST')
        throw stateFileError(error, options.path, options.what);
    }
  }
  let db: SqliteDatabase;
  const context = { ...options, timeoutMs: options.timeoutMs ?? 30_000 };
  try {
    db = new Database(options.path, {
      timeout: context.timeoutMs,
      ...(options.readonly ? { readonly: true, fileMustExist: true } : {}),
    });
  } catch (error) {
    const code = String((error as { code?: unknown })?.code ?? '');
    if (!code.startsWith('SQLITE_') && !(error as NodeJS.ErrnoException).errno) throw unavailable(error);
    throw databaseError(error, context);
  }
  try {
    if (!options.readonly) {
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (mode !== 'wal') {
        throw new StateFileError(
          'STATE_FILE_ERROR',
          `${options.what} ${options.path}: SQLite cannot use a write-ahead log there (journal mode ${String(mode)})`,
          {
            hint: 'put the state root on a local file system (tmpfs, ext4, xfs, btrfs): --root DIR',
            data: { path: options.path },
          },
        );
      }
      db.pragma('synchronous = FULL');
    }
  } catch (error) {
    db.close();
    throw databaseError(error, context);
  }
  return db;
}

/** A private database in memory (nothing on disk), e.g. for a dry run over an empty registry. */
export function openMemoryDatabase(): SqliteDatabase {
  const Database = sqlite();
  return new Database(':memory:');
}

export interface Schema {
  /** PRAGMA application_id of this kind of file (a 32-bit signed integer). */
  applicationId: number;
  /** The newest schema version this code writes. */
  version: number;
  /** Creates the schema at `version` in an empty database (runs inside the transaction). */
  create(db: SqliteDatabase): void;
  /** Upgrades from version `from` to `from + 1` (runs inside the transaction). */
  upgrade?(db: SqliteDatabase, from: number): void;
}

/**
 * Brings the schema to `schema.version` in one IMMEDIATE transaction (so two processes opening a
 * new file at once create it once): creates it in an empty file, upgrades an older one, refuses
 * a newer one (REGISTRY_TOO_NEW) and a file of another program (REGISTRY_CORRUPT). Returns the
 * version found before (0 for a new file).
 */
export function ensureSchema(db: SqliteDatabase, schema: Schema, context: DatabaseContext): number {
  return withDatabaseErrors(context, () =>
    db
      .transaction(() => {
        const applicationId = db.pragma('application_id', { simple: true }) as number;
        const version = db.pragma('user_version', { simple: true }) as number;
        const tables = db
          .prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table'")
          .pluck()
          .get() as number;
        if (
          (applicationId !== 0 && applicationId !== schema.applicationId) ||
          (applicationId === 0 && tables > 0)
        ) {
          throw new StateFileError(
            'REGISTRY_CORRUPT',
            `${context.what} ${context.path} is not a file userns wrote (application id ${applicationId})`,
            {
              hint: `move it aside (mv ${context.path} ${context.path}.aside): userns creates a new one`,
              data: { path: context.path, applicationId },
            },
          );
        }
        if (version > schema.version) {
          throw new StateFileError(
            'REGISTRY_TOO_NEW',
            `${context.what} ${context.path} has schema version ${version}; this userns knows versions up to ${schema.version}`,
            {
              hint: 'a newer userns wrote it: use that version (this one will not change the file)',
              data: { path: context.path, version, known: schema.version },
            },
          );
        }
        if (version === schema.version) return version;
        if (version === 0) schema.create(db);
        else for (let v = version; v < schema.version; v++) schema.upgrade!(db, v);
        db.pragma(`application_id = ${schema.applicationId | 0}`);
        db.pragma(`user_version = ${schema.version}`);
        return version;
      })
      .immediate(),
  );
}
