import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { ShiftError } from '../../src/errors/index.js';
import { IdMap } from '../../src/idmap/idmap.js';
import { fitTree } from '../../src/shift/fit.js';
import {
  type KindMaps,
  type ShiftResult,
  shiftIncomplete,
  shiftTree as shiftTreeIn,
} from '../../src/shift/shift.js';
import { runWalk } from '../../src/shift/tree-walk.js';
import { buildTree, expectShiftOutcome, normalizeSnapshot, shifted, snapshot } from './tree-fixture.js';

const rootOnly = process.geteuid?.() === 0 ? false : 'needs root';
// The records of unfinished shifts go to a state root of the tests' own, never /run/userns.
const stateRoot = mkdtempSync(join(tmpdir(), 'userns-shift-state-'));
after(() => rmSync(stateRoot, { recursive: true, force: true }));
const shiftTree: typeof shiftTreeIn = (dir, options) => shiftTreeIn(dir, { stateRoot, ...options });
const both = (map: IdMap): KindMaps => ({ uid: map, gid: map });
const SIZE = 65536;
const ROUNDS = 100;
const range = (base: number) => both(new IdMap([{ inside: 0, outside: base, count: SIZE }]));

describe('shiftTree', { skip: rootOnly }, () => {
  let work: string;
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'userns-shift-'));
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  for (const userns of [true, false]) {
    test(`shift then reverse returns every owner, mode, ACL and capability (${userns ? 'protective namespace' : '--no-userns'})`, async () => {
      const dir = join(work, `tree-${userns}`);
      const outside = join(work, `outside-${userns}`);
      buildTree(dir, { base: 0, size: SIZE, outside });
      const original = snapshot(dir);
      const outsideBefore = snapshot(outside);

      const result = await shiftTree(dir, { from: range(0), to: range(100000), userns });
      expectShiftOutcome(original, snapshot(dir), result, {
        from: range(0),
        to: range(100000),
        protective: userns,
      });
      assert.equal(result.protectiveNamespace, userns);
      // every entry but the two extra hard links to notes changed
      assert.equal(result.hardlinks, 2);
      assert.equal(result.changed, original.size - 2);
      const expected = shifted(original, 100000, (id) => id < SIZE);
      assert.deepEqual(normalizeSnapshot(snapshot(dir)), normalizeSnapshot(expected));
      // the set-ID bits survived the chown, the links' targets outside were not touched
      assert.equal(lstatSync(join(dir, 'usr/bin/su')).mode & 0o7777, 0o4755);
      assert.equal(lstatSync(join(dir, 'usr/bin/wall')).mode & 0o7777, 0o2755);
      assert.deepEqual(normalizeSnapshot(snapshot(outside)), normalizeSnapshot(outsideBefore));

      const middle = snapshot(dir);
      const back = await shiftTree(dir, { from: range(0), to: range(100000), reverse: true, userns });
      expectShiftOutcome(middle, snapshot(dir), back, {
        from: range(100000),
        to: range(0),
        protective: userns,
      });
      assert.deepEqual(normalizeSnapshot(snapshot(dir)), normalizeSnapshot(original));

      // Run again: every entry is already shifted; nothing changes, and the summary says so.
      const again = await shiftTree(dir, { from: range(100000), to: range(0), userns });
      const counts = expectShiftOutcome(original, snapshot(dir), again, {
        from: range(100000),
        to: range(0),
        protective: userns,
      });
      assert.equal(counts.changed, 0);
      assert.equal(again.alreadyShifted, original.size - 2);
    });
  }

  test('a shift between two non-zero ranges, then back', async () => {
    const dir = join(work, 'ranges');
    buildTree(dir, { base: 200000, size: SIZE, outside: join(work, 'outside-ranges') });
    const original = snapshot(dir);
    const result = await shiftTree(dir, { from: range(200000), to: range(300000) });
    expectShiftOutcome(original, snapshot(dir), result, { from: range(200000), to: range(300000) });
    const expected = shifted(original, 100000, (id) => id >= 200000 && id < 200000 + SIZE);
    assert.deepEqual(normalizeSnapshot(snapshot(dir)), normalizeSnapshot(expected));
    const cap = snapshot(dir).get('usr/bin/ping')!.capability!;
    assert.equal(cap.revision, 3);
    assert.equal(cap.rootid, 300000);
    await shiftTree(dir, { from: range(300000), to: range(200000) });
    assert.deepEqual(normalizeSnapshot(snapshot(dir)), normalizeSnapshot(original));
  });

  test('a dry run changes nothing and reports what would change', async () => {
    const dir = join(work, 'dry');
    buildTree(dir, { base: 0, size: SIZE, outside: join(work, 'outside-dry') });
    const original = snapshot(dir);
    const changes: string[] = [];
    const result = await shiftTree(dir, {
      from: range(0),
      to: range(100000),
      dryRun: true,
      onChange: (c) => changes.push(c.path),
    });
    assert.equal(result.dryRun, true);
    expectShiftOutcome(original, snapshot(dir), result, { from: range(0), to: range(100000) });
    assert.equal(result.changed, original.size - 2);
    assert.equal(changes.length, result.changed);
    assert.ok(changes.includes('usr/bin/ping'));
    assert.deepEqual(normalizeSnapshot(snapshot(dir)), normalizeSnapshot(original));
  });

  for (const userns of [true, false]) {
    test(`an unmapped owner: error changes nothing, skip keeps it, overflow makes it the overflow ID (${userns ? 'protective namespace' : '--no-userns'})`, async () => {
      const dir = join(work, `unmapped-${userns}`);
      const { unmappedPath } = buildTree(dir, {
        base: 0,
        size: SIZE,
        outside: join(work, `outside-unmapped-${userns}`),
        withUnmapped: true,
      });
      const original = snapshot(dir);
      await assert.rejects(
        shiftTree(dir, { from: range(0), to: range(100000), userns }),
        (error: unknown) => {
          assert.ok(error instanceof ShiftError);
          assert.equal(error.code, 'SHIFT_UNMAPPED_IDS');
          assert.match(error.message, /uid 65546 \(1 entry, e\.g\. home\/user\/foreign\)/);
          return true;
        },
      );
      assert.deepEqual(normalizeSnapshot(snapshot(dir)), normalizeSnapshot(original));

      const skipped = await shiftTree(dir, { from: range(0), to: range(100000), unmapped: 'skip', userns });
      const model = { from: range(0), to: range(100000), protective: userns } as const;
      expectShiftOutcome(original, snapshot(dir), skipped, { ...model, policy: 'skip' });
      assert.equal(skipped.skipped, 1);
      assert.deepEqual(skipped.unmapped, [
        { kind: 'uid', where: 'owner', id: SIZE + 10, count: 1, examples: [unmappedPath] },
      ]);
      const foreign = lstatSync(join(dir, unmappedPath!));
      assert.equal(foreign.uid, SIZE + 10);
      // Without the namespace the mapped group moves; inside it the kernel cannot change a file
      // whose owner is outside the ranges at all, so the whole entry stays as it was.
      assert.equal(foreign.gid, userns ? 1000 : 101000);
      assert.equal(lstatSync(join(dir, 'home/user/notes')).uid, 101000);
      const middle = snapshot(dir);
      const back = await shiftTree(dir, {
        from: range(0),
        to: range(100000),
        unmapped: 'skip',
        reverse: true,
        userns,
      });
      expectShiftOutcome(middle, snapshot(dir), back, {
        from: range(100000),
        to: range(0),
        protective: userns,
        policy: 'skip',
      });
      assert.deepEqual(normalizeSnapshot(snapshot(dir)), normalizeSnapshot(original));

      // overflow: the entry becomes the overflow ID; the protective namespace cannot change an
      // entry owned outside its ranges, and then says so (incomplete), never "changed".
      const overflow = { ...model, policy: 'overflow' } as const;
      if (!userns) {
        const r = await shiftTree(dir, { from: range(0), to: range(100000), unmapped: 'overflow', userns });
        expectShiftOutcome(original, snapshot(dir), r, overflow);
        assert.equal(lstatSync(join(dir, unmappedPath!)).uid, 65534);
      } else {
        const dry = await shiftTree(dir, {
          from: range(0),
          to: range(100000),
          unmapped: 'overflow',
          dryRun: true,
        });
        expectShiftOutcome(original, snapshot(dir), dry, overflow);
        assert.ok(shiftIncomplete(dry, 'overflow'), 'the dry run fails where the run would');
        await assert.rejects(
          shiftTree(dir, { from: range(0), to: range(100000), unmapped: 'overflow' }),
          (error: unknown) => {
            assert.ok(error instanceof ShiftError && error.result !== undefined);
            assert.equal(error.code, 'SHIFT_INCOMPLETE');
            assert.match(error.message, /1 entry kept its IDs instead of the overflow ID/);
            assert.match(error.hint ?? '', /--no-userns/);
            expectShiftOutcome(original, snapshot(dir), error.result, overflow);
            return true;
          },
        );
        assert.equal(lstatSync(join(dir, unmappedPath!)).uid, SIZE + 10);
      }
    });
  }

  test('the summary and the tree are exactly the model (random owners, maps, policies, modes)', async () => {
    // Owners: in the source range, in the target range (already shifted), or in neither.
    const owner = fc.oneof(
      fc.integer({ min: 10000, max: 10999 }),
      fc.integer({ min: 0, max: 999 }).map((i) => -1 - i), // target range, resolved below
      fc.constantFrom(11500, 65534, 40000),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(owner, owner), { minLength: 1, maxLength: 30 }),
        fc.integer({ min: 1, max: 600 }),
        fc.integer({ min: 1, max: 5000 }),
        fc.integer({ min: 1, max: 4 }),
        fc.constantFrom('skip', 'overflow', 'error') as fc.Arbitrary<'skip' | 'overflow' | 'error'>,
        fc.boolean(),
        async (owners, split, offset, workers, policy, userns) => {
          const dir = mkdtempSync(join(work, 'prop-'));
          const target = (id: number) => (id < 0 ? 50000 + offset + (-1 - id) : id);
          owners.forEach(([uid, gid], i) => {
            const path = join(dir, `f${i}`);
            writeFileSync(path, '');
            lchownSync(path, target(uid), target(gid));
          });
          lchownSync(dir, 10000, 10000);
          // from: two extents; to: the same two inside ranges at other outside IDs, in swapped order
          const from = new IdMap([
            { inside: 0, outside: 10000, count: split },
            { inside: split, outside: 10000 + split, count: 1000 - split },
          ]);
          const to = new IdMap([
            { inside: 0, outside: 50000 + offset + 1000, count: split },
            { inside: split, outside: 50000 + offset, count: 1000 - split },
          ]);
          const before = snapshot(dir);
          const model = { from: both(from), to: both(to), policy, protective: userns };
          let result: ShiftResult;
          try {
            result = await shiftTree(dir, { ...model, unmapped: policy, userns, workers });
          } catch (error) {
            assert.ok(error instanceof ShiftError && error.result !== undefined, String(error));
            assert.ok(['SHIFT_UNMAPPED_IDS', 'SHIFT_INCOMPLETE'].includes(error.code));
            result = error.result;
            // SHIFT_UNMAPPED_IDS carries the first (read-only) pass: nothing changed.
            assert.equal(result.dryRun, error.code === 'SHIFT_UNMAPPED_IDS');
          }
          const counts = expectShiftOutcome(before, snapshot(dir), result, model);
          const refused = policy === 'error' && counts.skipped > 0;
          assert.equal(result.dryRun, refused);
          assert.equal(
            shiftIncomplete(result, policy) !== null,
            refused || (policy === 'overflow' && counts.skipped > 0),
          );
          rmSync(dir, { recursive: true, force: true });
        },
      ),
      { numRuns: 25 },
    );
  });

  test('a process racing the walk (swapping directories and files for links) changes nothing outside the tree', async (t) => {
    const dir = join(work, 'race');
    const outside = join(work, 'race-outside');
    mkdirSync(outside, { recursive: true });
    const attackerBinary = join(work, 'race-attacker');
    const source = fileURLToPath(new URL('../../../test/fixtures/race-attacker.c', import.meta.url));
    execFileSync(process.env.CC || 'cc', ['-O2', '-o', attackerBinary, source]);
    const pairs: string[] = [];
    for (let v = 0; v < 4; v++) {
      // A directory (and a file) in the tree, each swapped atomically with a link to outside.
      mkdirSync(join(dir, `victim${v}`), { recursive: true });
      for (let i = 0; i < 20; i++) writeFileSync(join(dir, `victim${v}`, `f${i}`), '');
      symlinkSync(outside, join(dir, `victim${v}-link`));
      writeFileSync(join(dir, `suid${v}`), '');
      chmodSync(join(dir, `suid${v}`), 0o4755);
      symlinkSync(join(outside, 'in-range'), join(dir, `suid${v}-link`));
      pairs.push(
        join(dir, `victim${v}`),
        join(dir, `victim${v}-link`),
        join(dir, `suid${v}`),
        join(dir, `suid${v}-link`),
      );
    }
    // Outside: owned by IDs in the source range (root and 5), which the kernel alone would let
    // the protective namespace change: only the walk's own care keeps them as they are.
    for (const name of ['in-range', 'root-owned']) writeFileSync(join(outside, name), '');
    lchownSync(join(outside, 'in-range'), 5, 5);
    chmodSync(join(outside, 'in-range'), 0o644);
    const outsideBefore = normalizeSnapshot(snapshot(outside));
    const attacker = spawn(attackerBinary, pairs, { stdio: 'ignore' });
    let raced = 0;
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const forward = round % 2 === 0;
        try {
          await shiftTree(dir, {
            from: range(forward ? 0 : 100000),
            to: range(forward ? 100000 : 0),
            unmapped: 'skip',
            userns: round % 4 < 2,
            // A walk that lost a race leaves its record (it is incomplete); the next round shifts
            // back all the same: this test is about what changes outside the tree.
            forgetInterrupted: true,
          });
        } catch (error) {
          // Entries replaced under the walk are reported as errors; that is expected here.
          assert.ok(error instanceof ShiftError, String(error));
          assert.equal(error.code, 'SHIFT_INCOMPLETE');
          raced++;
        }
      }
    } finally {
      attacker.kill('SIGKILL');
      await new Promise((resolve) => attacker.once('exit', resolve));
    }
    t.diagnostic(`${raced} of ${ROUNDS} walks noticed an entry replaced under them`);
    assert.deepEqual(normalizeSnapshot(snapshot(outside)), outsideBefore);
  });

  test('other filesystems under the tree are skipped and reported', async (t) => {
    const dir = join(work, 'mounts');
    mkdirSync(join(dir, 'mnt'), { recursive: true });
    if (spawnSync('mount', ['-t', 'tmpfs', 'tmpfs', join(dir, 'mnt')]).status !== 0) {
      t.skip('cannot mount a tmpfs here');
      return;
    }
    try {
      writeFileSync(join(dir, 'mnt', 'inner'), '');
      const result = await shiftTree(dir, { from: range(0), to: range(100000) });
      assert.deepEqual(result.mountpoints, ['mnt']);
      assert.equal(lstatSync(join(dir, 'mnt', 'inner')).uid, 0);
      assert.equal(lstatSync(dir).uid, 100000);
    } finally {
      spawnSync('umount', [join(dir, 'mnt')]);
    }
  });

  test('bind mounts from the same filesystem (a file, a directory) are skipped, their sources untouched', async (t) => {
    const dir = join(work, 'binds');
    const outside = join(work, 'binds-outside');
    mkdirSync(join(dir, 'etc'), { recursive: true });
    mkdirSync(join(dir, 'volume'), { recursive: true });
    mkdirSync(join(outside, 'data'), { recursive: true });
    writeFileSync(join(dir, 'etc/resolv.conf'), '');
    writeFileSync(join(outside, 'resolv.conf'), 'nameserver 127.0.0.1\n');
    writeFileSync(join(outside, 'data/file'), '');
    const binds: [string, string][] = [
      [join(outside, 'resolv.conf'), join(dir, 'etc/resolv.conf')],
      [join(outside, 'data'), join(dir, 'volume')],
    ];
    const mounted: string[] = [];
    try {
      for (const [source, target] of binds) {
        if (spawnSync('mount', ['--bind', source, target]).status !== 0) {
          t.skip('cannot bind-mount here');
          return;
        }
        mounted.push(target);
      }
      const before = normalizeSnapshot(snapshot(outside));
      const result = await shiftTree(dir, { from: range(0), to: range(100000) });
      assert.deepEqual(result.mountpoints.sort(), ['etc/resolv.conf', 'volume']);
      assert.deepEqual(normalizeSnapshot(snapshot(outside)), before);
      assert.equal(lstatSync(join(dir, 'etc')).uid, 100000);
    } finally {
      for (const target of mounted.reverse()) spawnSync('umount', [target]);
    }
  });

  test('progress: counted first, summed over the workers', async () => {
    const dir = join(work, 'progress');
    mkdirSync(dir);
    for (let i = 0; i < 300; i++) writeFileSync(join(dir, `f${i}`), '');
    const seen: { seen: number; total: number | null }[] = [];
    const before = snapshot(dir);
    const result = await shiftTree(dir, {
      from: range(0),
      to: range(100000),
      unmapped: 'skip',
      countFirst: true,
      progressEvery: 50,
      workers: 3,
      onProgress: (p) => seen.push({ seen: p.seen, total: p.total }),
    });
    assert.equal(result.seen, 301);
    expectShiftOutcome(before, snapshot(dir), result, { from: range(0), to: range(100000), policy: 'skip' });
    assert.ok(seen.length >= 3, JSON.stringify(seen));
    assert.ok(seen.every((p) => p.total === 301));
    assert.ok(seen.every((p, i) => i === 0 || p.seen >= seen[i - 1]!.seen));
  });

  for (const userns of [true, false]) {
    test(`a change that fails is an error, never counted as changed (immutable file, ${userns ? 'protective namespace' : '--no-userns'})`, {
      timeout: 30_000,
    }, async (t) => {
      const dir = join(work, `immutable-${userns}`);
      mkdirSync(dir);
      for (const name of ['a', 'b', 'frozen']) writeFileSync(join(dir, name), '');
      if (spawnSync('chattr', ['+i', join(dir, 'frozen')]).status !== 0) {
        t.skip('machine: chattr +i is not supported on this filesystem');
        return;
      }
      try {
        const before = snapshot(dir);
        const error = await shiftTree(dir, { from: range(0), to: range(100000), userns }).then(
          () => assert.fail('the shift of an immutable file succeeded'),
          (e: unknown) => e,
        );
        assert.ok(error instanceof ShiftError && error.result !== undefined, String(error));
        assert.equal(error.code, 'SHIFT_INCOMPLETE');
        assert.deepEqual(error.result.errors, [{ op: 'chown', errno: 'EPERM', path: 'frozen' }]);
        const counts = expectShiftOutcome(before, snapshot(dir), error.result, {
          from: range(0),
          to: range(100000),
          protective: userns,
        });
        assert.equal(counts.changed, 3); // the directory, a and b; not frozen
        // The rerun finishes the job once the cause is gone: the shifted entries count as done.
        spawnSync('chattr', ['-i', join(dir, 'frozen')]);
        const middle = snapshot(dir);
        const rerun = await shiftTree(dir, { from: range(0), to: range(100000), userns });
        const again = expectShiftOutcome(middle, snapshot(dir), rerun, {
          from: range(0),
          to: range(100000),
          protective: userns,
        });
        assert.deepEqual([again.changed, again.alreadyShifted], [1, 3]);
      } finally {
        spawnSync('chattr', ['-i', join(dir, 'frozen')]);
      }
    });
  }

  test('a map the kernel would refuse is refused before anything changes (API, and the C walk itself)', {
    timeout: 30_000,
  }, async () => {
    const dir = join(work, 'wrap');
    mkdirSync(dir);
    const suid = join(dir, 'suid');
    writeFileSync(suid, '');
    lchownSync(suid, 1, 1);
    chmodSync(suid, 0o4755);
    const wrapping = [
      new IdMap([{ inside: 0, outside: 4294967295, count: 10 }]), // starts at (u32)-1
      new IdMap([{ inside: 0, outside: 4294967290, count: 10 }]), // runs past 4294967294
      new IdMap([
        { inside: 0, outside: 100000, count: 10 },
        { inside: 5, outside: 200000, count: 10 }, // overlaps inside
      ]),
      new IdMap([]),
    ];
    for (const to of wrapping) {
      for (const userns of [true, false]) {
        await assert.rejects(shiftTree(dir, { from: range(0), to: both(to), userns }), {
          name: 'MapError',
          code: 'MAP_INVALID',
        });
        await assert.rejects(shiftTree(dir, { from: both(to), to: range(0), userns }), {
          code: 'MAP_INVALID',
        });
      }
      await assert.rejects(fitTree(dir, to), { code: 'MAP_INVALID' });
    }
    // The walk's own tables: an extent whose last ID passes 4294967294 is a bad job.
    for (const table of [
      { from: 0, to: 4294967290, count: 10 },
      { from: 4294967290, to: 0, count: 10 },
      { from: 0, to: 4294967295, count: 1 },
    ]) {
      await assert.rejects(
        runWalk(
          {
            root: dir,
            apply: true,
            list: false,
            uid: [table],
            gid: [table],
            unmapped: 'skip',
            v2root: 0,
            crossFilesystems: false,
            progress: 0,
            count: false,
          },
          { namespace: null },
        ),
        { code: 'WALK_JOB_INVALID' },
      );
    }
    const st = lstatSync(suid);
    assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [1, 1, 0o4755]);
  });

  test('method: direct when the outside ranges of the two maps do not overlap, else two-phase through a range apart from both', {
    timeout: 30_000,
  }, async () => {
    const dir = join(work, 'resumable');
    mkdirSync(dir);
    writeFileSync(join(dir, 'f'), '');
    const apart = await shiftTree(dir, { from: range(0), to: range(100000), dryRun: true, userns: false });
    assert.equal(apart.resumable, true);
    assert.equal(apart.method, 'direct');
    assert.equal(apart.intermediate, null);
    const overlapping = await shiftTree(dir, {
      from: range(0),
      to: range(1000),
      dryRun: true,
      userns: false,
    });
    assert.equal(overlapping.resumable, true);
    assert.equal(overlapping.method, 'two-phase');
    // The highest free IDs, below 4294967294 and apart from 0-66535.
    assert.deepEqual(overlapping.intermediate, {
      uid: { start: 4294967294 - SIZE, count: SIZE },
      gid: { start: 4294967294 - SIZE, count: SIZE },
    });
    // Only the gid ranges overlap: two-phase all the same.
    const gidOnly = await shiftTree(dir, {
      from: range(0),
      to: { uid: range(100000).uid, gid: range(1000).gid },
      dryRun: true,
      userns: false,
    });
    assert.equal(gidOnly.method, 'two-phase');
    const failed = { ...overlapping, errorCount: 1, errors: [{ op: 'chown', errno: 'EPERM', path: 'f' }] };
    assert.match(
      shiftIncomplete(failed, 'error')?.hint ?? '',
      /run the same shift again \(it finishes where this one stopped/,
    );
  });

  test('errors: not a directory, a symbolic link, a missing path', async () => {
    writeFileSync(join(work, 'plain'), '');
    await assert.rejects(shiftTree(join(work, 'plain'), { from: range(0), to: range(1) }), {
      code: 'SHIFT_NOT_A_DIRECTORY',
    });
    await assert.rejects(shiftTree(join(work, 'missing'), { from: range(0), to: range(1) }), {
      code: 'SHIFT_DIR_UNREADABLE',
    });
  });
});
