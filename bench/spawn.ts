/**
 * Spawn benchmarks: the cost of a new user namespace, side by side with the alternatives.
 * Variants run round-robin (one of each per round, the order rotating) so machine noise hits all
 * of them alike, the spawns in one loop and the Node start-ups in another;
 * the figures are medians in milliseconds, null when a variant cannot run here.
 *
 *   spawn_true_ms                  child_process.spawn('/bin/true')
 *   userns_spawn_true_ms           our spawn('/bin/true') as root, maps 0:100000:65536 (uid and gid)
 *   helper_raw_true_ms             the native helper alone, maps written by hand (the floor)
 *   unshare_true_ms                unshare --user --map-root-user /bin/true
 *   userns_spawn_rootless_true_ms  our spawn as an unprivileged user (auto: newuidmap + newgidmap)
 *   cli_run_true_ms                node bin/userns run -- /bin/true
 *   node_start_ms                  node -e 0
 *   podman_unshare_true_ms         podman unshare /bin/true
 */
import { spawn as spawnChild, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { launchHelper } from '../src/native/helper.js';
import { spawn } from '../src/spawn/spawn.js';

const ROUNDS = Number(process.env.USERNS_BENCH_ROUNDS ?? 60);
const BIN = fileURLToPath(new URL('../../bin/userns', import.meta.url));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  const v = s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  return Math.round(v * 1000) / 1000;
}

function exec(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawnChild(cmd, args, { stdio: 'ignore' });
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}`)),
    );
  });
}

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

const MAP = '0 100000 65536\n';

/** The helper alone, maps written by hand: the floor under userns_spawn_true_ms. */
async function rawHelper(): Promise<void> {
  const h = await launchHelper({ namespaces: ['user'], command: ['/bin/true'], stdio: 'ignore' });
  const closed = new Promise((resolve) => h.child.once('close', resolve));
  writeFileSync(`/proc/${h.pid}/uid_map`, MAP);
  writeFileSync(`/proc/${h.pid}/gid_map`, MAP);
  await h.go();
  await closed;
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/** Runs N spawns as a throwaway user (rootless path through newuidmap); its median in ms. */
async function rootlessMedian(rounds: number): Promise<number | null> {
  if (process.geteuid?.() !== 0) return null;
  let fixture: typeof import('../test/fixtures/throwaway-user.js');
  let readable: typeof import('../test/fixtures/readable-repo.js');
  try {
    fixture = await import('../test/fixtures/throwaway-user.js');
    readable = await import('../test/fixtures/readable-repo.js');
  } catch {
    return null;
  }
  if (fixture.throwawayUserUnavailable() !== undefined) return null;
  // The user runs a readable copy (the checkout may be private, e.g. under /root).
  const spawnModule = readable.readablePath('dist/src/spawn/spawn.js');
  return fixture.withThrowawayUser(async (user) => {
    const script = `import { spawn } from ${JSON.stringify(spawnModule)};
      const times = [];
      await spawn('/bin/true', [], { stdio: 'ignore' }); // warm-up
      for (let i = 0; i < ${rounds}; i++) {
        const t = performance.now();
        await spawn('/bin/true', [], { stdio: 'ignore' });
        times.push(performance.now() - t);
      }
      times.sort((a, b) => a - b);
      process.stdout.write(String(times[times.length >> 1]));`;
    const r = await fixture.runAs(user, [process.execPath, '--input-type=module', '-e', script]);
    if (r.code !== 0) {
      process.stderr.write(`bench: rootless spawn failed: ${r.stderr}\n`);
      return null;
    }
    return Math.round(Number(r.stdout) * 1000) / 1000;
  });
}

export async function benchSpawn(): Promise<Record<string, number | null>> {
  const isRoot = process.geteuid?.() === 0;
  const variants: Record<string, (() => Promise<unknown>) | null> = {
    spawn_true_ms: () => exec('/bin/true', []),
    userns_spawn_true_ms: isRoot
      ? () => spawn('/bin/true', [], { uidMap: '0:100000:65536', gidMap: '0:100000:65536', stdio: 'ignore' })
      : null,
    helper_raw_true_ms: isRoot ? rawHelper : null,
    unshare_true_ms: have('unshare')
      ? () => exec('unshare', ['--user', '--map-root-user', '/bin/true'])
      : null,
    cli_run_true_ms: isRoot
      ? () => exec(process.execPath, [BIN, 'run', '--uidmap', '0:100000:65536', '--', '/bin/true'])
      : null,
    node_start_ms: () => exec(process.execPath, ['-e', '0']),
    podman_unshare_true_ms: have('podman') ? () => exec('podman', ['unshare', '/bin/true']) : null,
  };
  const samples: Record<string, number[]> = {};
  // Two loops of like with like: the millisecond spawns, and the ~100 ms Node start-ups. Mixed in
  // one loop, each Node start-up slowed the spawn measured after it (ours by ~0.7 ms, unshare by
  // less), which says more about the neighbour than about the spawn.
  const fast = ['spawn_true_ms', 'userns_spawn_true_ms', 'helper_raw_true_ms', 'unshare_true_ms'];
  const groups = [fast, Object.keys(variants).filter((name) => !fast.includes(name))];
  for (const group of groups) {
    const active = group
      .map((name) => [name, variants[name]] as const)
      .filter((e): e is readonly [string, () => Promise<unknown>] => e[1] !== null && e[1] !== undefined);
    for (const [name, fn] of active) {
      samples[name] = [];
      await fn(); // warm-up (page cache, JIT)
    }
    // The order rotates every round, so that no variant always runs right after the same one.
    for (let round = 0; round < ROUNDS; round++) {
      for (let k = 0; k < active.length; k++) {
        const [name, fn] = active[(round + k) % active.length]!;
        samples[name]!.push(await time(fn));
      }
    }
  }
  const out: Record<string, number | null> = {};
  for (const name of Object.keys(variants)) out[name] = samples[name] ? median(samples[name]!) : null;
  out.userns_spawn_rootless_true_ms = await rootlessMedian(ROUNDS);
  const ratio = (a: string, b: string) =>
    out[a] != null && out[b] != null ? Math.round((out[a]! / out[b]!) * 100) / 100 : null;
  out.userns_spawn_vs_unshare_ratio = ratio('userns_spawn_true_ms', 'unshare_true_ms');
  out.cli_run_vs_node_start_ratio = ratio('cli_run_true_ms', 'node_start_ms');
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(JSON.stringify(await benchSpawn(), null, 2));
}
