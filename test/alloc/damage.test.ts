import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { allocate, listAllocations, recoverAllocations } from '../../src/alloc/index.js';
import { Registry } from '../../src/alloc/registry.js';
import { openDatabase } from '../../src/state/database.js';
import { runCli } from '../cli/run-cli.js';

const base = mkdtempSync(join(tmpdir(), 'userns-alloc-damage-'));
after(() => rmSync(base, { recursive: true, force: true }));
const BIN = fileURLToPath(new URL('../../../bin/userns', import.meta.url));
const fullDiskWorker = fileURLToPath(new URL('./full-disk-worker.js', import.meta.url));
let n = 0;
const common = () => ({
  root: join(base, `root${n++}`),
  registry: { systemTaken: null },
  pool: [{ start: 100_000, count: 100_000_000 }],
});

type Typed = Error & { code: string; hint?: string; data: { path: string } };

describe('planted files, damaged databases, full disks', { timeout: 120_000 }, () => {
  test('a link or a directory planted as the database or its -wal: typed errors naming the path', async () => {
    for (const [file, plant, code] of [
      ['registry.db', 'link', 'STATE_FILE_UNSAFE'],
      ['registry.db', 'dir', 'STATE_FILE_NOT_A_FILE'],
      ['registry.db-wal', 'link', 'STATE_FILE_UNSAFE'],
      ['registry.db-shm', 'dir', 'STATE_FILE_NOT_A_FILE'],
    ] as const) {
      const where = common();
      const path = join(where.root, 'alloc', file);
      mkdirSync(join(where.root, 'alloc'), { recursive: true, mode: 0o700 });
      if (plant === 'link') symlinkSync(join(base, 'target-of-link'), path);
      else mkdirSync(path);
      await assert.rejects(allocate({ ...where, size: 10 }), (error: Typed) => {
        assert.equal(error.code, code, `${file} ${plant}: ${error.message}`);
        assert.equal(error.data.path, path);
        return true;
      });
      const r = await runCli(['alloc', 'list', '--root', where.root, '--json']);
      assert.equal(r.code, 1);
      assert.equal(JSON.parse(r.stdout).code, code);
      assert.equal(existsSync(join(base, 'target-of-link')), false, 'no link was followed');
    }
  });

  test('a damaged database: REGISTRY_CORRUPT with the path and the recovery command, never rebuilt by itself', async () => {
    const where = common();
    await allocate({ ...where, size: 10 });
    const path = join(where.root, 'alloc', 'registry.db');
    // Close every connection so the file is whole, then overwrite its header.
    (await import('../../src/alloc/allocate.js')).openRegistry(where).close();
    const fd = openSync(path, 'r+');
    writeSync(fd, Buffer.from('this is not a SQLite database at all'), 0, 36, 0);
    closeSync(fd);
    const before = readFileSync(path);
    const r = await runCli(['alloc', 'list', '--root', where.root, '--json']);
    assert.equal(r.code, 1);
    const error = JSON.parse(r.stdout);
    assert.equal(error.code, 'REGISTRY_CORRUPT');
    assert.equal(error.data.path, path);
    assert.match(error.hint, new RegExp(`userns alloc recover --root ${where.root}`));
    assert.deepEqual(readFileSync(path), before, 'the damaged file is left as it was');
    const human = await runCli(['alloc', '--size', '10', '--pool', '100000:1000', '--root', where.root]);
    assert.equal(human.code, 1);
    assert.match(human.stderr, /^userns: the allocation registry .* is damaged/);
    assert.doesNotMatch(human.stderr, /internal error| {4}at /);
  });

  /** 400 allocations in a closed registry; returns its path and the pages of the allocations table. */
  async function registryWith400(where: ReturnType<typeof common>) {
    for (let i = 0; i < 400; i++) await allocate({ ...where, name: `a${i}`, size: 10 });
    (await import('../../src/alloc/allocate.js')).openRegistry(where).close();
    const path = join(where.root, 'alloc', 'registry.db');
    const db = openDatabase({ path, what: 'the test registry', readonly: true });
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    const pages = db
      .prepare("SELECT pageno, pagetype, path, ncell FROM dbstat WHERE name = 'allocations' ORDER BY path")
      .all() as { pageno: number; pagetype: string; path: string; ncell: number }[];
    db.close();
    return { path, pageSize, pages };
  }

  function damagePage(path: string, pageSize: number, pageno: number) {
    const fd = openSync(path, 'r+');
    writeSync(fd, Buffer.alloc(pageSize, 0x5a), 0, pageSize, (pageno - 1) * pageSize);
    closeSync(fd);
  }

  test('alloc recover moves the damaged file aside and keeps every allocation it can still read', async () => {
    const where = common();
    const { path, pageSize, pages } = await registryWith400(where);
    // One leaf of the allocations table, in the middle: the rows on it are lost, every other
    // row is read back (the table is scanned from both ends), and the index of ranges still
    // names the lost ones, so they are counted.
    const leaves = pages.filter((p) => p.pagetype === 'leaf');
    assert.ok(leaves.length >= 3, `the table spans several leaves (${leaves.length})`);
    const leaf = leaves[Math.floor(leaves.length / 2)]!;
    damagePage(path, pageSize, leaf.pageno);
    const check = await runCli(['alloc', 'list', '--root', where.root, '--json']);
    assert.equal(check.code, 1, 'list reads every row, so it meets the damage');
    assert.equal(JSON.parse(check.stdout).code, 'REGISTRY_CORRUPT');
    const r = await runCli(['alloc', 'recover', '--root', where.root, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.damaged, true);
    assert.ok(existsSync(out.movedTo), 'the damaged file is kept');
    // A row is lost when its lookup must pass through the damaged leaf: the leaf's own rows,
    // and at most the two neighbours that SQLite keeps on the parent page as dividers.
    assert.ok(
      out.lost >= leaf.ncell && out.lost <= leaf.ncell + 2,
      `${out.lost} lost, ${leaf.ncell} rows on the damaged leaf`,
    );
    assert.equal(
      out.salvaged.length + out.lost,
      400,
      'every allocation is either read back or counted as lost',
    );
    const now = await listAllocations(where);
    assert.deepEqual(now.map((a) => a.id).sort(), out.salvaged.map((a: { id: string }) => a.id).sort());
    assert.deepEqual(
      (await new Registry(join(where.root, 'alloc'), { systemTaken: null }).verify()).problems,
      [],
    );
    // Usable again.
    await allocate({ ...where, size: 10 });
    // A second recover: not damaged, nothing done.
    const again = await recoverAllocations(where);
    assert.equal(again.damaged, false);
  });

  test('alloc recover with the root page of allocations damaged: nothing readable, every loss counted', async () => {
    const where = common();
    const { path, pageSize, pages } = await registryWith400(where);
    const root = pages.find((p) => p.path === '/')!;
    assert.equal(root.pagetype, 'internal');
    damagePage(path, pageSize, root.pageno);
    const out = await recoverAllocations(where);
    assert.equal(out.damaged, true);
    assert.equal(out.salvaged.length, 0);
    assert.equal(out.lost, 400, 'the index of ranges names all 400');
    const human = await runCli(['alloc', 'list', '--root', where.root, '--json']);
    assert.equal(human.code, 0);
    assert.deepEqual(JSON.parse(human.stdout).allocations ?? JSON.parse(human.stdout), []);
  });

  test('full disk (a 1 MiB tmpfs in a private mount namespace): NO_SPACE, and release and gc still work', async (t) => {
    const mnt = join(base, 'mnt');
    mkdirSync(mnt);
    const child = spawn(BIN, ['run', '--unshare', 'mount', '--', process.execPath, fullDiskWorker, mnt], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    const code = await new Promise((resolve) => child.on('exit', resolve));
    assert.equal(code, 0, out);
    const result = JSON.parse(out);
    if (result.skip !== undefined) {
      console.log(`# skipped: ${result.skip}`);
      t.skip(result.skip);
      return;
    }
    assert.ok(result.filled > 0);
    assert.equal(result.allocate.ok, false);
    assert.equal(result.allocate.code, 'NO_SPACE', result.allocate.message);
    assert.match(result.allocate.message, /registry\.db/);
    assert.match(result.allocate.hint, /df .*releasing still works/);
    assert.equal(result.stateWrite.code, 'NO_SPACE');
    assert.equal(result.cliAllocate.status, 1, result.cliAllocate.stderr);
    assert.equal(JSON.parse(result.cliAllocate.stdout).code, 'NO_SPACE');
    assert.deepEqual(result.release, { ok: true });
    assert.equal(result.cliRelease.status, 0, result.cliRelease.stdout + result.cliRelease.stderr);
    assert.deepEqual(result.gc, { ok: true });
    assert.deepEqual(result.list, ['c2', 'c3']);
    assert.equal(existsSync(join(mnt, 'filler')), false, 'the tmpfs was private to the worker');
  });
});
