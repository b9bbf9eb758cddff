/**
 * Rootless: a real unprivileged user with subordinate ranges, real newuidmap/newgidmap.
 * Each case runs a small Node script as that user; it prints one JSON line.
 */
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readableBin, readablePath } from '../fixtures/readable-repo.js';
import {
  holdThrowawayUser,
  runAs,
  type ThrowawayUser,
  throwawayUserUnavailable,
} from '../fixtures/throwaway-user.js';

const skip = throwawayUserUnavailable();

/** Runs `body` (an async function body with `run` in scope) as the user; returns its JSON. */
async function asUser(user: ThrowawayUser, body: string): Promise<Record<string, unknown>> {
  const script = `import { run } from ${JSON.stringify(readablePath('dist/src/spawn/index.js'))};
    const out = (v) => process.stdout.write(JSON.stringify(v) + '\\n');
    try { ${body} } catch (e) { out({ error: e.name, code: e.code, message: e.message, hint: e.hint }); }`;
  const r = await runAs(user, [process.execPath, '--input-type=module', '-e', script]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

const procMap = (text: string) =>
  text
    .trim()
    .split('\n')
    .map((l) => l.trim().split(/\s+/).join(':'))
    .join(',');

describe('rootless (throwaway user, newuidmap/newgidmap)', { skip: skip ?? false }, () => {
  const held = holdThrowawayUser();
  let user: ThrowawayUser;
  let tmp: string;

  before(async () => {
    await held.open();
    user = held.user;
    tmp = mkdtempSync(join(tmpdir(), 'userns-rootless-'));
    chmodSync(tmp, 0o755);
  });
  after(async () => {
    await held.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('auto: maps read back inside equal the request (0 = user, 1… = subordinate ranges)', async () => {
    const r = await asUser(
      user,
      `const r = await run('sh', ['-c', 'cat /proc/self/uid_map; echo --; cat /proc/self/gid_map; echo --; id -u']);
       out({ stdout: r.stdout, uidMap: r.uidMap.toString(), gidMap: r.gidMap.toString(), setgroups: r.setgroups });`,
    );
    const [u, g, id] = String(r.stdout).split('--\n');
    const expectedUid = `0:${user.uid}:1,1:${user.subuid.start}:${user.subuid.count}`;
    assert.equal(procMap(u!), expectedUid);
    assert.equal(procMap(g!), `0:${user.gid}:1,1:${user.subgid.start}:${user.subgid.count}`);
    assert.equal(r.uidMap, expectedUid);
    assert.equal(id, '0\n');
    assert.equal(r.setgroups, 'allow');
  });

  test('explicit map within the subordinate range; user inside; setgroups deny', async () => {
    const s = user.subuid.start;
    const r = await asUser(
      user,
      `const r = await run('sh', ['-c', 'cat /proc/self/uid_map; echo --; cat /proc/self/setgroups; id -u'],
         { uidMap: '0:${s}:1000', gidMap: '0:${user.subgid.start}:1000', user: 5, group: 5, setgroups: 'deny' });
       out({ stdout: r.stdout });`,
    );
    const [u, rest] = String(r.stdout).split('--\n');
    assert.equal(procMap(u!), `0:${s}:1000`);
    assert.equal(rest, 'deny\n5\n');
  });

  test('self: direct single-ID write, setgroups deny, no newuidmap needed', async () => {
    const r = await asUser(
      user,
      `const r = await run('cat', ['/proc/self/uid_map'], { userns: 'self', newuidmap: '/nonexistent', newgidmap: '/nonexistent' });
       out({ stdout: r.stdout, setgroups: r.setgroups });`,
    );
    assert.equal(procMap(String(r.stdout)), `0:${user.uid}:1`);
    assert.equal(r.setgroups, 'deny');
  });

  test('newgidmap writes setgroups deny when no gid came from /etc/subgid: read back and reported', async () => {
    const r = await asUser(
      user,
      `await run('true', [], { uidMap: '0:${user.subuid.start}:10', gidMap: '0:${user.gid}:1', setgroups: 'allow' }); out({});`,
    );
    assert.equal(r.code, 'SETGROUPS_DENIED');
    assert.match(String(r.message), /newgidmap writes deny/);
    const ok = await asUser(
      user,
      `const r = await run('true', [], { uidMap: '0:${user.subuid.start}:10', gidMap: '0:${user.gid}:1,1:${user.subgid.start}:10' });
       out({ setgroups: r.setgroups, gidMap: r.gidMap.toString() });`,
    );
    assert.equal(ok.setgroups, 'allow');
    assert.equal(ok.gidMap, `0:${user.gid}:1,1:${user.subgid.start}:10`);
  });

  test('range not in /etc/subuid → RANGE_NOT_ALLOWED naming the user and what it has', async () => {
    const r = await asUser(user, `await run('true', [], { uidMap: '0:1000:1' }); out({});`);
    assert.equal(r.code, 'RANGE_NOT_ALLOWED');
    assert.match(String(r.message), new RegExp(`not in /etc/subuid for ${user.name}`));
    assert.match(
      String(r.message),
      new RegExp(`${user.subuid.start}-${user.subuid.start + user.subuid.count - 1}`),
    );
    assert.match(String(r.hint), /userns doctor/);
  });

  test('--fallback single maps only the user, with a warning', async () => {
    const r = await runAs(user, [
      process.execPath,
      readableBin(),
      'run',
      '--uidmap',
      '0:1000:1',
      '--fallback',
      'single',
      '--',
      'cat',
      '/proc/self/uid_map',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(procMap(r.stdout), `0:${user.uid}:1`);
    assert.match(r.stderr, /warning: .*falling back to a single-ID uid map/);
  });

  test('newuidmap missing (explicit nonexistent path) → NEWUIDMAP_MISSING', async () => {
    const r = await asUser(user, `await run('true', [], { newuidmap: '/nonexistent/newuidmap' }); out({});`);
    assert.equal(r.code, 'NEWUIDMAP_MISSING');
    assert.match(String(r.hint), /apt-get install uidmap/);
  });

  test('newuidmap without the setuid bit → NEWUIDMAP_NOT_SETUID', async () => {
    const copy = join(tmp, 'newuidmap');
    copyFileSync('/usr/bin/newuidmap', copy);
    chmodSync(copy, 0o755);
    const r = await asUser(user, `await run('true', [], { newuidmap: ${JSON.stringify(copy)} }); out({});`);
    assert.equal(r.code, 'NEWUIDMAP_NOT_SETUID');
    assert.match(String(r.message), /not setuid root/);
  });

  test('--dry-run fails exactly as the run: a range outside /etc/subuid is exit 125 and the same error', {
    timeout: 60_000,
  }, async () => {
    // Outside the user's range (just past it), as '--uidmap 0:327680:65536' in the issue.
    const outside = `0:${user.subuid.start + user.subuid.count}:65536`;
    const args = (dry: boolean) => [
      process.execPath,
      readableBin(),
      'run',
      '--uidmap',
      outside,
      ...(dry ? ['--dry-run'] : []),
      '--json',
      '--',
      'true',
    ];
    const real = await runAs(user, args(false));
    const dry = await runAs(user, args(true));
    assert.equal(real.code, 125, real.stdout + real.stderr);
    assert.equal(dry.code, 125, dry.stdout + dry.stderr);
    const [r, d] = [JSON.parse(real.stdout), JSON.parse(dry.stdout)];
    assert.equal(r.code, 'RANGE_NOT_ALLOWED');
    assert.deepEqual([d.code, d.message, d.hint], [r.code, r.message, r.hint]);
    // A newuidmap that is not there: the same error too.
    const missing = (dry: boolean) =>
      runAs(user, [
        process.execPath,
        readableBin(),
        'run',
        '--newuidmap',
        '/nonexistent/newuidmap',
        ...(dry ? ['--dry-run'] : []),
        '--json',
        '--',
        'true',
      ]);
    const [rm, dm] = await Promise.all([missing(false), missing(true)]);
    assert.deepEqual([dm.code, JSON.parse(dm.stdout).message], [rm.code, JSON.parse(rm.stdout).message]);
    assert.equal(JSON.parse(dm.stdout).code, 'NEWUIDMAP_MISSING');
    // With --fallback single the dry run shows the map the run falls back to, and its warning.
    const fallback = await runAs(user, [
      process.execPath,
      readableBin(),
      'run',
      '--uidmap',
      outside,
      '--fallback',
      'single',
      '--dry-run',
      '--json',
      '--',
      'true',
    ]);
    assert.equal(fallback.code, 0, fallback.stdout + fallback.stderr);
    const plan = JSON.parse(fallback.stdout);
    assert.deepEqual(plan.uidMap, [[0, user.uid, 1]]);
    assert.equal(plan.newuidmap, null);
    assert.match(plan.warnings.join('\n'), /falling back to a single-ID uid map/);
  });

  test('CLI as the user: exit status, PID namespace, dry run shows the newuidmap line', async () => {
    const exit = await runAs(user, [process.execPath, readableBin(), 'run', '--', 'sh', '-c', 'exit 7']);
    assert.equal(exit.code, 7, exit.stderr);
    const pid = await runAs(user, [
      process.execPath,
      readableBin(),
      'run',
      '--unshare',
      'pid',
      '--',
      'sh',
      '-c',
      'echo $$',
    ]);
    assert.equal(pid.stdout, '1\n', pid.stderr);
    const dry = await runAs(user, [
      process.execPath,
      readableBin(),
      'run',
      '--dry-run',
      '--json',
      '--',
      'true',
    ]);
    const plan = JSON.parse(dry.stdout);
    assert.deepEqual(plan.newuidmap.slice(1), [
      'PID',
      '0',
      String(user.uid),
      '1',
      '1',
      String(user.subuid.start),
      String(user.subuid.count),
    ]);
  });
  test('podman + and @ at the top level fill from the IDs the user may map (issue 14 item 1)', async () => {
    const s = user.subuid.start;
    const g = user.subgid.start;
    const last = g + user.subgid.count - 1;
    // keep-id layout through +, and a + entry taking the last subordinate gid to container gid 100000
    const r = await runAs(user, [
      process.execPath,
      readableBin(),
      'run',
      '--uidmap',
      `+1000:@${user.uid}:1`,
      '--gidmap',
      `+100000:@${last}:1`,
      '--',
      'sh',
      '-c',
      'cat /proc/self/uid_map; echo --; cat /proc/self/gid_map',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const [u, gm] = r.stdout.split('--\n');
    assert.equal(procMap(u!), `0:${s}:1000,1000:${user.uid}:1,1001:${s + 1000}:${user.subuid.count - 1000}`);
    assert.equal(procMap(gm!), `0:${user.gid}:1,1:${g}:${user.subgid.count - 1},100000:${last}:1`);
    const dry = await runAs(user, [
      process.execPath,
      readableBin(),
      'run',
      '--gidmap',
      `+100000:@${last}:1`,
      '--dry-run',
      '--json',
      '--',
      'true',
    ]);
    assert.equal(dry.code, 0, dry.stderr);
    const plan = JSON.parse(dry.stdout);
    assert.deepEqual(plan.newgidmap.slice(2), [
      '0',
      String(user.gid),
      '1',
      '1',
      String(g),
      String(user.subgid.count - 1),
      '100000',
      String(last),
      '1',
    ]);
  });
  test('keep-id:uid=N,gid=N,size=N maps and runs as podman does (issue 14 item 4)', async () => {
    const s = user.subuid.start;
    const g = user.subgid.start;
    const r = await runAs(user, [
      process.execPath,
      readableBin(),
      'run',
      '--userns',
      'keep-id:uid=1000,gid=1001,size=3000',
      '--',
      'sh',
      '-c',
      'cat /proc/self/uid_map; echo --; cat /proc/self/gid_map; echo --; id -u; id -g',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const [u, gm, ids] = r.stdout.split('--\n');
    const sorted = (text: string) => procMap(text).split(',').sort().join(',');
    assert.equal(sorted(u!), [`0:${s}:1000`, `1000:${user.uid}:1`, `1001:${s + 1000}:1999`].sort().join(','));
    assert.equal(
      sorted(gm!),
      [`0:${g}:1001`, `1001:${user.gid}:1`, `1002:${g + 1001}:1998`].sort().join(','),
    );
    assert.equal(ids, '1000\n1001\n');
    const bad = await runAs(user, [
      process.execPath,
      readableBin(),
      'run',
      '--userns',
      'keep-id:size=0',
      '--',
      'true',
    ]);
    // run exits 125 for its own usage errors (README: exit status)
    assert.equal(bad.code, 125, bad.stderr);
    assert.match(bad.stderr, /keep-id:size=0: unknown or malformed option "size=0"/);
  });
});
