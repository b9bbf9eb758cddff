import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { IdMap } from '../../src/idmap/idmap.js';
import {
  pageSize,
  parseProcStat,
  readIdMap,
  readNamespaceInode,
  readProcessStartTime,
  readSetgroups,
} from '../../src/system/proc.js';
import { readablePath } from '../fixtures/readable-repo.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startChild(file: string, args: string[]): Promise<ChildProcess & { pid: number }> {
  const child = spawn(file, args, { stdio: 'ignore' });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  return child as ChildProcess & { pid: number };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

/** Waits until the process has left our user namespace and written its map. */
async function waitForMap(pid: number, kind: 'uid' | 'gid'): Promise<void> {
  const own = await readNamespaceInode('self', 'user');
  for (let i = 0; i < 300; i++) {
    try {
      if (
        (await readNamespaceInode(pid, 'user')) !== own &&
        (await readFile(`/proc/${pid}/${kind}_map`, 'latin1')).trim() !== ''
      )
        return;
    } catch {
      // not yet
    }
    await sleep(10);
  }
  throw new Error(`${kind}_map of ${pid} never written`);
}

const canUnshare = spawnSync('unshare', ['--user', '--map-root-user', 'true']).status === 0;

describe('/proc readers', () => {
  test('own maps and setgroups', async () => {
    const uid = await readIdMap('self', 'uid');
    assert.ok(uid instanceof IdMap);
    assert.ok(uid.extents.length >= 1);
    const gid = await readIdMap('self', 'gid');
    assert.ok(gid.extents.length >= 1);
    const text = await readFile('/proc/self/uid_map', 'latin1');
    assert.equal(uid.extents.length, text.trim().split('\n').length);
    assert.ok(['allow', 'deny'].includes(await readSetgroups('self')));
    assert.equal(await readSetgroups(process.pid), await readSetgroups('self'));
  });

  test('a spawned child: same namespaces, a start time, maps', async () => {
    const child = await startChild('sleep', ['30']);
    try {
      assert.deepEqual((await readIdMap(child.pid, 'uid')).extents, (await readIdMap('self', 'uid')).extents);
      for (const ns of ['user', 'mnt', 'pid', 'net'] as const) {
        const own = await readNamespaceInode('self', ns);
        assert.ok(Number.isInteger(own) && own > 0);
        assert.equal(await readNamespaceInode(child.pid, ns), own, ns);
      }
      const mine = await readProcessStartTime('self');
      const its = await readProcessStartTime(child.pid);
      assert.equal(typeof its, 'bigint');
      assert.ok(mine !== undefined && its !== undefined && its >= mine);
      assert.equal(await readProcessStartTime(child.pid), its, 'stable');
    } finally {
      await stop(child);
    }
  });

  test('a process that is gone', async () => {
    const child = await startChild('true', []);
    const pid = child.pid;
    await new Promise((r) => child.once('exit', r));
    await sleep(20);
    assert.equal(await readProcessStartTime(pid), undefined);
    await assert.rejects(readIdMap(pid, 'uid'), { code: 'PROC_NO_SUCH_PROCESS' });
    await assert.rejects(readSetgroups(pid), { code: 'PROC_NO_SUCH_PROCESS' });
    await assert.rejects(readNamespaceInode(pid, 'user'), { code: 'PROC_NO_SUCH_PROCESS' });
    await assert.rejects(readIdMap(0, 'uid'), { code: 'PROC_BAD_PID' });
    await assert.rejects(readIdMap(-5 as number, 'uid'), { code: 'PROC_BAD_PID' });
  });

  test('the start time of a process whose name has spaces and parentheses', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'userns-proc-'));
    const odd = join(dir, 'a) b (c) d');
    await copyFile('/bin/sleep', odd);
    const { chmod } = await import('node:fs/promises');
    await chmod(odd, 0o755);
    const child = await startChild(odd, ['30']);
    try {
      const stat = await readFile(`/proc/${child.pid}/stat`, 'latin1');
      const parsed = parseProcStat(stat);
      assert.equal(parsed.pid, child.pid);
      assert.equal(parsed.comm, 'a) b (c) d');
      assert.match(parsed.fields[0]!, /^[RSDTtZXIWPK]$/);
      // Field 22 is 20 fields after the comm's ')'.
      const expected = BigInt(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!);
      assert.equal(await readProcessStartTime(child.pid), expected);
      // A naive split on spaces would be off by 3 fields.
      assert.notEqual(stat.split(' ')[21], String(expected));
    } finally {
      await stop(child);
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('parseProcStat on crafted text', () => {
    const text = `42 (x) (y)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 123456 rest\n`;
    const parsed = parseProcStat(text);
    assert.equal(parsed.comm, 'x) (y)');
    assert.equal(parsed.fields[0], 'S');
    assert.equal(parsed.fields[19], '123456');
    assert.throws(() => parseProcStat('garbage'), { code: 'PROC_STAT_SYNTAX' });
    assert.throws(() => parseProcStat('x (a) S'), { code: 'PROC_STAT_SYNTAX' });
  });

  test('a child in its own user namespace: its map, setgroups deny, a different user ns', {
    skip: canUnshare ? undefined : 'unshare --user does not work here',
  }, async () => {
    const child = await startChild('unshare', ['--user', '--map-root-user', 'sleep', '30']);
    try {
      await waitForMap(child.pid, 'uid');
      await waitForMap(child.pid, 'gid');
      const euid = process.geteuid!();
      assert.deepEqual((await readIdMap(child.pid, 'uid')).extents, [{ inside: 0, outside: euid, count: 1 }]);
      assert.deepEqual((await readIdMap(child.pid, 'gid')).extents, [
        { inside: 0, outside: process.getegid!(), count: 1 },
      ]);
      assert.equal(await readSetgroups(child.pid), 'deny');
      assert.notEqual(await readNamespaceInode(child.pid, 'user'), await readNamespaceInode('self', 'user'));
      assert.equal(await readNamespaceInode(child.pid, 'mnt'), await readNamespaceInode('self', 'mnt'));
    } finally {
      await stop(child);
    }
  });

  test('a map written from outside, and read from inside that namespace: 4294967295 in column 2', {
    skip:
      process.geteuid?.() !== 0
        ? 'needs root (writes an arbitrary map)'
        : canUnshare
          ? undefined
          : 'unshare --user does not work here',
  }, async () => {
    // A child in a new user namespace without maps; as root we write a map that leaves kernel
    // uid 0 unmapped, then read the initial namespace's map from inside (docs/kernel-rules.md, "Reading a map back").
    const child = await startChild('unshare', ['--user', 'sleep', '30']);
    try {
      const own = await readNamespaceInode('self', 'user');
      for (let i = 0; i < 200 && (await readNamespaceInode(child.pid, 'user')) === own; i++) await sleep(10);
      assert.deepEqual((await readIdMap(child.pid, 'uid')).extents, [], 'no map written yet');
      await writeFile(`/proc/${child.pid}/uid_map`, '0 100000 65536\n');
      await writeFile(`/proc/${child.pid}/gid_map`, '0 100000 65536\n');
      assert.deepEqual((await readIdMap(child.pid, 'uid')).extents, [
        { inside: 0, outside: 100000, count: 65536 },
      ]);
      assert.equal(await readSetgroups(child.pid), 'allow');

      // Run as uid 100000: from the readable copy (the checkout may be private).
      const proc = readablePath('dist/src/system/proc.js');
      const script = `import(${JSON.stringify(proc)}).then(async (m) => console.log(JSON.stringify([(await m.readIdMap(1, 'uid')).extents, (await m.readIdMap('self', 'uid')).extents])))`;
      const r = spawnSync(
        'nsenter',
        ['--user', `--target=${child.pid}`, process.execPath, '--input-type=module', '-e', script],
        { encoding: 'utf8' },
      );
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), [
        [{ inside: 0, outside: 4294967295, count: 4294967295 }],
        // its own map, seen from inside: column 2 in the parent's terms
        [{ inside: 0, outside: 100000, count: 65536 }],
      ]);
    } finally {
      await stop(child);
    }
  });

  test('pageSize (from the auxiliary vector) equals getconf PAGESIZE, asked once', () => {
    const expected = Number(spawnSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).stdout.trim()) || 4096;
    assert.equal(pageSize(), expected);
    assert.equal(pageSize(), expected);
  });
});
