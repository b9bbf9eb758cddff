/**
 * The attack of issue 15, as a test: allocations from processes inside and outside PID (and
 * mount) namespaces at once, and gc run from inside a PID namespace. With the old registry (a
 * lock file naming its holder by PID) each side broke the other's lock: lost allocations, shared
 * uids, a corrupt registry, and gc releasing a live allocation.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { allocate, listAllocations } from '../../src/alloc/index.js';
import { Registry } from '../../src/alloc/registry.js';
import { createNamespace, removeNamespace } from '../../src/namespaces/index.js';
import { type Entry, replay } from './replay.js';

const BIN = fileURLToPath(new URL('../../../bin/userns', import.meta.url));
const worker = fileURLToPath(new URL('./alloc-worker.js', import.meta.url));
const base = mkdtempSync(join(tmpdir(), 'userns-alloc-pidns-'));
after(() => rmSync(base, { recursive: true, force: true }));
/** Run inside new PID and mount namespaces (a fresh /proc: PIDs of the host mean nothing there). */
const INSIDE = [BIN, 'run', '--unshare', 'pid,mount', '--'];

function run(argv: string[]): {
  child: ChildProcess;
  done: Promise<{ code: number | null; out: string; err: string }>;
} {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  return { child, done: new Promise((resolve) => child.on('close', (code) => resolve({ code, out, err }))) };
}

describe('the registry across PID and mount namespaces', { timeout: 300_000 }, () => {
  // Dozens of processes in several namespaces: ~15 s on a quiet machine, over 45 s at load 14.
  test('CLI and API allocations from inside and outside PID namespaces at once: 0 overlaps, 0 lost, 0 corrupt', {
    timeout: 180_000,
  }, async () => {
    const root = join(base, 'concurrent');
    const dir = join(root, 'alloc');
    const startAt = String(Date.now() + 2500);
    const jobs: ReturnType<typeof run>[] = [];
    // API workers: two outside (w 1, 3), two inside (w 2, 4), each 150 allocate/release rounds.
    for (let i = 0; i < 4; i++) {
      const argv = [process.execPath, worker, 'cycle', dir, '150', String(i + 1), startAt];
      jobs.push(run(i % 2 === 0 ? argv : [...INSIDE, ...argv]));
    }
    // CLI loops: two outside, two inside, 6 kept allocations each.
    const cliLoops: ReturnType<typeof run>[] = [];
    for (let i = 0; i < 4; i++) {
      const script = `for n in 1 2 3 4 5 6; do "$0" "$1" alloc --name cli${i}-$n --size 65536 --pool 100000:50000000 --root "$2" --json || exit 1; done`;
      const argv = ['/bin/sh', '-c', script, process.execPath, BIN, root];
      cliLoops.push(run(i % 2 === 0 ? argv : [...INSIDE, ...argv]));
    }
    const results = await Promise.all(jobs.map((j) => j.done));
    const cliResults = await Promise.all(cliLoops.map((j) => j.done));
    for (const r of [...results, ...cliResults]) assert.equal(r.code, 0, r.err);

    // 0 lost: every CLI allocation that exited 0 is in the registry.
    const final = await listAllocations({ root });
    const cliIds = cliResults.flatMap((r) =>
      r.out
        .trim()
        .split(/\n(?=\{)/)
        .map((t) => JSON.parse(t).allocation.id as string),
    );
    assert.equal(cliIds.length, 24);
    const finalIds = new Set(final.map((a) => a.id));
    for (const id of cliIds) assert.ok(finalIds.has(id), `CLI allocation ${id} was lost`);

    // 0 overlaps at any time: replay every operation in the registry's order.
    const entries: Entry[] = [];
    const workerLive = new Set<string>();
    for (const r of results) {
      for (const line of r.out.trim().split('\n')) {
        const e = JSON.parse(line);
        if (e.op === 'end') for (const id of e.live) workerLive.add(id);
        else entries.push(e);
      }
    }
    for (const a of final)
      if (cliIds.includes(a.id))
        entries.push({ op: 'add', w: 'cli', id: a.id, seq: a.seq, uids: a.uids, gids: a.gids });
    const { live, ordered } = replay(entries);
    assert.deepEqual(live, new Set([...workerLive, ...cliIds]));
    // 0 corrupt.
    assert.deepEqual((await new Registry(dir, { systemTaken: null }).verify()).problems, []);
    const side = (e: Entry) => (e.w === 'cli' ? 'cli' : Number(e.w) % 2 === 0 ? 'inside' : 'outside');
    const switches = ordered.filter((e, i) => i > 0 && side(e) !== side(ordered[i - 1]!)).length;
    // The race must really have happened for the counts above to mean anything; how finely the
    // sides interleave depends on the machine's load (15 seen at load 10, 40+ when quiet).
    assert.ok(switches >= 5, `inside and outside interleaved (${switches} switches)`);
  });

  test('gc from inside a PID namespace releases nothing alive, and nothing it cannot check', async () => {
    const root = join(base, 'gc');
    const common = { root, registry: { systemTaken: null }, pool: [{ start: 100_000, count: 10_000_000 }] };
    // A live process outside holds one (as `userns run --userns auto` would).
    const holder = run([
      process.execPath,
      '--input-type=module',
      '-e',
      `const { allocateForRun } = await import(${JSON.stringify(new URL('../../src/alloc/index.js', import.meta.url).href)});
       const a = await allocateForRun({ root: ${JSON.stringify(root)}, registry: { systemTaken: null }, pool: [{ start: 100000, count: 10000000 }], name: 'held', size: 10 });
       process.stdout.write(a.id + '\\n');
       setInterval(() => {}, 1000);`,
    ]);
    await new Promise<void>((resolve) => holder.child.stdout!.once('data', () => resolve()));
    // A process that has exited holds another.
    const dead = run([
      process.execPath,
      '--input-type=module',
      '-e',
      `const { allocateForRun } = await import(${JSON.stringify(new URL('../../src/alloc/index.js', import.meta.url).href)});
       await allocateForRun({ root: ${JSON.stringify(root)}, registry: { systemTaken: null }, pool: [{ start: 100000, count: 10000000 }], name: 'dead', size: 10 });`,
    ]);
    assert.equal((await dead.done).code, 0);
    // A live named namespace (its keeper outside) owns a third.
    await createNamespace('alive-ns', { root, uidMap: '0:500000000:1000', namespaces: ['pid', 'mount'] });
    await allocate({ ...common, name: 'of-ns', namespace: 'alive-ns', size: 10 });
    try {
      // Inside new PID + mount namespaces: /proc shows only the new namespace.
      const inside = run([...INSIDE, process.execPath, BIN, 'alloc', 'gc', '--root', root, '--json']);
      const r = await inside.done;
      assert.equal(r.code, 0, r.err);
      const report = JSON.parse(r.out);
      assert.deepEqual(report.released, [], 'nothing released from inside');
      assert.deepEqual(report.kept.map((k: { allocation: { name: string } }) => k.allocation.name).sort(), [
        'dead',
        'held',
        'of-ns',
      ]);
      for (const k of report.kept) assert.match(k.reason, /cannot check from here/);
      // Inside a PID namespace that still sees the host's /proc (util-linux unshare without a
      // mount namespace): PIDs there are the host's, so gc can judge: it releases the dead one.
      const hostProc = await run([
        'unshare',
        '--pid',
        '--fork',
        '--',
        process.execPath,
        BIN,
        'alloc',
        'gc',
        '--root',
        root,
        '--json',
      ]).done;
      assert.equal(hostProc.code, 0, hostProc.err);
      assert.deepEqual(
        JSON.parse(hostProc.out).released.map((a: { name: string }) => a.name),
        ['dead'],
      );
      assert.deepEqual(JSON.parse(hostProc.out).kept, []);
      const names = (await listAllocations({ root })).map((a) => a.name).sort();
      assert.deepEqual(names, ['held', 'of-ns']);
    } finally {
      holder.child.kill('SIGKILL');
      await holder.done;
      await removeNamespace('alive-ns', { root });
    }
    // Now both owners are gone: gc here releases them.
    const released = (await import('../../src/namespaces/index.js')).gcAllocations({ root });
    assert.deepEqual((await released).map((a) => a.name).sort(), ['held', 'of-ns']);
  });
});
