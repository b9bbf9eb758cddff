/**
 * A process that allocates and releases in a loop (for the concurrency and crash tests).
 *   cycle DIR N SEED   N allocate/release rounds; prints its log (one JSON per line) at the end
 *   loop DIR           forever, with a short release log; prints "ready" after its first operation
 *   once DIR N SEED    N allocations, kept; prints each as JSON
 */

import type { Policy } from '../../src/alloc/policy.js';
import type { Pools } from '../../src/alloc/pool.js';
import { Registry } from '../../src/alloc/registry.js';

const [mode, dir, count, seedText, startAt] = process.argv.slice(2);
const pools: Pools = {
  uid: { ranges: [{ start: 100_000, count: 3_000_000 }], source: 'test' },
  gid: { ranges: [{ start: 1_000_000, count: 2_500_000 }], source: 'test' },
};
let seed = Number(seedText ?? process.pid) || 1;
function rand(n: number): number {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed % n;
}
const policies: Policy[] = [
  { kind: 'first-fit' },
  { kind: 'slot', slotSize: 65536 },
  { kind: 'slot', slotSize: 131072 },
];

const registry = new Registry(dir!, {
  systemTaken: null,
  releaseLog: mode === 'loop' ? 8 : 64,
  lockTimeoutMs: 60_000,
});
const live: string[] = [];
const log: string[] = [];
let exhausted = 0;

async function step(): Promise<void> {
  // loop (the crash test): small first-fit blocks, so that what killed workers leave behind
  // never fills the pool.
  const policy = mode === 'loop' ? policies[0]! : policies[rand(policies.length)]!;
  try {
    const a = await registry.allocate({ size: 1 + rand(mode === 'loop' ? 1000 : 100_000), policy, pools });
    live.push(a.id);
    log.push(JSON.stringify({ op: 'add', w: seedText, id: a.id, seq: a.seq, uids: a.uids, gids: a.gids }));
  } catch (error) {
    if ((error as { code?: string }).code !== 'ALLOC_EXHAUSTED') throw error;
    exhausted++;
  }
  while (live.length > 6 || (live.length > 0 && rand(3) === 0)) {
    const [id] = live.splice(rand(live.length), 1);
    const r = await registry.release(id!);
    log.push(JSON.stringify({ op: 'del', w: seedText, id, seq: r!.seq }));
  }
}

if (mode === 'once') {
  for (let i = 0; i < Number(count); i++) {
    const a = await registry.allocate({ size: 1 + rand(100_000), policy: { kind: 'first-fit' }, pools });
    process.stdout.write(`${JSON.stringify({ id: a.id, seq: a.seq, uids: a.uids, gids: a.gids })}\n`);
  }
} else if (mode === 'cycle') {
  // Start together, so the processes really interleave.
  const wait = Number(startAt ?? 0) - Date.now();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  for (let i = 0; i < Number(count); i++) await step();
  process.stdout.write(`${log.join('\n')}\n${JSON.stringify({ op: 'end', live, exhausted })}\n`);
} else {
  await step();
  process.stdout.write('ready\n');
  // A breath between operations (0-2 ms) so that several of these share the lock fairly (SQLite's
  // busy handler polls; a writer that never pauses would starve the others).
  for (;;) {
    await step();
    await new Promise((resolve) => setTimeout(resolve, rand(3)));
  }
}
