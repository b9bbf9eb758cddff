import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parseSubid } from '../../src/idmap/formats/subid.js';
import { readablePath } from '../fixtures/readable-repo.js';
import { runAs, throwawayUserUnavailable, withThrowawayUser } from '../fixtures/throwaway-user.js';

const skip = throwawayUserUnavailable();

function read(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function passwdHas(name: string): boolean {
  return spawnSync('getent', ['passwd', name]).status === 0;
}

describe('throwaway-user fixture', { skip }, () => {
  test('creates the user with non-overlapping ranges, runs as it, and removes everything', async () => {
    const subuidBefore = read('/etc/subuid');
    const subgidBefore = read('/etc/subgid');
    let seen: { name: string; home: string } | undefined;
    const value = await withThrowawayUser(async (user) => {
      seen = { name: user.name, home: user.home };
      assert.match(user.name, /^userns-t[0-9a-f]{8}$/);
      assert.ok(passwdHas(user.name));
      assert.ok(user.uid > 0 && user.gid > 0);
      assert.equal(user.subuid.count, 65536);
      assert.equal(user.subuid.start % 65536, 0);
      assert.ok(user.subuid.start >= 2_000_000_000 && user.subuid.start + 65536 <= 3_000_000_000);
      assert.deepEqual(user.subgid, user.subuid);
      const line = `${user.name}:${user.subuid.start}:65536`;
      for (const file of ['/etc/subuid', '/etc/subgid']) {
        const { entries } = parseSubid(read(file));
        assert.equal(entries.filter((e) => e.owner === user.name).length, 1, file);
        assert.ok(read(file).includes(`${line}\n`), file);
        const others = entries.filter((e) => e.owner !== user.name);
        for (const o of others)
          assert.ok(o.start + o.count <= user.subuid.start || user.subuid.start + 65536 <= o.start);
      }
      assert.equal(statSync('/etc/subuid').mode & 0o777, 0o644);
      assert.equal(statSync(user.home).uid, user.uid);

      const id = await runAs(user, ['id', '-u']);
      assert.equal(id.code, 0, id.stderr);
      assert.equal(id.stdout.trim(), String(user.uid));
      const groups = await runAs(user, ['sh', '-c', 'id -g; id -G; echo "$HOME"; cat']);
      assert.equal(groups.stdout, `${user.gid}\n${user.gid}\n${user.home}\n`);
      const fed = await runAs(user, ['cat'], { input: 'hello' });
      assert.equal(fed.stdout, 'hello');
      const failing = await runAs(user, ['sh', '-c', 'echo oops >&2; exit 3']);
      assert.deepEqual([failing.code, failing.stderr], [3, 'oops\n']);
      const denied = await runAs(user, ['cat', '/etc/shadow']);
      assert.notEqual(denied.code, 0);
      return 42;
    });
    assert.equal(value, 42);
    assert.ok(seen);
    assert.equal(passwdHas(seen.name), false, 'user removed');
    assert.equal(spawnSync('getent', ['group', seen.name]).status, 2, 'group removed');
    assert.equal(existsSync(seen.home), false, 'home removed');
    assert.ok(!read('/etc/subuid').includes(seen.name), 'no leftover in /etc/subuid');
    assert.ok(!read('/etc/subgid').includes(seen.name), 'no leftover in /etc/subgid');
    // Other lines are untouched (concurrent test files may have added and removed their own).
    for (const [before, file] of [
      [subuidBefore, '/etc/subuid'],
      [subgidBefore, '/etc/subgid'],
    ] as const) {
      for (const line of before.split('\n').filter((l) => l !== '' && !l.startsWith('userns-t'))) {
        assert.ok(read(file).includes(line), `${file} kept ${line}`);
      }
    }
    assert.ok(
      !existsSync('/etc/subuid.lock') || read('/etc/subuid.lock').trim() !== String(process.pid),
      'lock released',
    );
  });

  test('cleans up when the test body throws, and rethrows its error', async () => {
    let name = '';
    await assert.rejects(
      withThrowawayUser(async (user) => {
        name = user.name;
        // A process left running as the user must not prevent the removal.
        spawnSync('setpriv', [
          `--reuid=${user.uid}`,
          `--regid=${user.gid}`,
          '--clear-groups',
          'sh',
          '-c',
          'sleep 60 >/dev/null 2>&1 &',
        ]);
        throw new Error('boom');
      }),
      /boom/,
    );
    assert.ok(name !== '');
    assert.equal(passwdHas(name), false);
    assert.ok(!read('/etc/subuid').includes(name));
    assert.ok(!read('/etc/subgid').includes(name));
  });

  test('concurrent users get distinct ranges and all lines are removed', async () => {
    const names: string[] = [];
    const ranges = await Promise.all(
      [1, 2, 3].map(() =>
        withThrowawayUser(async (user) => {
          names.push(user.name);
          return user.subuid.start;
        }),
      ),
    );
    assert.equal(new Set(ranges).size, 3);
    for (const name of names) {
      assert.equal(passwdHas(name), false);
      assert.ok(!read('/etc/subuid').includes(name));
    }
  });

  test('creates missing subid files, and removes them again when it created them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'userns-fixture-'));
    try {
      const subuidPath = join(dir, 'subuid');
      const subgidPath = join(dir, 'subgid');
      writeFileSync(subgidPath, 'someone:100000:65536');
      await withThrowawayUser(
        async (user) => {
          assert.equal(read(subuidPath), `${user.name}:${user.subuid.start}:65536\n`);
          assert.equal(statSync(subuidPath).mode & 0o777, 0o644);
          assert.equal(read(subgidPath), `someone:100000:65536\n${user.name}:${user.subgid.start}:65536\n`);
        },
        { subuidPath, subgidPath },
      );
      assert.equal(existsSync(subuidPath), false);
      assert.equal(read(subgidPath), 'someone:100000:65536\n');
      assert.deepEqual(readdirSync(dir).sort(), ['subgid'], 'no temp or lock files left');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the system layer seen by the unprivileged user itself', () =>
    withThrowawayUser(async (user) => {
      const src = (m: string) => JSON.stringify(readablePath(`dist/src/system/${m}.js`));
      const script = `
        const users = await import(${src('users')});
        const sub = await import(${src('subordinate')});
        const nim = await import(${src('newidmap')});
        const me = await users.currentUser();
        const uid = await sub.getSubordinateRanges(me, 'uid');
        const gid = await sub.getSubordinateRanges(me, 'gid');
        const tool = await nim.inspectNewIdmap('newuidmap');
        console.log(JSON.stringify({ me, uid: uid.ranges, gid: gid.ranges, source: uid.source, usable: tool.usable, reason: tool.reason ?? null }));
      `;
      const r = await runAs(user, [process.execPath, '--input-type=module', '-e', script], {
        env: { PATH: '/usr/bin:/bin', HOME: user.home },
      });
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout);
      assert.equal(out.me.name, user.name);
      assert.equal(out.me.uid, user.uid);
      assert.deepEqual(out.uid, [user.subuid]);
      assert.deepEqual(out.gid, [user.subgid]);
      assert.equal(out.source, 'files');
      if (existsSync('/usr/bin/newuidmap') && (statSync('/usr/bin/newuidmap').mode & 0o4000) !== 0) {
        assert.equal(out.usable, true, out.reason);
      }
    }));

  test('noSubids adds no lines', () =>
    withThrowawayUser(
      async (user) => {
        assert.ok(!read('/etc/subuid').includes(user.name));
        assert.equal(user.subuid.count, 0);
      },
      { noSubids: true },
    ));
});
