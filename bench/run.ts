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

/** Issue 18's targets, printed beside each ratio at the end. */
const TARGETS: { key: string; op: '<=' | '>=' | 'beside'; target: number; what: string }[] = [
  { key: 'cli_run_vs_node_start_ratio', op: '<=', target: 1.2, what: 'userns run -- true / node -e 0' },
  {
    key: 'cli_map_split_vs_node_start_ratio',
    op: '<=',
    target: 1.1,
    what: 'userns map split --parent self 0:0:100 / node -e 0',
  },
  {
    key: 'node_spawn_true_vs_node_start_ratio',
    op: 'beside',
    target: 0,
    what: 'the floor: node spawning /bin/true / node -e 0',
  },
  { key: 'shift_vs_chown_ratio', op: '>=', target: 1.0, what: 'shift (defaults) speed / chown -hR speed' },
  {
    key: 'shift_vs_chown_ceiling',
    op: 'beside',
    target: 0,
    what: 'the most any ACL-aware shift could be here (statx + llistxattr + fchownat per entry)',
  },
  {
    key: 'shift_checked_ceiling',
    op: 'beside',
    target: 0,
    what: 'the same for a check pass and an apply pass that each read the owner (two statx)',
  },
  {
    key: 'shift_single_pass_vs_chown_ratio',
    op: 'beside',
    target: 0,
    what: 'shift with --unmapped skip (one pass, no check) / chown -hR',
  },
  {
    key: 'userns_spawn_vs_unshare_ratio',
    op: '<=',
    target: 1.0,
    what: 'spawn() / unshare --user --map-root-user /bin/true (root, from Node)',
  },
  {
    key: 'userns_spawn_rootless_vs_unshare_map_auto_ratio',
    op: 'beside',
    target: 0,
    what: 'rootless spawn() / unshare --map-auto --map-root-user (same user)',
  },
];

const wanted = process.argv.slice(2);
const resultsPath = fileURLToPath(new URL('../../bench/results.json', import.meta.url));
const results: Record<string, unknown> = existsSync(resultsPath)
  ? JSON.parse(readFileSync(resultsPath, 'utf8'))
  : {};
const { cpus, loadavg } = await import('node:os');
/** The keys this run measured (results.json keeps older figures of groups not run). */
const measured = new Set<string>();
const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
for (const [name, run] of Object.entries(groups)) {
  if (wanted.length > 0 && !wanted.includes(name)) continue;
  const before = loadavg()[0]!;
  process.stderr.write(`bench: ${name}… (load ${load()})\n`);
  const figures = await run();
  for (const key of Object.keys(figures)) measured.add(key);
  Object.assign(results, figures);
  // The machine's load while the group ran (1-minute average, mean of start and end): the
  // ratios are side by side, but a loaded machine still skews start-up against spawn.
  results[`load_${name}`] = Math.round(((before + loadavg()[0]!) / 2) * 100) / 100;
}
results.machine = `${process.version}, ${cpus().length} cores, ${new Date().toISOString().slice(0, 10)}`;
writeFileSync(resultsPath, `${JSON.stringify(results, null, 2)}\n`);
console.log(JSON.stringify(results, null, 2));
console.log(`\nTargets (issue 18); load now ${load()}:`);
for (const t of TARGETS) {
  const value = results[t.key];
  const shown = typeof value === 'number' ? value.toFixed(2) : 'n/a';
  const verdict = !measured.has(t.key)
    ? 'old'
    : typeof value !== 'number' || t.op === 'beside'
      ? ''
      : (t.op === '<=' ? value <= t.target : value >= t.target)
        ? 'met'
        : 'NOT met';
  const target = t.op === 'beside' ? 'reported' : `${t.op} ${t.target.toFixed(1)}`;
  console.log(
    `  ${t.key.padEnd(48)} ${shown.padStart(6)}  target ${target.padEnd(8)} ${verdict.padEnd(7)} ${t.what}`,
  );
}
