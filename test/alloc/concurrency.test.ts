import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Registry } from '../../src/alloc/registry.js';
import { type Entry, replay } from './replay.js';

const worker = fileURLToPath(new URL('./alloc-worker.js', import.meta.url));
const base = mkdtempSync(join(tmpdir(), 'userns-alloc-conc-'));
const shm = existsSync('/dev/shm') ? mkdtempSync('/dev/shm/userns-alloc-conc-') : base;
after(() => {
  rmSync(base, { recursive: true, force: true });
  rmSync(shm, { recursive: true, force: true });
});

function start(args: string[]): {
  child: ChildProcess;
  output: Promise<string>;
  exit: Promise<number | null>;
} {
  const child = spawn(process.execPath, [worker, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    out += d;
  });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: exit.then(() => out), exit };
}

describe('registry across processes', () => {
  // 8 Node processes × 200 operations on one registry: ~10-25 s here; far longer under load.
  test('8 processes × 200 allocate/release in parallel: zero overlaps, consistent registry', {
    timeout: 120_000,
  }, async () => {
    const dir = join(base, 'parallel', 'alloc');
    const startAt = String(Date.now() + 700);
    const workers = Array.from({ length: 8 }, (_, i) => start(['cycle', dir, '200', String(i + 1), startAt]));
    const outputs = await Promise.all(workers.map((w) => w.output));
    assert.deepEqual(await Promise.all(workers.map((w) => w.exit)), Array(8).fill(0));
    const entries: Entry[] = [];
    const stillLive = new Set<string>();
    let exhausted = 0;
    for (const text of outputs) {
      for (const line of text.trim().split('\n')) {
        const e = JSON.parse(line);
        if (e.op === 'end') {
          for (const id of e.live) stillLive.add(id);
          exhausted += e.exhausted;
        } else entries.push(e);
      }
    }
    const { live, maxLive, ordered } = replay(entries);
    assert.deepEqual(live, stillLive);
    const check = await new Registry(dir, { systemTaken: null }).verify();
    assert.deepEqual(check.problems, []);
    assert.deepEqual(new Set(check.allocations.map((a) => a.id)), stillLive);
    assert.ok(entries.length >= 1600 - exhausted, `${entries.length} operations`);
    assert.ok(maxLive > 8, `allocations were held concurrently (max ${maxLive})`);
    let switches = 0;
    for (let i = 1; i < ordered.length; i++) if (ordered[i]!.w !== ordered[i - 1]!.w) switches++;
    assert.ok(switches > 20, `the processes interleaved (${switches} switches)`);
  });

  // 100 worker processes killed at random moments: ~35-45 s here under load.
  test('SIGKILL at random moments (100 kills, mid-transaction included) leaves the registry consistent and usable', {
    timeout: 120_000,
  }, async () => {
    // On tmpfs when there is one: a kill loses nothing of the page cache, so what this checks
    // does not depend on fsync, which only makes each round slower on a disk.
    const dir = join(existsSync('/dev/shm') ? shm : base, 'crash', 'alloc');
    const probe = new Registry(dir, { systemTaken: null, releaseLog: 8 });
    const pools = {
      uid: { ranges: [{ start: 100_000, count: 3_000_000 }], source: 'test' },
      gid: { ranges: [{ start: 1_000_000, count: 2_500_000 }], source: 'test' },
    };
    let kills = 0;
    for (let round = 0; round < 25; round++) {
      const workers = Array.from({ length: 4 }, () => start(['loop', dir]));
      await Promise.all(
        workers.map(
          (w) =>
            new Promise<void>((resolve) => {
              let seen = '';
              w.child.stdout!.on('data', (d: string) => {
                seen += d;
                if (seen.includes('ready')) resolve();
              });
            }),
        ),
      );
      // Each dies at its own random moment, while the others keep writing.
      await Promise.all(
        workers.map(async (w) => {
          await sleep(Math.floor(Math.random() * 60));
          w.child.kill('SIGKILL');
          await w.exit;
          kills++;
        }),
      );
      const fresh = new Registry(dir, { systemTaken: null });
      const { problems, allocations } = await fresh.verify();
      assert.deepEqual(problems, [], `round ${round}`);
      // Usable: allocate and release, from a long-lived instance and a fresh one.
      const x = await probe.allocate({ size: 1000, policy: { kind: 'first-fit' }, pools });
      await fresh.release(x.id);
      // The killed processes' allocations stay until released (they are not bound to a process).
      assert.ok(allocations.length <= 4 * 7 * (round + 1));
      fresh.close();
    }
    assert.equal(kills, 100);
    assert.deepEqual((await new Registry(dir, { systemTaken: null }).verify()).problems, []);
  });
});
