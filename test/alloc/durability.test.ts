// The registry's durability rule (alloc/registry.ts #transaction): every allocation's commit
// fsyncs the write-ahead log; a release's commit does not (its sync rides on the next one).
// Checked in the system calls a real process makes, traced with strace.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Registry } from '../../src/alloc/registry.js';
import { findProgram } from '../../src/system/exec.js';

const base = mkdtempSync(join(tmpdir(), 'userns-durability-'));
after(() => rmSync(base, { recursive: true, force: true }));
const worker = fileURLToPath(new URL('./durability-worker.js', import.meta.url));
const strace = findProgram('strace');

test('allocations are fsynced at commit, releases are not, and the next allocation is again', {
  skip:
    strace === undefined ? 'machine: strace is not installed (scripts/install-test-deps installs it)' : false,
  timeout: 60_000,
}, () => {
  const dir = join(base, 'alloc');
  const out = spawnSync(
    strace!,
    [
      '-f',
      '-y',
      '-qq',
      '-e',
      'trace=fsync,fdatasync',
      '-o',
      join(base, 'trace'),
      process.execPath,
      worker,
      dir,
      base,
    ],
    { encoding: 'utf8', timeout: 50_000 },
  );
  assert.equal(out.status, 0, out.stderr);
  const trace = spawnSync('cat', [join(base, 'trace')], { encoding: 'utf8' }).stdout;
  // Split the trace at the marker files' fsyncs: steps[name] = syncs after marker `name`.
  const steps = new Map<string, string[]>();
  let current = 'open';
  steps.set(current, []);
  for (const line of trace.split('\n')) {
    const m = /(?:fsync|fdatasync)\(\d+<([^>]*)>\)/.exec(line);
    if (m === null) continue;
    const path = m[1]!;
    if (path.startsWith(`${base}/`) && path !== dir && !path.startsWith(`${dir}/`)) {
      current = path.slice(base.length + 1);
      steps.set(current, []);
    } else if (path.startsWith(`${dir}/`)) steps.get(current)!.push(path.slice(dir.length + 1));
  }
  assert.deepEqual([...steps.keys()], ['open', 'allocate', 'release', 'gc', 'allocate-again', 'end'], trace);
  assert.ok(steps.get('allocate')!.includes('registry.db-wal'), `allocate synced ${steps.get('allocate')}`);
  assert.deepEqual(steps.get('release'), [], 'a release commits without a sync');
  assert.deepEqual(steps.get('gc'), [], 'gc (a release) commits without a sync');
  assert.ok(
    steps.get('allocate-again')!.includes('registry.db-wal'),
    `the allocation after a release syncs again: ${steps.get('allocate-again')}`,
  );
});

test('a release whose sync was deferred survives its process being killed', { timeout: 30_000 }, async () => {
  const dir = join(base, 'killed', 'alloc');
  const out = spawnSync(process.execPath, [worker, dir, base, 'kill-after-release'], {
    encoding: 'utf8',
    timeout: 25_000,
  });
  assert.equal(out.signal, 'SIGKILL', out.stderr);
  const r = new Registry(dir, { systemTaken: null });
  try {
    assert.deepEqual(
      (await r.list()).map((a) => [a.id, a.name]),
      [[out.stdout.trim(), 'kept']],
    );
    assert.deepEqual((await r.verify()).problems, []);
  } finally {
    r.close();
  }
});
