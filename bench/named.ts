/**
 * Named-namespace benchmarks (root): entering an existing namespace versus making a new one.
 * Rounds alternate the variants so that machine noise hits both alike; medians in milliseconds.
 *
 *   exec_true_ms           spawnInNamespace(NAME, '/bin/true') from the API: read and check the
 *                          state (keeper PID + start time, namespace inodes), the helper reopens
 *                          the recorded nsfs handle (open_by_handle_at, Linux 6.18+), checks the
 *                          inode and joins the user namespace (map 0:100000:65536), exec
 *   exec_true_pid_ms       the same, joined the PID-based way (joinBy 'holder': pidfd_open on the
 *                          keeper, start time and /proc/KEEPER/ns inodes checked, setns on the
 *                          pidfd), measured in the same rounds
 *   exec_handle_vs_pid_ratio  exec_true_ms / exec_true_pid_ms
 *   userns_spawn_true_ms   spawn('/bin/true') in a new user namespace with the same map (as in
 *                          bench/spawn.ts), measured in the same rounds
 *   exec_vs_spawn_ratio    exec_true_ms / userns_spawn_true_ms (target: ≤ 1)
 *   create_ms              createNamespace + removeNamespace of a user namespace, per pair
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createNamespace, removeNamespace, spawnInNamespace } from '../src/namespaces/index.js';
import { spawn } from '../src/spawn/spawn.js';

const ROUNDS = Number(process.env.USERNS_BENCH_ROUNDS ?? 60);
const MAP = '0:100000:65536';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  const v = s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  return Math.round(v * 1000) / 1000;
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

export async function benchNamed(): Promise<Record<string, number>> {
  if (process.geteuid?.() !== 0) return {};
  const root = mkdtempSync(join(tmpdir(), 'userns-bench-named-'));
  try {
    await createNamespace('bench', { root, uidMap: MAP, gidMap: MAP });
    const variants: [string, () => Promise<unknown>][] = [
      ['exec_true_ms', () => spawnInNamespace('bench', '/bin/true', [], { root, stdio: 'ignore' })],
      [
        'exec_true_pid_ms',
        () => spawnInNamespace('bench', '/bin/true', [], { root, stdio: 'ignore', joinBy: 'holder' }),
      ],
      ['userns_spawn_true_ms', () => spawn('/bin/true', [], { uidMap: MAP, gidMap: MAP, stdio: 'ignore' })],
    ];
    const samples: Record<string, number[]> = {};
    for (const [name, fn] of variants) {
      samples[name] = [];
      await fn(); // warm-up
    }
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate which goes first, so none always follows another.
      const order = variants.map((_, i) => variants[(i + round) % variants.length]!);
      for (const [name, fn] of order) samples[name]!.push(await time(fn));
    }
    await removeNamespace('bench', { root });
    const create: number[] = [];
    for (let i = 0; i < Math.min(ROUNDS, 20); i++) {
      create.push(
        await time(async () => {
          await createNamespace('c', { root, uidMap: MAP, gidMap: MAP });
          await removeNamespace('c', { root });
        }),
      );
    }
    const exec = median(samples.exec_true_ms!);
    const execPid = median(samples.exec_true_pid_ms!);
    const spawnMs = median(samples.userns_spawn_true_ms!);
    return {
      exec_true_ms: exec,
      exec_true_pid_ms: execPid,
      exec_handle_vs_pid_ratio: Math.round((exec / execPid) * 100) / 100,
      // Measured beside exec, in the same rounds (bench/spawn.ts has its own userns_spawn_true_ms).
      userns_spawn_beside_exec_ms: spawnMs,
      exec_vs_spawn_ratio: Math.round((exec / spawnMs) * 100) / 100,
      create_ms: median(create),
    };
  } finally {
    await removeNamespace('bench', { root, force: true }).catch(() => {});
    await removeNamespace('c', { root, force: true }).catch(() => {});
    rmSync(root, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(JSON.stringify(await benchNamed(), null, 2));
}
