import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { acquireFileLock, tryFileLock, withFileLock } from '../../src/state/lock.js';

const dir = mkdtempSync(join(tmpdir(), 'userns-lock-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const worker = fileURLToPath(new URL('./lock-worker.js', import.meta.url));
const BIN = fileURLToPath(new URL('../../../bin/userns', import.meta.url));

function runWorker(args: string[]): Promise<number | null> {
  return new Promise((resolve) =>
    spawn(process.execPath, [worker, ...args], { stdio: 'inherit' }).on('exit', resolve),
  );
}

/** Starts a holder (optionally through `userns run …`) and waits until it holds the lock. */
async function holder(lock: string, prefix: string[] = []): Promise<ChildProcess> {
  const argv = [...prefix, process.execPath, worker, 'hold', lock];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`holder exited ${code}`)));
  });
  return child;
}

async function kill(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

describe('file locks (flock on a description this process keeps open)', { timeout: 60_000 }, () => {
  test('6 processes × 10 read-modify-write increments lose no update', async () => {
    const lock = join(dir, 'count.lock');
    const counter = join(dir, 'count');
    writeFileSync(counter, '0');
    const codes = await Promise.all(
      Array.from({ length: 6 }, () => runWorker(['count', lock, counter, '10'])),
    );
    assert.deepEqual(codes, Array(6).fill(0));
    assert.equal(readFileSync(counter, 'utf8'), '60');
  });

  test('a live holder makes others wait, then time out with a typed error; SIGKILL frees it', async () => {
    const lock = join(dir, 'busy.lock');
    const child = await holder(lock);
    assert.equal(await tryFileLock(lock), undefined);
    await assert.rejects(acquireFileLock(lock, { timeoutMs: 100, what: 'the test lock' }), {
      code: 'LOCK_TIMEOUT',
      message: /the test lock/,
    });
    await kill(child);
    // The kernel drops a killed holder's lock: acquiring succeeds (no timed assertion; the bound
    // only keeps a broken lock from hanging the test).
    const held = await acquireFileLock(lock, { timeoutMs: 20_000 });
    held.release();
  });

  test('in one process, two holders exclude each other too', async () => {
    const lock = join(dir, 'same.lock');
    const first = await acquireFileLock(lock);
    assert.equal(await tryFileLock(lock), undefined);
    first.release();
    const second = await tryFileLock(lock);
    assert.ok(second);
    second.release();
  });

  test('a holder in another PID and mount namespace excludes us, and its death frees the lock', async () => {
    const lock = join(dir, 'pidns.lock');
    const child = await holder(lock, [BIN, 'run', '--unshare', 'pid,mount', '--']);
    try {
      assert.equal(await tryFileLock(lock), undefined, 'held from inside a PID namespace');
      // SIGKILL the holder itself (PID 1 of its namespace; its PID here found through /proc).
      const pids = readdirSync('/proc').filter((p) => {
        if (!/^[0-9]+$/.test(p)) return false;
        try {
          const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
          return argv[0] === process.execPath && argv.includes(lock);
        } catch {
          return false;
        }
      });
      assert.equal(pids.length, 1, `one holder process (${pids})`);
      process.kill(Number(pids[0]), 'SIGKILL');
      const held = await acquireFileLock(lock, { timeoutMs: 5000 });
      held.release();
    } finally {
      if (child.exitCode === null) await kill(child);
    }
  });

  test('a holder that removes the file: a waiter starts over on the new file', async () => {
    const lock = join(dir, 'removed.lock');
    const first = await acquireFileLock(lock);
    const waiting = acquireFileLock(lock, { timeoutMs: 5000 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    first.release({ remove: true });
    const second = await waiting;
    assert.ok(existsSync(lock), 'the waiter re-created the file it holds');
    // A third party sees the file at the path locked.
    assert.equal(await tryFileLock(lock), undefined);
    second.release();
  });

  test('withFileLock runs the function and releases even when it throws', async () => {
    const lock = join(dir, 'with.lock');
    await assert.rejects(
      withFileLock(lock, () => {
        throw new Error('boom');
      }),
      /boom/,
    );
    const again = await tryFileLock(lock);
    assert.ok(again);
    again.release();
  });

  test('a symbolic link or a directory where the lock file goes: typed errors naming the path', async () => {
    const link = join(dir, 'link.lock');
    symlinkSync(join(dir, 'elsewhere'), link);
    await assert.rejects(acquireFileLock(link), (error: Error & { code: string; data: { path: string } }) => {
      assert.equal(error.code, 'STATE_FILE_UNSAFE');
      assert.equal(error.data.path, link);
      return true;
    });
    assert.equal(existsSync(join(dir, 'elsewhere')), false, 'the link was not followed');
    const directory = join(dir, 'dir.lock');
    mkdirSync(directory);
    await assert.rejects(
      acquireFileLock(directory),
      (error: Error & { code: string; data: { path: string } }) => {
        assert.equal(error.code, 'STATE_FILE_NOT_A_FILE');
        assert.equal(error.data.path, directory);
        return true;
      },
    );
  });
});
