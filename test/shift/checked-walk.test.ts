/**
 * runCheckedWalk: the check pass and the apply pass in one helper (job `check=1`). The apply pass
 * skips the listxattr of entries the check pass found without ID xattrs only while their ctime is
 * unchanged: an ACL added (or an owner changed) between the passes is still shifted.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chownSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runCheckedWalk, type WalkJob, type WalkRecord } from '../../src/shift/tree-walk.js';
import { findProgram } from '../../src/system/exec.js';

const skip =
  process.geteuid?.() !== 0
    ? 'needs root'
    : spawnSync('setfacl', ['--version'], { stdio: 'ignore' }).status !== 0
      ? 'setfacl is not installed (Debian: acl)'
      : false;

const SHIFT = [{ from: 0, to: 100000, count: 65536 }];
const job = (root: string, workers: number): WalkJob => ({
  root,
  apply: true,
  list: false,
  uid: SHIFT,
  gid: SHIFT,
  unmapped: 'error',
  v2root: 0,
  crossFilesystems: false,
  progress: 0,
  count: false,
  workers,
});

function aclUsers(path: string): string[] {
  return execFileSync('getfacl', ['-n', '--omit-header', '--absolute-names', path], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => /^user:\d+:/.test(l))
    .map((l) => l.split(':')[1]!);
}

describe('runCheckedWalk', { skip, timeout: 60_000 }, () => {
  let work: string;
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'userns-checked-walk-'));
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  function tree(name: string): string {
    const dir = join(work, name);
    mkdirSync(join(dir, 'sub'), { recursive: true });
    for (const f of ['a', 'b', 'c', 'sub/d', 'sub/e']) writeFileSync(join(dir, f), f);
    execFileSync('setfacl', ['-m', 'u:3:r', join(dir, 'sub/e')]); // an ACL from the start
    execFileSync('chown', ['-hR', '0:0', dir]);
    return dir;
  }

  for (const workers of [1, 2, 3]) {
    test(`changes made between the passes are shifted as they are then (${workers} worker${workers > 1 ? 's' : ''})`, async () => {
      const dir = tree(`between-${workers}`);
      const checkRecords: WalkRecord[] = [];
      const records: WalkRecord[] = [];
      let decided = 0;
      const walked = await runCheckedWalk(job(dir, workers), {
        namespace: null,
        onCheckRecord: (r) => checkRecords.push(r),
        onRecord: (r) => records.push(r),
        decide: (check) => {
          decided++;
          assert.equal(check.seen, 7);
          assert.equal(check.changed, 7); // would change
          // Nothing was changed by the check pass.
          assert.equal(lstatSync(join(dir, 'a')).uid, 0);
          // Between the passes: b gains an ACL naming uid 5, c gets another owner.
          execFileSync('setfacl', ['-m', 'u:5:rw', join(dir, 'b')]);
          chownSync(join(dir, 'c'), 7, 8);
          return true;
        },
      });
      assert.equal(decided, 1);
      assert.deepEqual(checkRecords, []);
      assert.deepEqual(records, []);
      assert.equal(walked.check.seen, 7);
      assert.equal(walked.applied?.seen, 7);
      assert.equal(walked.applied?.changed, 7);
      assert.equal(walked.applied?.errors, 0);
      for (const f of ['', 'a', 'b', 'sub', 'sub/d', 'sub/e']) {
        assert.deepEqual([lstatSync(join(dir, f)).uid, lstatSync(join(dir, f)).gid], [100000, 100000], f);
      }
      assert.deepEqual([lstatSync(join(dir, 'c')).uid, lstatSync(join(dir, 'c')).gid], [100007, 100008]);
      assert.deepEqual(aclUsers(join(dir, 'b')), ['100005']);
      assert.deepEqual(aclUsers(join(dir, 'sub/e')), ['100003']);
      assert.deepEqual(aclUsers(join(dir, 'a')), []);
    });
  }

  for (const workers of [1, 2]) {
    test(`a directory changed between the passes is walked right: the check's notes are found by inode, not position (${workers} worker${workers > 1 ? 's' : ''})`, async () => {
      // The apply pass reads the check pass's notes in visit order (tree-walk.c, plain_note);
      // removing and creating entries between the passes moves every later entry.
      const dir = join(work, `moved-${workers}`);
      mkdirSync(dir);
      for (let i = 0; i < 300; i++) writeFileSync(join(dir, `f${i}`), '');
      execFileSync('chown', ['-hR', '0:0', dir]);
      const walked = await runCheckedWalk(job(dir, workers), {
        namespace: null,
        decide: () => {
          for (let i = 0; i < 100; i++) rmSync(join(dir, `f${i * 3}`));
          for (let i = 0; i < 100; i++) writeFileSync(join(dir, `new${i}`), '');
          for (const i of [1, 100, 299]) execFileSync('setfacl', ['-m', 'u:5:r', join(dir, `f${i}`)]);
          for (const i of [2, 101, 298]) chownSync(join(dir, `f${i}`), 7, 8);
          return true;
        },
      });
      assert.equal(walked.check.seen, 301);
      assert.equal(walked.applied?.seen, 301);
      assert.equal(walked.applied?.changed, 301);
      assert.equal(walked.applied?.errors, 0);
      for (const name of readdirSync(dir)) {
        const st = lstatSync(join(dir, name));
        const moved = ['f2', 'f101', 'f298'].includes(name);
        assert.deepEqual([st.uid, st.gid], moved ? [100007, 100008] : [100000, 100000], name);
        assert.deepEqual(
          aclUsers(join(dir, name)),
          ['f1', 'f100', 'f299'].includes(name) ? ['100005'] : [],
          name,
        );
      }
    });
  }

  test('the apply pass lists again what changed just before the check read it, and skips the rest', {
    skip:
      findProgram('strace') === undefined
        ? 'machine: strace is not installed (scripts/install-test-deps installs it)'
        : false,
  }, () => {
    // Two changes in one tick of a coarse clock can leave the ctime as it was (kernels before
    // 6.13), so an entry changed less than 50 ms (recentms) before the check pass read it is
    // listed again (tree-walk.c, RECENT_NS); older unchanged entries are not. Counted with strace.
    const module = new URL('../../src/shift/tree-walk.js', import.meta.url).href;
    /** llistxattr calls of a checked walk of `files` new files, `settle` ms after they were made;
     * between the passes, `removed` entries in a row (in the directory's own order) are removed. */
    const listxattrCalls = (name: string, files: number, settle: number, removed = 0, recentMs?: number) => {
      const dir = join(work, name);
      mkdirSync(dir);
      const script = `import { runCheckedWalk } from ${JSON.stringify(module)};
        import { opendirSync, rmSync, writeFileSync } from 'node:fs';
        const dir = ${JSON.stringify(dir)};
        for (let i = 0; i < ${files}; i++) writeFileSync(dir + '/f' + i, '');
        await new Promise((r) => setTimeout(r, ${settle}));
        const S = [{ from: 0, to: 100000, count: 65536 }];
        // In the directory's own order (opendir, unlike readdir, does not sort): the walk's order.
        const names = []; const d = opendirSync(dir); for (let e; (e = d.readSync()) !== null; ) names.push(e.name); d.closeSync();
        const remove = () => { for (const n of names.slice(10, 10 + ${removed})) rmSync(dir + '/' + n); return true; };
        await runCheckedWalk({ root: dir, apply: true, list: false, uid: S, gid: S, unmapped: 'error',
          v2root: 0, crossFilesystems: false, progress: 0, count: false, workers: 1${recentMs === undefined ? '' : `, recentMs: ${recentMs}`} },
          { namespace: null, decide: remove });`;
      const out = join(work, `${name}.strace`);
      const r = spawnSync(
        findProgram('strace')!,
        [
          '-f',
          '-c',
          '-e',
          'trace=llistxattr',
          '-o',
          out,
          process.execPath,
          '--input-type=module',
          '-e',
          script,
        ],
        { encoding: 'utf8', timeout: 30_000 },
      );
      assert.equal(r.status, 0, r.stderr);
      const line = readFileSync(out, 'utf8')
        .split('\n')
        .find((l) => /\sllistxattr$/.test(l.trim()));
      return Number(line?.trim().split(/\s+/)[3]);
    };
    // Files made an hour or less before the check (recentms: a loaded machine can take longer
    // than 50 ms between making them and reading them) are listed in both passes.
    assert.equal(listxattrCalls('fresh', 50, 0, 0, 3_600_000), 100);
    // 300 ms after, with the default (50 ms): the apply pass skips them all.
    assert.equal(listxattrCalls('settled', 50, 300), 50);
    // More removed in a row than the log's lookahead: the rest is found through its index.
    assert.equal(listxattrCalls('removed', 300, 300, 100), 300);
  });

  test('no from decide: the apply pass never runs, nothing changes', async () => {
    const dir = tree('refused');
    const walked = await runCheckedWalk(job(dir, 2), { namespace: null, decide: () => false });
    assert.equal(walked.applied, null);
    assert.equal(walked.check.seen, 7);
    for (const f of ['', 'a', 'sub/e']) assert.equal(lstatSync(join(dir, f)).uid, 0, f);
    assert.deepEqual(aclUsers(join(dir, 'sub/e')), ['3']);
  });

  test('decide throws: the walk rejects with its error and nothing changes', async () => {
    const dir = tree('throws');
    await assert.rejects(
      runCheckedWalk(job(dir, 2), {
        namespace: null,
        decide: () => {
          throw new RangeError('decided badly');
        },
      }),
      /decided badly/,
    );
    for (const f of ['', 'a', 'sub/e']) assert.equal(lstatSync(join(dir, f)).uid, 0, f);
  });

  test('an unmapped ID found by the check pass reaches decide with its record first', async () => {
    const dir = tree('unmapped');
    chownSync(join(dir, 'sub/d'), 70000, 0);
    const checkRecords: WalkRecord[] = [];
    const walked = await runCheckedWalk(job(dir, 2), {
      namespace: null,
      onCheckRecord: (r) => checkRecords.push(r),
      decide: (check) => {
        assert.equal(check.unmapped, 1);
        assert.deepEqual(checkRecords, [{ type: 'unmapped', kind: 'uid', id: 70000, path: 'sub/d' }]);
        return false;
      },
    });
    assert.equal(walked.applied, null);
    assert.equal(lstatSync(join(dir, 'a')).uid, 0);
  });
});
