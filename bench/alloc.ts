/**
 * Allocation registry benchmark: allocate + release cycles in one process with 1,000 and 10,000
 * live allocations (first fit, 65536 IDs each, in the systemd container range), and the cost of
 * one free-space search at both sizes.
 *
 * The registry (a SQLite database, one IMMEDIATE transaction per allocate and per release, the
 * write-ahead log fsynced at every allocation's commit) lives on tmpfs (/dev/shm), as the real one does
 * (/run/userns is tmpfs). `alloc_release_per_s_disk` and `alloc_p99_ms_disk` repeat the 10,000
 * case on the temp directory's file system (ext4 here) to show what fsync costs there.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FreeSpace } from '../src/alloc/free-space.js';
import type { Pools } from '../src/alloc/pool.js';
import { SYSTEMD_CONTAINER_RANGE } from '../src/alloc/pool.js';
import { Registry } from '../src/alloc/registry.js';

const pools: Pools = {
  uid: { ranges: [SYSTEMD_CONTAINER_RANGE], source: 'bench' },
  gid: { ranges: [SYSTEMD_CONTAINER_RANGE], source: 'bench' },
};

let seed = 12345;
function rand(n: number): number {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed % n;
}

async function cycles(
  parent: string,
  live: number,
  rounds: number,
): Promise<{ perSecond: number; p99: number; p50: number }> {
  const dir = mkdtempSync(join(parent, 'userns-bench-alloc-'));
  try {
    // Default system-taken lookups (passwd, group, nsresourced) stay on: cached, a few stats per op.
    const registry = new Registry(join(dir, 'alloc'));
    const ids: string[] = [];
    for (let i = 0; i < live; i++) {
      ids.push((await registry.allocate({ size: 65536, policy: { kind: 'first-fit' }, pools })).id);
    }
    // Release a random tenth so the free space is fragmented, then refill.
    for (let i = 0; i < live / 10; i++) await registry.release(ids.splice(rand(ids.length), 1)[0]!);
    while (ids.length < live)
      ids.push((await registry.allocate({ size: 65536, policy: { kind: 'first-fit' }, pools })).id);
    const latencies = new Float64Array(rounds);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < rounds; i++) {
      const a0 = process.hrtime.bigint();
      const a = await registry.allocate({ size: 65536, policy: { kind: 'first-fit' }, pools });
      latencies[i] = Number(process.hrtime.bigint() - a0) / 1e6;
      ids.push(a.id);
      await registry.release(ids.splice(rand(ids.length), 1)[0]!);
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    latencies.sort();
    registry.close();
    return {
      perSecond: Math.round(rounds / seconds),
      p99: Number(latencies[Math.floor(rounds * 0.99)]!.toFixed(3)),
      p50: Number(latencies[Math.floor(rounds * 0.5)]!.toFixed(3)),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Microseconds per first-fit search among `live` allocations with every 10th one released. */
function searchMicros(live: number): number {
  const free = new FreeSpace([SYSTEMD_CONTAINER_RANGE]);
  const start = SYSTEMD_CONTAINER_RANGE.start;
  for (let i = 0; i < live; i++) free.carve(start + i * 65536, 65536);
  for (let i = 5; i < live; i += 10) free.release(start + i * 65536, 65536);
  const n = 200_000;
  let sink = 0;
  const t0 = process.hrtime.bigint();
  // A size that only the big tail gap holds: the search must skip every hole (a linear scan would visit them all).
  for (let i = 0; i < n; i++) sink += free.findFit({ size: 131072 }) ?? 0;
  const us = Number(process.hrtime.bigint() - t0) / n / 1000;
  if (sink === 0) throw new Error('unreachable');
  return Number(us.toFixed(3));
}

export async function benchAlloc(): Promise<Record<string, number>> {
  const fast = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  await cycles(fast, 500, 2000); // warm-up (JIT), not reported
  const small = await cycles(fast, 1000, 3000);
  const large = await cycles(fast, 10_000, 3000);
  const disk = await cycles(tmpdir(), 10_000, 1000);
  return {
    alloc_release_per_s_1000: small.perSecond,
    alloc_release_per_s: large.perSecond,
    alloc_p99_ms_1000: small.p99,
    alloc_p99_ms: large.p99,
    alloc_p50_ms: large.p50,
    alloc_release_per_s_disk: disk.perSecond,
    alloc_p99_ms_disk: disk.p99,
    alloc_search_us_1000: searchMicros(1000),
    alloc_search_us_10000: searchMicros(10_000),
  };
}

if (process.argv[1]?.endsWith('/bench/alloc.js')) {
  console.log(JSON.stringify(await benchAlloc(), null, 2));
}
