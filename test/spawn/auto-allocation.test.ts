/**
 * `userns: 'auto:size=N'`: the caller takes a range from the registry (withAutoUserns) and hands
 * spawn() the maps; each run has its own range, released by the caller at the end. spawn() and
 * planSpawn() never allocate, and a preview (dry run) writes nothing.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { listAllocations, withAutoUserns } from '../../src/alloc/index.js';
import { parseKernelMap } from '../../src/idmap/formats/kernel.js';
import { planSpawn, spawn } from '../../src/spawn/index.js';
import { isolateHostFiles } from '../fixtures/host-files.js';

// Root's allocation pool must not depend on the host's /etc/subuid (a `containers` line).
isolateHostFiles();

const isRoot = process.geteuid?.() === 0;
const root = mkdtempSync(join(tmpdir(), 'userns-auto-'));
after(() => rmSync(root, { recursive: true, force: true }));

describe('spawn with an allocated range', { skip: isRoot ? false : 'needs root' }, () => {
  test('runs alive at the same time get disjoint ranges, in force inside, released at the end', async () => {
    const autos = await Promise.all(
      Array.from({ length: 4 }, () => withAutoUserns({ userns: 'auto:size=65536' }, { stateRoot: root })),
    );
    // Each command prints its map, then waits for its stdin to close: all four hold their range at once.
    const children = autos.map((auto) =>
      spawn('sh', ['-c', 'cat /proc/self/uid_map; read x'], {
        ...auto.options,
        stdio: ['pipe', 'pipe', 'inherit'],
      }),
    );
    // A child whose setup fails rejects instead of leaving this test waiting for a map it will
    // never print; whatever happens, every child is let go.
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
      await Promise.all(autos.map((a) => a.release()));
      throw error;
    }
    const live = await listAllocations({ root });
    assert.equal(live.length, 4);
    assert.ok(
      live.every((a) => a.holder?.pid === process.pid),
      'held by this process (gc frees them if it dies)',
    );
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
    await Promise.all(autos.map((a) => a.release()));
    assert.deepEqual(await listAllocations({ root }), []);
  });

  test('spawn() and planSpawn() do not allocate: an auto: mode is a usage error', async () => {
    const options = { userns: 'auto:size=1000' as 'auto', stateRoot: root };
    assert.throws(() => spawn('true', [], options), { code: 'USAGE' });
    await assert.rejects(planSpawn('true', [], options), { code: 'USAGE' });
    assert.deepEqual(await listAllocations({ root }), []);
  });

  test('a preview shows the range a run would get and writes nothing', async () => {
    const fresh = join(root, 'fresh');
    const auto = await withAutoUserns({ userns: 'auto:size=1000' }, { stateRoot: fresh, preview: true });
    const plan = await planSpawn('true', [], auto.options);
    assert.equal(plan.uidMap.size, 1000);
    assert.equal(existsSync(fresh), false, 'no state root made by a preview');
    // With a registry: the same range a run gets next, and nothing recorded.
    const made = await withAutoUserns({ userns: 'auto:size=1000' }, { stateRoot: root });
    await made.release();
    const before = readdirSync(join(root, 'alloc')).sort();
    const preview = await withAutoUserns({ userns: 'auto:size=1000' }, { stateRoot: root, preview: true });
    assert.deepEqual(preview.allocation!.uidMap, made.allocation!.uidMap);
    assert.deepEqual(await listAllocations({ root }), []);
    assert.deepEqual(readdirSync(join(root, 'alloc')).sort(), before);
  });

  test('bad auto options are usage errors', async () => {
    await assert.rejects(withAutoUserns({ userns: 'auto:bogus=1' }, { stateRoot: root }), { code: 'USAGE' });
  });
});
