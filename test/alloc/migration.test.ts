import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  appendFileSync,
  cpSync,
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
import { encodeLine, readLegacyRegistry } from '../../src/alloc/legacy-journal.js';
import type { Pools } from '../../src/alloc/pool.js';
import { type Allocation, Registry } from '../../src/alloc/registry.js';

const FIXTURE = fileURLToPath(new URL('../../../test/alloc/fixtures/legacy-registry', import.meta.url));
const worker = fileURLToPath(new URL('./alloc-worker.js', import.meta.url));
const base = mkdtempSync(join(tmpdir(), 'userns-alloc-migrate-'));
after(() => rmSync(base, { recursive: true, force: true }));
let n = 0;

/** A copy of the registry the journal-based code wrote. */
function legacyCopy(): string {
  const dir = join(base, `m${n++}`, 'alloc');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const f of ['snapshot.json', 'journal']) cpSync(join(FIXTURE, f), join(dir, f));
  return dir;
}

const expected = JSON.parse(readFileSync(join(FIXTURE, 'expected.json'), 'utf8')) as Allocation[];
const POOLS: Pools = {
  uid: { ranges: [{ start: 100_000, count: 10_000_000 }], source: 'test' },
  gid: { ranges: [{ start: 200_000, count: 10_000_000 }], source: 'test' },
};

describe('migration from snapshot.json + journal', { timeout: 60_000 }, () => {
  test('every allocation the old code recorded comes over exactly, once; the old files are retired', async () => {
    const dir = legacyCopy();
    const r = new Registry(dir, { systemTaken: null });
    const list = await r.list();
    assert.deepEqual(JSON.parse(JSON.stringify(list)), expected);
    assert.equal(r.migration?.allocations, expected.length);
    assert.deepEqual(r.migration?.warnings, []);
    const files = readdirSync(dir).sort();
    assert.ok(
      files.includes('journal.pre-sqlite') && files.includes('snapshot.json.pre-sqlite'),
      files.join(' '),
    );
    assert.ok(!files.includes('journal'));
    // What the old code reads first now stops it ("does not have the expected fields").
    const tombstone = JSON.parse(readFileSync(join(dir, 'snapshot.json'), 'utf8'));
    assert.notEqual(tombstone.format, 'userns-alloc-snapshot');
    assert.equal(readLegacyRegistry(dir), undefined);
    // Later opens do not migrate again; new allocations continue the sequence, never overlapping.
    const again = new Registry(dir, { systemTaken: null });
    assert.equal((await again.list()).length, expected.length);
    assert.equal(again.migration, undefined);
    const next = await again.allocate({ size: 65536, policy: { kind: 'first-fit' }, pools: POOLS });
    assert.equal(next.seq, Math.max(13, ...expected.map((a) => a.seq)) + 1);
    assert.deepEqual((await again.verify()).problems, []);
    // Nothing of it overlaps a migrated allocation.
    const taken = expected.flatMap((a) => a.uids);
    for (const r of taken)
      assert.ok(next.uids[0]!.start >= r.start + r.count || next.uids[0]!.start + 65536 <= r.start);
    const migrated = await again.migrated();
    assert.equal(migrated?.allocations, expected.length);
  });

  test('a process recorded by the old code: gc cannot check it, keeps it and says why', async () => {
    const dir = legacyCopy();
    const r = new Registry(dir, { systemTaken: null });
    const { released, kept } = await r.collectGarbage(async () => 'alive');
    assert.deepEqual(released, []);
    assert.equal(kept.length, 1);
    assert.equal(kept[0]!.allocation.holder?.pid, 4194000);
    assert.match(kept[0]!.reason, /without its PID namespace/);
  });

  test('several processes opening the old registry at once migrate it once', async () => {
    const dir = legacyCopy();
    const runs = Array.from(
      { length: 4 },
      (_, i) =>
        new Promise<number | null>((resolve) =>
          spawn(process.execPath, [worker, 'once', dir, '1', String(i + 1)], {
            stdio: ['ignore', 'ignore', 'inherit'],
          }).on('exit', resolve),
        ),
    );
    assert.deepEqual(await Promise.all(runs), [0, 0, 0, 0]);
    const { problems, allocations } = await new Registry(dir, { systemTaken: null }).verify();
    assert.deepEqual(problems, []);
    assert.equal(allocations.length, expected.length + 4);
  });

  test('a torn last record is skipped (it was never acknowledged); damage before the end is REGISTRY_CORRUPT', async () => {
    const torn = legacyCopy();
    appendFileSync(join(torn, 'journal'), '0badc0de {"s":14,"op":"add","a":{"id":"half');
    assert.equal((await new Registry(torn, { systemTaken: null }).list()).length, expected.length);

    const damaged = legacyCopy();
    const lines = readFileSync(join(damaged, 'journal'), 'utf8').split('\n');
    lines[2] = `00000000${lines[2]!.slice(8)}`;
    writeFileSync(join(damaged, 'journal'), lines.join('\n'));
    const r = new Registry(damaged, { systemTaken: null });
    await assert.rejects(r.list(), (error: Error & { code: string; data: { path: string } }) => {
      assert.equal(error.code, 'REGISTRY_CORRUPT');
      assert.equal(error.data.path, join(damaged, 'journal'));
      return true;
    });
    // Nothing was written: the old files are untouched, the database holds no schema yet.
    assert.ok(existsSync(join(damaged, 'journal')));
    assert.ok(!existsSync(join(damaged, 'journal.pre-sqlite')));
  });

  test('allocations the broken old lock let overlap: both kept, each ID reserved once, a warning', async () => {
    const dir = join(base, `m${n++}`, 'alloc');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const one = (id: string, seq: number) => ({
      id,
      name: id,
      owner: 0,
      created: '2026-01-01T00:00:00.000Z',
      policy: 'first-fit',
      size: 65536,
      seq,
      u: [[0, 1179648, 65536]],
      g: [[0, 1179648, 65536]],
      ur: [[1179648, 65536]],
      gr: [[1179648, 65536]],
    });
    writeFileSync(
      join(dir, 'journal'),
      Buffer.concat([
        encodeLine({ h: 1, gen: 0 }),
        encodeLine({ s: 1, op: 'add', a: one('aaaaaaaaaaaa', 1) }),
        encodeLine({ s: 2, op: 'add', a: one('bbbbbbbbbbbb', 2) }),
      ]),
    );
    const r = new Registry(dir, { systemTaken: null });
    const list = await r.list();
    assert.deepEqual(
      list.map((a) => [a.id, a.uids]),
      [
        ['aaaaaaaaaaaa', [{ start: 1179648, count: 65536 }]],
        ['bbbbbbbbbbbb', []],
      ],
    );
    assert.match(r.migration!.warnings.join('\n'), /bbbbbbbbbbbb\) shares uids \[1179648-1245183\]/);
    assert.deepEqual(list[1]!.uidMap, [{ inside: 0, outside: 1179648, count: 65536 }], 'its map is kept');
  });

  test('a symbolic link planted as the journal: STATE_FILE_UNSAFE naming it, never followed', async () => {
    const dir = legacyCopy();
    rmSync(join(dir, 'journal'));
    writeFileSync(join(base, 'secret'), 'x');
    symlinkSync(join(base, 'secret'), join(dir, 'journal'));
    await assert.rejects(new Registry(dir, { systemTaken: null }).list(), {
      code: 'STATE_FILE_UNSAFE',
      message: new RegExp(`${join(dir, 'journal')} is a symbolic link`),
    });
  });
});
