/**
 * The helper's probe and bind modes and the join sources (src/native/nsfs.ts, protocol.md "Join
 * mode", "Bind mode", "Probe mode"): usage errors for mixed or missing sources, the argv the
 * driver builds, what probe says on this kernel and with --no-handles, and bind refusing links
 * and directories. The holds built on them are tested in test/named/hold.test.ts.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  constants,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SpawnError } from '../../src/errors/index.js';
import { helperArgs, helperPath } from '../../src/native/helper.js';
import { bindNamespaceFiles, probeNsfs, readAccessAcls, unbindFiles } from '../../src/native/nsfs.js';
import { decodeAccessAcl, formatAclEntry } from '../../src/system/posix-acl.js';
import { encodeAcl } from '../shift/oracle/acl-xattr.js';

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

  test('probe --acl: the raw access ACL of a pinned directory (getfacl agrees), ENODATA without one, more than 64 in batches', () => {
    const withAcl = join(dir, 'acl');
    const plain = join(dir, 'plain');
    mkdirSync(withAcl, { mode: 0o750 });
    mkdirSync(plain, { mode: 0o755 });
    const set = spawnSync('setfacl', ['-m', 'u:100000:x,g:100001:r', withAcl], { encoding: 'utf8' });
    assert.equal(set.status, 0, set.stderr);
    const fds = [withAcl, plain].map((p) => openSync(p, 0o10000000 | constants.O_DIRECTORY)); // O_PATH
    try {
      const paths = fds.map((fd) => `/proc/${process.pid}/fd/${fd}`);
      const [a, b] = readAccessAcls(paths);
      assert.ok(a !== undefined && 'bytes' in a, JSON.stringify(a));
      const entries = decodeAccessAcl(a.bytes);
      assert.ok(entries !== undefined);
      const getfacl = spawnSync('getfacl', ['--omit-header', '--numeric', withAcl], { encoding: 'utf8' });
      const expected = getfacl.stdout
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => l.replace(/\s*#.*$/, ''));
      assert.deepEqual(entries.map(formatAclEntry), expected);
      // The oracle's encoder writes the same bytes back (the C walk's codec agrees with it).
      assert.deepEqual(
        encodeAcl(
          entries.map((e) => ({
            ...e,
            tag: ({ user_obj: 1, user: 2, group_obj: 4, group: 8, mask: 0x10, other: 0x20 } as const)[e.tag],
            id: e.id ?? 0xffffffff,
          })),
        ),
        a.bytes,
      );
      assert.deepEqual(b, { errno: 'ENODATA' });
      // 70 paths: two helper runs, in order.
      const many = readAccessAcls(Array.from({ length: 70 }, (_, i) => paths[i % 2]!));
      assert.equal(many.length, 70);
      assert.deepEqual(many[69], { errno: 'ENODATA' });
      assert.ok('bytes' in many[68]!);
      assert.deepEqual(readAccessAcls([join(dir, 'missing')]), [{ errno: 'ENOENT' }]);
    } finally {
      for (const fd of fds) closeSync(fd);
    }
    assert.deepEqual(decodeAccessAcl(Buffer.from([2, 0, 0, 0, 0x40, 0, 7, 0, 0, 0, 0, 0])), undefined); // unknown tag
    assert.deepEqual(decodeAccessAcl(Buffer.from([1, 0, 0, 0])), undefined); // version 1
    assert.deepEqual(decodeAccessAcl(Buffer.from([2, 0, 0, 0, 1])), undefined); // torn entry
  });
});
