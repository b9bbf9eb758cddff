/**
 * `npm run bench`: runs every benchmark and writes bench/results.json (merged with the figures
 * already there, so one group can be re-run alone: `node dist/bench/run.js idmap`).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const groups: Record<string, () => Promise<Record<string, number | null>>> = {
  idmap: async () => (await import('./idmap.js')).benchIdmap(),
  spawn: async () => (await import('./spawn.js')).benchSpawn(),
  alloc: async () => (await import('./alloc.js')).benchAlloc(),
  named: async () => (await import('./named.js')).benchNamed(),
  shift: async () => (await import('./shift.js')).benchShift(),
  fleet: async () => (await import('./fleet.js')).benchFleet(),
};

const wanted = process.argv.slice(2);
const resultsPath = fileURLToPath(new URL('../../bench/results.json', import.meta.url));
const results: Record<string, unknown> = existsSync(resultsPath)
  ? JSON.parse(readFileSync(resultsPath, 'utf8'))
  : {};
for (const [name, run] of Object.entries(groups)) {
  if (wanted.length > 0 && !wanted.includes(name)) continue;
  process.stderr.write(`bench: ${name}…\n`);
  Object.assign(results, await run());
}
results.machine = `${process.version}, ${(await import('node:os')).cpus().length} cores, ${new Date().toISOString().slice(0, 10)}`;
writeFileSync(resultsPath, `${JSON.stringify(results, null, 2)}\n`);
console.log(JSON.stringify(results, null, 2));
