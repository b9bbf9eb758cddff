import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../../src/state/atomic.js';
import { acquireLock, withLock } from '../../src/state/lock.js';
import { validateName } from '../../src/state/names.js';

const dir = mkdtempSync(join(tmpdir(), 'userns-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const worker = fileURLToPath(new URL('./lock-worker.js', import.meta.url));

function runWorker(args: string[]): Promise<number | null> {
  return new Promise((resolve) =>
    spawn(process.execPath, [worker, ...args], { stdio: 'inherit' }).on('exit', resolve),
  );
}

describe('names', () => {
  test('valid names pass, everything that could escape the root is refused', () => {
    for (const ok of ['a', 'web-1', 'A_b+c.d', 'x'.repeat(128), '...']) assert.equal(validateName(ok), ok);
    for (const bad of ['', '.', '..', 'a/b', '../x', 'x'.repeat(129), 'a\0b', 'é', ' a', '/abs']) {
      assert.throws(() => validateName(bad), { code: 'INVALID_NAME' }, JSON.stringify(bad));
    }
  });
});

describe('atomic write', () => {
  test('replaces content and leaves no temp files', () => {
    const path = join(dir, 'state.json');
    writeFileAtomic(path, 'one');
    writeFileAtomic(path, 'two');
    assert.equal(readFileSync(path, 'utf8'), 'two');
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.startsWith('state.json.tmp')),
      [],
    );
  });
});

describe('lock', () => {
  test('8 processes × 40 read-modify-write increments lose no update', async () => {
    const lock = join(dir, 'count.lock');
    const counter = join(dir, 'count');
    writeFileSync(counter, '0');
    const codes = await Promise.all(Array.from({ length: 8 }, () => runWorker([lock, counter, '40'])));
    assert.deepEqual(codes, Array(8).fill(0));
    assert.equal(readFileSync(counter, 'utf8'), '320');
    assert.equal(existsSync(lock), false);
  });

  test('a holder killed with SIGKILL does not block the next one', async () => {
    const lock = join(dir, 'killed.lock');
    const child = spawn(process.execPath, [worker, lock, '', '0', 'hold'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
    assert.ok(existsSync(lock));
    child.kill('SIGKILL');
    await new Promise((resolve) => child.on('exit', resolve));
    const started = Date.now();
    await withLock(lock, () => undefined, { timeoutMs: 2000 });
    assert.ok(Date.now() - started < 2000);
    assert.equal(existsSync(lock), false);
  });

  test('a live holder makes others wait, then time out with a typed error', async () => {
    const lock = join(dir, 'busy.lock');
    const release = await acquireLock(lock);
    await assert.rejects(acquireLock(lock, { timeoutMs: 50 }), { code: 'LOCK_TIMEOUT' });
    release();
    const again = await acquireLock(lock, { timeoutMs: 50 });
    again();
  });
});
