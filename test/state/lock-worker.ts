/** A process that increments a counter file N times under the lock (for the lock tests). */
import { readFileSync, writeFileSync } from 'node:fs';
import { withLock } from '../../src/state/lock.js';

const [lockPath, counterPath, times, mode] = process.argv.slice(2);
if (mode === 'hold') {
  // Take the lock and never give it back (the test SIGKILLs us).
  const { acquireLock } = await import('../../src/state/lock.js');
  await acquireLock(lockPath!);
  process.stdout.write('held\n');
  setInterval(() => {}, 1000);
} else {
  for (let i = 0; i < Number(times); i++) {
    await withLock(lockPath!, () => {
      const n = Number(readFileSync(counterPath!, 'utf8'));
      // Read-modify-write with a yield in between: without mutual exclusion updates get lost.
      writeFileSync(counterPath!, String(n + 1));
    });
  }
}
