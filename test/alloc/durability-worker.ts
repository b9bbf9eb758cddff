// Child process of durability.test.ts, run under strace: allocates and releases in a registry
// and fsyncs a marker file between the steps, so the trace shows which step synced what.
import { closeSync, fsyncSync, openSync } from 'node:fs';
import { join } from 'node:path';
import type { Pools } from '../../src/alloc/pool.js';
import { Registry } from '../../src/alloc/registry.js';

const [dir, marks, mode] = process.argv.slice(2) as [string, string, string | undefined];
const pools: Pools = {
  uid: { ranges: [{ start: 100_000, count: 1_000_000 }], source: 'test' },
  gid: { ranges: [{ start: 200_000, count: 1_000_000 }], source: 'test' },
};
const mark = (name: string) => {
  const fd = openSync(join(marks, name), 'w');
  fsyncSync(fd);
  closeSync(fd);
};
const r = new Registry(dir, { systemTaken: null });
if (mode === 'kill-after-release') {
  // A release, then SIGKILL with the database still open: the release must be there afterwards.
  const a = await r.allocate({ size: 1000, policy: { kind: 'first-fit' }, pools, name: 'kept' });
  const b = await r.allocate({ size: 1000, policy: { kind: 'first-fit' }, pools, name: 'released' });
  await r.release(b.id);
  process.stdout.write(`${a.id}\n`, () => process.kill(process.pid, 'SIGKILL'));
  await new Promise(() => {});
}
const first = await r.allocate({ size: 1000, policy: { kind: 'first-fit' }, pools });
mark('allocate');
// Held by a named namespace that gc below is told is gone: gc releases it.
await r.allocate({ size: 1000, policy: { kind: 'first-fit' }, pools, namespace: 'gone' });
mark('release');
await r.release(first.id);
mark('gc');
const collected = await r.collectGarbage(async () => false);
if (collected.released.length !== 1) throw new Error(`gc released ${collected.released.length}, not 1`);
mark('allocate-again');
await r.allocate({ size: 1000, policy: { kind: 'first-fit' }, pools });
mark('end');
r.close();
