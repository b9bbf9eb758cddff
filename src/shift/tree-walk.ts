/**
 * Driver of the helper's walk mode (src/native/tree-walk.c): starts the helper, inside a user
 * namespace with the given maps or in the caller's view, sends the job, and parses the records
 * it streams back. Pure policy (which tables, what an unmapped ID becomes) is decided by the
 * callers (shift.ts, fit.ts); this file only speaks the protocol.
 */
import { availableParallelism } from 'node:os';
import { SpawnError, WalkError } from '../errors/index.js';
import type { IdKind } from '../idmap/extent.js';
import type { IdMap } from '../idmap/idmap.js';
import type { IdRange } from '../idmap/ranges.js';
import { type MapWriteOptions, planMaps, writeMaps } from '../maps/write-maps.js';
import { errnoName, launchHelper } from '../native/helper.js';
import { explainSpawnFailure } from '../spawn/explain.js';

/** One extent of a translation table: IDs [from, from+count) become [to, to+count). */
export interface Translation {
  from: number;
  to: number;
  count: number;
}

/**
 * What a shift does with an ID `from` does not translate: stop before changing anything, keep the
 * ID, or write the overflow ID.
 */
export type UnmappedPolicy = 'error' | 'skip' | 'overflow';

export interface WalkJob {
  root: string;
  apply: boolean;
  list: boolean;
  uid: readonly Translation[];
  gid: readonly Translation[];
  /** IDs already where the shift takes IDs (kept; an entry with only such IDs counts as already shifted). */
  uidDone?: readonly IdRange[];
  gidDone?: readonly IdRange[];
  /**
   * IDs the first phase of a two-phase shift wrote (kept; an entry unchanged that has one counts
   * as resumed: the second phase changes it).
   */
  uidPart?: readonly IdRange[];
  gidPart?: readonly IdRange[];
  /** Tests only: each walk process stops itself (SIGSTOP) after its Nth change. */
  stopAfter?: number;
  /**
   * Tests only: how young (ms) a ctime the check pass reads must be for the apply pass to list
   * that entry's xattrs again anyway (default 50: src/native/tree-walk.c, RECENT_NS).
   */
  recentMs?: number;
  unmapped: UnmappedPolicy;
  overflow?: { uid: number; gid: number };
  /** The IDs the walk's namespace shows for owners it does not map (such entries are left alone). */
  outside?: { uid: number; gid: number };
  /** The user ID a v1/v2 file capability (no root ID) stands for; null: none is mapped. */
  v2root: number | null;
  crossFilesystems: boolean;
  /** A progress record every N entries (0: none). */
  progress: number;
  /** Count the entries first (for an estimate of the time left). */
  count: boolean;
  /** Processes walking in parallel (1-16); entries are shared out by inode number. */
  workers?: number;
  /** A read-only pass first, then the job once the caller says so (runCheckedWalk sets it). */
  check?: boolean;
}

export type FileType = 'file' | 'directory' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';
const FILE_TYPES: Record<string, FileType> = {
  f: 'file',
  d: 'directory',
  l: 'symlink',
  c: 'char',
  b: 'block',
  p: 'fifo',
  s: 'socket',
};

export type UnmappedKind = 'uid' | 'gid' | 'acl-uid' | 'acl-gid' | 'cap-root';

/** What an "U" record's kind says: which kind of ID, and where it was found. */
export const UNMAPPED_KINDS: Record<UnmappedKind, { kind: IdKind; where: 'owner' | 'acl' | 'capability' }> = {
  uid: { kind: 'uid', where: 'owner' },
  gid: { kind: 'gid', where: 'owner' },
  'acl-uid': { kind: 'uid', where: 'acl' },
  'acl-gid': { kind: 'gid', where: 'acl' },
  'cap-root': { kind: 'uid', where: 'capability' },
};

export type WalkRecord =
  | { type: 'total'; total: number }
  /** Totals over all workers so far. */
  | { type: 'progress'; seen: number; changed: number }
  | {
      type: 'change';
      path: string;
      fileType: FileType;
      old: { uid: number; gid: number };
      new: { uid: number; gid: number };
      /** What changes: owner, ACL, capability, mode (set-ID bits restored after chown). */
      what: ('owner' | 'acl' | 'capability' | 'mode')[];
    }
  /** id null: a v1/v2 file capability whose root (the initial namespace's root) is not mapped. */
  | { type: 'unmapped'; kind: UnmappedKind; id: number | null; path: string }
  | { type: 'error'; op: string; errno: string; path: string }
  | { type: 'mountpoint'; path: string }
  | { type: 'hardlink'; path: string };

export interface WalkSummary {
  seen: number;
  changed: number;
  hardlinks: number;
  mountpoints: number;
  errors: number;
  /** IDs without translation (each occurrence). */
  unmapped: number;
  /** Entries that kept (some of) their IDs because they had no translation. */
  skipped: number;
  /** Highest user and group IDs seen (owners, ACL entries, capability roots), null when none. */
  maxUid: number | null;
  maxGid: number | null;
  /** Entries left as they were because every ID they have is already shifted (uidDone/gidDone). */
  already: number;
  /** Highest IDs the tables translated to (the IDs that had a translation, after it), null when none. */
  maxNewUid: number | null;
  maxNewGid: number | null;
  /** Entries left as they were that keep an ID the first phase of a two-phase shift wrote (uidPart/gidPart). */
  resumed: number;
}

/** Undoes the C side's escaping of paths (\\, \t, \n, \xHH). */
export function unescapePath(text: string): string {
  if (!text.includes('\\')) return text;
  const bytes: number[] = [];
  const raw = Buffer.from(text, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c !== 0x5c || i + 1 >= raw.length) {
      bytes.push(c);
      continue;
    }
    const next = raw[++i]!;
    if (next === 0x74) bytes.push(0x09);
    else if (next === 0x6e) bytes.push(0x0a);
    else if (next === 0x78 && i + 2 < raw.length) {
      bytes.push(Number.parseInt(raw.subarray(i + 1, i + 3).toString('latin1'), 16));
      i += 2;
    } else bytes.push(next);
  }
  return Buffer.from(bytes).toString('utf8');
}

const WHAT = { o: 'owner', a: 'acl', c: 'capability', m: 'mode' } as const;

type WorkerProgress = { type: 'worker-progress'; worker: number; seen: number; changed: number };
type WorkerSummary = WalkSummary & { worker: number };

/** Parses one record line; "P" and "S" lines are per worker. */
export function parseRecord(line: string): WalkRecord | WorkerProgress | WorkerSummary | undefined {
  const f = line.split('\t');
  switch (f[0]) {
    case 'T':
      return { type: 'total', total: Number(f[1]) };
    case 'P':
      return { type: 'worker-progress', worker: Number(f[1]), seen: Number(f[2]), changed: Number(f[3]) };
    case 'C':
      return {
        type: 'change',
        path: unescapePath(f[1]!),
        fileType: FILE_TYPES[f[2]!] ?? 'file',
        old: { uid: Number(f[3]), gid: Number(f[4]) },
        new: { uid: Number(f[5]), gid: Number(f[6]) },
        what: [...(f[7] ?? '')].map((c) => WHAT[c as keyof typeof WHAT]).filter((w) => w !== undefined),
      };
    case 'U':
      return {
        type: 'unmapped',
        kind: f[1] as UnmappedKind,
        id: f[2] === '-' ? null : Number(f[2]),
        path: unescapePath(f[3]!),
      };
    case 'E':
      return { type: 'error', op: f[1]!, errno: errnoName(Number(f[2])), path: unescapePath(f[3] ?? '') };
    case 'M':
      return { type: 'mountpoint', path: unescapePath(f[1]!) };
    case 'H':
      return { type: 'hardlink', path: unescapePath(f[1]!) };
    case 'S': {
      const num = (s: string | undefined) => (s === undefined || s === '-' ? null : Number(s));
      return {
        worker: Number(f[1]),
        seen: Number(f[2]),
        changed: Number(f[3]),
        hardlinks: Number(f[4]),
        mountpoints: Number(f[5]),
        errors: Number(f[6]),
        unmapped: Number(f[7]),
        skipped: Number(f[8]),
        maxUid: num(f[9]),
        maxGid: num(f[10]),
        already: Number(f[11] ?? 0),
        maxNewUid: num(f[12]),
        maxNewGid: num(f[13]),
        resumed: Number(f[14] ?? 0),
      };
    }
    default:
      return undefined;
  }
}

function combineSummaries(list: readonly WalkSummary[]): WalkSummary {
  const max = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.max(a, b));
  return list.reduce((a, b) => ({
    seen: a.seen + b.seen,
    changed: a.changed + b.changed,
    hardlinks: a.hardlinks + b.hardlinks,
    mountpoints: a.mountpoints + b.mountpoints,
    errors: a.errors + b.errors,
    unmapped: a.unmapped + b.unmapped,
    skipped: a.skipped + b.skipped,
    maxUid: max(a.maxUid, b.maxUid),
    maxGid: max(a.maxGid, b.maxGid),
    already: a.already + b.already,
    maxNewUid: max(a.maxNewUid, b.maxNewUid),
    maxNewGid: max(a.maxNewGid, b.maxNewGid),
    resumed: a.resumed + b.resumed,
  }));
}

/** The default number of walk processes: the CPUs, at most 4 (the disk is shared). */
export function defaultWorkers(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

/** The job as the helper reads it: NUL-terminated key=value tokens. */
export function encodeJob(job: WalkJob): Buffer {
  const tokens = [
    `root=${job.root}`,
    `apply=${job.apply ? 1 : 0}`,
    `list=${job.list ? 1 : 0}`,
    `unmapped=${job.unmapped}`,
    `v2root=${job.v2root ?? 'none'}`,
    `xdev=${job.crossFilesystems ? 1 : 0}`,
    `progress=${job.progress}`,
    `count=${job.count ? 1 : 0}`,
    `workers=${job.workers ?? 1}`,
  ];
  if (job.check) tokens.push('check=1');
  if (job.overflow) tokens.push(`overflow=${job.overflow.uid}:${job.overflow.gid}`);
  if (job.outside) tokens.push(`outside=${job.outside.uid}:${job.outside.gid}`);
  for (const t of job.uid) tokens.push(`uid=${t.from}:${t.to}:${t.count}`);
  for (const t of job.gid) tokens.push(`gid=${t.from}:${t.to}:${t.count}`);
  for (const r of job.uidDone ?? []) tokens.push(`uiddone=${r.start}:${r.count}`);
  for (const r of job.gidDone ?? []) tokens.push(`giddone=${r.start}:${r.count}`);
  for (const r of job.uidPart ?? []) tokens.push(`uidpart=${r.start}:${r.count}`);
  for (const r of job.gidPart ?? []) tokens.push(`gidpart=${r.start}:${r.count}`);
  if (job.stopAfter !== undefined) tokens.push(`stopafter=${job.stopAfter}`);
  if (job.recentMs !== undefined) tokens.push(`recentms=${job.recentMs}`);
  return Buffer.from(`${tokens.join('\0')}\0`, 'utf8');
}

export interface WalkNamespace {
  /** Maps of the walk's user namespace (outside = the caller's IDs). */
  uid: IdMap;
  gid: IdMap;
  mapWrite?: MapWriteOptions;
}

export interface WalkOptions {
  /** null: walk in the caller's own view, without a namespace. */
  namespace: WalkNamespace | null;
  onRecord?: (record: WalkRecord) => void;
  helperPath?: string;
  signal?: AbortSignal;
}

/** Runs one walk to its end and returns the summary line. */
export async function runWalk(job: WalkJob, options: WalkOptions): Promise<WalkSummary> {
  return (await walk(job, options, undefined)).check;
}

export interface CheckedWalkOptions extends WalkOptions {
  /** The records of the read-only check pass (onRecord gets the apply pass's). */
  onCheckRecord?: (record: WalkRecord) => void;
  /**
   * Called once, with the check pass's summary, when every worker has finished it: true runs the
   * apply pass. The records of the check pass have all been delivered by then.
   */
  decide: (check: WalkSummary) => boolean;
}

/**
 * One helper, two passes (the job's `check=1`, src/native/protocol.md): the job read-only first,
 * then — when `decide` says so — with `job.apply` and `job.list` as given. Against two runWalk()
 * calls it saves a helper start and, above all, the apply pass's listxattr of every entry the
 * check pass found without ACLs and capabilities and that has not changed since (tree-walk.c,
 * plain_note). `applied` is null when `decide` said no.
 */
export async function runCheckedWalk(
  job: WalkJob,
  options: CheckedWalkOptions,
): Promise<{ check: WalkSummary; applied: WalkSummary | null }> {
  return walk(job, options, options);
}

async function walk(
  job: WalkJob,
  options: WalkOptions,
  checked: CheckedWalkOptions | undefined,
): Promise<{ check: WalkSummary; applied: WalkSummary | null }> {
  const ns = options.namespace;
  // Plan first: a map the kernel (or newuidmap) would refuse is reported before anything starts.
  const plan = ns ? await planMaps(ns.uid, ns.gid, { noSplit: false, ...ns.mapWrite }) : undefined;
  const handle = await launchHelper({
    mode: 'walk',
    namespaces: [],
    command: [],
    explain: explainSpawnFailure,
    noUserns: ns === null,
    user: null,
    setgroupsCall: false,
    stdio: ['pipe', 'pipe', 'ignore'],
    ...(options.helperPath === undefined ? {} : { helperPath: options.helperPath }),
  });
  const child = handle.child;
  const exited = new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
  try {
    if (plan) await writeMaps(handle.pid, plan, ns?.mapWrite);
    await handle.go();
  } catch (error) {
    await handle.abort();
    throw error;
  }
  const onAbort = () => child.kill('SIGKILL');
  options.signal?.addEventListener('abort', onAbort, { once: true });

  const workers = job.workers ?? 1;
  const summaries: WorkerSummary[] = [];
  let checkSummary: WalkSummary | undefined;
  let applying = false;
  let decideError: { error: unknown } | undefined;
  const progress = new Map<number, { seen: number; changed: number }>();
  let jobError: string | undefined;
  const stdout = child.stdout!;
  stdout.setEncoding('utf8');
  let pending = '';
  const deliver = (record: WalkRecord) =>
    checked !== undefined && checkSummary === undefined
      ? checked.onCheckRecord?.(record)
      : options.onRecord?.(record);
  const onLine = (line: string) => {
    const record = parseRecord(line);
    if (record === undefined) return;
    if (!('type' in record)) {
      summaries.push(record);
      if (checked !== undefined && checkSummary === undefined && summaries.length === workers) {
        // Every worker finished the check pass: the caller decides; the workers wait for it.
        checkSummary = combineSummaries(summaries.splice(0));
        progress.clear();
        let go = false;
        try {
          go = jobError === undefined && checked.decide(checkSummary);
        } catch (error) {
          decideError = { error };
        }
        applying = go;
        child.stdin!.end(go ? 'a' : '');
      }
      return;
    }
    if (record.type === 'worker-progress') {
      progress.set(record.worker, { seen: record.seen, changed: record.changed });
      let seen = 0;
      let changed = 0;
      for (const p of progress.values()) {
        seen += p.seen;
        changed += p.changed;
      }
      deliver({ type: 'progress', seen, changed });
      return;
    }
    if (record.type === 'error' && record.op === 'job') jobError = record.path;
    deliver(record);
  };
  stdout.on('data', (chunk: string) => {
    pending += chunk;
    let start = 0;
    let nl = pending.indexOf('\n', start);
    while (nl >= 0) {
      onLine(pending.slice(start, nl));
      start = nl + 1;
      nl = pending.indexOf('\n', start);
    }
    pending = pending.slice(start);
  });
  const ended = new Promise<void>((resolve) => stdout.once('close', resolve));
  child.stdin!.on('error', () => {});
  if (checked === undefined) child.stdin!.end(encodeJob(job));
  // The empty token ends the job; stdin stays open for the decision.
  else child.stdin!.write(Buffer.concat([encodeJob({ ...job, check: true }), Buffer.from([0])]));
  const [code] = await Promise.all([exited, ended]);
  options.signal?.removeEventListener('abort', onAbort);
  if (pending !== '') onLine(pending);
  if (checked !== undefined && checkSummary === undefined) child.stdin!.destroy();
  if (decideError !== undefined) throw decideError.error;
  if (jobError !== undefined) {
    throw new WalkError('WALK_JOB_INVALID', `the tree walk rejected its job: ${jobError}`);
  }
  const expected = checked === undefined || applying ? workers : 0;
  if (summaries.length !== expected || (checked !== undefined && checkSummary === undefined)) {
    throw new SpawnError(
      'WALK_FAILED',
      options.signal?.aborted
        ? 'the tree walk was stopped'
        : `the tree walk ended early (exit status ${code})`,
    );
  }
  if (checked === undefined) return { check: combineSummaries(summaries), applied: null };
  return { check: checkSummary!, applied: applying ? combineSummaries(summaries) : null };
}
