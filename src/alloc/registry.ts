import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fdatasyncSync,
  fstatSync,
  ftruncateSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { MapError, UsernsError } from '../errors.js';
import { type Extent, extent, formatRange, formatTriple } from '../idmap/extent.js';
import { normalize } from '../idmap/normalize.js';
import { punchHole } from '../idmap/punch.js';
import {
  type IdRange,
  intersectRanges,
  normalizeRanges,
  rangesSize,
  subtractRanges,
} from '../idmap/ranges.js';
import { validateMap } from '../idmap/validate.js';
import { writeFileAtomic } from '../store/atomic.js';
import { acquireLock, processStartTime } from '../store/lock.js';
import { validateName } from '../store/names.js';
import { ensurePrivateDir } from '../store/state-root.js';
import { FreeSpace } from './free-space.js';
import { blockShape, formatPolicy, type Policy, pickBlock } from './policy.js';
import { formatPool, type Pool, type Pools } from './pool.js';
import { SystemTaken, type SystemTakenOptions } from './system-taken.js';

/**
 * The allocation registry: `<root>/alloc/`.
 *
 *   lock           cross-process lock (store/lock.ts: survives SIGKILL of its holder)
 *   snapshot.json  every live allocation as of generation G (written atomically)
 *   journal        a header line for generation G, then one line per allocate/release since
 *
 * Every journal line is `CRC32 JSON\n`, appended with one write() at the end of the last good
 * line and fdatasync()ed, under the lock. A line without its newline or with a wrong checksum can
 * only be the last one (the writer was killed or the machine went down while writing it): it is
 * never applied, and the next lock holder truncates it. Each process keeps the registry in
 * memory and, under the lock, reads only the bytes appended since its last look (a stat tells);
 * a journal replaced by compaction (another inode: the old one stays open here, so its number
 * cannot be reused) makes it reload snapshot + journal.
 *
 * Compaction (when the journal holds more records than max(4096, 2 × live allocations)): write
 * snapshot G+1, then replace the journal with an empty one for G+1. Killed in between, the
 * snapshot is newer than the journal's header: the journal's records are all in the snapshot, so
 * they are ignored and the next holder finishes the compaction. Stray temp files of killed
 * writers are removed by the next holder that loads the registry from scratch.
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
  holder?: { pid: number; startTime: string };
  /** The registry sequence number of its creation (a total order of all operations). */
  seq: number;
}

/**
 * What {@link Registry.allocate} is asked for: `size` IDs from inside 0, placed by `policy` in
 * `pools`, with an optional unique name, owner (named namespace or process) and extra mappings.
 */
export interface AllocationRequest {
  size: number;
  policy: Policy;
  pools: Pools;
  name?: string;
  namespace?: string;
  holder?: { pid: number; startTime: string };
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
}

/** Tuning and test options of a {@link Registry}. */
export interface RegistryOptions {
  /** Compact when the journal holds at least max(this, 2 × live) records (default 4096). */
  compactEvery?: number;
  /** IDs taken by passwd/group entries and systemd-nsresourced; null = ignore them (tests). */
  systemTaken?: SystemTakenOptions | null;
  lockTimeoutMs?: number;
}

/**
 * An allocation failed; `code` is one of {@link ALLOC_EXHAUSTED}, {@link ALLOC_NAME_TAKEN},
 * {@link ALLOC_NOT_FOUND}, or a registry error (locked, damaged).
 */
export class AllocError extends UsernsError {}

/**
 * No block of the requested size is free in a pool (the error's data has the largest free block and the free total).
 */
export const ALLOC_EXHAUSTED = 'ALLOC_EXHAUSTED';
/** An allocation of that name exists already. */
export const ALLOC_NAME_TAKEN = 'ALLOC_NAME_TAKEN';
/** No allocation has that id or name. */
export const ALLOC_NOT_FOUND = 'ALLOC_NOT_FOUND';

// ---------------------------------------------------------------------------------------------
// Record encoding

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

/** `CRC32 JSON\n` */
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

interface StoredAllocation {
  id: string;
  name: string;
  owner: number;
  created: string;
  policy: string;
  size: number;
  seq: number;
  u: Triple[];
  g: Triple[];
  ur: Pair[];
  gr: Pair[];
  ns?: string;
  hp?: number;
  hs?: string;
}

function store(a: Allocation): StoredAllocation {
  const s: StoredAllocation = {
    id: a.id,
    name: a.name,
    owner: a.owner,
    created: a.created,
    policy: a.policy,
    size: a.size,
    seq: a.seq,
    u: a.uidMap.map((e) => [e.inside, e.outside, e.count]),
    g: a.gidMap.map((e) => [e.inside, e.outside, e.count]),
    ur: a.uids.map((r) => [r.start, r.count]),
    gr: a.gids.map((r) => [r.start, r.count]),
  };
  if (a.namespace !== undefined) s.ns = a.namespace;
  if (a.holder !== undefined) {
    s.hp = a.holder.pid;
    s.hs = a.holder.startTime;
  }
  return s;
}

const isNat = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isTriples = (v: unknown): v is Triple[] =>
  Array.isArray(v) && v.every((t) => Array.isArray(t) && t.length === 3 && t.every(isNat));
const isPairs = (v: unknown): v is Pair[] =>
  Array.isArray(v) && v.every((t) => Array.isArray(t) && t.length === 2 && t.every(isNat));

function load(v: unknown): Allocation | undefined {
  if (v === null || typeof v !== 'object') return undefined;
  const s = v as Partial<StoredAllocation>;
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
  const a: Allocation = {
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

type JournalRecord = { s: number; op: 'add'; a: StoredAllocation } | { s: number; op: 'del'; id: string };

// ---------------------------------------------------------------------------------------------

interface IndexEntry {
  kind: 'uid' | 'gid';
  pool: IdRange[];
  taken: IdRange[];
  takenVersion: number;
  free: FreeSpace;
}

const JOURNAL = 'journal';
const SNAPSHOT = 'snapshot.json';
const LOCK = 'lock';
const { O_RDWR, O_NOFOLLOW } = constants;

function corrupt(path: string, why: string): AllocError {
  return new AllocError('REGISTRY_CORRUPT', `the allocation registry ${path} is damaged: ${why}`, {
    hint: 'this is not something a crash can cause; keep a copy of the directory for a bug report, then remove it to start afresh',
    data: { path },
  });
}

function isMissing(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).code === 'ENOENT';
}

/**
 * The allocation registry of one state root (`<root>/alloc/`): every process sees the same
 * allocations, changes are made under a cross-process lock and survive crashes. Use the
 * functions of `userns/alloc` ({@link allocate}, {@link release}, {@link gc}) unless you need to
 * keep one open.
 */
export class Registry {
  readonly dir: string;
  readonly #options: RegistryOptions;
  readonly #systemTaken: SystemTaken | undefined;
  #fd = -1;
  #ino = -1;
  /** End of the last good journal line we applied. */
  #offset = 0;
  #generation = 0;
  #seq = 0;
  #journalRecords = 0;
  #byId = new Map<string, Allocation>();
  #byName = new Map<string, Allocation>();
  #indexes: IndexEntry[] = [];
  #loaded = false;
  #dirChecked = false;

  constructor(dir: string, options: RegistryOptions = {}) {
    this.dir = dir;
    this.#options = options;
    this.#systemTaken = options.systemTaken === null ? undefined : new SystemTaken(options.systemTaken ?? {});
  }

  /** Runs `fn` under the lock, with the in-memory state brought up to date first. */
  async #locked<T>(fn: () => T | Promise<T>): Promise<T> {
    if (!this.#dirChecked) {
      ensurePrivateDir(this.dir, 'allocation registry');
      this.#dirChecked = true;
    }
    const release = await acquireLock(join(this.dir, LOCK), {
      what: `the allocation registry ${this.dir}`,
      timeoutMs: this.#options.lockTimeoutMs ?? 30_000,
    });
    try {
      this.#sync();
      return await fn();
    } finally {
      release();
    }
  }

  // --- reading -------------------------------------------------------------------------------

  #sync(): void {
    let st: import('node:fs').Stats | undefined;
    try {
      st = statSync(join(this.dir, JOURNAL));
    } catch (error) {
      if (!isMissing(error)) throw error;
    }
    if (this.#loaded && st !== undefined && st.ino === this.#ino && st.size >= this.#offset) {
      if (st.size > this.#offset) this.#readTail(st.size);
      return;
    }
    this.#reload();
  }

  /** Loads snapshot + journal from scratch (first use, or the journal was replaced). */
  #reload(): void {
    this.#closeJournal();
    this.#byId.clear();
    this.#byName.clear();
    this.#indexes = [];
    this.#loaded = false;
    this.#cleanStrays();
    const snapshotPath = join(this.dir, SNAPSHOT);
    let generation = 0;
    let seq = 0;
    let text: string | undefined;
    try {
      text = readFileSync(snapshotPath, 'utf8');
    } catch (error) {
      if (!isMissing(error)) throw error;
    }
    if (text !== undefined) {
      let snap: { format?: unknown; gen?: unknown; seq?: unknown; allocations?: unknown };
      try {
        snap = JSON.parse(text);
      } catch {
        throw corrupt(snapshotPath, 'the snapshot is not valid JSON');
      }
      if (
        snap.format !== 'userns-alloc-snapshot' ||
        !isNat(snap.gen) ||
        !isNat(snap.seq) ||
        !Array.isArray(snap.allocations)
      ) {
        throw corrupt(snapshotPath, 'the snapshot does not have the expected fields');
      }
      generation = snap.gen;
      seq = snap.seq;
      for (const raw of snap.allocations) {
        const a = load(raw);
        if (a === undefined)
          throw corrupt(snapshotPath, `malformed allocation ${JSON.stringify(raw).slice(0, 200)}`);
        this.#add(a);
      }
    }
    this.#generation = generation;
    this.#seq = seq;
    const journalPath = join(this.dir, JOURNAL);
    let fd: number;
    try {
      fd = openSync(journalPath, O_RDWR | O_NOFOLLOW);
    } catch (error) {
      if (!isMissing(error)) throw error;
      this.#resetJournal(generation);
      return;
    }
    const size = fstatSync(fd).size;
    const buf = Buffer.allocUnsafe(size);
    let got = 0;
    while (got < size) {
      const n = readSync(fd, buf, got, size - got, got);
      if (n === 0) break;
      got += n;
    }
    const nl = buf.indexOf(0x0a);
    const header =
      nl < 0 ? undefined : (decodeLine(buf, 0, nl) as { h?: unknown; gen?: unknown } | undefined);
    if (header === undefined || header.h !== 1 || !isNat(header.gen)) {
      // Journals are created whole by writeFileAtomic, so a bad header is not a crash.
      closeSync(fd);
      throw corrupt(journalPath, 'the journal header is unreadable');
    }
    if (header.gen < generation) {
      // Killed between writing the snapshot and resetting the journal: finish the compaction.
      closeSync(fd);
      this.#resetJournal(generation);
      return;
    }
    if (header.gen > generation) {
      closeSync(fd);
      throw corrupt(
        journalPath,
        `the journal is for generation ${header.gen} but the snapshot for ${generation}`,
      );
    }
    this.#fd = fd;
    this.#ino = fstatSync(fd).ino;
    this.#offset = nl + 1;
    this.#journalRecords = 0;
    this.#applyLines(buf.subarray(0, got), nl + 1, 0);
    this.#loaded = true;
  }

  #readTail(size: number): void {
    const length = size - this.#offset;
    const buf = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const n = readSync(this.#fd, buf, got, length - got, this.#offset + got);
      if (n === 0) break;
      got += n;
    }
    this.#applyLines(buf.subarray(0, got), 0, this.#offset);
  }

  /** Applies the complete, good lines of buf[from…]; truncates a torn or damaged last line. */
  #applyLines(buf: Buffer, from: number, base: number): void {
    let pos = from;
    while (pos < buf.length) {
      const nl = buf.indexOf(0x0a, pos);
      const record = nl < 0 ? undefined : (decodeLine(buf, pos, nl) as JournalRecord | undefined);
      if (record === undefined) {
        // Torn (no newline) or damaged. Only the last line can be: a writer appends only after
        // every earlier line, and earlier lines were fdatasync()ed before it.
        if (nl >= 0 && nl + 1 < buf.length) {
          throw corrupt(
            join(this.dir, JOURNAL),
            `a damaged record at byte ${base + pos} is followed by others`,
          );
        }
        ftruncateSync(this.#fd, base + pos);
        fdatasyncSync(this.#fd);
        break;
      }
      this.#applyRecord(record);
      pos = nl + 1;
      this.#offset = base + pos;
    }
  }

  #applyRecord(record: JournalRecord): void {
    const path = join(this.dir, JOURNAL);
    if (!isNat(record.s)) throw corrupt(path, 'a record without a sequence number');
    if (record.op === 'add') {
      const a = load(record.a);
      if (a === undefined) throw corrupt(path, `malformed allocation record ${record.s}`);
      this.#add(a);
    } else if (record.op === 'del') {
      const a = this.#byId.get(record.id);
      if (a !== undefined) this.#remove(a);
    } else throw corrupt(path, `unknown record type in record ${(record as { s: number }).s}`);
    this.#seq = Math.max(this.#seq, record.s);
    this.#journalRecords++;
  }

  #add(a: Allocation): void {
    this.#byId.set(a.id, a);
    this.#byName.set(a.name, a);
    for (const ix of this.#indexes)
      for (const r of ix.kind === 'uid' ? a.uids : a.gids) ix.free.carve(r.start, r.count);
  }

  #remove(a: Allocation): void {
    this.#byId.delete(a.id);
    if (this.#byName.get(a.name) === a) this.#byName.delete(a.name);
    for (const ix of this.#indexes) {
      const ranges = ix.kind === 'uid' ? a.uids : a.gids;
      for (const r of subtractRanges(intersectRanges(ranges, ix.pool), ix.taken))
        ix.free.release(r.start, r.count);
    }
  }

  #cleanStrays(): void {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return;
    }
    for (const name of names) {
      let stray = false;
      // Temp files of writeFileAtomic: only written under the lock, which we hold.
      if (/^(journal|snapshot\.json)\.tmp-/.test(name)) stray = true;
      // Temp files of the lock itself: stray once the process that made them is gone.
      const m = /^lock(?:\.break)?\.new-([0-9]+)-[0-9a-f]+$/.exec(name);
      if (m && processStartTime(Number(m[1])) === undefined) stray = true;
      if (/^lock\.break\.stale-/.test(name)) stray = true;
      if (!stray) continue;
      try {
        unlinkSync(join(this.dir, name));
      } catch {
        /* gone already */
      }
    }
  }

  // --- writing -------------------------------------------------------------------------------

  #closeJournal(): void {
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
    this.#ino = -1;
  }

  #resetJournal(generation: number): void {
    this.#closeJournal();
    const path = join(this.dir, JOURNAL);
    writeFileAtomic(path, encodeLine({ h: 1, gen: generation }));
    this.#fd = openSync(path, O_RDWR | O_NOFOLLOW);
    this.#ino = fstatSync(this.#fd).ino;
    this.#offset = fstatSync(this.#fd).size;
    this.#journalRecords = 0;
    this.#loaded = true;
  }

  #append(record: JournalRecord): void {
    const line = encodeLine(record);
    let done = 0;
    while (done < line.length)
      done += writeSync(this.#fd, line, done, line.length - done, this.#offset + done);
    fdatasyncSync(this.#fd);
    this.#offset += line.length;
  }

  #maybeCompact(): void {
    const threshold = Math.max(this.#options.compactEvery ?? 4096, 2 * this.#byId.size);
    if (this.#journalRecords < threshold) return;
    this.compactNow();
  }

  /** Writes a snapshot of the live allocations and starts an empty journal (call under the lock). */
  compactNow(): void {
    const generation = this.#generation + 1;
    const snapshot = {
      format: 'userns-alloc-snapshot',
      gen: generation,
      seq: this.#seq,
      allocations: [...this.#byId.values()].map(store),
    };
    writeFileAtomic(join(this.dir, SNAPSHOT), JSON.stringify(snapshot));
    this.#generation = generation;
    this.#resetJournal(generation);
  }

  // --- the free-space index ------------------------------------------------------------------

  #taken(kind: 'uid' | 'gid'): { ranges: IdRange[]; version: number } {
    if (this.#systemTaken === undefined) return { ranges: [], version: 0 };
    const t = this.#systemTaken.get();
    return { ranges: kind === 'uid' ? t.uid : t.gid, version: this.#systemTaken.version };
  }

  /** The free space of `pool` (built on first use: O(n log n); then kept up to date). */
  #index(kind: 'uid' | 'gid', pool: readonly IdRange[]): IndexEntry {
    const taken = this.#taken(kind);
    const normalized = normalizeRanges(pool);
    const key = JSON.stringify(normalized);
    const found = this.#indexes.find((ix) => ix.kind === kind && JSON.stringify(ix.pool) === key);
    if (found !== undefined && found.takenVersion === taken.version) return found;
    if (found !== undefined) this.#indexes.splice(this.#indexes.indexOf(found), 1);
    const used: IdRange[] = [...taken.ranges];
    for (const a of this.#byId.values()) used.push(...(kind === 'uid' ? a.uids : a.gids));
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

  // --- operations ----------------------------------------------------------------------------

  #exhausted(kind: 'uid' | 'gid', request: AllocationRequest, pool: Pool, free: FreeSpace): AllocError {
    const { reserve, align } = blockShape(request.policy, request.size);
    const where = formatPool(pool.ranges);
    const asked =
      request.policy.kind === 'base'
        ? `${reserve} ${kind}s at ${request.policy.base}`
        : `${reserve} ${kind}s${align > 1 ? ` aligned to ${align}` : ''}`;
    const baseNote =
      request.policy.kind === 'base'
        ? ` (${formatRange(request.policy.base, reserve)} is not entirely free in the pool)`
        : align > 1 && free.largest >= reserve
          ? ` (no free block of ${reserve} starts at a multiple of ${align})`
          : '';
    return new AllocError(
      ALLOC_EXHAUSTED,
      `cannot allocate: asked for ${asked}; the largest free block in pool ${where} is ${free.largest} (${free.total} free in total)${baseNote}`,
      {
        hint: `the pool comes from ${pool.source}; release allocations ('userns alloc list', 'userns alloc release', 'userns alloc gc'), ask for fewer IDs, or give a larger pool with --pool START:COUNT`,
        data: {
          kind,
          asked: reserve,
          align,
          policy: formatPolicy(request.policy),
          largestFree: free.largest,
          totalFree: free.total,
          pool: pool.ranges,
          poolSource: pool.source,
        },
      },
    );
  }

  #buildMap(
    kind: 'uid' | 'gid',
    start: number,
    request: AllocationRequest,
    pool: Pool,
    ix: IndexEntry,
  ): { map: Extent[]; reserved: IdRange[] } {
    const { reserve } = blockShape(request.policy, request.size);
    let map = [extent(0, start, request.size)];
    const reserved: IdRange[] = [{ start, count: reserve }];
    const passthrough = (kind === 'uid' ? request.uidPassthrough : request.gidPassthrough) ?? [];
    for (const hole of passthrough) {
      map = [...punchHole(map, hole).extents];
      // Host IDs of the passthrough that come from the pool are reserved for this allocation;
      // others (a host user outside the pool) are shared, as podman does.
      const fromPool = subtractRanges(
        intersectRanges([{ start: hole.outside, count: hole.count }], pool.ranges),
        [{ start, count: reserve }],
      );
      for (const r of fromPool) {
        const takenBy = [...this.#byId.values()].find(
          (a) => intersectRanges(kind === 'uid' ? a.uids : a.gids, [r]).length > 0,
        );
        if (takenBy !== undefined) {
          throw new AllocError(
            'ALLOC_PASSTHROUGH_TAKEN',
            `the ${kind}mapping ${formatTriple(hole)} maps host ${kind}s ${formatRange(r.start, r.count)} of the pool, which allocation ${takenBy.name} (${takenBy.id}) holds`,
            {
              hint: 'map a host ID outside the pool, or release that allocation first',
              data: { kind, mapping: hole, holder: takenBy.id },
            },
          );
        }
        // IDs of the pool that are not free (taken by a passwd/group entry) are mapped, not reserved.
        reserved.push(...subtractRanges([r], ix.taken));
      }
    }
    if (passthrough.length > 0) map = [...normalize(map).extents];
    const verdict = validateMap(map, { kind });
    if (!verdict.ok) {
      throw new MapError(
        'ALLOC_MAP_INVALID',
        `the ${kind} map of this allocation would be refused by the kernel: ${verdict.reason}`,
        {
          hint: `check the --${kind}mapping values`,
          data: { kind, map: map.map(formatTriple) },
        },
      );
    }
    return { map, reserved: normalizeRanges(reserved) };
  }

  /** Allocates uid and gid ranges for one container. */
  async allocate(request: AllocationRequest): Promise<Allocation> {
    if (request.name !== undefined) validateName(request.name, 'allocation name');
    if (request.namespace !== undefined) validateName(request.namespace, 'namespace name');
    if (!Number.isSafeInteger(request.size) || request.size < 1) {
      throw new AllocError(
        'ALLOC_BAD_SIZE',
        `cannot allocate ${request.size} IDs: the size must be at least 1`,
      );
    }
    return this.#locked(() => {
      const name = request.name;
      if (name !== undefined && (this.#byName.has(name) || this.#byId.has(name))) {
        const other = this.#byName.get(name) ?? this.#byId.get(name)!;
        throw new AllocError(
          ALLOC_NAME_TAKEN,
          `an allocation named ${name} exists already (id ${other.id}, created ${other.created})`,
          {
            hint: `choose another name, or release it first: userns alloc release ${name}`,
            data: { name, id: other.id },
          },
        );
      }
      const uidIx = this.#index('uid', request.pools.uid.ranges);
      const gidIx = this.#index('gid', request.pools.gid.ranges);
      const uidStart = pickBlock(uidIx.free, request.policy, request.size);
      if (uidStart === undefined) throw this.#exhausted('uid', request, request.pools.uid, uidIx.free);
      const gidStart = pickBlock(gidIx.free, request.policy, request.size, uidStart);
      if (gidStart === undefined) throw this.#exhausted('gid', request, request.pools.gid, gidIx.free);
      const uid = this.#buildMap('uid', uidStart, request, request.pools.uid, uidIx);
      const gid = this.#buildMap('gid', gidStart, request, request.pools.gid, gidIx);
      let id = randomBytes(6).toString('hex');
      while (this.#byId.has(id) || this.#byName.has(id)) id = randomBytes(6).toString('hex');
      const seq = this.#seq + 1;
      const allocation: Allocation = {
        id,
        name: name ?? id,
        owner: process.geteuid?.() ?? 0,
        created: new Date().toISOString(),
        policy: formatPolicy(request.policy),
        size: request.size,
        uidMap: uid.map,
        gidMap: gid.map,
        uids: uid.reserved,
        gids: gid.reserved,
        seq,
      };
      if (request.namespace !== undefined) allocation.namespace = request.namespace;
      if (request.holder !== undefined) allocation.holder = { ...request.holder };
      this.#append({ s: seq, op: 'add', a: store(allocation) });
      this.#seq = seq;
      this.#journalRecords++;
      this.#add(allocation);
      this.#maybeCompact();
      return allocation;
    });
  }

  #find(idOrName: string): Allocation | undefined {
    return this.#byId.get(idOrName) ?? this.#byName.get(idOrName);
  }

  /** Releases by id or name; returns the allocation and the sequence number of the release. */
  async release(
    idOrName: string,
    options: { ifExists?: boolean } = {},
  ): Promise<{ allocation: Allocation; seq: number } | undefined> {
    return this.#locked(() => {
      const a = this.#find(idOrName);
      if (a === undefined) {
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
      if (euid !== 0 && a.owner !== euid) {
        throw new AllocError(
          'ALLOC_NOT_OWNER',
          `allocation ${a.name} (${a.id}) belongs to uid ${a.owner}, not to you`,
          {
            hint: 'only its owner or root can release it',
            data: { id: a.id, owner: a.owner },
          },
        );
      }
      return { allocation: a, seq: this.#releaseLocked(a) };
    });
  }

  #releaseLocked(a: Allocation): number {
    const seq = this.#seq + 1;
    this.#append({ s: seq, op: 'del', id: a.id });
    this.#seq = seq;
    this.#journalRecords++;
    this.#remove(a);
    this.#maybeCompact();
    return seq;
  }

  /** Every live allocation, in creation order. */
  async list(): Promise<Allocation[]> {
    return this.#locked(() => [...this.#byId.values()]);
  }

  /**
   * Releases the allocations whose owner is gone: those of a named namespace that
   * `isNamespaceAlive` says is gone, and those of a process (`userns run`) that has exited.
   */
  async gc(isNamespaceAlive: (name: string) => Promise<boolean>): Promise<Allocation[]> {
    return this.#locked(async () => {
      const released: Allocation[] = [];
      for (const a of [...this.#byId.values()]) {
        let gone = false;
        if (a.holder !== undefined) {
          const start = processStartTime(a.holder.pid);
          gone = start === undefined || start !== a.holder.startTime;
        }
        if (!gone && a.namespace !== undefined) gone = !(await isNamespaceAlive(a.namespace));
        if (gone) {
          this.#releaseLocked(a);
          released.push(a);
        }
      }
      return released;
    });
  }

  /** Free and used IDs per pool. */
  async usage(pools: Pools): Promise<{ uid: KindUsage; gid: KindUsage }> {
    return this.#locked(() => {
      const one = (kind: 'uid' | 'gid'): KindUsage => {
        const pool = pools[kind];
        const ix = this.#index(kind, pool.ranges);
        const poolSize = rangesSize(pool.ranges);
        return {
          pool: ix.pool,
          source: pool.source,
          poolSize,
          free: ix.free.total,
          used: poolSize - ix.free.total,
          largestFree: ix.free.largest,
        };
      };
      return { uid: one('uid'), gid: one('gid') };
    });
  }

  /**
   * Checks the registry as stored (a fresh load, not this process's memory): no two live
   * allocations overlap (uids or gids), names and ids are unique, every map is one the kernel
   * accepts. Returns the problems found (empty = consistent).
   */
  async verify(): Promise<{ problems: string[]; allocations: Allocation[] }> {
    return this.#locked(() => {
      this.#reload();
      const all = [...this.#byId.values()];
      const problems: string[] = [];
      const names = new Set<string>();
      for (const a of all) {
        if (names.has(a.name)) problems.push(`duplicate name ${a.name}`);
        names.add(a.name);
        for (const kind of ['uid', 'gid'] as const) {
          const v = validateMap(kind === 'uid' ? a.uidMap : a.gidMap, { kind });
          if (!v.ok) problems.push(`${a.id}: ${kind} map invalid: ${v.reason}`);
        }
      }
      for (const kind of ['uids', 'gids'] as const) {
        const spans = all
          .flatMap((a) => a[kind].map((r) => ({ id: a.id, start: r.start, end: r.start + r.count })))
          .sort((x, y) => x.start - y.start);
        for (let i = 1; i < spans.length; i++) {
          const p = spans[i - 1]!;
          const q = spans[i]!;
          if (q.start < p.end) problems.push(`${kind} of ${p.id} and ${q.id} overlap at ${q.start}`);
        }
      }
      return { problems, allocations: all };
    });
  }

  /** Runs `fn` under the registry lock (for tests and tools). */
  async withLock<T>(fn: () => T | Promise<T>): Promise<T> {
    return this.#locked(fn);
  }

  /** Closes the journal file descriptor (the registry reopens it when used again). */
  close(): void {
    this.#closeJournal();
    this.#loaded = false;
  }
}
