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
 *   unshare_map_auto_rootless_true_ms  unshare --map-auto --map-root-user /bin/true as the same user,
 *                                  spawned from the same Node process, interleaved with ours
 *   cli_run_true_ms                node bin/userns run -- true (as a user types it)
 *   cli_map_split_ms               node bin/userns map split --parent self 0:0:100
 *   node_start_ms                  node -e 0
 *   node_spawn_true_ms             node -e "spawn('/bin/true')": the floor of any Node CLI that
 *                                  starts a process (loads child_process, forks, waits)
 *   (these four Node start-ups run without NODE_OPTIONS and NODE_EXTRA_CA_CERTS: NODE_START_ENV)
 *   podman_unshare_true_ms         podman unshare /bin/true
 *
 * The targets (issue 18) are printed by bench/run.ts with each ratio.
 */
import { spawn as spawnChild, spawnSync } from 'node:child_process';
import { closeSync, writeFileSync } from 'node:fs';
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

/**
 * The environment of the Node start-ups compared with each other (node -e 0, the floor, the
 * CLI): the bench's own without NODE_OPTIONS and NODE_EXTRA_CA_CERTS. With the latter set, every
 * Node process reads and parses that CA bundle while it starts: 40 ms of a 107 ms `node -e 0` on
 * the development machine, whose environment sets it. That cost is Node's, the same in every
 * variant, and it would hide the CLI's own cost in the ratios (1.39 with it, 1.63 without it,
 * for the same build).
 */
const NODE_START_ENV: NodeJS.ProcessEnv = (() => {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  delete env.NODE_EXTRA_CA_CERTS;
  return env;
})();

function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawnChild(cmd, args, { stdio: 'ignore', env });
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

/**
 * Runs N spawns as a throwaway user (rootless path through newuidmap), interleaved with N runs of
 * `unshare --map-auto --map-root-user /bin/true` (util-linux, also newuidmap) from the same
 * process; their medians in ms. The user and its /etc/subuid lines are made under the test
 * suite's guard of the account files (scripts/test-etc-guard.mjs: lock, backup, restore).
 */
async function rootlessMedians(rounds: number): Promise<{ userns: number; unshare: number | null } | null> {
  if (process.geteuid?.() !== 0) return null;
  // USERNS_BENCH_ROOTLESS=0: skip the part that creates a user (e.g. without the suite's lock).
  if (process.env.USERNS_BENCH_ROOTLESS === '0') return null;
  const guard = (await import(new URL('../../scripts/test-etc-guard.mjs', import.meta.url).href)) as {
    acquireLock(): number;
    backup(): unknown;
    restoreAndClear(): unknown;
  };
  const lockFd = guard.acquireLock();
  guard.backup();
  try {
    return await rootlessMediansGuarded(rounds);
  } finally {
    guard.restoreAndClear();
    closeSync(lockFd);
  }
}

async function rootlessMediansGuarded(
  rounds: number,
): Promise<{ userns: number; unshare: number | null } | null> {
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
      import { spawn as spawnChild } from 'node:child_process';
      const unshare = () => new Promise((resolve, reject) => {
        const c = spawnChild('unshare', ['--map-auto', '--map-root-user', '/bin/true'], { stdio: 'ignore' });
        c.on('error', reject);
        c.on('close', (code) => (code === 0 ? resolve() : reject(new Error('unshare: exit ' + code))));
      });
      const ours = () => spawn('/bin/true', [], { stdio: 'ignore' });
      let withUnshare = true;
      await ours(); // warm-up
      try { await unshare(); } catch { withUnshare = false; }
      const times = { ours: [], unshare: [] };
      for (let i = 0; i < ${rounds}; i++) {
        const order = i % 2 ? ['unshare', 'ours'] : ['ours', 'unshare'];
        for (const name of order) {
          if (name === 'unshare' && !withUnshare) continue;
          const t = performance.now();
          await (name === 'ours' ? ours() : unshare());
          times[name].push(performance.now() - t);
        }
      }
      const median = (xs) => { xs.sort((a, b) => a - b); return xs.length ? xs[xs.length >> 1] : null; };
      process.stdout.write(JSON.stringify({ userns: median(times.ours), unshare: median(times.unshare) }));`;
    const r = await fixture.runAs(user, [process.execPath, '--input-type=module', '-e', script]);
    if (r.code !== 0) {
      process.stderr.write(`bench: rootless spawn failed: ${r.stderr}\n`);
      return null;
    }
    const m = JSON.parse(r.stdout) as { userns: number; unshare: number | null };
    const round = (x: number) => Math.round(x * 1000) / 1000;
    return { userns: round(m.userns), unshare: m.unshare === null ? null : round(m.unshare) };
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
    cli_run_true_ms: isRoot ? () => exec(process.execPath, [BIN, 'run', '--', 'true'], NODE_START_ENV) : null,
    cli_map_split_ms: () =>
      exec(process.execPath, [BIN, 'map', 'split', '--parent', 'self', '0:0:100'], NODE_START_ENV),
    node_start_ms: () => exec(process.execPath, ['-e', '0'], NODE_START_ENV),
    node_spawn_true_ms: () =>
      exec(
        process.execPath,
        [
          '-e',
          "require('node:child_process').spawn('/bin/true', { stdio: 'inherit' }).on('close', (c) => { process.exitCode = c; })",
        ],
        NODE_START_ENV,
      ),
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
  const rootless = await rootlessMedians(ROUNDS);
  out.userns_spawn_rootless_true_ms = rootless?.userns ?? null;
  out.unshare_map_auto_rootless_true_ms = rootless?.unshare ?? null;
  const ratio = (a: string, b: string) =>
    out[a] != null && out[b] != null ? Math.round((out[a]! / out[b]!) * 100) / 100 : null;
  out.userns_spawn_vs_unshare_ratio = ratio('userns_spawn_true_ms', 'unshare_true_ms');
  out.cli_run_vs_node_start_ratio = ratio('cli_run_true_ms', 'node_start_ms');
  out.cli_map_split_vs_node_start_ratio = ratio('cli_map_split_ms', 'node_start_ms');
  out.node_spawn_true_vs_node_start_ratio = ratio('node_spawn_true_ms', 'node_start_ms');
  out.userns_spawn_rootless_vs_unshare_map_auto_ratio = ratio(
    'userns_spawn_rootless_true_ms',
    'unshare_map_auto_rootless_true_ms',
  );
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(JSON.stringify(await benchSpawn(), null, 2));
}
