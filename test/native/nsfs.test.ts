/**
 * The helper's probe and bind modes and the join sources (src/native/nsfs.ts, protocol.md "Join
 * mode", "Bind mode", "Probe mode"): usage errors for mixed or missing sources, the argv the
 * driver builds, what probe says on this kernel and with --no-handles, and bind refusing links
 * and directories. The holds built on them are tested in test/named/hold.test.ts.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SpawnError } from '../../src/errors/index.js';
import { helperArgs, helperPath } from '../../src/native/helper.js';
import { bindNamespaceFiles, probeNsfs, unbindFiles } from '../../src/native/nsfs.js';

/** The helper's report (fd 3) for argv. */
function report(args: string[]): { lines: string[]; status: number | null } {
  const r = spawnSync(helperPath(), args, {
    stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
    encoding: 'utf8',
    timeout: 10_000,
  });
  return {
    lines: String(r.output[3] ?? '')
      .split('\n')
      .filter(Boolean),
    status: r.status,
  };
}

describe('nsfs: helper modes bind and probe, join sources', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'userns-nsfs-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('join takes exactly one source, for every namespace; bind and no-keeper misuse are usage errors', () => {
    const usage = (args: string[]) => {
      const r = report(args);
      assert.equal(r.status, 127, args.join(' '));
      assert.match(r.lines[0] ?? '', /^error usage 22 /, args.join(' '));
    };
    usage(['--mode=join', '--target=1', '--ns=user:1:f1:00', '--', 'true']);
    usage(['--mode=join', '--ns=user:1:f1:00,net:2', '--', 'true']);
    usage(['--mode=join', '--ns=user:1', '--ns-file=user:/x', '--ns-file=user:/y', '--', 'true']);
    usage(['--mode=join', '--ns=user:1', '--ns-file=net:/x', '--', 'true']);
    usage(['--mode=join', '--ns=user:1:f1:00', '--start-time=5', '--', 'true']);
    usage(['--mode=join', '--ns=user:1', '--', 'true']);
    usage(['--mode=bind', '--bind=user:/x']);
    usage(['--mode=bind', '--bind-from=1']);
    usage(['--mode=bind', '--bind-from=1', '--bind=bogus:/x']);
    usage(['--mode=hold', '--unshare=user,pid,mount', '--mount-proc', '--no-keeper']);
    usage(['--mode=probe', '--handle=f1:00', '--bind-from=1']);
  });

  test('helperArgs: handles in --ns, files as --ns-file, a pid join with its start time; a missing handle is USAGE', () => {
    const ns = [
      { type: 'net' as const, inode: 2, handle: 'f1:02', file: '/s/net' },
      { type: 'user' as const, inode: 1, handle: 'f1:01', file: '/s/user' },
    ];
    const base = { mode: 'join' as const, command: ['true'], goAtOnce: true };
    const byHandle = helperArgs({ ...base, join: { source: { via: 'handle' }, namespaces: ns } });
    assert.ok(byHandle.includes('--ns=user:1:f1:01,net:2:f1:02'), byHandle.join(' '));
    const byFile = helperArgs({ ...base, join: { source: { via: 'file' }, namespaces: ns } });
    assert.ok(byFile.includes('--ns=user:1,net:2'));
    assert.ok(byFile.includes('--ns-file=user:/s/user') && byFile.includes('--ns-file=net:/s/net'));
    const byPid = helperArgs({ ...base, join: { pid: 42, startTime: '99', namespaces: ns } });
    assert.ok(
      byPid.includes('--target=42') &&
        byPid.includes('--start-time=99') &&
        byPid.includes('--ns=user:1,net:2'),
    );
    assert.throws(
      () =>
        helperArgs({
          ...base,
          join: { source: { via: 'handle' }, namespaces: [{ type: 'user', inode: 1 }] },
        }),
      (e: unknown) => e instanceof SpawnError && e.code === 'USAGE',
    );
    assert.ok(
      helperArgs({ ...base, join: { source: { via: 'handle' }, namespaces: ns }, noHandles: true }).includes(
        '--no-handles',
      ),
    );
  });

  test('probe: handles and pidfds on this kernel, none with --no-handles, a forged handle does not reopen', (t) => {
    const p = probeNsfs(['f1:00', 'zz', `f1:${'00'.repeat(129)}`]);
    assert.equal(p.pidfd, null, 'pidfd_open works (Linux 5.3+)');
    if (p.encode !== null) {
      t.skip(`kernel: no nsfs handles (${p.encode}); Linux 6.18+`);
      return;
    }
    assert.equal(p.decode, null);
    assert.deepEqual(
      p.handles.map((h) => h.errno),
      ['ESTALE', 'EINVAL', 'EINVAL'],
    );
    const off = probeNsfs(['f1:00'], { noHandles: true });
    assert.equal(off.encode, 'EOPNOTSUPP');
    assert.equal(off.handles[0]?.errno, 'EOPNOTSUPP');
  });

  test('bind never mounts through a symbolic link or onto a directory; unbind of a plain file is EINVAL', () => {
    const target = join(dir, 'target');
    writeFileSync(target, '');
    const link = join(dir, 'link');
    symlinkSync(target, link);
    const sub = join(dir, 'sub');
    mkdirSync(sub);
    const viaLink = bindNamespaceFiles(process.pid, [{ type: 'user', file: link }]);
    assert.deepEqual(viaLink.bound, []);
    assert.equal(viaLink.failure?.step, 'bind');
    // O_PATH|O_NOFOLLOW opens the link itself, which is not a regular file: refused.
    assert.equal(viaLink.failure?.errno, 'EINVAL');
    const ontoDir = bindNamespaceFiles(process.pid, [{ type: 'user', file: sub }]);
    assert.equal(ontoDir.failure?.errno, 'EINVAL');
    assert.deepEqual(unbindFiles([target, join(dir, 'missing')]), ['EINVAL', 'ENOENT']);
  });
});
