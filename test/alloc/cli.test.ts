import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ownMap } from '../../src/system/self.js';
import { runCli } from '../cli/run-cli.js';

const base = mkdtempSync(join(tmpdir(), 'userns-alloc-cli-'));
after(() => rmSync(base, { recursive: true, force: true }));

/** Own subuid/subgid/passwd/group/config files: nothing of the host's is read. */
function etc(
  name: string,
  files: { subuid?: string; subgid?: string; passwd?: string; group?: string } = {},
) {
  const dir = join(base, name);
  mkdirSync(dir, { recursive: true });
  const write = (file: string, text: string) => {
    writeFileSync(join(dir, file), text);
    return join(dir, file);
  };
  return [
    '--subuid-file',
    write('subuid', files.subuid ?? ''),
    '--subgid-file',
    write('subgid', files.subgid ?? ''),
    '--passwd-file',
    write('passwd', files.passwd ?? 'root:x:0:0:root:/root:/bin/sh\n'),
    '--group-file',
    write('group', files.group ?? 'root:x:0:\n'),
    '--config',
    join(dir, 'no-alloc.json'),
  ];
}

describe('userns alloc (CLI)', () => {
  // About 20 CLI runs (a Node start each): ~10-20 s here, several times that on a loaded machine.
  test('allocate, list, release, gc with --json', { timeout: 120_000 }, async () => {
    const root = join(base, 'state');
    const pool = ['--pool', '100000:200000', '--root', root, ...etc('plain')];
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

  test("root's default pool avoids every user's subordinate range, and says so", async () => {
    const root = join(base, 'subids');
    // bob's range lies inside the systemd container range (0x80000-0x6FFFFFFF) that is root's pool.
    const files = etc('subids', {
      subuid: 'alice:100000:65536\nbob:524288:65536\n',
      subgid: 'bob:524288:65536\ncarol:589824:65536\n',
      passwd: 'root:x:0:0:root:/root:/bin/sh\nsvc:x:655360:655360::/:/bin/false\n',
    });
    const a = await runCli(['alloc', '--size', '65536', '--name', 'c1', '--root', root, ...files, '--json']);
    assert.equal(a.code, 0, a.stderr);
    const c1 = JSON.parse(a.stdout).allocation;
    assert.deepEqual(c1.uids, [{ start: 589824, count: 65536 }], "bob's 524288-589823 is skipped");
    assert.deepEqual(
      c1.gids,
      [{ start: 655361, count: 65536 }],
      "bob's and carol's gids and svc's group are skipped",
    );
    const b = await runCli(['alloc', '--size', '65536', '--root', root, ...files, '--json']);
    assert.equal(JSON.parse(b.stdout).allocation.uids[0].start, 655361, "svc's uid 655360 is skipped");
    const list = await runCli(['alloc', 'list', '--root', root, ...files]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /excluded from it/);
    assert.match(list.stdout, /524288-589823 subordinate uids of bob \(.*subuid line 2\)/);
    assert.match(list.stdout, /655360 passwd user svc/);
    assert.doesNotMatch(list.stdout, /alice/, "alice's range is below the pool");
    const json = JSON.parse((await runCli(['alloc', 'list', '--root', root, ...files, '--json'])).stdout);
    assert.deepEqual(
      json.usage.gid.excluded.map((x: { start: number; reason: string }) => [
        x.start,
        x.reason.replace(/ \(.*/, ''),
      ]),
      [
        [524288, 'subordinate gids of bob'],
        [589824, 'subordinate gids of carol'],
        [655360, 'primary group of passwd user svc'],
      ],
    );
  });

  test('a malformed or overflowing containers line is a warning (stderr and --json), never silent', async () => {
    const root = join(base, 'containers');
    const files = etc('containers', {
      subuid: 'containers:4294000000:2000000\n',
      subgid: 'containers:1000000:65536\ncontainers:12x:5\n',
    });
    const a = await runCli(['alloc', '--size', '1000', '--root', root, ...files, '--json']);
    assert.equal(a.code, 0, a.stderr);
    const out = JSON.parse(a.stdout);
    assert.equal(out.warnings.length, 2, a.stderr);
    assert.match(out.warnings[0], /subuid:1:.*the uid pool is the systemd container range instead/);
    assert.match(out.warnings[1], /subgid:2:.*its other gid ranges are the pool/);
    assert.match(a.stderr, /^userns: warning: .*subuid:1/m);
    assert.equal(out.allocation.uids[0].start, 0x80000);
    assert.equal(out.allocation.gids[0].start, 1000000);
    const list = await runCli(['alloc', 'list', '--root', root, ...files, '--json']);
    assert.equal(JSON.parse(list.stdout).warnings.length, 2);
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

  test('@HOST in --uidmapping and --userns auto:…,uidmapping= (issue 14 item 2)', {
    timeout: 60_000,
  }, async (t) => {
    const here = ownMap('uid').toInside(5000);
    if (here === undefined) {
      t.skip('machine: host uid 5000 is not mapped in this namespace, so @5000 has nothing to translate to');
      return;
    }
    const root = join(base, 'at-state');
    const expected = [
      { inside: 0, outside: 500000, count: 1000 },
      { inside: 1000, outside: here, count: 1 },
      { inside: 1001, outside: 501001, count: 999 },
    ];
    const a = await runCli([
      'alloc',
      '--size',
      '2000',
      '--uidmapping',
      '1000:@5000:1',
      '--pool',
      '500000:100000',
      '--root',
      root,
      ...etc('at'),
      '--json',
    ]);
    assert.equal(a.code, 0, a.stderr);
    assert.deepEqual(
      JSON.parse(a.stdout).allocation.uidMap,
      expected.map((e) => [e.inside, e.outside, e.count]),
    );
    const cfg = join(base, 'at-alloc.json');
    writeFileSync(cfg, JSON.stringify({ pool: ['500000:100000'] }));
    const runtime = join(base, 'at-runtime');
    mkdirSync(runtime, { recursive: true, mode: 0o700 });
    const r = await runCli(
      ['run', '--userns', 'auto:size=2000,uidmapping=1000:@5000:1', '--dry-run', '--json', '--', 'true'],
      {
        env: {
          XDG_RUNTIME_DIR: runtime,
          USERNS_ALLOC_CONFIG: cfg,
          USERNS_SUBUID_FILE: '/dev/null',
          USERNS_SUBGID_FILE: '/dev/null',
        },
      },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      JSON.parse(r.stdout).requested.uidMap,
      expected.map((e) => [e.inside, e.outside, e.count]),
    );
    const bad = await runCli([
      'alloc',
      '--size',
      '10',
      '--uidmapping',
      '0:@4294967295',
      '--pool',
      '500000:1000',
      '--root',
      root,
      ...etc('at'),
      '--json',
    ]);
    assert.equal(bad.code, 1);
    assert.equal(JSON.parse(bad.stdout).code, 'HOST_ID_NOT_MAPPED');
  });

  test('without size=, an automatic namespace covers --user (issue 14 item 4)', {
    timeout: 60_000,
  }, async () => {
    const root = join(base, 'user-state');
    const rootfs = join(base, 'empty-rootfs');
    mkdirSync(rootfs, { recursive: true });
    /** `userns alloc WORDS… --pool 500000:100000 --root ROOT --json`, with the test's account files. */
    const alloc = (...words: string[]) =>
      runCli(['alloc', ...words, '--pool', '500000:100000', '--root', root, ...etc('user'), '--json']);
    // podman: --user 2000:3000 and an image estimated below that → 3001
    const a = await alloc('--for-rootfs', rootfs, '--user', '2000:3000');
    assert.equal(a.code, 0, a.stderr);
    assert.equal(JSON.parse(a.stdout).allocation.size, 3001);
    const b = await alloc('--for-rootfs', rootfs, '--user', '20');
    assert.equal(JSON.parse(b.stdout).allocation.size, 1024, 'the estimate when it covers --user');
    const c = await alloc('--size', '10', '--user', '2000:3000');
    assert.equal(JSON.parse(c.stdout).allocation.size, 10, 'an explicit size is kept');
    const cfg = join(base, 'user-alloc.json');
    writeFileSync(cfg, JSON.stringify({ pool: ['500000:200000'] }));
    const runtime = join(base, 'user-runtime');
    mkdirSync(runtime, { recursive: true, mode: 0o700 });
    const env = {
      XDG_RUNTIME_DIR: runtime,
      USERNS_ALLOC_CONFIG: cfg,
      USERNS_SUBUID_FILE: '/dev/null',
      USERNS_SUBGID_FILE: '/dev/null',
    };
    const r = await runCli(
      ['run', '--userns', 'auto:policy=contiguous', '--user', '70000:5', '--dry-run', '--json', '--', 'true'],
      { env },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).requested.uidMap, [[0, 500000, 70001]]);
  });
});
