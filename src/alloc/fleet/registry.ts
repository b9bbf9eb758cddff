/**
 * The fleet registry: allocations shared by every node of a fleet, on etcd v3 (layout.ts has the
 * keys). Same interface as the local registry (backend.ts), same placement (placement.ts).
 *
 * **Allocate** is one transaction, retried:
 *  1. read, in one read-only transaction (one revision): the configuration, the head key, the
 *     uid and gid index, the live nodes (and the name asked for);
 *  2. place the allocation in `pool − index − IDs taken on any live node or on this machine`
 *     with the request's policy (or the configuration's);
 *  3. commit `if config.mod == Rc && head.mod == Rh && alloc/<id> absent && name/<name> absent
 *     [&& nodes/<node>.lease == L] then put head, alloc, name, index keys [on lease L] else read
 *     alloc/<id>, name/<name> [, nodes/<node>]`. Every allocating transaction writes the head,
 *     so of two that read the same head at most one commits: ranges never overlap, whatever
 *     the nodes computed.
 *  4. failed compare: if alloc/<id> holds exactly what this call sent, an earlier try committed
 *     and only its answer was lost (the client retries on another member): done. If the name
 *     appeared, read it (step 5). Otherwise back off (full jitter, growing) and start again;
 *     after `conflictRetries` conflicts: ALLOC_CONTENDED.
 *  5. a name that exists is read, not allocated again ("first come allocates, later ones read
 *     it"): its size and passthrough mappings must match, and an allocation on another node's
 *     lease cannot be shared (ALLOC_NAME_TAKEN). A node with an agent records that it uses it
 *     (holds/<id>/<node>, on its lease).
 *
 * **Release** is `if alloc/<id>.mod == M then delete alloc, name, index keys, holds`: no head
 * compare (freeing IDs cannot make two allocations overlap). A release whose answer was lost
 * finds the allocation gone on its retry: released.
 *
 * **Unknown outcomes**: before the first try, the allocation id is written to this node's cache
 * as pending, with the process that sends it; the success path removes it before returning.
 * When a try ends without an answer, the range may have been taken anyway: the next call of a
 * process on this node, once the sender is gone (or has given up), releases such an orphan.
 *
 * **Offline**: when no member answers within the URL's timeout (REGISTRY_UNREACHABLE), a request
 * for a name this node holds is answered from its cache (marked `offline`), a leased one only
 * while its lease cannot have expired; nothing new is ever allocated, and nothing released,
 * offline.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { AllocError, UsernsError } from '../../errors/index.js';
import { formatRange } from '../../idmap/extent.js';
import {
  type IdRange,
  intersectRanges,
  normalizeRanges,
  rangesSize,
  subtractRanges,
} from '../../idmap/ranges.js';
import { validateName } from '../../state/names.js';
import { procPidNamespace, runningStartTime, selfInProc } from '../../system/proc.js';
import type { AllocationRegistry } from '../backend.js';
import { FreeSpace } from '../free-space.js';
import {
  checkRequest,
  nameTaken,
  ownerLiveness,
  place,
  recordedHolder,
  reuseMatching,
} from '../placement.js';
import { formatPolicy, type Policy, parsePolicy } from '../policy.js';
import type { Pools } from '../pool.js';
import {
  ALLOC_NOT_FOUND,
  type Allocation,
  type AllocationRequest,
  type GcResult,
  holderLiveness,
  type KindUsage,
  type Liveness,
} from '../registry.js';
import { type Exclusion, exclusionsIn, SystemTaken, type SystemTakenOptions } from '../system-taken.js';
import { type CachedAllocation, FleetCache, type PendingProcess } from './cache.js';
import {
  type Compare,
  connectFleet,
  type EtcdClient,
  leaseGone,
  type RangeRequest,
  type RangeResponse,
  type RequestOp,
  registryError,
  type TxnRequest,
  type TxnResponse,
} from './client.js';
import {
  checkFleetConfig,
  decodeAllocation,
  decodeIndex,
  decodeNode,
  encodeAllocation,
  type FleetConfig,
  FleetKeys,
  type IdKind,
  type IndexEntry,
  type Kv,
  type LiveNode,
  leaseOf,
  prefixEnd,
} from './layout.js';
import type { FleetRegistryUrl } from './url.js';

/** How to open a fleet registry (see {@link FleetRegistry}). */
export interface FleetRegistryOptions {
  /** The state root's registry directory (`<root>/alloc`): this node's cache lives there. */
  dir: string;
  /** This machine's node name (default: $USERNS_NODE, else the host name). */
  node?: string;
  /** IDs taken on this machine (passwd/group, subordinate ranges, nsresourced); null: ignore them (tests). */
  systemTaken?: SystemTakenOptions | null;
  /** Conflicting transactions tolerated per operation before ALLOC_CONTENDED (default 40). */
  conflictRetries?: number;
  /** Close the connection after this long without a call (default 500 ms; 0: keep it until close()). */
  idleCloseMs?: number;
  /**
   * @internal
   * Tests: every transaction goes through this (to lose an answer, repeat a commit, or commit
   * something else in between). `send` performs the transaction.
   */
  txnHook?: (
    send: (request: TxnRequest) => Promise<TxnResponse>,
    request: TxnRequest,
    op: string,
  ) => Promise<TxnResponse>;
}

/** The node name of this machine: $USERNS_NODE, else the host name (validated as a name). */
export function defaultNodeName(env: NodeJS.ProcessEnv = process.env): string {
  const name = env.USERNS_NODE !== undefined && env.USERNS_NODE !== '' ? env.USERNS_NODE : hostname();
  return validateName(name, 'node name');
}

/** A consistent view of what allocating needs, at one etcd revision. */
interface Snapshot {
  revision: number;
  config: FleetConfig | undefined;
  configMod: string;
  headMod: string;
  index: { uid: IndexEntry[]; gid: IndexEntry[] };
  nodes: LiveNode[];
  /** name/<name>: the id it names, when the request named one that exists. */
  nameId?: string;
}

/** Everything, at one revision (list, gc, verify). */
interface FullRead {
  revision: number;
  allocations: Allocation[];
  mods: Map<string, string>;
  nodes: LiveNode[];
  config: FleetConfig | undefined;
  configError?: string;
  index: { uid: IndexEntry[]; gid: IndexEntry[] };
  names: Map<string, string>;
  /** Raw leases of the index and name keys, for verify. */
  leases: Map<string, string | undefined>;
}

const DEFAULT_CONFLICT_RETRIES = 40;
const PAGE = 2000;

const range = (key: string, end?: Buffer): RangeRequest =>
  end === undefined ? { key: Buffer.from(key) } : { key: Buffer.from(key), range_end: end };
const rangeOp = (key: string, end?: Buffer): RequestOp => ({ request_range: range(key, end) });
const prefixOp = (prefix: string): RequestOp => rangeOp(prefix, prefixEnd(prefix));
const put = (key: string, value: string, lease?: string): RequestOp => ({
  request_put: {
    key: Buffer.from(key),
    value: Buffer.from(value),
    ...(lease === undefined ? {} : { lease }),
  },
});
const del = (key: string, end?: Buffer): RequestOp => ({
  request_delete_range:
    end === undefined ? { key: Buffer.from(key) } : { key: Buffer.from(key), range_end: end },
});
const modIs = (key: string, mod: string): Compare => ({
  key: Buffer.from(key),
  target: 'Mod',
  result: 'Equal',
  mod_revision: mod,
});
const absent = (key: string): Compare => ({
  key: Buffer.from(key),
  target: 'Create',
  result: 'Equal',
  create_revision: 0,
});
const leaseIs = (key: string, lease: string): Compare => ({
  key: Buffer.from(key),
  target: 'Lease',
  result: 'Equal',
  lease,
});

function kvsOf(response: TxnResponse, i: number): Kv[] {
  return response.responses[i]?.response_range?.kvs ?? [];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Full-jitter backoff: a random wait up to 10 ms × 2^n, at most 1 s. */
export function backoffMs(conflicts: number, random = Math.random): number {
  return Math.floor(random() * Math.min(1000, 10 * 2 ** Math.min(conflicts, 7)));
}

/**
 * The allocation registry of a fleet, on etcd v3 (`--registry etcd://HOST:PORT,…/PREFIX`): every
 * allocate and release is one transaction that compares the revisions it read, so two nodes never
 * take overlapping ranges; this node's cache answers for the ranges it holds while etcd is
 * unreachable. Errors: AllocError (ALLOC_*; ALLOC_CONTENDED after too many conflicts).
 */
export class FleetRegistry implements AllocationRegistry {
  readonly backend = 'etcd' as const;
  readonly poolsFromRegistry = true;
  readonly url: FleetRegistryUrl;
  readonly node: string;
  /** @internal */
  readonly keys: FleetKeys;
  /** @internal */
  readonly cache: FleetCache;
  readonly #options: FleetRegistryOptions;
  readonly #systemTaken: SystemTaken | undefined;
  #client: EtcdClient | undefined;
  #busy = 0;
  #idle: NodeJS.Timeout | undefined;
  /** Allocation ids this process sent but gave up on (their outcome is unknown). */
  readonly #abandoned = new Set<string>();

  constructor(url: FleetRegistryUrl, options: FleetRegistryOptions) {
    this.url = url;
    this.#options = options;
    this.node = options.node === undefined ? defaultNodeName() : validateName(options.node, 'node name');
    this.keys = new FleetKeys(url.prefix);
    this.cache = new FleetCache(options.dir);
    // The fleet's pool is nobody's subordinate range: every user's range on this machine is taken.
    this.#systemTaken =
      options.systemTaken === null
        ? undefined
        : new SystemTaken({ poolOwner: { name: '\0fleet', uid: -1 }, ...options.systemTaken });
  }

  get location(): string {
    return this.url.display;
  }

  // --- the connection --------------------------------------------------------------------------

  /** Runs `fn` with the client; what it throws becomes a typed registry error. */
  async #call<T>(doing: string, fn: (client: EtcdClient) => Promise<T>): Promise<T> {
    clearTimeout(this.#idle);
    this.#busy++;
    try {
      this.#client ??= connectFleet(this.url);
      return await fn(this.#client);
    } catch (error) {
      if (leaseGone(error)) throw error;
      throw registryError(error, this.url, doing);
    } finally {
      this.#busy--;
      const idle = this.#options.idleCloseMs ?? 500;
      if (this.#busy === 0 && idle > 0 && this.#client !== undefined) {
        this.#idle = setTimeout(() => this.#disconnect(), idle);
      }
    }
  }

  #disconnect(): void {
    clearTimeout(this.#idle);
    this.#idle = undefined;
    this.#client?.close();
    this.#client = undefined;
  }

  close(): void {
    this.#disconnect();
    this.cache.close();
  }

  async #txn(request: TxnRequest, op: string, doing: string): Promise<TxnResponse> {
    return this.#call(doing, (client) => {
      const send = (r: TxnRequest) => client.kv.txn(r);
      return this.#options.txnHook === undefined ? send(request) : this.#options.txnHook(send, request, op);
    });
  }

  /** Every key under `prefix` at `revision` (0: now), in pages. */
  async #rangeAll(
    client: EtcdClient,
    prefix: string,
    revision: number,
  ): Promise<{ kvs: Kv[]; revision: number }> {
    const end = prefixEnd(prefix);
    const kvs: Kv[] = [];
    let from = Buffer.from(prefix);
    let rev = revision;
    for (;;) {
      const r: RangeResponse = await client.kv.range({
        key: from,
        range_end: end,
        limit: PAGE,
        ...(rev > 0 ? { revision: rev } : {}),
      });
      if (rev === 0) rev = Number(r.header.revision);
      kvs.push(...r.kvs);
      if (!r.more || r.kvs.length === 0) return { kvs, revision: rev };
      from = Buffer.concat([r.kvs[r.kvs.length - 1]!.key, Buffer.from([0])]);
    }
  }

  // --- reading ---------------------------------------------------------------------------------

  #config(kv: Kv | undefined): FleetConfig | undefined {
    if (kv === undefined) return undefined;
    let json: unknown;
    try {
      json = JSON.parse(kv.value.toString());
    } catch (error) {
      throw new AllocError(
        'ALLOC_CONFIG',
        `${this.url.display}: ${this.keys.config} is not JSON: ${(error as Error).message}`,
        {
          hint: `set it again: userns alloc config --registry ${this.url.display} --pool START:COUNT`,
        },
      );
    }
    return checkFleetConfig(json, `${this.url.display} ${this.keys.config}`);
  }

  #decodeIndex(kvs: Kv[], kind: IdKind): IndexEntry[] {
    return kvs
      .map((kv) => decodeIndex(kv, this.keys, kind))
      .filter((e): e is IndexEntry => e !== undefined)
      .sort((a, b) => a.start - b.start);
  }

  #decodeNodes(kvs: Kv[]): LiveNode[] {
    return kvs.map(decodeNode).filter((n): n is LiveNode => n !== undefined);
  }

  async #snapshot(name: string | undefined): Promise<Snapshot> {
    const k = this.keys;
    const response = await this.#txn(
      {
        compare: [],
        success: [
          rangeOp(k.config),
          rangeOp(k.head),
          prefixOp(k.indexes('uid')),
          prefixOp(k.indexes('gid')),
          prefixOp(k.nodes),
          ...(name === undefined ? [] : [rangeOp(k.name(name))]),
        ],
        failure: [],
      },
      'read',
      'reading the registry',
    );
    const configKv = kvsOf(response, 0)[0];
    const snap: Snapshot = {
      revision: Number(response.header.revision),
      config: this.#config(configKv),
      configMod: configKv?.mod_revision ?? '0',
      headMod: kvsOf(response, 1)[0]?.mod_revision ?? '0',
      index: {
        uid: this.#decodeIndex(kvsOf(response, 2), 'uid'),
        gid: this.#decodeIndex(kvsOf(response, 3), 'gid'),
      },
      nodes: this.#decodeNodes(kvsOf(response, 4)),
    };
    const nameKv = name === undefined ? undefined : kvsOf(response, 5)[0];
    if (nameKv !== undefined) snap.nameId = nameKv.value.toString();
    return snap;
  }

  /** Everything, at one revision. */
  async #readAll(): Promise<FullRead> {
    return this.#call('reading the registry', async (client) => {
      const k = this.keys;
      const allocs = await this.#rangeAll(client, k.allocs, 0);
      const rev = allocs.revision;
      const [config, names, uid, gid, nodes, holds] = await Promise.all([
        client.kv.range({ key: Buffer.from(k.config), revision: rev }),
        this.#rangeAll(client, k.names, rev),
        this.#rangeAll(client, k.indexes('uid'), rev),
        this.#rangeAll(client, k.indexes('gid'), rev),
        this.#rangeAll(client, k.nodes, rev),
        this.#rangeAll(client, k.holds, rev),
      ]);
      const holders = new Map<string, string[]>();
      for (const kv of holds.kvs) {
        const [id, node] = FleetKeys.tail(kv.key.toString(), k.holds).split('/');
        if (id === undefined || node === undefined) continue;
        holders.set(id, [...(holders.get(id) ?? []), node]);
      }
      const mods = new Map<string, string>();
      const allocations = allocs.kvs.map((kv) => {
        const a = decodeAllocation(kv, this.url.display);
        mods.set(a.id, kv.mod_revision);
        const h = holders.get(a.id);
        if (h !== undefined) a.holders = h.sort();
        return a;
      });
      allocations.sort((a, b) => a.seq - b.seq);
      const read: FullRead = {
        revision: rev,
        allocations,
        mods,
        nodes: this.#decodeNodes(nodes.kvs),
        config: undefined,
        index: { uid: this.#decodeIndex(uid.kvs, 'uid'), gid: this.#decodeIndex(gid.kvs, 'gid') },
        names: new Map(
          names.kvs.map((kv) => [FleetKeys.tail(kv.key.toString(), k.names), kv.value.toString()]),
        ),
        leases: new Map(
          [...uid.kvs, ...gid.kvs, ...names.kvs].map((kv) => [kv.key.toString(), leaseOf(kv)] as const),
        ),
      };
      try {
        read.config = this.#config(config.kvs[0]);
      } catch (error) {
        read.configError = (error as Error).message;
      }
      return read;
    });
  }

  // --- free space ------------------------------------------------------------------------------

  /** IDs of the pool that no allocation may use: taken on this machine or on any live node. */
  #taken(kind: IdKind, nodes: readonly LiveNode[]): { ranges: IdRange[]; why: Exclusion[] } {
    const local = this.#systemTaken?.get();
    const why: Exclusion[] = [...(local?.why[kind] ?? [])];
    for (const n of nodes) {
      if (n.node === this.node) continue; // this machine's own are read fresh above
      for (const r of n.taken[kind]) why.push({ ...r, reason: `taken on node ${n.node} (${n.host})` });
    }
    return { ranges: normalizeRanges(why.map(({ start, count }) => ({ start, count }))), why };
  }

  #space(snap: Pick<Snapshot, 'index' | 'nodes'>, config: FleetConfig) {
    const one = (kind: IdKind) => {
      const pool = {
        ranges: kind === 'uid' ? config.uidPool : config.gidPool,
        source: `the configuration of ${this.url.display}`,
      };
      const taken = this.#taken(kind, snap.nodes);
      const used = [...taken.ranges, ...snap.index[kind].map(({ start, count }) => ({ start, count }))];
      return {
        pool,
        free: new FreeSpace(subtractRanges(pool.ranges, used)),
        taken: taken.ranges,
        why: taken.why,
      };
    };
    return { uid: one('uid'), gid: one('gid') };
  }

  #notConfigured(): AllocError {
    return new AllocError(
      'REGISTRY_NOT_CONFIGURED',
      `the fleet registry ${this.url.display} has no pool configuration (${this.keys.config})`,
      {
        hint: `set the fleet's pools once: userns alloc config --registry ${this.url.display} --pool START:COUNT [--policy slot]`,
        data: { registry: this.url.display, key: this.keys.config },
      },
    );
  }

  async registryPools(): Promise<Pools> {
    const snap = await this.#snapshot(undefined);
    if (snap.config === undefined) throw this.#notConfigured();
    const source = `the configuration of ${this.url.display}`;
    return { uid: { ranges: snap.config.uidPool, source }, gid: { ranges: snap.config.gidPool, source } };
  }

  // --- allocate --------------------------------------------------------------------------------

  async allocate(request: AllocationRequest): Promise<Allocation & { warnings?: string[] }> {
    checkRequest(request);
    await this.#systemTaken?.refresh();
    try {
      await this.#resolvePending();
      return await this.#allocateOnline(request);
    } catch (error) {
      return this.#offline(request, error);
    }
  }

  /**
   * What allocate() would return now, committing nothing (a dry run): the allocation of the
   * name when it would be reused, else where a new one would go in the current state, with the
   * same errors (REGISTRY_NOT_CONFIGURED, ALLOC_EXHAUSTED, ALLOC_NAME_MISMATCH,
   * NODE_NOT_REGISTERED…); offline, what allocate() would answer from the cache. `seq` is 0 for a
   * new one (no revision created it).
   */
  async preview(request: AllocationRequest): Promise<Allocation & { warnings?: string[] }> {
    checkRequest(request);
    await this.#systemTaken?.refresh();
    try {
      const snap = await this.#snapshot(request.name);
      if (snap.config === undefined) throw this.#notConfigured();
      if (request.name !== undefined && snap.nameId !== undefined) {
        const existing = await this.#readAllocation(snap.nameId);
        if (existing !== undefined) {
          if (request.reuse === false) throw nameTaken(request.name, existing.allocation);
          const a = existing.allocation;
          if (a.lease !== undefined && a.node !== this.node) throw this.#leasedElsewhere(a);
          return reuseMatching(a, request);
        }
      }
      return this.#placeNew(request, snap, randomBytes(6).toString('hex'), new Date().toISOString())
        .allocation;
    } catch (error) {
      return this.#offline(request, error);
    }
  }

  /**
   * For an error of allocate() or preview(): when the registry is unreachable, the allocation of
   * the request's name from this node's cache if it may be used offline; else the error (with
   * why nothing can be served offline).
   */
  #offline(request: AllocationRequest, error: unknown): Allocation {
    if (!(error instanceof UsernsError) || error.code !== 'REGISTRY_UNREACHABLE') throw error;
    const offline =
      request.name === undefined || request.reuse === false
        ? undefined
        : this.#fromCache(request.name, error);
    if (typeof offline === 'object')
      return { ...reuseMatching(offline.allocation, request), offline: offline.offline };
    const why =
      typeof offline === 'string'
        ? offline
        : request.name === undefined
          ? 'a new range is never allocated offline'
          : `this node holds no allocation named ${request.name} it could use offline, and a new range is never allocated offline`;
    throw new AllocError('REGISTRY_UNREACHABLE', `${error.message}; ${why}`, {
      hint: error.hint ?? '',
      data: { ...error.data, offline: true },
      cause: error.cause,
    });
  }

  /** The request with the configuration's policy (and slot size) when the caller chose none. */
  #withDefaults(request: AllocationRequest, config: FleetConfig): AllocationRequest {
    if (!request.defaults?.policy || config.policy === undefined) return request;
    const policy: Policy = parsePolicy(config.policy);
    // A defaulted size is the slot size, or more when the caller's size grew to cover --user (minSize).
    const size =
      request.defaults.size && policy.kind === 'slot'
        ? Math.max(policy.slotSize, request.size)
        : request.size;
    return { ...request, policy, size };
  }

  /**
   * A new allocation for `request` in the state `snap` read (not committed): its placement, and
   * the lease it goes on (undefined: persistent).
   */
  #placeNew(
    request: AllocationRequest,
    snap: Snapshot,
    id: string,
    created: string,
  ): { allocation: Allocation & { node: string }; lease: string | undefined } {
    const config = snap.config!;
    const leaseMode = request.lease ?? 'none';
    let lease: string | undefined;
    if (leaseMode !== 'none') {
      lease = snap.nodes.find((n) => n.node === this.node)?.lease;
      if (lease === undefined && leaseMode === 'node') throw this.#notRegistered();
    }
    const req = this.#withDefaults(request, config);
    const space = this.#space(snap, config);
    const holderOf = (kind: IdKind, r: IdRange) => {
      const hit = snap.index[kind].find((e) => e.start < r.start + r.count && r.start < e.start + e.count);
      return hit === undefined ? undefined : { id: hit.id, name: hit.id };
    };
    const placed = place(
      req,
      space,
      holderOf,
      `'userns alloc list --registry ${this.url.display}', 'userns alloc release --registry …'`,
    );
    const a: Allocation & { node: string } = {
      id,
      name: request.name ?? id,
      owner: process.geteuid?.() ?? 0,
      created,
      policy: formatPolicy(req.policy),
      size: req.size,
      ...placed,
      seq: 0,
      node: this.node,
    };
    if (request.namespace !== undefined) a.namespace = request.namespace;
    const holder = recordedHolder(request.holder);
    if (holder !== undefined) a.holder = holder;
    return { allocation: a, lease };
  }

  async #allocateOnline(request: AllocationRequest): Promise<Allocation & { warnings?: string[] }> {
    const k = this.keys;
    const reuse = request.reuse ?? true;
    let id = randomBytes(6).toString('hex');
    const created = new Date().toISOString();
    const sent = new Set<string>();
    let pendingRecorded = false;
    let conflicts = 0;
    const maxConflicts = this.#options.conflictRetries ?? DEFAULT_CONFLICT_RETRIES;
    for (;;) {
      const snap = await this.#snapshot(request.name);
      if (snap.config === undefined) throw this.#notConfigured();
      if (request.name !== undefined && snap.nameId !== undefined) {
        const existing = await this.#readAllocation(snap.nameId);
        if (existing !== undefined) {
          if (!reuse) throw nameTaken(request.name, existing.allocation);
          const reused = await this.#reuse(existing, request, snap);
          if (reused !== undefined) return reused;
          continue; // released or changed meanwhile: look again
        }
        // The name's allocation went between the two reads (released, or its lease expired).
        await sleep(backoffMs(conflicts++));
        continue;
      }
      const { allocation: a, lease } = this.#placeNew(request, snap, id, created);
      const value = encodeAllocation(a);
      sent.add(value);
      const success: RequestOp[] = [
        put(k.head, JSON.stringify({ last: id })),
        put(k.alloc(id), value, lease),
        put(k.name(a.name), id, lease),
      ];
      for (const [kind, list] of [
        ['uid', a.uids],
        ['gid', a.gids],
      ] as const)
        for (const r of list)
          success.push(put(k.index(kind, r.start), JSON.stringify({ id, count: r.count }), lease));
      const compare: Compare[] = [
        modIs(k.head, snap.headMod),
        modIs(k.config, snap.configMod),
        absent(k.alloc(id)),
        absent(k.name(a.name)),
      ];
      if (lease !== undefined) compare.push(leaseIs(k.node(this.node), lease));
      if (!pendingRecorded) {
        this.cache.addPending(this.url.key, { id, node: this.node, process: selfProcess(), since: created });
        pendingRecorded = true;
      }
      let response: TxnResponse;
      try {
        response = await this.#txn(
          {
            compare,
            success,
            failure: [rangeOp(k.alloc(id)), rangeOp(k.name(a.name)), rangeOp(k.node(this.node))],
          },
          'allocate',
          `allocating ${a.name}`,
        );
      } catch (error) {
        if (leaseGone(error)) continue; // the node's lease expired since the read: look again
        this.#abandoned.add(id);
        throw error;
      }
      let committed: { value: string; revision: number; lease?: string } | undefined;
      if (response.succeeded)
        committed = {
          value,
          revision: Number(response.header.revision),
          ...(lease === undefined ? {} : { lease }),
        };
      else {
        const mine = kvsOf(response, 0)[0];
        if (mine !== undefined && sent.has(mine.value.toString())) {
          // An earlier try of this very transaction committed; its answer was lost.
          const l = leaseOf(mine);
          committed = {
            value: mine.value.toString(),
            revision: Number(mine.create_revision),
            ...(l === undefined ? {} : { lease: l }),
          };
        } else if (mine !== undefined) {
          // Another allocation has this id (48 random bits): take another.
          this.cache.removePending(this.url.key, id);
          pendingRecorded = false;
          id = randomBytes(6).toString('hex');
          continue;
        } else if (kvsOf(response, 1)[0] !== undefined && request.name !== undefined) {
          continue; // the name was taken meanwhile: read it
        } else {
          const nodeKv = kvsOf(response, 2)[0];
          if (lease !== undefined && (nodeKv === undefined || leaseOf(nodeKv) !== lease)) continue;
          conflicts++;
          if (conflicts > maxConflicts) {
            this.cache.removePending(this.url.key, id);
            throw new AllocError(
              'ALLOC_CONTENDED',
              `gave up allocating after ${maxConflicts} conflicting transactions in ${this.url.display} (other nodes kept allocating first)`,
              {
                hint: 'try again; if it keeps happening, fewer nodes should allocate at once (or raise conflictRetries)',
                data: { registry: this.url.display, conflicts: maxConflicts },
              },
            );
          }
          await sleep(backoffMs(conflicts));
          continue;
        }
      }
      const result = decodeAllocation(
        {
          key: Buffer.from(k.alloc(id)),
          value: Buffer.from(committed.value),
          create_revision: String(committed.revision),
          mod_revision: String(committed.revision),
          lease: committed.lease ?? '0',
        },
        this.url.display,
      );
      await this.#settle(result, committed.revision);
      return result;
    }
  }

  /**
   * Records a committed allocation in this node's cache and clears its pending mark. When the
   * cache cannot be written, the allocation is released again and the error thrown: a caller is
   * never told of a range that the next process here might release as an orphan.
   */
  async #settle(a: Allocation, revision: number): Promise<void> {
    try {
      this.cache.remember(this.url.key, a, revision);
      this.cache.removePending(this.url.key, a.id);
    } catch (error) {
      try {
        await this.#releaseKnown(a, undefined);
        this.cache.removePending(this.url.key, a.id);
      } catch {
        this.#abandoned.add(a.id);
      }
      throw error;
    }
  }

  #notRegistered(): AllocError {
    return new AllocError(
      'NODE_NOT_REGISTERED',
      `node ${this.node} has no lease in ${this.url.display}: no agent keeps one alive`,
      {
        hint: `start one: userns alloc agent --registry ${this.url.display} --node ${this.node} (or allocate without --lease: persistent)`,
        data: { node: this.node, registry: this.url.display },
      },
    );
  }

  async #readAllocation(id: string): Promise<{ allocation: Allocation; mod: string } | undefined> {
    const response = await this.#txn(
      { compare: [], success: [rangeOp(this.keys.alloc(id)), prefixOp(this.keys.holdsOf(id))], failure: [] },
      'read',
      `reading allocation ${id}`,
    );
    const kv = kvsOf(response, 0)[0];
    if (kv === undefined) return undefined;
    const allocation = decodeAllocation(kv, this.url.display);
    const holders = kvsOf(response, 1).map((h) => FleetKeys.tail(h.key.toString(), this.keys.holdsOf(id)));
    if (holders.length > 0) allocation.holders = holders.sort();
    return { allocation, mod: kv.mod_revision };
  }

  /** ALLOC_NAME_TAKEN for a name whose allocation lives on another node's lease. */
  #leasedElsewhere(a: Allocation): AllocError {
    const error = nameTaken(a.name, a);
    return new AllocError(
      error.code,
      `${error.message}; it lives on node ${a.node}'s lease, so no other node can use it`,
      {
        hint: 'a range shared by several nodes must be persistent (allocated without --lease); choose another name',
        ...(error.data === undefined ? {} : { data: error.data }),
      },
    );
  }

  /** Step 5: an existing allocation asked for by name. Undefined: it changed meanwhile, look again. */
  async #reuse(
    existing: { allocation: Allocation; mod: string },
    request: AllocationRequest,
    snap: Snapshot,
  ): Promise<Allocation | undefined> {
    const a = existing.allocation;
    if (a.lease !== undefined && a.node !== this.node) throw this.#leasedElsewhere(a);
    const reused = reuseMatching(a, request);
    const myLease = snap.nodes.find((n) => n.node === this.node)?.lease;
    if (a.node !== this.node && myLease !== undefined && !(a.holders ?? []).includes(this.node)) {
      const response = await this.#txn(
        {
          compare: [modIs(this.keys.alloc(a.id), existing.mod), leaseIs(this.keys.node(this.node), myLease)],
          success: [
            put(
              this.keys.hold(a.id, this.node),
              JSON.stringify({ since: new Date().toISOString() }),
              myLease,
            ),
          ],
          failure: [],
        },
        'hold',
        `recording that ${this.node} uses ${a.name}`,
      ).catch((error) => {
        if (leaseGone(error)) return undefined;
        throw error;
      });
      if (response === undefined || !response.succeeded) return undefined;
      reused.holders = [...(a.holders ?? []), this.node].sort();
    }
    await this.#remember(reused, snap.revision);
    return reused;
  }

  /** Caches an allocation this node uses; a cache that cannot be written is a warning. */
  async #remember(a: Allocation & { warnings?: string[] }, revision: number): Promise<void> {
    try {
      this.cache.remember(this.url.key, a, revision);
    } catch (error) {
      a.warnings = [
        ...(a.warnings ?? []),
        `this node's cache of the fleet registry could not be written (${(error as Error).message}): this allocation will not be usable while the registry is unreachable`,
      ];
    }
  }

  /**
   * An allocation named `name` from the cache, if it may be used offline; else why not (a
   * sentence), or undefined when this node holds none of that name.
   */
  #fromCache(
    name: string,
    error: UsernsError,
  ): { allocation: Allocation; offline: NonNullable<Allocation['offline']> } | string | undefined {
    let cached: CachedAllocation | undefined;
    try {
      cached = this.cache.find(this.url.key, name);
    } catch {
      return undefined;
    }
    if (cached === undefined || cached.allocation.name !== name) return undefined;
    const a = cached.allocation;
    if (a.lease !== undefined) {
      const lease = this.cache.leaseById(this.url.key, a.lease);
      // Usable only while the lease cannot have expired: etcd keeps it at least TTL after the
      // last keepalive its agent sent successfully.
      if (lease === undefined)
        return `this node holds ${name} on lease ${a.lease}, which no agent here kept alive: it may have expired and the range been given to another node`;
      const age = Date.now() - lease.keptAt;
      if (age >= lease.ttl * 1000)
        return `this node holds ${name} on lease ${a.lease}, whose last confirmed keepalive was sent ${Math.round(age / 1000)} s ago, more than its TTL (${lease.ttl} s): it may have been released and given to another node`;
    }
    return {
      allocation: a,
      offline: {
        readAt: cached.readAt,
        revision: cached.revision,
        reason: error.message,
      },
    };
  }

  // --- release ---------------------------------------------------------------------------------

  async release(
    idOrName: string,
    options: { ifExists?: boolean; force?: boolean } = {},
  ): Promise<{ allocation: Allocation; seq: number } | undefined> {
    await this.#resolvePending();
    const notFound = () => {
      this.#forgetCached(idOrName);
      if (options.ifExists) return undefined;
      throw new AllocError(
        ALLOC_NOT_FOUND,
        `no allocation has the id or name ${JSON.stringify(idOrName)} in ${this.url.display}`,
        {
          hint: `'userns alloc list --registry ${this.url.display}' shows the live allocations`,
          data: { idOrName, registry: this.url.display },
        },
      );
    };
    try {
      validateName(idOrName);
    } catch {
      return notFound();
    }
    for (let attempt = 0; ; attempt++) {
      const k = this.keys;
      const first = await this.#txn(
        { compare: [], success: [rangeOp(k.name(idOrName)), rangeOp(k.alloc(idOrName))], failure: [] },
        'read',
        `looking up ${idOrName}`,
      );
      const byName = kvsOf(first, 0)[0];
      const id =
        byName !== undefined
          ? byName.value.toString()
          : kvsOf(first, 1)[0] !== undefined
            ? idOrName
            : undefined;
      const found = id === undefined ? undefined : await this.#readAllocation(id);
      if (found === undefined) return notFound();
      const a = found.allocation;
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
      const others = (a.holders ?? []).filter((n) => n !== this.node);
      if (others.length > 0 && !options.force) {
        throw new AllocError(
          'ALLOC_IN_USE',
          `allocation ${a.name} (${a.id}) is used by node${others.length > 1 ? 's' : ''} ${others.join(', ')} (their agents say so)`,
          {
            hint: 'stop what uses it there first, or release it anyway with --force',
            data: { id: a.id, name: a.name, holders: others },
          },
        );
      }
      const seq = await this.#releaseKnown(a, found.mod);
      if (seq === undefined) {
        if (attempt >= 20)
          throw new AllocError('ALLOC_CONTENDED', `allocation ${a.name} kept changing while it was released`);
        await sleep(backoffMs(attempt));
        continue;
      }
      this.#forgetCached(a.id);
      return { allocation: a, seq };
    }
  }

  #forgetCached(idOrName: string): void {
    try {
      const cached = this.cache.find(this.url.key, idOrName);
      if (cached !== undefined) this.cache.forget(this.url.key, cached.allocation.id);
    } catch {
      /* the cache is an optimization for offline use: a stale entry is checked before use */
    }
  }

  /**
   * Deletes allocation `a` if its mod revision is still `mod` (undefined: whatever it is). Returns
   * the revision of the release, or undefined when it changed meanwhile. A missing allocation
   * (released by another, or by an earlier try whose answer was lost) counts as released.
   */
  async #releaseKnown(a: Allocation, mod: string | undefined): Promise<number | undefined> {
    const k = this.keys;
    const success: RequestOp[] = [
      del(k.alloc(a.id)),
      del(k.name(a.name)),
      del(k.holdsOf(a.id), prefixEnd(k.holdsOf(a.id))),
    ];
    for (const [kind, list] of [
      ['uid', a.uids],
      ['gid', a.gids],
    ] as const)
      for (const r of list) success.push(del(k.index(kind, r.start)));
    const response = await this.#txn(
      {
        compare: [
          mod === undefined
            ? { key: Buffer.from(k.alloc(a.id)), target: 'Create', result: 'Equal', create_revision: a.seq }
            : modIs(k.alloc(a.id), mod),
        ],
        success,
        failure: [rangeOp(k.alloc(a.id))],
      },
      'release',
      `releasing ${a.name}`,
    );
    if (response.succeeded) return Number(response.header.revision);
    const now = kvsOf(response, 0)[0];
    if (now === undefined || Number(now.create_revision) !== a.seq) return Number(response.header.revision);
    return undefined;
  }

  /**
   * Releases the orphans of transactions whose outcome was never known: pending entries of this
   * node's cache whose sender is gone (or is this process, which gave up on them), and whose
   * allocation exists. Cheap when there are none (one read of the local cache).
   */
  async #resolvePending(): Promise<void> {
    let pending: ReturnType<FleetCache['pendings']>;
    try {
      pending = this.cache.pendings(this.url.key);
    } catch {
      return;
    }
    const here = procPidNamespace();
    for (const p of pending) {
      const mine = this.#abandoned.has(p.id);
      if (!mine) {
        const verdict = holderLiveness(
          { pid: p.process.pid, startTime: p.process.startTime, pidNamespace: p.process.pidNamespace },
          here,
        );
        if (verdict.liveness !== 'dead') continue;
      }
      const found = await this.#readAllocation(p.id);
      if (found !== undefined && found.allocation.node === p.node && found.allocation.created === p.since) {
        await this.#releaseKnown(found.allocation, found.mod);
      }
      this.cache.removePending(this.url.key, p.id);
      this.#abandoned.delete(p.id);
    }
  }

  // --- list, gc, usage, verify ----------------------------------------------------------------

  /** Every live allocation; when unreachable, this node's cached ones, marked offline. */
  async list(): Promise<Allocation[]> {
    try {
      const read = await this.#readAll();
      try {
        this.cache.reconcile(this.url.key, read.allocations, read.revision);
      } catch {
        /* see #forgetCached */
      }
      return read.allocations;
    } catch (error) {
      if (!(error instanceof UsernsError) || error.code !== 'REGISTRY_UNREACHABLE') throw error;
      let cached: CachedAllocation[];
      try {
        cached = this.cache.all(this.url.key);
      } catch {
        throw error;
      }
      return cached.map((c) => ({
        ...c.allocation,
        offline: { readAt: c.readAt, revision: c.revision, reason: error.message },
      }));
    }
  }

  /** The live nodes (each with its lease and what its agent published). */
  async nodes(): Promise<LiveNode[]> {
    return (await this.#snapshot(undefined)).nodes;
  }

  async collectGarbage(
    isNamespaceAlive: (name: string) => Promise<boolean | Liveness | { liveness: Liveness; reason?: string }>,
  ): Promise<GcResult> {
    await this.#resolvePending();
    const read = await this.#readAll();
    const here = procPidNamespace();
    const released: Allocation[] = [];
    const kept: GcResult['kept'] = [];
    for (const a of read.allocations) {
      // Owners are processes and namespaces of the node that made it: judged there only.
      if (a.node !== this.node || (a.holder === undefined && a.namespace === undefined)) continue;
      const verdict = await ownerLiveness(a, isNamespaceAlive, here);
      if (verdict.liveness === 'unknown')
        kept.push({ allocation: a, reason: verdict.reason ?? 'cannot check from here' });
      if (verdict.liveness !== 'dead') continue;
      if ((await this.#releaseKnown(a, read.mods.get(a.id))) !== undefined) {
        released.push(a);
        this.#forgetCached(a.id);
      }
    }
    return { released, kept };
  }

  async usage(_pools?: Pools): Promise<{ uid: KindUsage; gid: KindUsage }> {
    await this.#systemTaken?.refresh();
    const snap = await this.#snapshot(undefined);
    if (snap.config === undefined) throw this.#notConfigured();
    const space = this.#space(snap, snap.config);
    const one = (kind: IdKind): KindUsage => {
      const s = space[kind];
      const poolSize = rangesSize(s.pool.ranges);
      return {
        pool: s.pool.ranges,
        source: s.pool.source,
        poolSize,
        free: s.free.total,
        used: poolSize - s.free.total,
        largestFree: s.free.largest,
        excluded: exclusionsIn(s.why, s.pool.ranges),
      };
    };
    return { uid: one('uid'), gid: one('gid') };
  }

  /** The configuration and the live nodes (for `alloc list`, `alloc config`, doctor). */
  async status(): Promise<{
    config: FleetConfig | undefined;
    configMod: string;
    nodes: LiveNode[];
    revision: number;
  }> {
    const snap = await this.#snapshot(undefined);
    return { config: snap.config, configMod: snap.configMod, nodes: snap.nodes, revision: snap.revision };
  }

  /**
   * Sets the fleet's configuration (PREFIX/config), in one transaction that compares the
   * configuration read (so two writers cannot silently overwrite each other, and allocations
   * placed by the old one retry). Refuses (ALLOC_CONFIG_CONFLICT) a pool that leaves live
   * allocations outside, unless `force` (they keep their ranges; doctor reports them).
   */
  async setConfig(
    input: Omit<FleetConfig, 'version'>,
    options: { force?: boolean } = {},
  ): Promise<{ config: FleetConfig; previous: FleetConfig | undefined; outside: Allocation[] }> {
    const config = checkFleetConfig({ version: 1, ...input }, 'the new configuration');
    for (let attempt = 0; ; attempt++) {
      const snap = await this.#snapshot(undefined);
      const read = await this.#readAll();
      const outside = read.allocations.filter(
        (a) =>
          rangesSize(subtractRanges(normalizeRanges(a.uids), config.uidPool)) > 0 ||
          rangesSize(subtractRanges(normalizeRanges(a.gids), config.gidPool)) > 0,
      );
      if (outside.length > 0 && !options.force) {
        const shown = outside.slice(0, 5).map((a) => `${a.name} (${a.id})`);
        throw new AllocError(
          'ALLOC_CONFIG_CONFLICT',
          `${outside.length} live allocation${outside.length > 1 ? 's lie' : ' lies'} outside the new pools: ${shown.join(', ')}${outside.length > 5 ? ', …' : ''}`,
          {
            hint: 'release them first, choose pools that contain them, or set it anyway with --force (they keep their ranges)',
            data: { outside: outside.map((a) => a.id) },
          },
        );
      }
      const response = await this.#txn(
        {
          compare: [modIs(this.keys.config, snap.configMod)],
          success: [put(this.keys.config, JSON.stringify(config))],
          failure: [],
        },
        'config',
        'writing the configuration',
      );
      if (response.succeeded) return { config, previous: snap.config, outside };
      if (attempt >= 10)
        throw new AllocError('ALLOC_CONTENDED', 'the configuration kept changing while it was written');
      await sleep(backoffMs(attempt));
    }
  }

  /**
   * Checks the stored registry: the configuration reads and its pools are sane; every index key
   * belongs to an allocation that reserves exactly that range, and every reserved range has its
   * index key; no two ranges of a kind overlap; names and allocations point at each other; a
   * leased allocation's keys are all on its lease; allocations lie inside the pools (a pool made
   * smaller keeps what was allocated: reported, not an error of the data); no live node's
   * system IDs meet an allocation.
   */
  async verify(): Promise<{ problems: string[]; allocations: Allocation[]; warnings: string[] }> {
    const read = await this.#readAll();
    const problems: string[] = [];
    const warnings: string[] = [];
    if (read.configError !== undefined) problems.push(read.configError);
    else if (read.config === undefined) problems.push(`no pool configuration (${this.keys.config})`);
    const byId = new Map(read.allocations.map((a) => [a.id, a]));
    for (const kind of ['uid', 'gid'] as const) {
      const entries = read.index[kind];
      for (let i = 1; i < entries.length; i++) {
        const p = entries[i - 1]!;
        const q = entries[i]!;
        if (q.start < p.start + p.count)
          problems.push(
            `${kind}s of ${p.id} (${formatRange(p.start, p.count)}) and ${q.id} (${formatRange(q.start, q.count)}) overlap`,
          );
      }
      for (const e of entries) {
        const a = byId.get(e.id);
        if (a === undefined) problems.push(`index ${kind} ${e.start} belongs to no allocation (${e.id})`);
        else if (!(kind === 'uid' ? a.uids : a.gids).some((r) => r.start === e.start && r.count === e.count))
          problems.push(`index ${kind} ${formatRange(e.start, e.count)} does not match allocation ${e.id}`);
      }
      for (const a of read.allocations) {
        for (const r of kind === 'uid' ? a.uids : a.gids) {
          const e = entries.find((x) => x.start === r.start);
          if (e === undefined || e.id !== a.id || e.count !== r.count)
            problems.push(
              `${a.name} (${a.id}): its ${kind}s ${formatRange(r.start, r.count)} have no index key`,
            );
          const key = this.keys.index(kind, r.start);
          if (e !== undefined && read.leases.get(key) !== a.lease)
            problems.push(`${a.name} (${a.id}): index key ${key} is not on the allocation's lease`);
        }
        const pool =
          read.config === undefined ? undefined : kind === 'uid' ? read.config.uidPool : read.config.gidPool;
        const own = kind === 'uid' ? a.uids : a.gids;
        if (
          pool !== undefined &&
          rangesSize(intersectRanges(own, pool)) !== rangesSize(normalizeRanges(own))
        ) {
          const block = own[0];
          warnings.push(
            `${a.name} (${a.id}) has ${kind}s outside the pool${block === undefined ? '' : ` (${formatRange(block.start, block.count)})`}: the pool was made smaller after it was allocated`,
          );
        }
      }
      for (const n of read.nodes) {
        for (const e of entries) {
          const hit = intersectRanges([{ start: e.start, count: e.count }], n.taken[kind]);
          if (hit.length > 0)
            problems.push(
              `node ${n.node} has ${kind}s ${formatRange(hit[0]!.start, hit[0]!.count)} in use locally (a user or subordinate range there), which allocation ${e.id} holds`,
            );
        }
      }
    }
    for (const a of read.allocations) {
      const named = read.names.get(a.name);
      if (named !== a.id)
        problems.push(
          `${a.name} (${a.id}): its name key ${named === undefined ? 'is missing' : `names ${named}`}`,
        );
      else if (read.leases.get(this.keys.name(a.name)) !== a.lease)
        problems.push(`${a.name} (${a.id}): its name key is not on the allocation's lease`);
    }
    for (const [name, id] of read.names)
      if (!byId.has(id)) problems.push(`name ${name} names no allocation (${id})`);
    return { problems, allocations: read.allocations, warnings };
  }
}

/** This process as pending entries record it. */
function selfProcess(): PendingProcess {
  return selfInProc() ?? { pid: process.pid, startTime: runningStartTime('self') ?? '0', pidNamespace: null };
}
