/**
 * Reads the allocation registry as userns wrote it before it moved to SQLite, for the one-time
 * migration into the database (registry.ts). Read-only: nothing here writes the old files.
 *
 *   <dir>/snapshot.json  {"format": "userns-alloc-snapshot", "gen": G, "seq": S, "allocations": [...]}
 *   <dir>/journal        a header line {"h": 1, "gen": G}, then one line per allocate/release
 *
 * Every journal line is `CRC32 JSON\n`. A torn or damaged LAST line is what a writer killed
 * mid-append leaves: it was never acknowledged, so it is skipped, as the old code did. A damaged
 * line followed by others, a bad snapshot or header cannot come from a crash: REGISTRY_CORRUPT,
 * naming the file. A journal older than the snapshot (killed mid-compaction) is ignored, a newer
 * one is an error.
 */
import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { StateFileError } from '../errors/index.js';
import { extent } from '../idmap/extent.js';
import { stateFileError } from '../state/files.js';
import type { Allocation } from './registry.js';

export const LEGACY_SNAPSHOT = 'snapshot.json';
export const LEGACY_JOURNAL = 'journal';
/** What snapshot.json says once its registry lives in the database (see registry.ts). */
export const LEGACY_TOMBSTONE_FORMAT = 'userns-alloc-moved-to-sqlite';

/** An allocation as the old files stored it: a holder was a PID and start time only. */
export type LegacyAllocation = Omit<Allocation, 'holder'> & { holder?: { pid: number; startTime: string } };

export interface LegacyRegistry {
  /** Live allocations in creation order. */
  allocations: LegacyAllocation[];
  /** The highest sequence number used. */
  seq: number;
  /** The files read. */
  files: string[];
  /** A torn last journal line that was skipped (byte offset), if any. */
  skippedTail?: number;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE) of a buffer. */
export function crc32(buf: Uint8Array, start = 0, end = buf.length): number {
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** `CRC32 JSON\n`, one line of the old journal. */
export function encodeLine(value: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(value));
  const out = Buffer.allocUnsafe(body.length + 10);
  out.write(crc32(body).toString(16).padStart(8, '0'), 0, 'latin1');
  out[8] = 0x20;
  body.copy(out, 9);
  out[out.length - 1] = 0x0a;
  return out;
}

/** The JSON of one line (without its newline), or undefined when its checksum is wrong. */
export function decodeLine(buf: Buffer, start: number, end: number): unknown {
  if (end - start < 10 || buf[start + 8] !== 0x20) return undefined;
  const want = Number.parseInt(buf.toString('latin1', start, start + 8), 16);
  if (!Number.isInteger(want) || crc32(buf, start + 9, end) !== want) return undefined;
  try {
    return JSON.parse(buf.toString('utf8', start + 9, end));
  } catch {
    return undefined;
  }
}

type Triple = [number, number, number];
type Pair = [number, number];

const isNat = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isTriples = (v: unknown): v is Triple[] =>
  Array.isArray(v) && v.every((t) => Array.isArray(t) && t.length === 3 && t.every(isNat));
const isPairs = (v: unknown): v is Pair[] =>
  Array.isArray(v) && v.every((t) => Array.isArray(t) && t.length === 2 && t.every(isNat));

/** One stored allocation ({id, name, …, u, g, ur, gr, ns?, hp?, hs?}), or undefined if malformed. */
function load(v: unknown): LegacyAllocation | undefined {
  if (v === null || typeof v !== 'object') return undefined;
  const s = v as Record<string, unknown>;
  if (
    typeof s.id !== 'string' ||
    typeof s.name !== 'string' ||
    !isNat(s.owner) ||
    typeof s.created !== 'string' ||
    typeof s.policy !== 'string' ||
    !isNat(s.size) ||
    !isNat(s.seq) ||
    !isTriples(s.u) ||
    !isTriples(s.g) ||
    !isPairs(s.ur) ||
    !isPairs(s.gr)
  )
    return undefined;
  const a: LegacyAllocation = {
    id: s.id,
    name: s.name,
    owner: s.owner,
    created: s.created,
    policy: s.policy,
    size: s.size,
    uidMap: s.u.map(([i, o, c]) => extent(i, o, c)),
    gidMap: s.g.map(([i, o, c]) => extent(i, o, c)),
    uids: s.ur.map(([start, count]) => ({ start, count })),
    gids: s.gr.map(([start, count]) => ({ start, count })),
    seq: s.seq,
  };
  if (typeof s.ns === 'string') a.namespace = s.ns;
  if (isNat(s.hp) && typeof s.hs === 'string') a.holder = { pid: s.hp, startTime: s.hs };
  return a;
}

function corrupt(path: string, why: string): StateFileError {
  return new StateFileError('REGISTRY_CORRUPT', `the old allocation registry ${path} is damaged: ${why}`, {
    hint: 'a crash cannot cause this; keep a copy of the directory for a bug report, move the file aside and run the command again (its allocations are then not carried over)',
    data: { path },
  });
}

/** Reads a file without following a symbolic link; undefined when missing. */
function readNoFollow(path: string): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw stateFileError(error, path, 'the old allocation registry file');
  }
  try {
    if (!fstatSync(fd).isFile())
      throw stateFileError(
        Object.assign(new Error('not a file'), { code: 'EISDIR' }),
        path,
        'the old allocation registry file',
      );
    return readFileSync(fd);
  } catch (error) {
    throw stateFileError(error, path, 'the old allocation registry file');
  } finally {
    closeSync(fd);
  }
}

/**
 * The old registry in `dir`, or undefined when there is none (no snapshot.json and no journal,
 * or only the tombstone the migration leaves).
 */
export function readLegacyRegistry(dir: string): LegacyRegistry | undefined {
  const snapshotPath = join(dir, LEGACY_SNAPSHOT);
  const journalPath = join(dir, LEGACY_JOURNAL);
  const snapshotBytes = readNoFollow(snapshotPath);
  const journal = readNoFollow(journalPath);
  const byId = new Map<string, LegacyAllocation>();
  const files: string[] = [];
  let generation = 0;
  let seq = 0;
  if (snapshotBytes !== undefined) {
    let snap: { format?: unknown; gen?: unknown; seq?: unknown; allocations?: unknown };
    try {
      snap = JSON.parse(snapshotBytes.toString('utf8'));
    } catch {
      throw corrupt(snapshotPath, 'the snapshot is not valid JSON');
    }
    if (snap.format === LEGACY_TOMBSTONE_FORMAT) return undefined;
    if (
      snap.format !== 'userns-alloc-snapshot' ||
      !isNat(snap.gen) ||
      !isNat(snap.seq) ||
      !Array.isArray(snap.allocations)
    )
      throw corrupt(snapshotPath, 'the snapshot does not have the expected fields');
    generation = snap.gen;
    seq = snap.seq;
    for (const raw of snap.allocations) {
      const a = load(raw);
      if (a === undefined)
        throw corrupt(snapshotPath, `malformed allocation ${JSON.stringify(raw).slice(0, 200)}`);
      byId.set(a.id, a);
    }
    files.push(snapshotPath);
  }
  let skippedTail: number | undefined;
  if (journal !== undefined) {
    files.push(journalPath);
    const nl = journal.indexOf(0x0a);
    const header =
      nl < 0 ? undefined : (decodeLine(journal, 0, nl) as { h?: unknown; gen?: unknown } | undefined);
    if (header === undefined || header.h !== 1 || !isNat(header.gen))
      throw corrupt(journalPath, 'the journal header is unreadable');
    if (header.gen > generation)
      throw corrupt(
        journalPath,
        `the journal is for generation ${header.gen} but the snapshot for ${generation}`,
      );
    if (header.gen === generation) {
      let pos = nl + 1;
      while (pos < journal.length) {
        const end = journal.indexOf(0x0a, pos);
        const record =
          end < 0
            ? undefined
            : (decodeLine(journal, pos, end) as
                | { s?: unknown; op?: unknown; a?: unknown; id?: unknown }
                | undefined);
        if (record === undefined) {
          if (end >= 0 && end + 1 < journal.length)
            throw corrupt(journalPath, `a damaged record at byte ${pos} is followed by others`);
          skippedTail = pos; // torn by a writer that was killed: never acknowledged
          break;
        }
        if (!isNat(record.s)) throw corrupt(journalPath, 'a record without a sequence number');
        if (record.op === 'add') {
          const a = load(record.a);
          if (a === undefined) throw corrupt(journalPath, `malformed allocation record ${record.s}`);
          byId.set(a.id, a);
        } else if (record.op === 'del') {
          if (typeof record.id === 'string') byId.delete(record.id);
        } else throw corrupt(journalPath, `unknown record type in record ${record.s}`);
        seq = Math.max(seq, record.s);
        pos = end + 1;
      }
    }
    // header.gen < generation: killed between the snapshot and the journal reset; the
    // journal's records are all in the snapshot.
  }
  if (files.length === 0) return undefined;
  const allocations = [...byId.values()].sort((x, y) => x.seq - y.seq);
  return { allocations, seq, files, ...(skippedTail === undefined ? {} : { skippedTail }) };
}
