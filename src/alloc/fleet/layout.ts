/**
 * The fleet registry's keys and values in etcd (all under PREFIX, ASCII keys, JSON values):
 *
 *   PREFIX/config                 FleetConfig: the pools, the default policy, the lease TTL
 *   PREFIX/head                   {"last": id}: written by every allocating transaction, which
 *                                 compares its mod revision (the serialization point)
 *   PREFIX/alloc/<id>             StoredAllocation; its create revision is the allocation's seq
 *   PREFIX/name/<name>            "<id>": created only when absent (one name, one allocation)
 *   PREFIX/index/uid/<start>      {"id","count"}: one per reserved range, the start zero-padded
 *   PREFIX/index/gid/<start>      to 10 digits so that key order is numeric order
 *   PREFIX/nodes/<node>           NodeRecord, on the node's lease: the node is alive
 *   PREFIX/holds/<id>/<node>      {"since"}, on that node's lease: another node uses <id>
 *
 * A leased allocation puts its alloc, name and index keys on its node's lease, so when the lease
 * expires etcd deletes the allocation whole, in one revision. Names go through validateName
 * (no `/`), node names too, so every key parses back unambiguously.
 *
 * Pure: no I/O.
 */
import { UsernsError } from '../../errors/index.js';
import { type Extent, extent } from '../../idmap/extent.js';
import { type IdRange, normalizeRanges } from '../../idmap/ranges.js';
import { parsePolicy } from '../policy.js';
import { clipPool, configRanges } from '../pool.js';
import type { Allocation, Holder } from '../registry.js';

export type IdKind = 'uid' | 'gid';

/** The key names of one registry. */
export class FleetKeys {
  readonly prefix: string;
  constructor(prefix: string) {
    this.prefix = prefix;
  }
  get config(): string {
    return `${this.prefix}/config`;
  }
  get head(): string {
    return `${this.prefix}/head`;
  }
  alloc(id: string): string {
    return `${this.prefix}/alloc/${id}`;
  }
  get allocs(): string {
    return `${this.prefix}/alloc/`;
  }
  name(name: string): string {
    return `${this.prefix}/name/${name}`;
  }
  get names(): string {
    return `${this.prefix}/name/`;
  }
  index(kind: IdKind, start: number): string {
    return `${this.prefix}/index/${kind}/${String(start).padStart(10, '0')}`;
  }
  indexes(kind: IdKind): string {
    return `${this.prefix}/index/${kind}/`;
  }
  node(node: string): string {
    return `${this.prefix}/nodes/${node}`;
  }
  get nodes(): string {
    return `${this.prefix}/nodes/`;
  }
  hold(id: string, node: string): string {
    return `${this.prefix}/holds/${id}/${node}`;
  }
  holdsOf(id: string): string {
    return `${this.prefix}/holds/${id}/`;
  }
  get holds(): string {
    return `${this.prefix}/holds/`;
  }
  /** The last path segment of a key under `dir` (a directory key ending in `/`). */
  static tail(key: string, dir: string): string {
    return key.slice(dir.length);
  }
}

/** The end of the range of every key that starts with `prefix` (etcd's range_end). */
export function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix);
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) {
      const end = Buffer.from(b.subarray(0, i + 1));
      end[i]!++;
      return end;
    }
  }
  return Buffer.from([0]);
}

// --- configuration ---------------------------------------------------------------------------

/** PREFIX/config. */
export interface FleetConfig {
  version: 1;
  /** Host uids the fleet allocates from (normalized, never (u32)-1). */
  uidPool: IdRange[];
  gidPool: IdRange[];
  /** The policy when a request names none (default first-fit). */
  policy?: string;
  /** TTL of node leases in seconds (default 60). */
  leaseTtl?: number;
}

export const DEFAULT_LEASE_TTL = 60;
export const MIN_LEASE_TTL = 2;
export const MAX_LEASE_TTL = 86_400;

/** Checks and normalizes a configuration (ALLOC_CONFIG, naming `where`, when it is wrong). */
export function checkFleetConfig(value: unknown, where: string): FleetConfig {
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new UsernsError('ALLOC_CONFIG', `${where}: not a JSON object`);
  const v = value as Record<string, unknown>;
  if (v.version !== 1) {
    throw new UsernsError('ALLOC_CONFIG', `${where}: version ${JSON.stringify(v.version)} is not 1`, {
      hint: 'a newer userns may have written it; use that version',
    });
  }
  const ranges = (value: unknown, what: string) => {
    try {
      return configRanges(value, `${where}: ${what}`);
    } catch (error) {
      if (error instanceof UsernsError && error.code === 'ALLOC_CONFIG') throw error;
      throw new UsernsError('ALLOC_CONFIG', `${where}: ${what}: ${(error as Error).message}`);
    }
  };
  const uid = ranges(v.uidPool, 'uidPool');
  const gid = ranges(v.gidPool, 'gidPool');
  if (uid === undefined || gid === undefined)
    throw new UsernsError('ALLOC_CONFIG', `${where}: uidPool and gidPool are both required`);
  const config: FleetConfig = {
    version: 1,
    uidPool: normalizeRanges(clipPool(uid)),
    gidPool: normalizeRanges(clipPool(gid)),
  };
  for (const kind of ['uid', 'gid'] as const) {
    if ((kind === 'uid' ? config.uidPool : config.gidPool).length === 0)
      throw new UsernsError('ALLOC_CONFIG', `${where}: the ${kind} pool is empty`);
  }
  if (v.policy !== undefined) {
    if (typeof v.policy !== 'string')
      throw new UsernsError('ALLOC_CONFIG', `${where}: policy is not a string`);
    try {
      parsePolicy(v.policy);
    } catch (error) {
      throw new UsernsError('ALLOC_CONFIG', `${where}: ${(error as Error).message}`);
    }
    config.policy = v.policy;
  }
  if (v.leaseTtl !== undefined) {
    const ttl = v.leaseTtl;
    if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < MIN_LEASE_TTL || ttl > MAX_LEASE_TTL) {
      throw new UsernsError(
        'ALLOC_CONFIG',
        `${where}: leaseTtl ${JSON.stringify(ttl)} is not a whole number of seconds from ${MIN_LEASE_TTL} to ${MAX_LEASE_TTL}`,
      );
    }
    config.leaseTtl = ttl;
  }
  return config;
}

// --- records ---------------------------------------------------------------------------------

type Triple = [number, number, number];

/** PREFIX/alloc/<id>: the allocation without what etcd itself keeps (seq, lease). */
export interface StoredAllocation {
  v: 1;
  id: string;
  name: string;
  owner: number;
  created: string;
  policy: string;
  size: number;
  uidMap: Triple[];
  gidMap: Triple[];
  uids: IdRange[];
  gids: IdRange[];
  node: string;
  namespace?: string;
  holder?: Holder;
}

export function encodeAllocation(a: Omit<Allocation, 'seq'> & { node: string }): string {
  const stored: StoredAllocation = {
    v: 1,
    id: a.id,
    name: a.name,
    owner: a.owner,
    created: a.created,
    policy: a.policy,
    size: a.size,
    uidMap: a.uidMap.map((e) => [e.inside, e.outside, e.count]),
    gidMap: a.gidMap.map((e) => [e.inside, e.outside, e.count]),
    uids: a.uids.map(({ start, count }) => ({ start, count })),
    gids: a.gids.map(({ start, count }) => ({ start, count })),
    node: a.node,
  };
  if (a.namespace !== undefined) stored.namespace = a.namespace;
  if (a.holder !== undefined) stored.holder = a.holder;
  return JSON.stringify(stored);
}

/** The fields of an etcd key-value pair the registry reads. */
export interface Kv {
  key: Buffer;
  value: Buffer;
  create_revision: string;
  mod_revision: string;
  lease: string;
}

/** A lease id as etcd sends it ("0" = none) → undefined for none. */
export function leaseOf(kv: Pick<Kv, 'lease'>): string | undefined {
  return kv.lease === undefined || kv.lease === '0' || kv.lease === '' ? undefined : String(kv.lease);
}

/** An allocation from its key-value pair (REGISTRY_CORRUPT naming the key when unreadable). */
export function decodeAllocation(kv: Kv, registry: string): Allocation {
  let s: StoredAllocation;
  try {
    s = JSON.parse(kv.value.toString());
    if (s.v !== 1 || typeof s.id !== 'string' || !Array.isArray(s.uidMap) || !Array.isArray(s.uids))
      throw new Error('not an allocation record');
  } catch (error) {
    throw new UsernsError(
      'REGISTRY_CORRUPT',
      `${registry}: ${kv.key.toString()} is not an allocation record userns wrote: ${(error as Error).message}`,
      { hint: 'the key was written by something else; delete it with etcdctl once you know what it was' },
    );
  }
  const toMap = (m: Triple[]): Extent[] => m.map(([i, o, c]) => extent(i, o, c));
  const a: Allocation = {
    id: s.id,
    name: s.name,
    owner: s.owner,
    created: s.created,
    policy: s.policy,
    size: s.size,
    uidMap: toMap(s.uidMap),
    gidMap: toMap(s.gidMap),
    uids: s.uids,
    gids: s.gids,
    seq: Number(kv.create_revision),
    node: s.node,
    registry,
  };
  if (s.namespace !== undefined) a.namespace = s.namespace;
  if (s.holder !== undefined) a.holder = s.holder;
  const lease = leaseOf(kv);
  if (lease !== undefined) a.lease = lease;
  return a;
}

/** PREFIX/index/<kind>/<start>. */
export interface IndexEntry {
  kind: IdKind;
  start: number;
  count: number;
  id: string;
}

export function decodeIndex(kv: Kv, keys: FleetKeys, kind: IdKind): IndexEntry | undefined {
  const key = kv.key.toString();
  const start = Number(FleetKeys.tail(key, keys.indexes(kind)));
  try {
    const v = JSON.parse(kv.value.toString()) as { id?: unknown; count?: unknown };
    if (!Number.isSafeInteger(start) || typeof v.id !== 'string' || !Number.isSafeInteger(v.count))
      return undefined;
    return { kind, start, count: v.count as number, id: v.id };
  } catch {
    return undefined;
  }
}

/** PREFIX/nodes/<node>: a live node (the key lives on the node's lease). */
export interface NodeRecord {
  node: string;
  host: string;
  /** When its agent started (ISO 8601). */
  since: string;
  /** The userns version of its agent. */
  version: string;
  /** The lease TTL its agent asked for, in seconds. */
  ttl: number;
  /**
   * IDs of the fleet pool that are taken on that machine (passwd/group entries, users'
   * subordinate ranges, systemd-nsresourced): no allocation may use them anywhere.
   */
  taken: { uid: IdRange[]; gid: IdRange[] };
}

/** A node registered in the fleet with a live lease (what `alloc list` shows per node). */
export interface LiveNode extends NodeRecord {
  /** Its lease ID (hexadecimal). */
  lease: string;
}

export function decodeNode(kv: Kv): LiveNode | undefined {
  try {
    const v = JSON.parse(kv.value.toString()) as NodeRecord;
    if (typeof v.node !== 'string' || typeof v.taken !== 'object') return undefined;
    return {
      ...v,
      taken: {
        uid: normalizeRanges(v.taken.uid ?? []),
        gid: normalizeRanges(v.taken.gid ?? []),
      },
      lease: leaseOf(kv) ?? '0',
    };
  } catch {
    return undefined;
  }
}
