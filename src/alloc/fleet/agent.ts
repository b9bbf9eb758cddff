/**
 * The node agent: the long-running process that ties allocations to a node's life. It holds one
 * etcd lease for the node and keeps it alive; allocations made `--lease` on that node live on
 * that lease, so when the node dies (or is cut off) for longer than the lease TTL, etcd deletes
 * them, whole and in one revision, with nobody having to act.
 *
 * - Start: an agent that finds `PREFIX/nodes/<node>` alive (its previous run, restarted within
 *   the TTL) adopts that lease, so nothing leased is lost across an agent restart; otherwise it
 *   grants a new lease. It then writes `nodes/<node>` on the lease: the host, its start time,
 *   the lease TTL, and the IDs of the fleet's pool that are in use on this machine (passwd and
 *   group entries, users' subordinate ranges, systemd-nsresourced), which every node's
 *   allocations then avoid.
 * - Keepalive: every TTL/3 on one stream; each answer records in this node's cache when the
 *   keepalive it answers was *sent* (etcd counts the TTL from there), which is what lets a
 *   process of this node use a leased range offline: only until TTL after that.
 * - Loss: etcd says the lease is gone (the node was cut off longer than the TTL): its leased
 *   allocations were released fleet-wide. The agent says so ('lost', with the count this node's
 *   cache knew), forgets them, and registers again with a new lease.
 * - One agent per node name on a machine: a kernel file lock in the state root.
 * - Stop: the lease is left to expire (containers keep their ranges across an agent restart)
 *   unless `revoke` (the node is drained: its leased allocations go at once).
 *
 * A process that embeds the library (a kubelet plugin, a runtime daemon) runs the same agent in
 * process: startNodeAgent().
 */
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { AllocError, UsernsError } from '../../errors/index.js';
import { intersectRanges } from '../../idmap/ranges.js';
import { type FileLock, tryFileLock } from '../../state/lock.js';
import { validateName } from '../../state/names.js';
import { ensurePrivateDir } from '../../state/state-root.js';
import { SystemTaken, type SystemTakenOptions } from '../system-taken.js';
import { FleetCache } from './cache.js';
import { connectFleet, type EtcdClient, type KeepAliveStream, registryError } from './client.js';
import {
  checkFleetConfig,
  DEFAULT_LEASE_TTL,
  FleetKeys,
  leaseOf,
  MAX_LEASE_TTL,
  MIN_LEASE_TTL,
  type NodeRecord,
} from './layout.js';
import { defaultNodeName } from './registry.js';
import type { FleetRegistryUrl } from './url.js';

/** How a node's agent runs (see {@link NodeAgent}). */
export interface NodeAgentOptions {
  /** The state root's registry directory (`<root>/alloc`): the cache and the agent's lock. */
  dir: string;
  /** Default: $USERNS_NODE, else the host name. */
  node?: string;
  /** Lease TTL in seconds (default: the fleet configuration's leaseTtl, else 60). */
  ttl?: number;
  /** IDs taken on this machine to publish; null: publish none (tests). */
  systemTaken?: SystemTakenOptions | null;
  /** The version string published in nodes/<node> (default: this package's). */
  version?: string;
  /** Called with every event, from the first registration on. */
  onEvent?: (event: AgentEvent) => void;
}

/**
 * What a node's agent reports: its lease registered (or adopted after a restart), keepalives
 * failing and coming back, the lease lost (its leased allocations are gone fleet-wide; `forgotten`
 * counts those dropped from this node's cache), and its end (`revoked`: the lease was revoked).
 */
export type AgentEvent =
  | { type: 'registered'; node: string; lease: string; ttl: number; adopted: boolean }
  | { type: 'keepalive-failed'; message: string }
  | { type: 'keepalive-restored' }
  | { type: 'lost'; node: string; lease: string; forgotten: number }
  | { type: 'stopped'; node: string; lease: string; revoked: boolean };

/**
 * The process that keeps this node's lease alive in a fleet registry (`userns alloc agent`):
 * allocations made with `--lease` live as long as it does. Emits 'event' with {@link AgentEvent}s.
 */
export class NodeAgent extends EventEmitter {
  readonly url: FleetRegistryUrl;
  readonly node: string;
  /** @internal */
  readonly keys: FleetKeys;
  readonly #options: NodeAgentOptions;
  readonly #cache: FleetCache;
  readonly #client: EtcdClient;
  readonly #lock: FileLock;
  #lease = '';
  #ttl = 0;
  /** When the last keepalive etcd confirmed was sent (ms since the epoch). */
  #keptAt = 0;
  #stream: KeepAliveStream | undefined;
  #timer: NodeJS.Timeout | undefined;
  #watchdog: NodeJS.Timeout | undefined;
  #sent: number[] = [];
  #stopped = false;
  #reconnecting = false;
  /** Consecutive broken streams (the retry delay grows with it; reset by an answer). */
  #failures = 0;
  /** When a failure was last reported (failures are reported when they start, then every 30 s). */
  #reportedAt = 0;

  private constructor(url: FleetRegistryUrl, node: string, options: NodeAgentOptions, lock: FileLock) {
    super();
    this.url = url;
    this.node = node;
    this.keys = new FleetKeys(url.prefix);
    this.#options = options;
    this.#cache = new FleetCache(options.dir);
    this.#client = connectFleet(url);
    this.#lock = lock;
    if (options.onEvent !== undefined) this.on('event', options.onEvent);
  }

  /** The lease id (a decimal string). */
  get lease(): string {
    return this.#lease;
  }
  /** The lease TTL etcd granted, in seconds. */
  get ttl(): number {
    return this.#ttl;
  }
  /** When the last keepalive etcd confirmed was sent (ms since the epoch). */
  get keptAt(): number {
    return this.#keptAt;
  }

  /**
   * Registers the node (adopting its live lease, else granting one) and starts the keepalives.
   * Throws AGENT_RUNNING when another agent of this node name runs on this machine, and the
   * registry's typed errors (REGISTRY_UNREACHABLE…) when it cannot register.
   */
  static async start(url: FleetRegistryUrl, options: NodeAgentOptions): Promise<NodeAgent> {
    const node = options.node === undefined ? defaultNodeName() : validateName(options.node, 'node name');
    if (
      options.ttl !== undefined &&
      (!Number.isInteger(options.ttl) || options.ttl < MIN_LEASE_TTL || options.ttl > MAX_LEASE_TTL)
    ) {
      throw new UsernsError(
        'USAGE',
        `lease TTL ${options.ttl}: expected whole seconds from ${MIN_LEASE_TTL} to ${MAX_LEASE_TTL}`,
      );
    }
    ensurePrivateDir(options.dir, 'allocation registry');
    const lockPath = join(
      options.dir,
      `agent-${Buffer.from(`${url.key}\0${node}`).toString('base64url').slice(0, 60)}.lock`,
    );
    const lock = await tryFileLock(lockPath, { what: `the agent of node ${node}` });
    if (lock === undefined) {
      throw new AllocError(
        'AGENT_RUNNING',
        `an agent for node ${node} of ${url.display} runs on this machine already`,
        {
          hint: 'one agent per node is enough: every userns process of the node uses its lease',
          data: { node, registry: url.display, lock: lockPath },
        },
      );
    }
    const agent = new NodeAgent(url, node, options, lock);
    try {
      await agent.#register();
    } catch (error) {
      agent.#client.close();
      agent.#cache.close();
      lock.release();
      throw registryError(error, url, `registering node ${node}`);
    }
    agent.#keepalive();
    return agent;
  }

  async #taken(config: ReturnType<typeof checkFleetConfig> | undefined): Promise<NodeRecord['taken']> {
    if (this.#options.systemTaken === null || config === undefined) return { uid: [], gid: [] };
    const taken = await new SystemTaken({
      poolOwner: { name: '\0fleet', uid: -1 },
      ...this.#options.systemTaken,
    }).refresh();
    return {
      uid: intersectRanges(taken.uid, config.uidPool),
      gid: intersectRanges(taken.gid, config.gidPool),
    };
  }

  /** Adopts the node's live lease or grants one, and writes nodes/<node> on it. */
  async #register(): Promise<void> {
    const k = this.keys;
    for (let attempt = 0; ; attempt++) {
      const read = await this.#client.kv.txn({
        compare: [],
        success: [
          { request_range: { key: Buffer.from(k.config) } },
          { request_range: { key: Buffer.from(k.node(this.node)) } },
        ],
        failure: [],
      });
      const configKv = read.responses[0]?.response_range?.kvs[0];
      const config =
        configKv === undefined
          ? undefined
          : checkFleetConfig(JSON.parse(configKv.value.toString()), `${this.url.display} ${k.config}`);
      const nodeKv = read.responses[1]?.response_range?.kvs[0];
      let lease = nodeKv === undefined ? undefined : leaseOf(nodeKv);
      let ttl = this.#options.ttl ?? config?.leaseTtl ?? DEFAULT_LEASE_TTL;
      let adopted = false;
      if (lease !== undefined) {
        const live = await this.#client.leaseClient.leaseTimeToLive({ ID: lease });
        if (Number(live.TTL) > 0) {
          adopted = true;
          ttl = Number(live.grantedTTL);
        } else lease = undefined;
      }
      const sentAt = Date.now();
      if (lease === undefined) {
        const granted = await this.#client.leaseClient.leaseGrant({ TTL: ttl });
        lease = String(granted.ID);
        ttl = Number(granted.TTL);
      }
      const record: NodeRecord = {
        node: this.node,
        host: hostname(),
        since: new Date().toISOString(),
        version: this.#options.version ?? '0.1.0',
        ttl,
        taken: await this.#taken(config),
      };
      const key = Buffer.from(k.node(this.node));
      const written = await this.#client.kv.txn({
        compare: [
          nodeKv === undefined
            ? { key, target: 'Create', result: 'Equal', create_revision: 0 }
            : { key, target: 'Mod', result: 'Equal', mod_revision: nodeKv.mod_revision },
        ],
        success: [{ request_put: { key, value: Buffer.from(JSON.stringify(record)), lease } }],
        failure: [],
      });
      if (!written.succeeded) {
        if (!adopted) await this.#client.leaseClient.leaseRevoke({ ID: lease }).catch(() => {});
        if (attempt >= 10)
          throw new AllocError(
            'ALLOC_CONTENDED',
            `node ${this.node} kept changing while its agent registered it`,
          );
        continue;
      }
      this.#lease = lease;
      this.#ttl = ttl;
      this.#keptAt = sentAt;
      this.#record();
      this.emit('event', { type: 'registered', node: this.node, lease, ttl, adopted } satisfies AgentEvent);
      return;
    }
  }

  #record(): void {
    try {
      this.#cache.recordLease(this.url.key, this.node, {
        lease: this.#lease,
        ttl: this.#ttl,
        keptAt: this.#keptAt,
      });
    } catch (error) {
      this.emit('event', {
        type: 'keepalive-failed',
        message: `cannot write this node's cache (${(error as Error).message}): leased ranges cannot be used offline`,
      } satisfies AgentEvent);
    }
  }

  /** Keepalives every TTL/3 on one stream; a broken stream is opened again. */
  #keepalive(): void {
    if (this.#stopped) return;
    const interval = Math.max(250, (this.#ttl * 1000) / 3);
    this.#client.leaseClient
      .leaseKeepAlive()
      .then((stream) => {
        if (this.#stopped) {
          stream.end();
          return;
        }
        this.#stream = stream;
        this.#sent = [];
        stream.on('data', (response) => {
          const sentAt = this.#sent.shift() ?? Date.now();
          clearTimeout(this.#watchdog);
          if (Number(response.TTL) <= 0) {
            this.#lost();
            return;
          }
          if (this.#failures > 0) this.emit('event', { type: 'keepalive-restored' } satisfies AgentEvent);
          this.#failures = 0;
          this.#reportedAt = 0;
          this.#keptAt = sentAt;
          this.#record();
        });
        stream.on('error', (error) => this.#broken(error.message));
        stream.on('end', () => this.#broken('the keepalive stream ended'));
        const fire = () => {
          if (this.#stopped || this.#stream !== stream) return;
          this.#sent.push(Date.now());
          try {
            stream.write({ ID: this.#lease });
          } catch (error) {
            this.#broken((error as Error).message);
            return;
          }
          // No answer within two intervals: the member is hung; try another one.
          clearTimeout(this.#watchdog);
          this.#watchdog = setTimeout(() => this.#broken('no keepalive answer'), 2 * interval);
        };
        fire();
        this.#timer = setInterval(fire, interval);
      })
      .catch((error: Error) => this.#broken(error.message));
  }

  #teardown(): void {
    clearInterval(this.#timer);
    clearTimeout(this.#watchdog);
    this.#timer = undefined;
    const stream = this.#stream;
    this.#stream = undefined;
    if (stream !== undefined) {
      stream.removeAllListeners();
      stream.on('error', () => {});
      try {
        stream.end();
      } catch {
        /* already broken */
      }
    }
  }

  #broken(message: string): void {
    if (this.#stopped || this.#reconnecting) return;
    this.#reconnecting = true;
    this.#teardown();
    this.#failures++;
    const now = Date.now();
    if (this.#failures === 1 || now - this.#reportedAt >= 30_000) {
      this.#reportedAt = now;
      this.emit('event', { type: 'keepalive-failed', message } satisfies AgentEvent);
    }
    // Retry soon, then less often, but always well within the TTL.
    const delay = Math.min(100 * 2 ** Math.min(this.#failures, 5), Math.max(250, (this.#ttl * 1000) / 4));
    setTimeout(
      () => {
        this.#reconnecting = false;
        if (this.#stopped) return;
        // Past the TTL without a confirmed keepalive, the lease may be gone: ask before going on.
        if (Date.now() - this.#keptAt > this.#ttl * 1000) {
          this.#client.leaseClient
            .leaseTimeToLive({ ID: this.#lease })
            .then((r) => (Number(r.TTL) > 0 ? this.#keepalive() : this.#lost()))
            .catch((error: Error) => this.#broken(error.message));
        } else this.#keepalive();
      },
      Math.floor(delay / 2 + Math.random() * (delay / 2)),
    );
  }

  /** The lease is gone: its allocations were released fleet-wide. Register again. */
  #lost(): void {
    if (this.#stopped) return;
    this.#teardown();
    const lease = this.#lease;
    let forgotten = 0;
    try {
      forgotten = this.#cache.forgetLease(this.url.key, lease);
      this.#cache.dropLease(this.url.key, this.node);
    } catch {
      /* the offline check compares the lease id anyway */
    }
    this.emit('event', { type: 'lost', node: this.node, lease, forgotten } satisfies AgentEvent);
    const again = (delay: number) =>
      setTimeout(() => {
        if (this.#stopped) return;
        this.#register()
          .then(() => this.#keepalive())
          .catch((error: Error) => {
            this.emit('event', { type: 'keepalive-failed', message: error.message } satisfies AgentEvent);
            again(Math.min(delay * 2, 5000));
          });
      }, delay);
    again(100);
  }

  /**
   * Stops the keepalives. The lease then expires TTL after the last one (the node's leased
   * allocations with it), unless `revoke`: released at once.
   */
  async stop(options: { revoke?: boolean } = {}): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#teardown();
    let revoked = false;
    try {
      if (options.revoke && this.#lease !== '') {
        await this.#client.leaseClient.leaseRevoke({ ID: this.#lease });
        revoked = true;
        this.#cache.forgetLease(this.url.key, this.#lease);
        this.#cache.dropLease(this.url.key, this.node);
      }
    } catch (error) {
      throw registryError(error, this.url, `revoking the lease of node ${this.node}`);
    } finally {
      this.#client.close();
      this.#cache.close();
      this.#lock.release();
      this.emit('event', {
        type: 'stopped',
        node: this.node,
        lease: this.#lease,
        revoked,
      } satisfies AgentEvent);
    }
  }
}

/** Starts a node agent in this process (see NodeAgent). */
export function startNodeAgent(url: FleetRegistryUrl, options: NodeAgentOptions): Promise<NodeAgent> {
  return NodeAgent.start(url, options);
}
