/**
 * Fleet registry benchmark (issue 20): allocate + release cycles against a real 3-member etcd
 * cluster on loopback (test/fixtures/etcd-cluster.ts), beside the same cycles on the local SQLite
 * registry in the same run, with 200 live allocations of 65536 IDs (first fit):
 *
 * - `fleet_alloc_release_per_s`: one process, sequential (each allocate is a read transaction
 *   and a commit; each release a read and a commit);
 * - `fleet_alloc_release_per_s_4_nodes`: four registries of four nodes in one process at once
 *   (every allocate compares the one head key: conflicts are retried with backoff), in all;
 * - `fleet_conflicts_per_commit_4_nodes`: how often a commit lost to another node;
 * - `fleet_vs_sqlite_ratio`: fleet (one process) / SQLite (one process, tmpfs).
 *
 * Null where etcd is not installed. The cluster and every file go when the group ends.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FleetRegistry } from '../src/alloc/fleet/registry.js';
import { parseRegistryUrl } from '../src/alloc/fleet/url.js';
import { type Pools, SYSTEMD_CONTAINER_RANGE } from '../src/alloc/pool.js';
import type { AllocationRequest } from '../src/alloc/registry.js';
import { Registry } from '../src/alloc/registry.js';
import { EtcdCluster, etcdUnavailable } from '../test/fixtures/etcd-cluster.js';

const LIVE = 200;
const ROUNDS = 200;
const REQUEST: AllocationRequest = { size: 65536, policy: { kind: 'first-fit' } };
const pools: Pools = {
  uid: { ranges: [SYSTEMD_CONTAINER_RANGE], source: 'bench' },
  gid: { ranges: [SYSTEMD_CONTAINER_RANGE], source: 'bench' },
};

interface Allocator {
  allocate(r: AllocationRequest): Promise<{ id: string }>;
  release(id: string): Promise<unknown>;
}

/** Fills to LIVE, then `rounds` cycles of allocate + release a random older one; cycles per second. */
async function cycles(
  registry: Allocator,
  request: AllocationRequest,
  rounds: number,
  live = LIVE,
): Promise<number> {
  const ids: string[] = [];
  for (let i = 0; i < live; i++) ids.push((await registry.allocate(request)).id);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) {
    ids.push((await registry.allocate(request)).id);
    await registry.release(ids.splice(Math.floor(Math.random() * (ids.length - 1)), 1)[0]!);
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  for (const id of ids) await registry.release(id);
  return rounds / seconds;
}

export async function benchFleet(): Promise<Record<string, number | null>> {
  const none = {
    fleet_alloc_release_per_s: null,
    fleet_alloc_release_per_s_4_nodes: null,
    fleet_conflicts_per_commit_4_nodes: null,
    sqlite_alloc_release_per_s_beside_fleet: null,
    fleet_vs_sqlite_ratio: null,
  };
  const why = etcdUnavailable();
  if (why !== false) {
    process.stderr.write(`bench: fleet skipped: ${why}\n`);
    return none;
  }
  const dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'userns-bench-fleet-'));
  const cluster = await EtcdCluster.start();
  const open: { close(): void }[] = [];
  try {
    const hosts = cluster.endpoints.map((e) => e.replace('http://', '')).join(',');
    const url = parseRegistryUrl(`etcd://${hosts}/bench`);
    const fleet = (node: string, hook?: () => void) => {
      const r = new FleetRegistry(url, {
        dir: join(dir, node),
        node,
        systemTaken: null,
        idleCloseMs: 0,
        ...(hook === undefined
          ? {}
          : {
              txnHook: async (send, request, op) => {
                const response = await send(request);
                if (op === 'allocate' && !response.succeeded) hook();
                return response;
              },
            }),
      });
      open.push(r);
      return r;
    };
    await fleet('admin').setConfig({
      uidPool: [SYSTEMD_CONTAINER_RANGE],
      gidPool: [SYSTEMD_CONTAINER_RANGE],
    });
    const local = new Registry(join(dir, 'local'));
    open.push(local);
    const sqliteRequest = { ...REQUEST, pools };
    // Warm-up (JIT, connections), not reported.
    await cycles(fleet('n0'), REQUEST, 20, 20);
    await cycles(local, sqliteRequest, 200, 20);
    // Side by side, alternating, twice: the machine's noise hits both alike.
    const f: number[] = [];
    const s: number[] = [];
    for (let i = 0; i < 2; i++) {
      f.push(await cycles(fleet('n0'), REQUEST, ROUNDS / 2));
      s.push(await cycles(local, sqliteRequest, ROUNDS * 5));
    }
    const fleetRate = f.reduce((a, b) => a + b) / f.length;
    const sqliteRate = s.reduce((a, b) => a + b) / s.length;
    let conflicts = 0;
    const nodes = ['n1', 'n2', 'n3', 'n4'].map((n) =>
      fleet(n, () => {
        conflicts++;
      }),
    );
    const t0 = process.hrtime.bigint();
    await Promise.all(nodes.map((r) => cycles(r, REQUEST, ROUNDS / 4, LIVE / 4)));
    // Fill and drain are in this timing too: count their operations as cycles (one allocate and
    // one release each).
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const together = (ROUNDS + LIVE) / seconds;
    return {
      fleet_alloc_release_per_s: Math.round(fleetRate),
      fleet_alloc_release_per_s_4_nodes: Math.round(together),
      fleet_conflicts_per_commit_4_nodes: Number((conflicts / (ROUNDS + LIVE)).toFixed(2)),
      sqlite_alloc_release_per_s_beside_fleet: Math.round(sqliteRate),
      fleet_vs_sqlite_ratio: Number((fleetRate / sqliteRate).toFixed(4)),
    };
  } finally {
    for (const r of open) r.close();
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1]?.endsWith('/bench/fleet.js')) {
  console.log(JSON.stringify(await benchFleet(), null, 2));
}
