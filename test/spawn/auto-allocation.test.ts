/** `userns: 'auto:size=N'`: each run gets its own range from the registry, released at the end. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { listAllocations } from '../../src/alloc/index.js';
import { parseKernelMap } from '../../src/idmap/formats/kernel.js';
import { planSpawn, run, spawn } from '../../src/spawn/index.js';
import { isolateHostFiles } from '../fixtures/host-files.js';

// Root's allocation pool must not depend on the host's /etc/subuid (a `containers` line).
isolateHostFiles();

const isRoot = process.geteuid?.() === 0;
const root = mkdtempSync(join(tmpdir(), 'userns-auto-'));
after(() => rmSync(root, { recursive: true, force: true }));

describe('spawn with an allocated range', { skip: isRoot ? false : 'needs root' }, () => {
  test('runs alive at the same time get disjoint ranges, in force inside, released at the end', async () => {
    // Each command prints its map, then waits for its stdin to close: all four hold their range at once.
    const children = Array.from({ length: 4 }, () =>
      spawn('sh', ['-c', 'cat /proc/self/uid_map; read x'], {
        userns: 'auto:size=65536',
        stateRoot: root,
        stdio: ['pipe', 'pipe', 'inherit'],
      }),
    );
    // A child whose setup fails (no range left, …) rejects instead of leaving this test waiting
    // for a map it will never print; whatever happens, every child is let go.
    let maps: string[];
    try {
      maps = await Promise.all(
        children.map(
          (child) =>
            new Promise<string>((resolve, reject) => {
              let out = '';
              child.stdout!.on('data', (d: Buffer) => {
                out += d.toString();
                if (out.endsWith('\n')) resolve(out);
              });
              child.then(() => reject(new Error(`ended before printing its map: ${out}`)), reject);
            }),
        ),
      );
    } catch (error) {
      for (const child of children) child.stdin!.end('\n');
      await Promise.allSettled(children);
      throw error;
    }
    assert.equal((await listAllocations({ root })).length, 4);
    const starts = maps.map((text) => {
      const [line] = parseKernelMap(text);
      assert.deepEqual([line!.inside, line!.count], [0, 65536]);
      return line!.outside;
    });
    const sorted = [...starts].sort((a, b) => a - b);
    for (let i = 1; i < sorted.length; i++)
      assert.ok(sorted[i]! >= sorted[i - 1]! + 65536, `overlap: ${sorted}`);
    for (const child of children) child.stdin!.end('\n');
    const results = await Promise.all(children);
    for (const [i, r] of results.entries()) {
      assert.equal(r.exitCode, 0);
      assert.deepEqual(r.uidMap.toJSON(), [[0, starts[i], 65536]]);
    }
    assert.deepEqual(await listAllocations({ root }), []);
  });

  test('a dry run shows the range a run would get and keeps nothing', async () => {
    const plan = await planSpawn('true', [], { userns: 'auto:size=1000', stateRoot: root });
    assert.equal(plan.uidMap.size, 1000);
    assert.deepEqual(await listAllocations({ root }), []);
  });

  test('bad auto options are usage errors', async () => {
    await assert.rejects(run('true', [], { userns: 'auto:bogus=1', stateRoot: root }), { code: 'USAGE' });
  });
});
