/**
 * Runs in a private mount namespace (`userns run --unshare mount -- node full-disk-worker.js MNT`):
 * mounts a 1 MiB tmpfs on MNT, puts a registry there, fills the file system, and reports (one
 * JSON object) what allocate, release, gc, list, the CLI and an atomic state write do then.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { allocate, listAllocations, release } from '../../src/alloc/index.js';
import { collectAllocationGarbage as collectGarbage } from '../../src/namespaces/index.js';
import { writeFileAtomic } from '../../src/state/atomic.js';

const [mnt] = process.argv.slice(2);
const BIN = fileURLToPath(new URL('../../../bin/userns', import.meta.url));
const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'userns-full-disk-test', mnt!]);
if (mounted.status !== 0) {
  process.stdout.write(JSON.stringify({ skip: `mount tmpfs: ${mounted.stderr}` }));
  process.exit(0);
}
const root = join(mnt!, 'root');
const where = { root, registry: { systemTaken: null }, pool: [{ start: 100_000, count: 10_000_000 }] };
const names: string[] = [];
for (let i = 0; i < 4; i++) names.push((await allocate({ ...where, name: `c${i}`, size: 65536 })).name);
await allocate({ ...where, name: 'gone', namespace: 'gone-ns', size: 10 });

// Fill the file system.
const fd = openSync(join(mnt!, 'filler'), 'w');
const chunk = Buffer.alloc(16384, 1);
let filled = 0;
for (;;) {
  try {
    filled += writeSync(fd, chunk);
  } catch {
    break;
  }
}
for (;;) {
  try {
    filled += writeSync(fd, chunk, 0, 1);
  } catch {
    break;
  }
}
closeSync(fd);

const attempt = async (fn: () => Promise<unknown>) => {
  try {
    await fn();
    return { ok: true };
  } catch (error) {
    const e = error as { code?: string; message?: string; hint?: string; data?: { path?: string } };
    return { ok: false, code: e.code, message: e.message, hint: e.hint, path: e.data?.path };
  }
};
const cli = (args: string[]) => {
  const r = spawnSync(process.execPath, [BIN, ...args, '--root', root, '--json'], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
};
const result = {
  filled,
  allocate: await attempt(() => allocate({ ...where, size: 65536 })),
  stateWrite: await attempt(async () => writeFileAtomic(join(root, 'state.json'), 'x'.repeat(100_000))),
  cliAllocate: cli(['alloc', '--pool', '100000:10000000', '--size', '10']),
  release: await attempt(() => release('c0', where)),
  cliRelease: cli(['alloc', 'release', 'c1']),
  gc: await attempt(async () => {
    const r = await collectGarbage(where);
    if (r.released.map((a) => a.name).join() !== 'gone')
      throw new Error(`gc released ${r.released.map((a) => a.name)}`);
  }),
  list: (await listAllocations(where)).map((a) => a.name),
};
process.stdout.write(JSON.stringify(result));
