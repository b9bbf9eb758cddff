import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Registry } from '../../src/alloc/registry.js';
import type { IdRange } from '../../src/idmap/ranges.js';

const worker = fileURLToPath(new URL('./alloc-worker.js', import.meta.url));
const base = mkdtempSync(join(tmpdir(), 'userns-alloc-conc-'));
after(() => rmSync(base, { recursive: true, force: true }));

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

type Entry =
  | { op: 'add'; w: string; id: string; seq: number; uids: IdRange[]; gids: IdRange[] }
  | { op: 'del'; w: string; id: string; seq: number };

function overlaps(a: IdRange[], b: IdRange[]): boolean {
  return a.some((x) => b.some((y) => x.start < y.start + y.count && y.start < x.start + x.count));
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
    // The sequence numbers are a total order of every operation of every process.
    entries.sort((a, b) => a.seq - b.seq);
    assert.deepEqual(
      entries.map((e) => e.seq),
      entries.map((_, i) => i + 1),
      'every operation has a distinct, gap-free sequence number',
    );
    const live = new Map<string, Entry & { op: 'add' }>();
    let maxLive = 0;
    for (const e of entries) {
      if (e.op === 'add') {
        for (const other of live.values()) {
          assert.ok(!overlaps(e.uids, other.uids), `uids of ${e.id} and ${other.id} overlap`);
          assert.ok(!overlaps(e.gids, other.gids), `gids of ${e.id} and ${other.id} overlap`);
        }
        live.set(e.id, e);
        maxLive = Math.max(maxLive, live.size);
      } else assert.ok(live.delete(e.id), `released ${e.id} which was not live`);
    }
    assert.deepEqual(new Set(live.keys()), stillLive);
    const check = await new Registry(dir, { systemTaken: null }).verify();
    assert.deepEqual(check.problems, []);
    assert.deepEqual(new Set(check.allocations.map((a) => a.id)), stillLive);
    assert.ok(entries.length >= 1600 - exhausted, `${entries.length} operations`);
    assert.ok(maxLive > 8, `allocations were held concurrently (max ${maxLive})`);
    let switches = 0;
    for (let i = 1; i < entries.length; i++) if (entries[i]!.w !== entries[i - 1]!.w) switches++;
    assert.ok(switches > 20, `the processes interleaved (${switches} switches)`);
  });

  // Rounds of worker processes killed at random moments: ~10-17 s here.
  test('SIGKILL at random moments (also mid-compaction) leaves the registry consistent and usable', {
    timeout: 120_000,
  }, async () => {
    const dir = join(base, 'crash', 'alloc');
    const probe = new Registry(dir, { systemTaken: null, compactEvery: 8 });
    const pools = {
      uid: { ranges: [{ start: 100_000, count: 3_000_000 }], source: 'test' },
      gid: { ranges: [{ start: 1_000_000, count: 2_500_000 }], source: 'test' },
    };
    for (let round = 0; round < 12; round++) {
      const a = start(['loop', dir]);
      const b = start(['loop', dir]);
      await new Promise<void>((resolve) => {
        let seen = '';
        a.child.stdout!.on('data', (d: string) => {
          seen += d;
          if (seen.includes('ready')) resolve();
        });
      });
      await sleep(5 + Math.floor(Math.random() * 120));
      a.child.kill('SIGKILL');
      await a.exit;
      await sleep(Math.floor(Math.random() * 30));
      b.child.kill('SIGKILL');
      await b.exit;
      const fresh = new Registry(dir, { systemTaken: null });
      const { problems, allocations } = await fresh.verify();
      assert.deepEqual(problems, [], `round ${round}`);
      // Usable: allocate and release, from a long-lived instance and a fresh one.
      const x = await probe.allocate({ size: 1000, policy: { kind: 'first-fit' }, pools });
      await fresh.release(x.id);
      assert.ok(allocations.length >= 0);
      // The killed processes' allocations stay until released (they are not bound to a process).
      for (const stale of allocations) await fresh.release(stale.id);
    }
    assert.deepEqual((await new Registry(dir, { systemTaken: null }).verify()).problems, []);
  });
});
