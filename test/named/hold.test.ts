/**
 * How named namespaces are held (issue 17): `--hold keeper | mount | none`, joins by nsfs handle
 * first (pidfd or bind files as the fallback, tested with the USERNS_NSFS_HANDLES=0 switch), the
 * typed "gone" error, and a keeper seen from another PID namespace (issue 13 item 14). As root,
 * against the real kernel; the rootless side is in rootless-hold.test.ts.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runDoctor } from '../../src/doctor/index.js';
import { listNamespaces, removeNamespace } from '../../src/namespaces/index.js';
import { probeNsfs } from '../../src/native/nsfs.js';
import { cli, membersOf, until } from './hold-fixtures.js';

const BIN = fileURLToPath(new URL('../../../bin/userns', import.meta.url));
const SCENARIO = fileURLToPath(new URL('./hold-mount-scenario.js', import.meta.url));
const isRoot = process.geteuid?.() === 0;

function kernelSkip(): string | false {
  if (!isRoot) return 'needs root (maps written directly, bind mounts)';
  try {
    const p = probeNsfs();
    if (p.encode !== null || p.decode !== null)
      return `kernel: no nsfs file handles here (name_to_handle_at ${p.encode}, open_by_handle_at ${p.decode}; Linux 6.18+)`;
  } catch (error) {
    return `the helper cannot probe: ${(error as Error).message}`;
  }
  return false;
}
const skip = kernelSkip();

const userOf = (state: { namespaces: { type: string; inode: number; handle: string | null }[] }) =>
  state.namespaces.find((n) => n.type === 'user')!;

describe('hold modes (root)', { skip }, () => {
  let base: string;
  let root: string;
  before(() => {
    base = mkdtempSync(join(tmpdir(), 'userns-hold-'));
    root = join(base, 'root');
  });
  after(async () => {
    for (const e of await listNamespaces({ root }).catch(() => [])) {
      await removeNamespace(e.name, { root, force: true }).catch(() => {});
    }
    rmSync(base, { recursive: true, force: true });
  });

  test('keeper: recorded with handles; exec twice by handle and by pidfd (switch off handles); maps inside; rm', () => {
    const made = cli([
      'create',
      '--root',
      root,
      '--uidmap',
      '0:100000:65536',
      '--unshare',
      'pid,uts',
      '--json',
      'k1',
    ]);
    assert.equal(made.code, 0, made.stderr);
    const state = JSON.parse(made.stdout).state;
    assert.equal(state.hold, 'keeper');
    assert.equal(state.version, 2);
    assert.ok(
      state.namespaces.every((n: { handle: string | null }) => /^f1:[0-9a-f]{32}$/.test(n.handle ?? '')),
    );
    const probe = 'cat /proc/self/uid_map; stat -L -c %i /proc/self/ns/user; echo $$';
    const a = cli(['exec', '--root', root, 'k1', '--', 'sh', '-c', probe]);
    const b = cli(['exec', '--root', root, 'k1', '--', 'sh', '-c', probe], { USERNS_NSFS_HANDLES: '0' });
    for (const r of [a, b]) {
      assert.equal(r.code, 0, r.stderr);
      const [map, ino, pid] = r.stdout.trim().split('\n');
      assert.match(map!, /^\s*0\s+100000\s+65536$/);
      assert.equal(Number(ino), userOf(state).inode);
      assert.notEqual(pid, '1', 'the keeper is PID 1');
    }
    const listed = JSON.parse(cli(['list', '--root', root, '--json']).stdout).namespaces;
    assert.deepEqual(
      listed.map((e: { name: string; status: string; state: { hold: string } }) => [
        e.name,
        e.status,
        e.state.hold,
      ]),
      [['k1', 'running', 'keeper']],
    );
    assert.match(cli(['list', '--root', root]).stdout, /k1\s+running\s+keeper\s+\d+/);
    const rm = cli(['rm', '--root', root, '--json', 'k1']);
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal(JSON.parse(rm.stdout).removed[0].keeperStopped, true);
  });

  test('mount: no process holds it; exec twice (by handle, by bind file); rm unmounts and the namespace is gone', () => {
    // A private mount namespace (the binds die with it whatever happens), CPU pinned (section 7.3).
    const r = spawnSync(
      'taskset',
      ['-c', '0', 'unshare', '-m', '--propagation', 'private', process.execPath, SCENARIO, root],
      {
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    assert.equal(r.status, 0, r.stderr);
    const o = JSON.parse(r.stdout);
    assert.equal(o.made.code, 0, o.made.stderr);
    assert.equal(o.state.hold, 'mount');
    assert.equal(o.state.keeperPid, undefined);
    assert.deepEqual(o.members, [], 'no process is in the namespace while it is held by mounts');
    for (const x of [o.a, o.b, o.byFile]) {
      assert.equal(x.code, 0, x.stderr);
      const [map, user, net, host] = x.stdout.trim().split('\n');
      assert.match(map, /^\s*0\s+200000\s+65536$/);
      assert.equal(Number(user), userOf(o.state).inode);
      assert.equal(Number(net), o.state.namespaces.find((n: { type: string }) => n.type === 'net').inode);
      assert.equal(host, 'held', 'the uts namespace kept the first exec’s hostname');
    }
    assert.deepEqual(o.holdFiles, ['mnt', 'net', 'user', 'uts']);
    for (const n of o.state.namespaces) {
      const file = { mount: 'mnt' }[n.type as string] ?? n.type;
      assert.equal(o.holdInodes[file], n.inode, `${file} is a bind mount of the ${n.type} namespace`);
    }
    assert.deepEqual(
      o.listed.namespaces.map((e: { name: string; status: string; state: { hold: string } }) => [
        e.name,
        e.status,
        e.state.hold,
      ]),
      [['m1', 'running', 'mount']],
    );
    assert.match(o.inspected.stdout, /hold:\s+mount \(bind mounts under .*\/hold\/, no process\)/);
    assert.equal(o.pidRefused.code, 1);
    assert.equal(JSON.parse(o.pidRefused.stdout).code, 'NS_HOLD_UNSUPPORTED');
    assert.equal(o.removed.code, 0, o.removed.stderr);
    const removed = JSON.parse(o.removed.stdout).removed[0];
    assert.equal(removed.unmounted, true);
    assert.equal(removed.stillInUse, false);
    assert.equal(o.afterRm, 'ESTALE', 'after rm the namespace no longer exists');
    assert.equal(o.entryLeft, false);
  });

  test('none: the command is the first process; exec twice while it lives; NS_GONE after; nothing of userns remains', async () => {
    const creator: ChildProcess = spawn(
      process.execPath,
      [
        BIN,
        'create',
        '--root',
        root,
        '--hold',
        'none',
        '--uidmap',
        '0:300000:65536',
        '--unshare',
        'pid,mount,uts',
        'n1',
        '--',
        'sh',
        '-c',
        'read x; exit 7',
      ],
      { stdio: ['pipe', 'ignore', 'pipe'], env: { ...process.env, NO_COLOR: '1' } },
    );
    let stderr = '';
    creator.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((resolve) => creator.on('close', (code) => resolve(code)));
    try {
      const state = await until(
        () => {
          const file = join(root, 'ns', 'n1', 'state.json');
          return existsSync(file) && !existsSync(join(root, 'ns', 'n1', 'creating'))
            ? JSON.parse(readFileSync(file, 'utf8'))
            : undefined;
        },
        20_000,
        `n1 to be created (${stderr})`,
      );
      assert.equal(state.hold, 'none');
      assert.equal(state.keeperPid, undefined);
      assert.deepEqual(
        state.namespaces.map((n: { type: string }) => n.type),
        ['user', 'mount', 'pid', 'uts'],
      );
      const probe = 'cat /proc/self/uid_map; tr "\\0" " " </proc/1/cmdline; echo; echo $$';
      for (let i = 0; i < 2; i++) {
        const r = cli(['exec', '--root', root, 'n1', '--', 'sh', '-c', probe]);
        assert.equal(r.code, 0, r.stderr);
        const [map, init, pid] = r.stdout.trim().split('\n');
        assert.match(map!, /^\s*0\s+300000\s+65536$/);
        assert.match(init!, /^sh -c read x; exit 7\s*$/, 'the command is PID 1 of its PID namespace');
        assert.notEqual(pid, '1');
      }
      assert.equal(
        JSON.parse(cli(['list', '--root', root, '--json']).stdout).namespaces.find(
          (e: { name: string }) => e.name === 'n1',
        ).status,
        'running',
      );
      creator.stdin!.end('\n');
      assert.equal(await exited, 7, `create exits with the command's status (${stderr})`);
      // Gone: polled, the kernel drops a user namespace a moment after its last process.
      const gone = await until(
        () => {
          const r = cli(['exec', '--root', root, '--json', 'n1', '--', 'true']);
          return r.code === 125 && JSON.parse(r.stdout).code === 'NS_GONE' ? r : undefined;
        },
        10_000,
        'exec to say NS_GONE',
      );
      assert.match(
        JSON.parse(gone.stdout).message,
        /namespace n1 is gone: its \w+ namespace no longer exists \(all its processes exited\)/,
      );
      assert.deepEqual(membersOf(userOf(state).inode, '0 300000 65536'), [], 'no process remains in it');
      const listed = JSON.parse(cli(['list', '--root', root, '--json']).stdout).namespaces;
      assert.equal(listed.find((e: { name: string }) => e.name === 'n1').status, 'gone');
      const rm = cli(['rm', '--root', root, '--json', 'n1']);
      assert.equal(rm.code, 0, rm.stderr);
      assert.equal(JSON.parse(rm.stdout).removed[0].stillInUse, false);
    } finally {
      creator.kill('SIGKILL');
      await exited;
    }
  });

  test('none: a command that cannot start leaves no entry; no command, or a command without --hold none, is a usage error', () => {
    const missing = cli([
      'create',
      '--root',
      root,
      '--hold',
      'none',
      '--json',
      'n2',
      '--',
      '/nonexistent/cmd',
    ]);
    assert.equal(missing.code, 127);
    assert.equal(JSON.parse(missing.stdout).code, 'COMMAND_NOT_FOUND');
    assert.ok(!existsSync(join(root, 'ns', 'n2')));
    assert.equal(cli(['create', '--root', root, '--hold', 'none', 'n2']).code, 2);
    assert.equal(cli(['create', '--root', root, 'n2', '--', 'true']).code, 2);
    assert.equal(cli(['create', '--root', root, '--hold', 'sometimes', 'n2']).code, 2);
  });

  test('a kernel without nsfs handles (USERNS_NSFS_HANDLES=0): none recorded, the keeper path joins, --hold none refused, doctor says so', async () => {
    const off = { USERNS_NSFS_HANDLES: '0' };
    const made = cli(
      ['create', '--root', root, '--uidmap', '0:100000:65536', '--unshare', 'uts', '--json', 'k2'],
      off,
    );
    assert.equal(made.code, 0, made.stderr);
    const state = JSON.parse(made.stdout).state;
    assert.ok(state.namespaces.every((n: { handle: string | null }) => n.handle === null));
    // Joined through the keeper (a pidfd), with or without the switch: there is no handle.
    for (const env of [off, {}]) {
      const r = cli(
        ['exec', '--root', root, 'k2', '--', 'stat', '-L', '-c', '%i', '/proc/self/ns/user'],
        env,
      );
      assert.equal(r.code, 0, r.stderr);
      assert.equal(Number(r.stdout), userOf(state).inode);
    }
    const none = cli(['create', '--root', root, '--hold', 'none', '--json', 'n3', '--', 'true'], off);
    assert.equal(none.code, 125);
    assert.equal(JSON.parse(none.stdout).code, 'NS_HOLD_UNSUPPORTED');
    assert.ok(!existsSync(join(root, 'ns', 'n3')));
    const doctor = JSON.parse(cli(['doctor', '--root', root, '--json'], off).stdout);
    const handles = doctor.checks.find((c: { id: string }) => c.id === 'namespaces.nsfs_handles');
    assert.equal(handles.status, 'warning');
    assert.equal(handles.evidence.value, 'disabled');
    // A stopped keeper is stale, joined by nothing: never by its PID once it is gone.
    process.kill(state.keeperPid, 'SIGKILL');
    await until(
      () =>
        statSync(`/proc/${state.keeperPid}`, { throwIfNoEntry: false }) === undefined ||
        /\) [ZX] /.test(readFileSync(`/proc/${state.keeperPid}/stat`, 'latin1'))
          ? true
          : undefined,
      5000,
      'the keeper to die',
    );
    const stale = cli(['exec', '--root', root, '--json', 'k2', '--', 'true'], off);
    assert.equal(stale.code, 125);
    assert.equal(JSON.parse(stale.stdout).code, 'NS_STALE');
    assert.equal(cli(['rm', '--root', root, 'k2']).code, 0);
  });

  test('a keeper seen from another PID namespace: running by handle, exec works there, rm refuses and leaves it (issue 13 item 14)', () => {
    const made = cli(['create', '--root', root, '--uidmap', '0:100000:65536', '--json', 'k3']);
    assert.equal(made.code, 0, made.stderr);
    const state = JSON.parse(made.stdout).state;
    const elsewhere = ['unshare', '--pid', '--fork', '--mount-proc'];
    const listed = JSON.parse(cli(['list', '--root', root, '--json'], {}, elsewhere).stdout).namespaces;
    const k3 = listed.find((e: { name: string }) => e.name === 'k3');
    assert.equal(k3.status, 'running');
    assert.match(k3.reason, /its keeper \d+ is in PID namespace pid:\[\d+\].*answer by nsfs handle/);
    const unknown = JSON.parse(
      cli(['list', '--root', root, '--json'], { USERNS_NSFS_HANDLES: '0' }, elsewhere).stdout,
    ).namespaces.find((e: { name: string }) => e.name === 'k3');
    assert.equal(unknown.status, 'unknown');
    const ran = cli(
      ['exec', '--root', root, 'k3', '--', 'stat', '-L', '-c', '%i', '/proc/self/ns/user'],
      {},
      elsewhere,
    );
    assert.equal(ran.code, 0, ran.stderr);
    assert.equal(Number(ran.stdout), userOf(state).inode);
    for (const args of [
      ['rm', '--root', root, '--json', 'k3'],
      ['rm', '--root', root, '--force', '--json', 'k3'],
    ]) {
      const rm = cli(args, {}, elsewhere);
      assert.equal(rm.code, 1, rm.stdout);
      assert.equal(JSON.parse(rm.stdout).removed[0].code, 'NS_UNCHECKABLE');
    }
    assert.ok(existsSync(join(root, 'ns', 'k3', 'state.json')), 'the record stays');
    assert.ok(existsSync(`/proc/${state.keeperPid}`), 'the keeper still runs');
    assert.equal(cli(['rm', '--root', root, 'k3']).code, 0, 'removed from where it was created');
  });

  test('doctor: nsfs handles, pidfds, --hold mount, and each named namespace with its hold and status', async () => {
    const made = cli(['create', '--root', root, '--uidmap', '0:100000:65536', 'k4']);
    assert.equal(made.code, 0, made.stderr);
    try {
      const report = await runDoctor({ stateRoot: root });
      const byId = new Map(report.checks.map((c) => [c.id, c]));
      assert.equal(byId.get('namespaces.nsfs_handles')?.status, 'ok');
      assert.equal(byId.get('namespaces.nsfs_handles')?.evidence.value, 'supported');
      assert.equal(byId.get('namespaces.pidfd')?.status, 'ok');
      assert.ok(['ok', 'warning'].includes(byId.get('namespaces.mount_hold')!.status));
      const named = byId.get('namespaces.named')!;
      assert.equal(named.status, 'ok');
      assert.deepEqual(
        (named.evidence.value as { name: string; hold: string; status: string }[]).map((v) => [
          v.name,
          v.hold,
          v.status,
        ]),
        [['k4', 'keeper', 'running']],
      );
      assert.match(named.message, /k4: keeper, running/);
    } finally {
      assert.equal(cli(['rm', '--root', root, 'k4']).code, 0);
    }
  });
});
