/**
 * scripts/test-etc-guard.mjs, the suite's guard of the account files, on a substitute /etc:
 * byte-for-byte restore after a run, recovery of a backup left by a run that died, stale shadow
 * lock files, and the flock(2) lock (held by an fd, released when its holder dies).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

const base = mkdtempSync(join(tmpdir(), 'userns-guard-'));
after(() => rmSync(base, { recursive: true, force: true }));
const etc = join(base, 'etc');
mkdirSync(etc);
process.env.USERNS_TEST_ETC_DIR = etc;
process.env.USERNS_TEST_ETC_BACKUP = join(base, 'backup');
process.env.USERNS_TEST_ETC_LOCK = join(base, 'lock');
const GUARD = new URL('../../../scripts/test-etc-guard.mjs', import.meta.url).href;

interface Guard {
  acquireLock(waitSeconds?: number): number;
  backup(runDir?: string): { recovered: string[]; staleRunDir: string | null };
  restoreAndClear(): string[];
  BACKUP_DIR: string;
  LOCK: string;
}
const guard = (await import(GUARD)) as Guard;
const flockInstalled = spawnSync('flock', ['--version']).status === 0;

describe('the account-file guard', () => {
  test('a run that changed the files gets them back byte for byte, mode kept; absent files stay absent', () => {
    writeFileSync(join(etc, 'subuid'), 'containers:231072:65536\nalice:100000:65536'); // no final newline
    writeFileSync(join(etc, 'passwd'), 'root:x:0:0::/root:/bin/sh\n');
    chmodSync(join(etc, 'passwd'), 0o640);
    const before = readFileSync(join(etc, 'subuid'));
    guard.backup();
    writeFileSync(
      join(etc, 'subuid'),
      'containers:231072:65536\nalice:100000:65536\nuserns-t1:2000000000:65536\n',
    );
    chmodSync(join(etc, 'passwd'), 0o644);
    writeFileSync(join(etc, 'subgid'), 'created by the run\n');
    writeFileSync(join(etc, 'passwd.lock'), '999999999'); // left by a dead useradd
    const changed = guard.restoreAndClear();
    assert.deepEqual(readFileSync(join(etc, 'subuid')), before);
    assert.equal(statSync(join(etc, 'passwd')).mode & 0o777, 0o640);
    assert.equal(existsSync(join(etc, 'subgid')), false);
    assert.equal(existsSync(join(etc, 'passwd.lock')), false);
    assert.deepEqual(
      changed.sort(),
      [join(etc, 'passwd'), join(etc, 'passwd.lock'), join(etc, 'subgid'), join(etc, 'subuid')].sort(),
    );
    assert.equal(existsSync(guard.BACKUP_DIR), false);
  });

  test('a run that died with the files changed: the next run restores them from its backup first', () => {
    writeFileSync(join(etc, 'group'), 'root:x:0:\n');
    const before = readFileSync(join(etc, 'group'));
    guard.backup('/tmp/userns-test-dead'); // the run that will die
    writeFileSync(join(etc, 'group'), 'root:x:0:\nuserns-t2:x:1234:\n');
    const next = guard.backup('/tmp/userns-test-next'); // the next run, under the lock
    assert.deepEqual(next.recovered, [join(etc, 'group')]);
    assert.equal(next.staleRunDir, '/tmp/userns-test-dead');
    assert.deepEqual(readFileSync(join(etc, 'group')), before);
    assert.deepEqual(guard.restoreAndClear(), []);
  });

  test('one lock: a second holder waits; the lock goes with its holder, even killed', {
    skip: flockInstalled ? false : 'flock (util-linux) is not installed',
  }, async () => {
    const script = `const g = await import(${JSON.stringify(GUARD)}); g.acquireLock(); process.stdout.write('held\\n'); setInterval(() => {}, 1000);`;
    const holder = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve) => holder.stdout.on('data', () => resolve()));
    assert.notEqual(spawnSync('flock', ['-n', guard.LOCK, 'true']).status, 0, 'held by the other process');
    holder.kill('SIGKILL');
    await new Promise((resolve) => holder.on('exit', resolve));
    assert.equal(spawnSync('flock', ['-n', guard.LOCK, 'true']).status, 0, 'released by its death');
    const fd = guard.acquireLock(5);
    assert.notEqual(spawnSync('flock', ['-n', guard.LOCK, 'true']).status, 0);
    spawnSync('true');
    // closing our fd releases it
    (await import('node:fs')).closeSync(fd);
    assert.equal(spawnSync('flock', ['-n', guard.LOCK, 'true']).status, 0);
  });
});
