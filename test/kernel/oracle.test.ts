/**
 * The kernel is the oracle: random maps are written to real user namespaces and the kernel's
 * answer (success, EINVAL, EPERM) must equal validateMapText's verdict on every case; every split
 * that userns produces must be accepted and read back equivalent to the request.
 *
 * Layout: this process (root, initial namespace) creates a parent namespace P with a random map,
 * runs oracle-worker.js inside it as P's root, and the worker creates a child namespace C per
 * case and writes the case's text to C's uid_map or gid_map. Column 2 of C's map is in P's IDs,
 * so our verdict is validateMapText(text, { parent: P }).
 *
 * Reproduce a failure with USERNS_ORACLE_SEED=<seed printed below> npm test -- oracle
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Extent } from '../../src/idmap/extent.js';
import { formatKernelMap, parseKernelMap } from '../../src/idmap/formats/kernel.js';
import { IdMap } from '../../src/idmap/idmap.js';
import { mapsEqual } from '../../src/idmap/normalize.js';
import { punchHole } from '../../src/idmap/punch.js';
import { splitAcrossParent } from '../../src/idmap/split.js';
import { validateMapText } from '../../src/idmap/validate.js';
import { launchHelper } from '../../src/native/helper.js';
import { ORACLE_SEED, type SeededRandom, seededRandom } from './seeded-random.js';

const PARENTS = 10;
const CASES_PER_PARENT = 220; // 10 × 220 = 2,200 cases per run
const seed = ORACLE_SEED;
const isRoot = process.geteuid?.() === 0;

interface Case {
  id: number;
  kind: 'uid' | 'gid';
  text: string;
  /** For split cases: the request that was split (the read-back must equal it as pairs). */
  request?: Extent[];
}

/** A random valid parent map over small-ish IDs that maps 0 → 0 (so its root can read our files). */
function randomParent(r: SeededRandom): Extent[] {
  const n = r.int(1, r.next() < 0.2 ? 12 : 5);
  const extents: Extent[] = [];
  let inside = 1;
  const outsides: number[] = [];
  for (let i = 0; i < n; i++) {
    inside += r.int(0, 3) === 0 ? 0 : r.int(1, 50);
    const count = r.pick([1, 1, 2, r.int(1, 100), r.int(1, 1000), 65536]);
    outsides.push(count);
    extents.push({ inside, outside: 0, count });
    inside += count;
  }
  // Outside ranges: disjoint, in shuffled order, somewhere above 100000.
  const order = extents.map((_, i) => i).sort(() => r.next() - 0.5);
  let outside = 100000 + r.int(0, 1000);
  for (const i of order) {
    const e = extents[i]!;
    extents[i] = { ...e, outside };
    outside += e.count + (r.next() < 0.3 ? 0 : r.int(1, 5000));
  }
  // Sometimes put an extent near the top of the inside ID space.
  if (r.next() < 0.3) extents.push({ inside: 4294967295 - r.int(1, 10), outside: outside + 10, count: 1 });
  return [...punchHole(extents, { inside: 0, outside: 0, count: 1 }).extents].sort(() => r.next() - 0.5);
}

/** A random request (may be valid, overlapping, crossing extents, outside the parent, at the limits). */
function randomCase(r: SeededRandom, parent: Extent[], id: number): Case {
  const kind = r.next() < 0.8 ? 'uid' : 'gid';
  const parentIds = parent.flatMap((e) => [
    e.inside,
    e.inside + e.count - 1,
    e.inside + e.count,
    Math.max(0, e.inside - 1),
  ]);
  const nearId = () =>
    r.next() < 0.85
      ? r.pick(parentIds) + r.int(-2, 2)
      : r.pick([0, 1, 4294967294, 4294967295, 4294967293, r.int(0, 2 ** 32 - 1)]);
  const clampU32 = (x: number) => Math.min(4294967295, Math.max(0, x));
  const randomExtent = (): Extent => ({
    inside: clampU32(r.next() < 0.5 ? r.int(0, 300) : nearId()),
    outside: clampU32(nearId()),
    count: r.pick([0, 1, 1, 2, r.int(1, 10), r.int(1, 100), r.int(1, 70000), 4294967295 - r.int(0, 2)]),
  });
  const style = r.int(0, 9);
  if (style <= 2) {
    // A request inside the parent, split by userns: must be accepted and read back equal.
    const covered = parent[r.int(0, parent.length - 1)]!;
    const start = covered.inside + r.int(0, covered.count - 1);
    const request: Extent[] = [];
    let pos = start;
    let inside = r.int(0, 1000);
    for (let k = r.int(1, 3); k > 0; k--) {
      const p = parent.find((e) => pos >= e.inside && pos < e.inside + e.count);
      if (!p) break;
      // Extend across contiguous parent extents when there are some.
      let end = p.inside + p.count;
      for (;;) {
        const q = parent.find((e) => e.inside === end);
        if (!q || r.next() < 0.3) break;
        end = q.inside + q.count;
      }
      const count = r.int(1, end - pos);
      request.push({ inside, outside: pos, count });
      inside += count + r.int(0, 5);
      const nextP = parent.filter((e) => e.inside >= pos + count);
      if (nextP.length === 0) break;
      pos = r.pick(nextP).inside;
    }
    const split = splitAcrossParent(request, parent);
    return { id, kind, text: formatKernelMap(split.extents), request };
  }
  if (style === 3) {
    // Limits: many lines (around 340) of single IDs, sometimes padded towards the page size.
    const n = r.pick([339, 340, 341, r.int(5, 340)]);
    const base = r.pick(parent);
    const lines = Array.from({ length: n }, (_, i) => `${i} ${base.inside + (i % base.count)} 1`);
    const text = `${lines.join('\n')}\n`;
    const padded =
      r.next() < 0.5
        ? text
        : `${' '.repeat(Math.max(0, r.pick([4094, 4095, 4096, 4097]) - text.length))}${text}`;
    return { id, kind, text: padded };
  }
  if (style === 4) {
    // Grammar: whitespace variants, junk, blank lines.
    const e = randomExtent();
    const sep = () => r.pick([' ', '\t', '  ', '\v', '\f', '\r']);
    const variants = [
      `${e.inside}${sep()}${e.outside}${sep()}${e.count}${r.pick(['', '\n', ' \n', '\r\n', '\n\n'])}`,
      `${r.pick(['', ' ', '\n'])}${e.inside} ${e.outside} ${e.count}\n`,
      `${e.inside} ${e.outside}\n`,
      `${e.inside} ${e.outside} ${e.count} 7\n`,
      `+${e.inside} ${e.outside} ${e.count}\n`,
      `0${e.inside} 00${e.outside} ${e.count}\n`,
      `${e.inside} ${e.outside} ${e.count}x\n`,
      '',
      '\n',
    ];
    return { id, kind, text: r.pick(variants) };
  }
  // Random extents: overlaps, parent crossings, unmapped IDs, wraps, (u32)-1.
  const n = r.pick([1, 1, 2, 3, r.int(1, 8), r.int(6, 30)]);
  const extents = Array.from({ length: n }, randomExtent);
  return { id, kind, text: formatKernelMap(extents) };
}

async function runInParent(parent: Extent[], cases: Case[]) {
  const worker = fileURLToPath(new URL('./oracle-worker.js', import.meta.url));
  const helper = await launchHelper({
    namespaces: ['user'],
    command: [process.execPath, worker],
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const text = formatKernelMap(parent);
  writeFileSync(`/proc/${helper.pid}/uid_map`, text);
  writeFileSync(`/proc/${helper.pid}/gid_map`, text);
  const child = helper.child;
  const output: Buffer[] = [];
  child.stdout!.on('data', (chunk: Buffer) => output.push(chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  await helper.go();
  child.stdin!.end(cases.map((c) => JSON.stringify({ id: c.id, kind: c.kind, text: c.text })).join('\n'));
  const code = await exited;
  assert.equal(code, 0, 'the oracle worker failed');
  const results = new Map<number, { errno: string | null; readBack: string | null }>();
  for (const line of Buffer.concat(output).toString().split('\n')) {
    if (line === '') continue;
    const r = JSON.parse(line) as { id: number; errno: string | null; readBack: string | null };
    results.set(r.id, r);
  }
  return results;
}

describe('differential test against the real kernel', {
  skip: isRoot ? false : 'needs root (tests run as root in CI)',
}, () => {
  test(`${PARENTS * CASES_PER_PARENT} random map writes agree with validateMapText (seed ${seed})`, {
    // Longer than the suite's 45 s default: thousands of real namespace writes (usually ~20 s;
    // slower on a loaded 2-core machine). A hang still ends here.
    timeout: 240_000,
  }, async (t) => {
    t.diagnostic(`USERNS_ORACLE_SEED=${seed}`);
    const r = seededRandom(seed);
    let id = 0;
    const tally = { accepted: 0, EINVAL: 0, EPERM: 0, splits: 0 };
    const disagreements: string[] = [];
    for (let p = 0; p < PARENTS; p++) {
      const parent = randomParent(r);
      const cases = Array.from({ length: CASES_PER_PARENT }, () => randomCase(r, parent, id++));
      const results = await runInParent(parent, cases);
      for (const c of cases) {
        const kernel = results.get(c.id);
        assert.ok(kernel, `no result for case ${c.id}`);
        const ours = validateMapText(c.text, { kind: c.kind, parent });
        if (kernel.errno === null) tally.accepted++;
        else tally[kernel.errno as 'EINVAL' | 'EPERM'] = (tally[kernel.errno as 'EINVAL' | 'EPERM'] ?? 0) + 1;
        if (ours.errno !== kernel.errno) {
          disagreements.push(
            `case ${c.id} (${c.kind}) parent ${new IdMap(parent).toString()} text ${JSON.stringify(c.text.slice(0, 200))}: kernel ${kernel.errno ?? 'accepted'}, userns ${ours.errno ?? 'accepted'} (${ours.reason})`,
          );
          continue;
        }
        if (c.request) {
          tally.splits++;
          assert.equal(kernel.errno, null, `a split was refused: ${JSON.stringify(c.text)}`);
          assert.ok(
            mapsEqual(parseKernelMap(kernel.readBack!), c.request),
            `split read back differs: ${kernel.readBack}`,
          );
        }
      }
    }
    t.diagnostic(JSON.stringify(tally));
    assert.deepEqual(disagreements.slice(0, 10), [], `seed ${seed}: ${disagreements.length} disagreement(s)`);
    // A run in which the kernel never said no would not test anything.
    assert.ok(tally.accepted > 200 && tally.EINVAL > 200 && tally.EPERM > 100, JSON.stringify(tally));
    assert.ok(tally.splits > 300, JSON.stringify(tally));
  });
});
