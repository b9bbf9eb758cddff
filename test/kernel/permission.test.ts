/**
 * The permission predictor against the real kernel: random maps written by writers WITHOUT the
 * usual privileges, and predictPermission/validateMapText's verdict must equal the kernel's.
 *
 * - an unprivileged user (an arbitrary uid/gid with no capabilities) writing the maps of a
 *   namespace it created: the single-ID rule, setgroups "deny" for gid maps;
 * - root without CAP_SETFCAP (dropped with setpriv) mapping the parent's uid 0.
 *
 * Reproduce with USERNS_ORACLE_SEED=<seed printed below>.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { formatKernelMap } from '../../src/idmap/formats/kernel.js';
import { PRIVILEGED_WRITER, type WriterSituation } from '../../src/idmap/permission.js';
import { validateMapText } from '../../src/idmap/validate.js';
import { readableRepo } from '../fixtures/readable-repo.js';
import { ORACLE_SEED, type SeededRandom, seededRandom } from './seeded-random.js';

const seed = ORACLE_SEED;
const isRoot = process.geteuid?.() === 0;

interface Case {
  id: number;
  kind: 'uid' | 'gid';
  text: string;
  setgroupsDeny: boolean;
}

/** Maps around the writer's own ID: the one case the kernel lets an unprivileged writer do. */
function randomCase(r: SeededRandom, id: number, own: number): Case {
  const kind = r.next() < 0.5 ? 'uid' : 'gid';
  const outside = () => r.pick([own, own, own, own + 1, own - 1, 0, 1, r.int(2, 200000)]);
  const lines = r.pick([1, 1, 1, 1, 1, 2, 3]);
  const extents = Array.from({ length: lines }, (_, i) => ({
    inside: r.pick([0, 1, 5000, r.int(0, 100000)]) + i * 200000,
    outside: outside() + i * 300000,
    count: r.pick([1, 1, 1, 1, 2, r.int(1, 50)]),
  }));
  return { id, kind, text: formatKernelMap(extents), setgroupsDeny: r.next() < 0.5 };
}

function runWorker(command: string[], options: { uid?: number; gid?: number }, cases: Case[]) {
  return new Promise<Map<number, string | null>>((resolve, reject) => {
    const child = spawn(command[0]!, command.slice(1), { ...options, stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`oracle worker exited ${code}`));
      const results = new Map<number, string | null>();
      for (const line of out.split('\n')) {
        if (line === '') continue;
        const r = JSON.parse(line) as { id: number; errno: string | null };
        results.set(r.id, r.errno);
      }
      resolve(results);
    });
    child.stdin.end(cases.map((c) => JSON.stringify(c)).join('\n'));
  });
}

function compare(cases: Case[], results: Map<number, string | null>, writer: (c: Case) => WriterSituation) {
  const tally: Record<string, number> = {};
  const disagreements: string[] = [];
  for (const c of cases) {
    const kernel = results.get(c.id);
    assert.notEqual(kernel, undefined, `no result for case ${c.id}`);
    const ours = validateMapText(c.text, { kind: c.kind, writer: writer(c) });
    tally[kernel ?? 'accepted'] = (tally[kernel ?? 'accepted'] ?? 0) + 1;
    if (ours.errno !== kernel) {
      disagreements.push(
        `${c.kind} ${JSON.stringify(c.text)} setgroups ${c.setgroupsDeny ? 'deny' : 'allow'}: kernel ${kernel ?? 'accepted'}, userns ${ours.errno ?? 'accepted'} (${ours.reason})`,
      );
    }
  }
  return { tally, disagreements };
}

describe('permission predictor against the real kernel', {
  skip: isRoot ? false : 'needs root (tests run as root in CI)',
}, () => {
  test(`an unprivileged owner writing its namespace's maps (seed ${seed})`, {
    // Longer than the 45 s default: hundreds of real writes as another user (a Node worker each).
    timeout: 120_000,
  }, async (t) => {
    t.diagnostic(`USERNS_ORACLE_SEED=${seed}`);
    const r = seededRandom(seed);
    const own = 40000 + r.int(0, 9999);
    const cases = Array.from({ length: 600 }, (_, i) => randomCase(r, i, own));
    const worker = join(readableRepo(), 'dist/test/kernel/oracle-worker.js');
    const results = await runWorker([process.execPath, worker], { uid: own, gid: own }, cases);
    const { tally, disagreements } = compare(cases, results, (c) => ({
      capSetid: false,
      capSetfcap: false,
      euid: own,
      egid: own,
      isOwner: true,
      setgroups: c.setgroupsDeny ? 'deny' : 'allow',
    }));
    t.diagnostic(JSON.stringify(tally));
    assert.deepEqual(disagreements.slice(0, 10), [], `seed ${seed}: ${disagreements.length} disagreement(s)`);
    assert.ok((tally.accepted ?? 0) > 30 && (tally.EPERM ?? 0) > 100, JSON.stringify(tally));
  });

  test(`root without CAP_SETFCAP mapping the parent's uid 0 (seed ${seed})`, {
    // Longer than the 45 s default: hundreds of real writes as another user (a Node worker each).
    timeout: 120_000,
  }, async (t) => {
    const r = seededRandom(seed ^ 0x5bd1e995);
    const cases: Case[] = Array.from({ length: 150 }, (_, i) => {
      const zero = r.next() < 0.5;
      const extents = [{ inside: r.int(0, 10), outside: zero ? 0 : r.int(1, 100), count: r.int(1, 20) }];
      if (r.next() < 0.4) extents.push({ inside: 1000, outside: r.pick([0, 5000]), count: 1 });
      if (extents.length === 2 && extents[0]!.outside === 0 && extents[1]!.outside === 0)
        extents[1] = { inside: 1000, outside: 5000, count: 1 };
      return {
        id: i,
        kind: r.next() < 0.8 ? 'uid' : 'gid',
        text: formatKernelMap(extents),
        setgroupsDeny: false,
      };
    });
    const worker = join(readableRepo(), 'dist/test/kernel/oracle-worker.js');
    const results = await runWorker(
      ['setpriv', '--inh-caps=-setfcap', '--bounding-set=-setfcap', process.execPath, worker],
      {},
      cases,
    );
    const { tally, disagreements } = compare(cases, results, () => ({
      ...PRIVILEGED_WRITER,
      capSetfcap: false,
    }));
    t.diagnostic(JSON.stringify(tally));
    assert.deepEqual(disagreements.slice(0, 10), [], `seed ${seed}: ${disagreements.length} disagreement(s)`);
    assert.ok((tally.accepted ?? 0) > 20 && (tally.EPERM ?? 0) > 20, JSON.stringify(tally));
  });
});
