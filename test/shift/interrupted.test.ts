/**
 * Interrupted shifts, killed for real: the CLI is SIGKILLed (with its walk) at a known point
 * mid-walk (the walk's stopafter test hook stops it after N changes; the test then kills
 * everything), and the tree is checked entry by entry after the rerun: every entry shifted
 * exactly once, none left behind. Between overlapping ranges a rerun used to shift the entries
 * already done a second time (reported as success): the overlapping cases here fail on a shift
 * without the two-phase method and its record.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  existsSync,
  lchownSync,
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
import { after, before, beforeEach, describe, test } from 'node:test';
import fc from 'fast-check';
import type { ShiftError } from '../../src/errors/index.js';
import { compose } from '../../src/idmap/compose.js';
import { IdMap } from '../../src/idmap/idmap.js';
import { mapsEqual } from '../../src/idmap/normalize.js';
import { shiftTree } from '../../src/shift/shift.js';
import { intermediateRange, shiftTranslation, twoPhaseTranslations } from '../../src/shift/translation.js';
import { BIN, runCli } from '../cli/run-cli.js';
import {
  buildTree,
  expectShiftOutcome,
  normalizeSnapshot,
  type Snapshot,
  shifted,
  snapshot,
} from './tree-fixture.js';

const rootOnly = process.geteuid?.() === 0 ? false : 'needs root';
const SIZE = 65536;
const range2 = (from: number, to: number) => ({ from: range(from), to: range(to) });
const range = (base: number) => {
  const map = new IdMap([{ inside: 0, outside: base, count: SIZE }]);
  return { uid: map, gid: map };
};
/** Where the intermediate range of a shift of 65536 IDs between low ranges lies (as root). */
const INTERMEDIATE = 4294967294 - SIZE;

/** Every process under `pid` (through /proc/PID/task/TID/children). */
function descendants(pid: number): number[] {
  const out: number[] = [];
  const visit = (p: number) => {
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      return;
    }
    for (const t of tasks) {
      let kids = '';
      try {
        kids = readFileSync(`/proc/${p}/task/${t}/children`, 'utf8');
      } catch {}
      for (const k of kids.split(' ').filter(Boolean).map(Number)) {
        out.push(k);
        visit(k);
      }
    }
  };
  visit(pid);
  return out;
}

function isStopped(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('T');
  } catch {
    return false;
  }
}

/**
 * Runs `userns ARGS` with the walk told to stop itself after `stopAfter` ([PHASE:]N) changes,
 * waits until a walk process has stopped there, runs `whileStopped`, then SIGKILLs the CLI and
 * every process under it: a shift killed at a known point mid-walk.
 */
async function killMidShift(
  args: string[],
  stopAfter: string,
  whileStopped?: () => Promise<void>,
): Promise<void> {
  const child = spawn(process.execPath, [BIN, ...args], {
    stdio: 'ignore',
    env: { ...process.env, USERNS_TEST_SHIFT_STOP_AFTER: stopAfter },
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const deadline = Date.now() + 30_000;
  try {
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`the shift ended (${child.exitCode ?? child.signalCode}) before it stopped mid-walk`);
      if (descendants(child.pid!).some(isStopped)) break;
      if (Date.now() > deadline) throw new Error('the walk never stopped');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await whileStopped?.();
  } finally {
    for (const pid of [child.pid!, ...descendants(child.pid!)]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
    await exited;
  }
}

/** Entries (one per inode) whose owner, ACLs or capability differ between two snapshots. */
function changedInodes(before: Snapshot, after: Snapshot): number {
  const a = normalizeSnapshot(before);
  const b = normalizeSnapshot(after);
  const seen = new Set<number>();
  let n = 0;
  for (const [path, s] of before) {
    if (seen.has(s.ino)) continue;
    seen.add(s.ino);
    if (JSON.stringify(a[path]) !== JSON.stringify(b[path])) n++;
  }
  return n;
}

const inIntermediate = (id: number) => id >= INTERMEDIATE && id < INTERMEDIATE + SIZE;

describe('interrupted shifts (SIGKILL mid-walk)', { skip: rootOnly, timeout: 240_000 }, () => {
  let work: string;
  let state: string;
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'userns-interrupted-'));
  });
  // A state root per test: completed two-phase shifts keep their records.
  let states = 0;
  beforeEach(() => {
    state = join(work, `state${states++}`);
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  /** `userns shift --from FROM --to TO --root <this test's state root> DIR MORE…`. */
  const shiftArgs = (from: string, to: string, dir: string, ...more: string[]) => [
    'shift',
    ...['--from', from, '--to', to, '--root', state, dir],
    ...more,
  ];

  let trees = 0;
  /** A tree of ~4,600 entries (ACLs, capabilities, set-ID bits, links) owned by IDs 0-3999 and 65535. */
  function bigTree(): string {
    const dir = join(work, `tree${trees++}`);
    buildTree(dir, { base: 0, size: SIZE, outside: `${dir}-outside` });
    let i = 0;
    for (let d = 0; d < 30; d++) {
      mkdirSync(join(dir, 'bulk', `d${d}`), { recursive: true });
      lchownSync(join(dir, 'bulk', `d${d}`), d, d);
      for (let f = 0; f < 150; f++, i++) {
        const path = join(dir, 'bulk', `d${d}`, `f${f}`);
        writeFileSync(path, '');
        // Most IDs are in both --from (0-65535) and --to (1000-66535) of the overlapping shift.
        lchownSync(path, (i * 37) % 4000, (i * 53) % 4000);
      }
    }
    return dir;
  }
  const records = () => (existsSync(join(state, 'shift')) ? readdirSync(join(state, 'shift')) : []);
  const recordOf = () => {
    const files = records().filter((f) => f.endsWith('.json'));
    assert.equal(files.length, 1, `one record: ${files.join(', ')}`);
    return JSON.parse(readFileSync(join(state, 'shift', files[0]!), 'utf8'));
  };
  /** After a two-phase shift of `dir` completed: its record alone, marked completed (the lock file is removed). */
  const expectCompleted = (dir: string) => {
    const st = lstatSync(dir, { bigint: true });
    const name = `${st.dev}-${st.ino}.json`;
    assert.deepEqual(records(), [name], 'one record, the completed one; no lock file');
    const record = JSON.parse(readFileSync(join(state, 'shift', name), 'utf8'));
    assert.equal(record.method, 'two-phase');
    assert.equal(record.phase, 2);
    assert.ok(!Number.isNaN(Date.parse(record.completed)), `completed: ${record.completed}`);
    assert.ok(Date.parse(record.completed) >= Date.parse(record.started));
    return record;
  };
  /** A tree of 43 entries: directories a and b (owned by 3) holding files owned by IDs 1-20. */
  const smallTree = () => {
    const dir = join(work, `tree${trees++}`);
    for (const sub of ['a', 'b']) {
      mkdirSync(join(dir, sub), { recursive: true });
      lchownSync(join(dir, sub), 3, 3);
      for (let i = 1; i <= 20; i++) {
        writeFileSync(join(dir, sub, `f${i}`), '');
        lchownSync(join(dir, sub, `f${i}`), i, i);
      }
    }
    return dir;
  };

  for (const userns of [true, false]) {
    const mode = userns ? [] : ['--no-userns'];
    const label = userns ? 'protective namespace' : '--no-userns';

    for (const phase of [1, 2] as const) {
      test(`overlapping ranges, killed in phase ${phase} (${label}): the same command finishes the job, every entry shifted exactly once`, {
        timeout: 120_000,
      }, async (t) => {
        const dir = bigTree();
        const original = snapshot(dir);
        const args = ['shift', '--from', '0:0:65536', '--to', '0:1000:65536', ...mode, '--root', state, dir];
        await killMidShift(args, `${phase}:500`, async () => {
          if (phase !== 1 || !userns) return;
          // While it runs, another shift of the tree is refused (the record's lock).
          const busy = await runCli([...args, '--json']);
          assert.equal(busy.code, 1, busy.stdout + busy.stderr);
          assert.equal(JSON.parse(busy.stdout).code, 'SHIFT_BUSY');
        });
        const killed = snapshot(dir);
        const expected = shifted(original, 1000, (id) => id < SIZE);
        assert.ok(
          changedInodes(original, killed) > 0 && changedInodes(killed, expected) > 0,
          'killed mid-walk',
        );
        const ids = [...killed.values()].flatMap((e) => [e.uid, e.gid]);
        const half = ids.filter(inIntermediate).length;
        t.diagnostic(`killed with ${half} of ${ids.length} owner IDs in the intermediate range`);
        const record = records().length > 0 ? recordOf() : null;

        // A dry run of the rerun says what the rerun does.
        const dry = await runCli([...args, '--dry-run', '--json']);
        assert.equal(dry.code, 0, dry.stdout + dry.stderr);
        assert.deepEqual(normalizeSnapshot(snapshot(dir)), normalizeSnapshot(killed));

        const rerun = await runCli([...args, '--json']);
        assert.equal(rerun.code, 0, rerun.stdout + rerun.stderr);
        const summary = JSON.parse(rerun.stdout);
        // Entry by entry: what one uninterrupted shift makes (no double shift, nothing left).
        const after = snapshot(dir);
        assert.deepEqual(normalizeSnapshot(after), normalizeSnapshot(expected));
        assert.equal(summary.changed, changedInodes(killed, after));
        assert.equal(JSON.parse(dry.stdout).changed, summary.changed);
        assert.equal(summary.continued, true);
        assert.equal(summary.method, 'two-phase');
        // Where it was killed: the record's phase, and IDs in the intermediate range.
        assert.equal(record?.phase, phase);
        assert.equal(record?.method, 'two-phase');
        assert.ok(half > 0, 'some IDs were in the intermediate range');
        if (phase === 1)
          assert.ok(
            ids.some((id) => id < 1000),
            'killed in phase 1: some entries not yet moved',
          );
        else assert.ok(!ids.some((id) => id < 1000), 'killed in phase 2: every entry left the source range');
        expectCompleted(dir);
      });
    }

    test(`ranges apart, killed (${label}): the same command finishes the job`, {
      timeout: 120_000,
    }, async () => {
      const dir = bigTree();
      const original = snapshot(dir);
      const args = ['shift', '--from', '0:0:65536', '--to', '0:100000:65536', ...mode, '--root', state, dir];
      await killMidShift(args, '500');
      const killed = snapshot(dir);
      const done = [...killed.values()].filter((e) => e.uid >= 100000).length;
      assert.ok(done > 0 && done < killed.size, `killed mid-walk (${done} of ${killed.size} shifted)`);
      assert.equal(recordOf().method, 'direct');
      const rerun = await runCli([...args, '--json']);
      assert.equal(rerun.code, 0, rerun.stdout + rerun.stderr);
      const summary = JSON.parse(rerun.stdout);
      assert.equal(summary.continued, true);
      expectShiftOutcome(killed, snapshot(dir), summary, {
        from: range(0),
        to: range(100000),
        protective: userns,
      });
      assert.deepEqual(
        normalizeSnapshot(snapshot(dir)),
        normalizeSnapshot(shifted(original, 100000, (id) => id < SIZE)),
      );
      assert.deepEqual(records(), []);
    });
  }

  test('another shift of a half-shifted tree is refused naming the pending one, and that command finishes the job', {
    timeout: 120_000,
  }, async () => {
    const dir = bigTree();
    const original = snapshot(dir);
    await killMidShift(shiftArgs('0:0:65536', '0:1000:65536', dir), '1:300');
    const killed = snapshot(dir);
    const other = shiftArgs('0:0:65536', '0:2000:65536', dir);
    const refused = await runCli(other);
    assert.equal(refused.code, 1);
    const pending = `userns shift --from 0:0:65536 --to 0:1000:65536 --root ${state} ${dir}`;
    assert.ok(
      refused.stderr.startsWith(`userns: ${dir} is half shifted by another shift, interrupted (started `),
      refused.stderr,
    );
    assert.ok(refused.stderr.includes(`): ${pending}\n`), refused.stderr);
    assert.match(
      refused.stderr,
      /hint: finish that shift first: run that command again; .*--forget-interrupted/,
    );
    // A dry run fails where the run would; --json errors in the CLI's one shape.
    const dry = await runCli([...other, '--dry-run']);
    assert.equal(dry.code, 1);
    assert.equal(dry.stderr, refused.stderr);
    const json = await runCli([...other, '--json']);
    assert.equal(json.code, 1);
    const body = JSON.parse(json.stdout);
    assert.equal(body.ok, false);
    assert.equal(body.code, 'SHIFT_PENDING_OTHER');
    assert.equal(body.data.pending.command, pending);
    // A shift with the same maps but another result-changing option is another shift too.
    const skip = await runCli([
      ...other.slice(0, 3),
      '--to',
      '0:1000:65536',
      '--unmapped',
      'skip',
      '--root',
      state,
      dir,
    ]);
    assert.equal(skip.code, 1);
    assert.match(skip.stderr, /half shifted by another shift/);
    assert.deepEqual(normalizeSnapshot(snapshot(dir)), normalizeSnapshot(killed), 'refusals change nothing');

    // The command named, run as given, finishes the job exactly.
    const named = pending.split(' ').slice(1);
    const finished = await runCli(named);
    assert.equal(finished.code, 0, finished.stdout + finished.stderr);
    assert.match(finished.stdout, /finished a shift of these maps that had been interrupted/);
    assert.match(
      finished.stdout,
      /went through intermediate IDs \(uid 4294901758-4294967293, gid 4294901758-4294967293\)/,
    );
    assert.deepEqual(
      normalizeSnapshot(snapshot(dir)),
      normalizeSnapshot(shifted(original, 1000, (id) => id < SIZE)),
    );
  });

  test('the command a refusal names carries --root: run as printed, it finishes a shift whose entries are all done, without shifting them again', {
    timeout: 60_000,
  }, async () => {
    // One entry, killed in phase 2 right after its change: every entry is final, the record says phase 2.
    const dir = join(work, `tree${trees++}`);
    mkdirSync(dir);
    lchownSync(dir, 5, 5);
    await killMidShift(shiftArgs('0:0:65536', '0:1000:65536', dir), '2:1');
    assert.equal(lstatSync(dir).uid, 1005);
    const refused = await runCli(shiftArgs('0:0:65536', '0:2000:65536', dir, '--json'));
    assert.equal(refused.code, 1);
    const command: string = JSON.parse(refused.stdout).data.pending.command;
    // Without --root the command would look for the record in the default state root (not this
    // test's), find none and shift 1005 to 2005: refuse to run it here rather than touch that root.
    assert.equal(command, `userns shift --from 0:0:65536 --to 0:1000:65536 --root ${state} ${dir}`);
    const finished = await runCli(command.split(' ').slice(1));
    assert.equal(finished.code, 0, finished.stdout + finished.stderr);
    assert.match(finished.stdout, /finished a shift of these maps that had been interrupted/);
    assert.deepEqual([lstatSync(dir).uid, lstatSync(dir).gid], [1005, 1005]);
    expectCompleted(dir);
  });

  test('a tree inside a half-shifted one, or around one, is refused naming the pending shift: no entry shifted twice', {
    timeout: 120_000,
  }, async () => {
    const small = smallTree;
    const shift = (dir: string, ...more: string[]) => shiftArgs('0:0:65536', '0:1000:65536', dir, ...more);
    for (const [pendingTree, other] of [
      ['', 'a'], // the whole tree half shifted; a shift of its subtree a
      ['b', ''], // subtree b half shifted; a shift of the whole tree
    ] as const) {
      const dir = small();
      const original = snapshot(dir);
      const half = join(dir, pendingTree);
      await killMidShift(shift(half), '1:1');
      const killed = snapshot(dir);
      for (const more of [[], ['--dry-run']]) {
        const refused = await runCli(shift(join(dir, other), '--json', ...more));
        assert.equal(refused.code, 1, refused.stdout);
        const body = JSON.parse(refused.stdout);
        assert.equal(body.code, 'SHIFT_PENDING_OTHER');
        assert.equal(body.data.pending.dir, half);
        assert.equal(body.data.pending.command, `userns ${shift(half).join(' ')}`);
      }
      assert.deepEqual(
        normalizeSnapshot(snapshot(dir)),
        normalizeSnapshot(killed),
        'refusals change nothing',
      );
      const finished = await runCli(shift(half));
      assert.equal(finished.code, 0, finished.stdout + finished.stderr);
      if (pendingTree === '') {
        assert.deepEqual(
          normalizeSnapshot(snapshot(dir)),
          normalizeSnapshot(shifted(original, 1000, (id) => id < SIZE)),
        );
      } else {
        assert.equal(lstatSync(join(dir, 'b', 'f7')).uid, 1007);
        assert.equal(lstatSync(join(dir, 'a', 'f7')).uid, 7);
      }
      expectCompleted(half);
      rmSync(join(state, 'shift'), { recursive: true });
    }
  });

  test('--forget-interrupted: after restoring from a backup, or to undo an interrupted shift with --reverse', {
    timeout: 120_000,
  }, async () => {
    const dir = bigTree();
    const original = snapshot(dir);
    const args = shiftArgs('0:0:65536', '0:100000:65536', dir);
    await killMidShift(args, '300');
    const reverse = await runCli([...args, '--reverse']);
    assert.equal(reverse.code, 1);
    assert.match(reverse.stderr, /half shifted by another shift/);
    // Between ranges apart, --reverse of the interrupted shift takes every entry back.
    const undo = await runCli([...args, '--reverse', '--forget-interrupted', '--json']);
    assert.equal(undo.code, 0, undo.stdout + undo.stderr);
    assert.equal(JSON.parse(undo.stdout).continued, false);
    assert.deepEqual(normalizeSnapshot(snapshot(dir)), normalizeSnapshot(original));
    assert.deepEqual(records(), []);
  });

  test('--forget-interrupted refused before any change keeps the record: the interrupted shift can still be finished', {
    timeout: 120_000,
  }, async () => {
    const dir = bigTree();
    const original = snapshot(dir);
    const args = shiftArgs('0:0:65536', '0:1000:65536', dir);
    await killMidShift(args, '1:300');
    const killed = snapshot(dir);
    const before = recordOf();
    // The tree was not restored: the new shift finds intermediate IDs and changes nothing.
    const refused = await runCli(
      shiftArgs('0:0:65536', '0:2000:65536', dir, '--forget-interrupted', '--json'),
    );
    assert.equal(refused.code, 1);
    assert.equal(JSON.parse(refused.stdout).code, 'SHIFT_INTERMEDIATE_IN_USE');
    assert.deepEqual(normalizeSnapshot(snapshot(dir)), normalizeSnapshot(killed), 'nothing changed');
    assert.deepEqual(recordOf(), before, 'the record of the interrupted shift is kept');
    const finished = await runCli(args);
    assert.equal(finished.code, 0, finished.stdout + finished.stderr);
    assert.match(finished.stdout, /finished a shift of these maps that had been interrupted/);
    assert.deepEqual(
      normalizeSnapshot(snapshot(dir)),
      normalizeSnapshot(shifted(original, 1000, (id) => id < SIZE)),
    );
    expectCompleted(dir);
  });

  test('a completed overlapping shift, run again, is refused: no entry shifted twice (a dry run and the API refuse too)', {
    timeout: 120_000,
  }, async () => {
    const dir = bigTree();
    const original = snapshot(dir);
    const args = shiftArgs('0:0:65536', '0:1000:65536', dir);
    const first = await runCli([...args, '--json']);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    assert.equal(JSON.parse(first.stdout).method, 'two-phase');
    const once = snapshot(dir);
    assert.deepEqual(normalizeSnapshot(once), normalizeSnapshot(shifted(original, 1000, (id) => id < SIZE)));

    // The user cannot tell whether it finished (SSH dropped): the same command again.
    const again = await runCli(args);
    assert.equal(again.code, 1, again.stdout + again.stderr);
    const record = expectCompleted(dir);
    assert.equal(
      again.stderr.split('\n')[0],
      `userns: nothing was changed: ${dir} was already shifted by this shift, which completed at ${record.completed} (its ranges overlap, so running it again would shift every entry a second time)`,
    );
    assert.match(
      again.stderr,
      /\n {2}hint: nothing to do; if the tree has been restored from a backup .*--forget-interrupted/,
    );
    const dry = await runCli([...args, '--dry-run']);
    assert.equal(dry.code, 1);
    assert.equal(dry.stderr, again.stderr);
    const json = await runCli([...args, '--json']);
    assert.equal(json.code, 1);
    const body = JSON.parse(json.stdout);
    assert.equal(body.ok, false);
    assert.equal(body.code, 'SHIFT_ALREADY_DONE');
    assert.equal(body.data.completed.completed, record.completed);
    assert.equal(body.data.completed.command, `userns ${args.join(' ')}`);
    await assert.rejects(shiftTree(dir, { ...range2(0, 1000), stateRoot: state }), {
      code: 'SHIFT_ALREADY_DONE',
    });
    // Entry by entry: as after the one shift; the completed record is unchanged.
    assert.deepEqual(normalizeSnapshot(snapshot(dir)), normalizeSnapshot(once), 'refusals change nothing');
    assert.deepEqual(expectCompleted(dir), record);
  });

  test('--forget-interrupted shifts a completed tree again, on purpose', { timeout: 120_000 }, async () => {
    const dir = smallTree();
    const original = snapshot(dir);
    const args = shiftArgs('0:0:65536', '0:1000:65536', dir);
    assert.equal((await runCli(args)).code, 0);
    const first = expectCompleted(dir);
    const again = await runCli([...args, '--forget-interrupted', '--json']);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.equal(JSON.parse(again.stdout).changed, original.size);
    assert.deepEqual(
      normalizeSnapshot(snapshot(dir)),
      normalizeSnapshot(shifted(original, 2000, () => true)),
    );
    assert.notEqual(expectCompleted(dir).started, first.started, 'the new shift has a record of its own');
    assert.equal((await runCli(args)).code, 1, 'and that one refuses a third run');
  });

  test('a completed record does not block another shift: --reverse proceeds, then the original is allowed again', {
    timeout: 120_000,
  }, async () => {
    const dir = smallTree();
    const original = snapshot(dir);
    const once = shifted(original, 1000, () => true);
    const args = shiftArgs('0:0:65536', '0:1000:65536', dir);
    assert.equal((await runCli(args)).code, 0);
    const first = expectCompleted(dir);
    // Another shift that changes nothing (every ID already in its --to range) keeps the completed record.
    const idle = await runCli(shiftArgs('0:0:1000', '0:500:1000', dir, '--json'));
    assert.equal(idle.code, 0, idle.stdout + idle.stderr);
    assert.equal(JSON.parse(idle.stdout).changed, 0);
    assert.deepEqual(expectCompleted(dir), first);
    assert.equal((await runCli(args)).code, 1, 'the original is still refused');
    // --reverse (overlapping too) is another shift: it proceeds and its record replaces the completed one.
    const reverse = await runCli([...args, '--reverse', '--json']);
    assert.equal(reverse.code, 0, reverse.stdout + reverse.stderr);
    assert.equal(JSON.parse(reverse.stdout).continued, false);
    assert.deepEqual(normalizeSnapshot(snapshot(dir)), normalizeSnapshot(original));
    const back = expectCompleted(dir);
    assert.equal(back.from.uid[0].outside, 1000, 'the record is the reverse shift');
    // The original shift is allowed again, once.
    const redo = await runCli(args);
    assert.equal(redo.code, 0, redo.stdout + redo.stderr);
    assert.deepEqual(normalizeSnapshot(snapshot(dir)), normalizeSnapshot(once));
    expectCompleted(dir);
    assert.equal((await runCli(args)).code, 1);
    assert.equal(
      (await runCli([...args, '--reverse', '--dry-run'])).code,
      0,
      'a dry run of another shift proceeds',
    );
    // A completed record of a tree inside is not pending: a shift around it proceeds.
    const inner = join(dir, 'a');
    const sub = await runCli(shiftArgs('0:1000:65536', '0:2000:65536', inner));
    assert.equal(sub.code, 0, sub.stdout + sub.stderr);
    const around = await runCli(shiftArgs('0:0:65536', '0:100000:65536', dir, '--json'));
    assert.equal(around.code, 0, around.stdout + around.stderr);
    assert.equal(lstatSync(join(dir, 'a', 'f7')).uid, 102007);
    assert.equal(lstatSync(join(dir, 'b', 'f7')).uid, 101007);
  });

  test('the same overlapping shift of a tree around a completed one, or inside it, is refused: no entry shifted twice', {
    timeout: 120_000,
  }, async () => {
    const maps = ['--from', '0:0:65536', '--to', '0:1000:65536', '--root', state];
    // Completed inside: shifting the whole tree by the same maps would shift a/ a second time.
    const dir = smallTree();
    assert.equal((await runCli(['shift', ...maps, join(dir, 'a')])).code, 0);
    const before = snapshot(dir);
    const around = await runCli(['shift', ...maps, dir, '--json']);
    assert.equal(around.code, 1, around.stdout + around.stderr);
    const body = JSON.parse(around.stdout);
    assert.equal(body.code, 'SHIFT_ALREADY_DONE');
    assert.match(body.message, /inside .* was already shifted by this shift, which completed at/);
    assert.equal(body.data.completed.dir, join(dir, 'a'));
    assert.equal((await runCli(['shift', ...maps, dir, '--dry-run'])).code, 1, 'a dry run refuses too');
    assert.deepEqual(snapshot(dir), before, 'nothing changed');
    // Completed around: the same maps on a tree inside it.
    const whole = smallTree();
    assert.equal((await runCli(['shift', ...maps, whole])).code, 0);
    const done = snapshot(whole);
    const inner = await runCli(['shift', ...maps, join(whole, 'b')]);
    assert.equal(inner.code, 1, inner.stdout + inner.stderr);
    assert.match(inner.stderr, /SHIFT_ALREADY_DONE|is inside .* which was already shifted by this shift/);
    assert.deepEqual(snapshot(whole), done, 'nothing changed');
    // Other maps are another shift (not blocked); --forget-interrupted overrides on purpose.
    assert.equal(
      (await runCli(shiftArgs('0:1000:65536', '0:2000:65536', join(whole, 'b'), '--dry-run'))).code,
      0,
    );
    assert.equal((await runCli(['shift', ...maps, '--forget-interrupted', join(whole, 'b')])).code, 0);
    assert.equal(lstatSync(join(whole, 'b', 'f7')).uid, 2007, 'shifted twice, as asked');
    assert.equal(lstatSync(join(whole, 'a', 'f7')).uid, 1007);
  });

  test('ranges apart: a completed shift keeps no record, and running it again changes nothing', {
    timeout: 120_000,
  }, async () => {
    const dir = smallTree();
    const original = snapshot(dir);
    const args = shiftArgs('0:0:65536', '0:100000:65536', dir, '--json');
    const first = await runCli(args);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    assert.equal(JSON.parse(first.stdout).method, 'direct');
    assert.deepEqual(records(), []);
    const again = await runCli(args);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    const summary = JSON.parse(again.stdout);
    assert.equal(summary.changed, 0);
    assert.equal(summary.alreadyShifted, original.size);
    assert.deepEqual(
      normalizeSnapshot(snapshot(dir)),
      normalizeSnapshot(shifted(original, 100000, () => true)),
    );
    assert.deepEqual(records(), []);
  });

  test('the record lost (a restart) after a kill between overlapping ranges: refused, nothing changed', {
    timeout: 120_000,
  }, async () => {
    const dir = bigTree();
    const args = shiftArgs('0:0:65536', '0:1000:65536', dir);
    await killMidShift(args, '1:300');
    const killed = snapshot(dir);
    for (const f of records()) rmSync(join(state, 'shift', f));
    for (const extra of [[], ['--unmapped', 'skip'], ['--dry-run']]) {
      const r = await runCli([...args, ...extra, '--json']);
      assert.equal(r.code, 1, r.stdout);
      const body = JSON.parse(r.stdout);
      assert.equal(body.code, 'SHIFT_INTERMEDIATE_IN_USE');
      assert.match(body.message, /^nothing was changed: the --from and --to ranges overlap/);
      assert.match(body.hint, /restore the tree from a backup/);
    }
    assert.deepEqual(normalizeSnapshot(snapshot(dir)), normalizeSnapshot(killed));
    assert.deepEqual(records(), []);
  });
});

describe('records that cannot be used', { skip: rootOnly }, () => {
  let work: string;
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'userns-records-'));
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  test('a damaged record is a typed error naming it, and nothing changes', { timeout: 30_000 }, async () => {
    const dir = join(work, 'tree');
    mkdirSync(dir);
    writeFileSync(join(dir, 'f'), '');
    const stateRoot = join(work, 'state');
    mkdirSync(join(stateRoot, 'shift'), { recursive: true, mode: 0o700 });
    const st = lstatSync(dir, { bigint: true });
    const file = join(stateRoot, 'shift', `${st.dev}-${st.ino}.json`);
    writeFileSync(file, '{"version": 1, "tree": ');
    for (const dryRun of [false, true]) {
      await assert.rejects(
        shiftTree(dir, { ...range2(0, 100000), stateRoot, dryRun }),
        (error: ShiftError) => {
          assert.equal(error.code, 'SHIFT_RECORD_UNREADABLE');
          assert.ok(error.message.startsWith(`the shift record ${file} is damaged`), error.message);
          return true;
        },
      );
    }
    assert.equal(lstatSync(join(dir, 'f')).uid, 0);
  });

  test('no room for an intermediate range: refused before anything is read', {
    timeout: 30_000,
  }, async () => {
    const dir = join(work, 'tree2');
    mkdirSync(dir);
    const huge = (base: number) => {
      const map = new IdMap([{ inside: 0, outside: base, count: 4294000000 }]);
      return { uid: map, gid: map };
    };
    for (const dryRun of [true, false]) {
      await assert.rejects(
        shiftTree(dir, {
          from: huge(0),
          to: huge(200000),
          userns: false,
          dryRun,
          stateRoot: join(work, 'state2'),
        }),
        { code: 'SHIFT_NO_INTERMEDIATE_RANGE' },
      );
    }
  });
});

describe('two-phase arithmetic', () => {
  test('second ∘ first is the shift, through a range apart from both maps', { timeout: 30_000 }, () => {
    const extentArb = fc.record({
      inside: fc.integer({ min: 0, max: 5000 }),
      outside: fc.integer({ min: 0, max: 5000 }),
      count: fc.integer({ min: 1, max: 300 }),
    });
    fc.assert(
      fc.property(extentArb, extentArb, (a, b) => {
        const from = new IdMap([a]);
        const to = new IdMap([b]);
        const translation = shiftTranslation(from, to);
        const avoid = [
          { start: a.outside, count: a.count },
          { start: b.outside, count: b.count },
        ];
        const mid = intermediateRange(translation.size, [{ start: 0, count: 6000 }], avoid);
        if (mid === null) return;
        for (const r of avoid) assert.ok(mid.start + mid.count <= r.start || r.start + r.count <= mid.start);
        const { first, second } = twoPhaseTranslations(translation, mid.start);
        assert.ok(mapsEqual(compose(first, second), translation));
      }),
      { numRuns: 500 },
    );
    assert.equal(intermediateRange(10, [{ start: 0, count: 100 }], [{ start: 95, count: 5 }])?.start, 85);
    assert.equal(intermediateRange(10, [{ start: 0, count: 15 }], [{ start: 5, count: 5 }]), null);
  });
});
