/** `userns create --userns auto:size=N`: the namespace owns a registry allocation until rm or gc. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { listAllocations } from '../../src/alloc/index.js';
import {
  createNamespace,
  execInNamespace,
  gcAllocations,
  removeNamespace,
} from '../../src/namespaces/index.js';
import { isolateHostFiles } from '../fixtures/host-files.js';

// Root's allocation pool must not depend on the host's /etc/subuid (a `containers` line).
isolateHostFiles();

const isRoot = process.geteuid?.() === 0;
const root = mkdtempSync(join(tmpdir(), 'userns-named-alloc-'));
after(async () => {
  // Whatever failed, no keeper is left running.
  for (const name of ['alloc-a', 'alloc-b'])
    await removeNamespace(name, { root, force: true }).catch(() => {});
  rmSync(root, { recursive: true, force: true });
});

describe('named namespaces with an allocated range', { skip: isRoot ? false : 'needs root' }, () => {
  test('create allocates for the namespace; exec sees the range; rm releases it', async () => {
    const a = await createNamespace('alloc-a', { root, userns: 'auto:size=65536' });
    const b = await createNamespace('alloc-b', { root, userns: 'auto:size=65536' });
    try {
      const live = await listAllocations({ root });
      assert.deepEqual(live.map((x) => x.namespace).sort(), ['alloc-a', 'alloc-b']);
      assert.equal(a.allocation, live.find((x) => x.namespace === 'alloc-a')!.id);
      assert.notEqual(a.uidMap[0]![1], b.uidMap[0]![1]);
      const r = await execInNamespace('alloc-a', ['cat', '/proc/self/uid_map'], { root });
      assert.equal(r.stdout.trim().split(/\s+/).join(' '), `0 ${a.uidMap[0]![1]} 65536`);
      assert.equal(a.options.userns, 'auto:size=65536');
    } finally {
      await removeNamespace('alloc-a', { root });
    }
    assert.deepEqual(
      (await listAllocations({ root })).map((x) => x.namespace),
      ['alloc-b'],
    );
    // A keeper that dies leaves its allocation to gc.
    process.kill(b.keeperPid!, 'SIGKILL');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const released = await gcAllocations({ root });
    assert.deepEqual(
      released.map((x) => x.namespace),
      ['alloc-b'],
    );
    assert.deepEqual(await listAllocations({ root }), []);
    await removeNamespace('alloc-b', { root });
  });
});
