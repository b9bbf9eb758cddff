/**
 * Tree shifting benchmarks (root): a generated tree of 100,000 entries (1,000 directories of 99
 * files), on the filesystem of the system temp directory. Rounds alternate the variants over the
 * same tree so machine noise hits all alike; medians.
 *
 *   shift_files_per_s          shiftTree 0:0:65536 → 0:100000:65536 and back, defaults (first
 *                              read-only pass for unmapped IDs, protective user namespace)
 *   shift_single_pass_files_per_s   the same with unmapped: 'skip' (no first pass)
 *   shift_one_worker_files_per_s    the defaults with one walk process instead of one per CPU
 *   chown_files_per_s          `chown -hR UID:GID` on the same tree (the same chown per entry,
 *                              no lookups, no xattrs: the practical limit)
 *   shift_vs_chown_ratio       shift_files_per_s / chown_files_per_s (target ≥ 1.0, issue 18)
 *   shift_two_phase_files_per_s     the defaults between overlapping ranges, 0:0:65536 →
 *                              0:1000:65536: through an intermediate range (two walks and a
 *                              first check), so that an interrupted shift can be finished
 *   shift_two_phase_vs_direct_ratio shift_two_phase_files_per_s / shift_files_per_s (about 0.5
 *                              expected: every entry is written twice)
 *   fit_files_per_s            fitTree over the same tree
 *   syscalls_per_entry_*       with strace installed: `strace -c -f` of one default shift (one
 *                              worker, so the counts are the walk's, not the scheduling's) and of
 *                              `chown -hR`, system calls per entry by name (those ≥ 0.005), and
 *                              the total; the table is printed to stderr
 *   syscall_us_*               with a C compiler: microseconds per call of getppid (a bare
 *                              system call), statx, llistxattr and fchownat on the tree's files
 *                              (bench/syscall-cost.c)
 *   shift_vs_chown_ceiling     the most shift_vs_chown_ratio could be here for any shift that
 *                              keeps ACLs and capabilities right: it needs at least statx +
 *                              llistxattr + fchownat per entry, chown -hR its measured time per
 *                              entry; with one walk per core and nothing else costing anything,
 *                              cores × chown's time per entry / the three calls' time
 *   shift_checked_ceiling      the same for this design of the default (all-or-nothing) shift,
 *                              which reads each entry's owner in the check pass and again right
 *                              before it changes it: two statx per entry
 *
 * Every shift writes and removes its progress record in a state root of the bench's own.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IdMap } from '../src/idmap/idmap.js';
import { fitTree } from '../src/shift/fit.js';
import { shiftTree } from '../src/shift/shift.js';

/** `strace -c -f` of argv: calls per syscall name (null when strace is missing or failed). */
function straceCounts(argv: string[], out: string): Map<string, number> | null {
  const r = spawnSync('strace', ['-c', '-f', '-o', out, ...argv], { stdio: 'ignore' });
  if (r.error !== undefined || r.status !== 0) return null;
  const counts = new Map<string, number>();
  for (const line of readFileSync(out, 'utf8').split('\n')) {
    // "% time  seconds  usecs/call  calls  errors syscall": the errors column may be empty.
    const f = line.trim().split(/\s+/);
    if (f.length < 5 || !/^\d/.test(f[0]!) || f[f.length - 1] === 'total') continue;
    counts.set(f[f.length - 1]!, Number(f[3]));
  }
  return counts;
}

/**
 * bench/syscall-cost.c, compiled with cc into `work` and run on the tree: microseconds per call
 * by name; empty when there is no C compiler.
 */
function syscallCosts(work: string, tree: string): Record<string, number> {
  const source = fileURLToPath(new URL('../../bench/syscall-cost.c', import.meta.url));
  const binary = join(work, 'syscall-cost');
  const built = spawnSync(process.env.CC || 'cc', ['-O2', '-o', binary, source], { stdio: 'inherit' });
  if (built.error !== undefined || built.status !== 0) return {};
  const r = spawnSync(binary, [tree, String(DIRS), String(FILES_PER_DIR)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`syscall-cost failed: ${r.stderr}`);
  const out: Record<string, number> = {};
  for (const line of r.stdout.trim().split('\n')) {
    const [name, us] = line.split(' ');
    out[`syscall_us_${name}`] = Number(us);
  }
  return out;
}

/** Syscalls per entry of a default shift (one worker) and of chown -hR, as result keys; prints the table. */
function syscallsPerEntry(work: string, tree: string, entries: number): Record<string, number> {
  if (spawnSync('strace', ['-V'], { stdio: 'ignore' }).status !== 0) return {};
  const shiftModule = new URL('../src/shift/shift.js', import.meta.url).href;
  const idmapModule = new URL('../src/idmap/idmap.js', import.meta.url).href;
  const script = `import { shiftTree } from ${JSON.stringify(shiftModule)};
    import { IdMap } from ${JSON.stringify(idmapModule)};
    const m = (o) => { const x = new IdMap([{ inside: 0, outside: o, count: 65536 }]); return { uid: x, gid: x }; };
    await shiftTree(${JSON.stringify(tree)}, { from: m(0), to: m(100000), workers: 1, stateRoot: ${JSON.stringify(join(work, 'state'))} });`;
  spawnSync('chown', ['-hR', '0:0', tree]);
  const shift = straceCounts(
    [process.execPath, '--input-type=module', '-e', script],
    join(work, 'strace-shift'),
  );
  const chown = straceCounts(['chown', '-hR', '0:0', tree], join(work, 'strace-chown'));
  if (shift === null || chown === null) return {};
  const out: Record<string, number> = {};
  const rows: string[] = [];
  const names = [...new Set([...shift.keys(), ...chown.keys()])]
    .map((name) => [name, (shift.get(name) ?? 0) / entries, (chown.get(name) ?? 0) / entries] as const)
    .filter(([, a, b]) => a >= 0.005 || b >= 0.005)
    .sort((x, y) => y[1] + y[2] - (x[1] + x[2]));
  const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0) / entries;
  for (const [name, a, b] of names) {
    out[`syscalls_per_entry_shift_${name}`] = Math.round(a * 1000) / 1000;
    out[`syscalls_per_entry_chown_${name}`] = Math.round(b * 1000) / 1000;
    rows.push(`  ${name.padEnd(14)} ${a.toFixed(3).padStart(8)} ${b.toFixed(3).padStart(8)}`);
  }
  out.syscalls_per_entry_shift = Math.round(sum(shift) * 1000) / 1000;
  out.syscalls_per_entry_chown = Math.round(sum(chown) * 1000) / 1000;
  process.stderr.write(
    `bench: strace -c -f, system calls per entry (${entries} entries; shift: defaults, 1 worker)\n` +
      `  ${'syscall'.padEnd(14)} ${'shift'.padStart(8)} ${'chown -hR'.padStart(9)}\n${rows.join('\n')}\n` +
      `  ${'all'.padEnd(14)} ${sum(shift).toFixed(3).padStart(8)} ${sum(chown).toFixed(3).padStart(8)}\n`,
  );
  return out;
}

const DIRS = 1000;
const FILES_PER_DIR = 99;
const ROUNDS = Number(process.env.USERNS_BENCH_SHIFT_ROUNDS ?? 5);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export async function benchShift(): Promise<Record<string, number>> {
  if (process.geteuid?.() !== 0) return {};
  const work = mkdtempSync(join(tmpdir(), 'userns-bench-shift-'));
  const tree = join(work, 'tree');
  try {
    for (let d = 0; d < DIRS; d++) {
      const dir = join(tree, `d${d}`);
      mkdirSync(dir, { recursive: true });
      for (let f = 0; f < FILES_PER_DIR; f++) writeFileSync(join(dir, `f${f}`), '');
    }
    const entries = 1 + DIRS * (FILES_PER_DIR + 1);
    const a = new IdMap([{ inside: 0, outside: 0, count: 65536 }]);
    const b = new IdMap([{ inside: 0, outside: 100000, count: 65536 }]);
    const c = new IdMap([{ inside: 0, outside: 1000, count: 65536 }]);
    const stateRoot = join(work, 'state');
    const maps = (x: IdMap) => ({ uid: x, gid: x });
    const shiftRates: number[] = [];
    const singlePassRates: number[] = [];
    const chownRates: number[] = [];
    const fitRates: number[] = [];
    const oneWorkerRates: number[] = [];
    const twoPhaseRates: number[] = [];
    const timed = async (fn: () => unknown): Promise<number> => {
      const t = performance.now();
      await fn();
      return entries / ((performance.now() - t) / 1000);
    };
    for (let round = 0; round < ROUNDS; round++) {
      // tree owned by 0 → shift to 100000 → chown back to 0 → single-pass shift → chown back
      shiftRates.push(await timed(() => shiftTree(tree, { from: maps(a), to: maps(b), stateRoot })));
      chownRates.push(await timed(() => spawnSync('chown', ['-hR', '0:0', tree])));
      singlePassRates.push(
        await timed(() => shiftTree(tree, { from: maps(a), to: maps(b), unmapped: 'skip', stateRoot })),
      );
      chownRates.push(await timed(() => spawnSync('chown', ['-hR', '0:0', tree])));
      oneWorkerRates.push(
        await timed(() => shiftTree(tree, { from: maps(a), to: maps(b), workers: 1, stateRoot })),
      );
      chownRates.push(await timed(() => spawnSync('chown', ['-hR', '0:0', tree])));
      twoPhaseRates.push(await timed(() => shiftTree(tree, { from: maps(a), to: maps(c), stateRoot })));
      chownRates.push(await timed(() => spawnSync('chown', ['-hR', '0:0', tree])));
      fitRates.push(await timed(() => fitTree(tree, b)));
    }
    const shift = median(shiftRates);
    const chown = median(chownRates);
    const syscalls = syscallsPerEntry(work, tree, entries);
    const costs = syscallCosts(work, tree);
    const statx = costs.syscall_us_statx ?? 0;
    const needed = statx + (costs.syscall_us_llistxattr ?? 0) + (costs.syscall_us_fchownat ?? 0);
    const bound = (us: number) => Math.round(((availableParallelism() * 1e6) / chown / us) * 100) / 100;
    const ceiling: Record<string, number> =
      needed > 0
        ? { shift_vs_chown_ceiling: bound(needed), shift_checked_ceiling: bound(needed + statx) }
        : {};
    return {
      ...syscalls,
      ...costs,
      ...ceiling,
      shift_files_per_s: Math.round(shift),
      shift_single_pass_files_per_s: Math.round(median(singlePassRates)),
      chown_files_per_s: Math.round(chown),
      shift_vs_chown_ratio: Math.round((shift / chown) * 100) / 100,
      shift_single_pass_vs_chown_ratio: Math.round((median(singlePassRates) / chown) * 100) / 100,
      shift_one_worker_files_per_s: Math.round(median(oneWorkerRates)),
      shift_one_worker_vs_chown_ratio: Math.round((median(oneWorkerRates) / chown) * 100) / 100,
      shift_two_phase_files_per_s: Math.round(median(twoPhaseRates)),
      shift_two_phase_vs_direct_ratio: Math.round((median(twoPhaseRates) / shift) * 100) / 100,
      fit_files_per_s: Math.round(median(fitRates)),
    };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
