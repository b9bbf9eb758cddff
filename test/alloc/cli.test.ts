import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { runCli } from '../cli/run-cli.js';

const base = mkdtempSync(join(tmpdir(), 'userns-alloc-cli-'));
after(() => rmSync(base, { recursive: true, force: true }));

describe('userns alloc (CLI)', () => {
  test('allocate, list, release, gc with --json', async () => {
    const root = join(base, 'state');
    const pool = ['--pool', '100000:200000', '--root', root];
    const a = await runCli(['alloc', '--name', 'web', '--size', '65536', ...pool, '--json']);
    assert.equal(a.code, 0, a.stderr);
    const web = JSON.parse(a.stdout);
    assert.equal(web.ok, true);
    assert.equal(web.allocation.name, 'web');
    assert.deepEqual(web.allocation.uidMap, [[0, 100000, 65536]]);

    const b = await runCli(['alloc', '--policy', 'slot', '--namespace', 'gone-ns', ...pool, '--json']);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(JSON.parse(b.stdout).allocation.uids[0].start, 196608);

    const full = await runCli(['alloc', '--size', '100000', ...pool, '--json']);
    assert.equal(full.code, 1);
    const err = JSON.parse(full.stdout);
    assert.equal(err.code, 'ALLOC_EXHAUSTED');
    assert.match(
      err.message,
      /asked for 100000 uids; the largest free block in pool \[100000-299999\] is 37856 \(68928 free in total\)/,
    );

    const human = await runCli(['alloc', '--size', '100000', ...pool]);
    assert.equal(human.code, 1);
    assert.match(human.stderr, /^userns: cannot allocate: asked for 100000 uids/);
    assert.match(human.stderr, /hint: /);

    const list = await runCli(['alloc', 'list', ...pool, '--json']);
    assert.equal(list.code, 0, `stdout: ${list.stdout}\nstderr: ${list.stderr}`);
    const listed = JSON.parse(list.stdout);
    assert.deepEqual(
      listed.allocations.map((x: { name: string }) => x.name),
      ['web', JSON.parse(b.stdout).allocation.id],
    );
    assert.equal(listed.usage.uid.free + listed.usage.uid.used, listed.usage.uid.poolSize);
    assert.equal(listed.usage.uid.used, 65536 * 2);

    const table = await runCli(['alloc', 'list', ...pool]);
    assert.match(table.stdout, /^ID +NAME +OWNER +UIDS/);
    assert.match(table.stdout, /uid pool 100000-299999 \(--pool\): 68928 of 200000 free/);

    const gc = await runCli(['alloc', 'gc', '--root', root, '--json']);
    assert.equal(gc.code, 0, gc.stderr);
    assert.deepEqual(
      JSON.parse(gc.stdout).released.map((x: { namespace: string }) => x.namespace),
      ['gone-ns'],
    );

    const rel = await runCli(['alloc', 'release', 'web', '--root', root, '--json']);
    assert.equal(JSON.parse(rel.stdout).released.name, 'web');
    const again = await runCli(['alloc', 'release', 'web', '--root', root, '--json']);
    assert.equal(again.code, 1);
    assert.equal(JSON.parse(again.stdout).code, 'ALLOC_NOT_FOUND');
  });

  test('usage errors exit 2; --help everywhere', async () => {
    for (const args of [
      ['alloc', '--help'],
      ['alloc', 'list', '--help'],
      ['alloc', 'release', '--help'],
      ['alloc', 'gc', '-h'],
    ]) {
      const r = await runCli(args);
      assert.equal(r.code, 0);
      assert.match(r.stdout, /^Usage: userns alloc/);
    }
    for (const args of [
      ['alloc', '--size', '10', '--for-rootfs', '/'],
      ['alloc', '--policy', 'slot:1000'],
      ['alloc', '--pool', 'abc'],
      ['alloc', 'release'],
      ['alloc', 'frobnicate'],
      ['alloc', '--bogus'],
    ]) {
      const r = await runCli([...args, '--root', join(base, 'u')]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    }
    const bad = await runCli([
      'alloc',
      '--name',
      'a/b',
      '--pool',
      '100000:1000',
      '--size',
      '10',
      '--root',
      join(base, 'u'),
      '--json',
    ]);
    assert.equal(bad.code, 1);
    assert.equal(JSON.parse(bad.stdout).code, 'INVALID_NAME');
  });
});
