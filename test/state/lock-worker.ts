/**
 * A process that takes file locks (for test/state/lock.test.ts).
 *   count LOCK COUNTER N   N read-modify-write increments of COUNTER, each under LOCK
 *   hold LOCK              takes LOCK, prints "held", waits to be killed
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { acquireFileLock, withFileLock } from '../../src/state/lock.js';

const [mode, lock, counter, count] = process.argv.slice(2);
if (mode === 'hold') {
  await acquireFileLock(lock!);
  process.stdout.write('held\n');
  setInterval(() => {}, 1 << 30);
} else {
  for (let i = 0; i < Number(count); i++) {
    await withFileLock(
      lock!,
      () => {
        const n = Number(readFileSync(counter!, 'utf8'));
        writeFileSync(counter!, String(n + 1));
      },
      { timeoutMs: 60_000 },
    );
  }
}
