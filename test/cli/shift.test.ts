import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { progressLine } from '../../src/cli/shift.js';
import { IdMap } from '../../src/idmap/idmap.js';
import { readableBin } from '../fixtures/readable-repo.js';
import { runAs, throwawayUserUnavailable, withThrowawayUser } from '../fixtures/throwaway-user.js';
import { expectShiftOutcome, normalizeSnapshot, shifted, snapshot } from '../shift/tree-fixture.js';
import { BIN, runCli as runCliIn } from './run-cli.js';

const rootOnly = process.geteuid?.() === 0 ? false : 'needs root';
// The records of unfinished shifts go to a state root of the tests' own, never /run/userns.
const stateRoot = mkdtempSync(join(tmpdir(), 'userns-shift-cli-state-'));
after(() => rmSync(stateRoot, { recursive: true, force: true }));
const runCli: typeof runCliIn = (args, options) =>
  runCliIn(args[0] === 'shift' ? [...args, '--root', stateRoot] : args, options);
const range = (base: number) => {
  const map = new IdMap([{ inside: 0, outside: base, count: 65536 }]);
  return { uid: map, gid: map };
};

describe('userns shift / userns fit (CLI)', { skip: rootOnly }, () => {
  let work: string;
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'userns-shift-cli-'));
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  function tree(name: string): string {
    const dir = join(work, name);
    mkdirSync(join(dir, 'etc'), { recursive: true });
    writeFileSync(join(dir, 'etc/shadow'), '');
    lchownSync(join(dir, 'etc/shadow'), 0, 42);
    return dir;
  }

  test('the progress line: entries, rate, and time left once the total is known', () => {
    assert.equal(progressLine({ seen: 5000, changed: 10, total: null }, 500), '5,000 entries, 10,000/s');
    assert.equal(
      progressLine({ seen: 5000, changed: 10, total: 35000 }, 500),
      '5,000 / 35,000 entries, 10,000/s, 3 s left',
    );
  });

  test('--help, and usage errors exit 2', async () => {
    for (const command of ['shift', 'fit']) {
      const help = await runCli([command, '--help']);
      assert.equal(help.code, 0);
      assert.match(help.stdout, new RegExp(`^Usage: userns ${command}`));
    }
    const noMaps = await runCli(['shift', work]);
    assert.equal(noMaps.code, 2);
    assert.match(noMaps.stderr, /--from MAP and --to MAP are required/);
    const badPolicy = await runCli(['shift', '--from', '0:0:1', '--to', '0:1:1', '--unmapped', 'drop', work]);
    assert.equal(badPolicy.code, 2);
    assert.match(badPolicy.stderr, /--unmapped must be error, skip or overflow/);
    const fitArgs = await runCli(['fit', '0:0:1']);
    assert.equal(fitArgs.code, 2);
  });

  test('shift, --json summary, then --reverse; --dry-run -v lists the changes', async () => {
    const dir = tree('t1');
    const dry = await runCli([
      'shift',
      '--from',
      '0:0:65536',
      '--to',
      '0:100000:65536',
      '--dry-run',
      '-v',
      dir,
    ]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /^etc\/shadow: 0:42 → 100000:100042 \(owner\)$/m);
    assert.match(dry.stdout, /would shift .*: 3 entries seen, 3 to change/);
    assert.equal(lstatSync(join(dir, 'etc/shadow')).uid, 0);

    const before = snapshot(dir);
    const r = await runCli(['shift', '--from', '0:0:65536', '--to', '0:100000:65536', '--json', dir]);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout);
    assert.equal(summary.ok, true);
    expectShiftOutcome(before, snapshot(dir), summary, { from: range(0), to: range(100000) });
    assert.equal(summary.changed, 3);
    assert.equal(summary.protectiveNamespace, true);
    assert.equal(lstatSync(join(dir, 'etc/shadow')).gid, 100042);

    const middle = snapshot(dir);
    const back = await runCli([
      'shift',
      '--from',
      '0:0:65536',
      '--to',
      '0:100000:65536',
      '--reverse',
      '--json',
      dir,
    ]);
    assert.equal(back.code, 0, back.stderr);
    expectShiftOutcome(middle, snapshot(dir), JSON.parse(back.stdout), { from: range(100000), to: range(0) });
    assert.equal(lstatSync(join(dir, 'etc/shadow')).gid, 42);
  });

  test('an untranslatable ID: exit 1, nothing changed, the error names the ID and a path', async () => {
    const dir = tree('t2');
    const before = snapshot(dir);
    const r = await runCli(['shift', '--from', '0:0:10', '--to', '0:100000:10', dir]);
    assert.equal(r.code, 1);
    assert.deepEqual(normalizeSnapshot(snapshot(dir)), normalizeSnapshot(before));
    assert.match(
      r.stderr,
      /nothing was changed: the --from map does not translate gid 42 \(1 entry, e\.g\. etc\/shadow\)/,
    );
    assert.match(r.stderr, /hint: .*userns fit/);
    assert.equal(lstatSync(dir).uid, 0);
    const json = await runCli(['shift', '--from', '0:0:10', '--to', '0:100000:10', '--json', dir]);
    assert.equal(json.code, 1);
    const error = JSON.parse(json.stdout);
    assert.equal(error.ok, false);
    assert.equal(error.code, 'SHIFT_UNMAPPED_IDS');
    assert.deepEqual(error.data.unmapped[0], {
      kind: 'gid',
      where: 'owner',
      id: 42,
      count: 1,
      examples: ['etc/shadow'],
    });
  });

  test('--unmapped overflow: the summary counts exactly what happened on disk, in both modes (exit 1 when an entry could not be done)', {
    timeout: 30_000,
  }, async () => {
    for (const userns of [true, false]) {
      const dir = join(work, `overflow-${userns}`);
      mkdirSync(dir);
      writeFileSync(join(dir, 'a'), '');
      writeFileSync(join(dir, 'big'), '');
      lchownSync(join(dir, 'big'), 70000, 70000);
      const before = snapshot(dir);
      const args = [
        'shift',
        '--from',
        '0:0:65536',
        '--to',
        '0:100000:65536',
        '--unmapped',
        'overflow',
        '--json',
      ];
      const r = await runCli([...args, ...(userns ? [] : ['--no-userns']), dir]);
      const out = JSON.parse(r.stdout);
      const summary = userns ? out.data.result : out;
      const model = { from: range(0), to: range(100000), policy: 'overflow', protective: userns } as const;
      const counts = expectShiftOutcome(before, snapshot(dir), summary, model);
      if (userns) {
        // The protective namespace cannot change a file owned outside its ranges: not done, exit 1.
        assert.equal(r.code, 1, r.stdout);
        assert.equal(out.ok, false);
        assert.equal(out.code, 'SHIFT_INCOMPLETE');
        assert.equal(counts.skipped, 1);
        assert.equal(lstatSync(join(dir, 'big')).uid, 70000);
        // The dry run fails exactly where the run does.
        const dry = await runCli([...args, '--dry-run', dir]);
        assert.equal(dry.code, 1);
        assert.equal(JSON.parse(dry.stdout).ok, false);
      } else {
        assert.equal(r.code, 0, r.stdout);
        assert.equal(out.ok, true);
        assert.deepEqual([lstatSync(join(dir, 'big')).uid, lstatSync(join(dir, 'big')).gid], [65534, 65534]);
      }
    }
  });

  test('maps the kernel refuses are refused before anything changes: no wrap past 2^32-1 to a setuid-root file', {
    timeout: 30_000,
  }, async () => {
    const dir = join(work, 'wrap');
    mkdirSync(dir);
    const suid = join(dir, 'suid');
    writeFileSync(suid, '#!/bin/sh\n');
    chownSync(suid, 1, 1);
    chmodSync(suid, 0o4755);
    const oci = join(work, 'wrap-oci.json');
    writeFileSync(oci, '[{"containerID": 0, "hostID": 4294967290, "size": 10}]\n');
    const lxc = join(work, 'wrap.lxc');
    writeFileSync(lxc, 'lxc.idmap = u 0 100000 10\n'); // no g line: an empty gid map
    for (const to of ['0:4294967295:10', '0:4294967290:10', oci, lxc]) {
      for (const mode of [['--no-userns'], []]) {
        const r = await runCli(['shift', ...mode, '--from', '0:0:10', '--to', to, '--json', dir]);
        assert.equal(r.code, 1, r.stdout);
        const error = JSON.parse(r.stdout);
        assert.equal(error.code, 'MAP_INVALID');
        const st = lstatSync(suid);
        assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [1, 1, 0o4755]);
      }
      const fit = await runCli(['fit', to, dir]);
      assert.equal(fit.code, 1);
      assert.match(fit.stderr, /the kernel would refuse this (u|g)id map/);
    }
    const r = await runCli(['shift', '--no-userns', '--from', '0:0:10', '--to', '0:4294967295:10', dir]);
    assert.match(
      r.stderr,
      /^userns: --to: the kernel would refuse this uid map \(EINVAL\): line 1 \(0:4294967295:10\): 4294967295 is \(u32\)-1/,
    );
  });

  test('an interrupted shift: rerunning the same command finishes it exactly (entries in --to and not --from are done)', {
    timeout: 60_000,
  }, async (t) => {
    const dir = join(work, 'interrupted');
    for (let d = 0; d < 20; d++) {
      mkdirSync(join(dir, `d${d}`), { recursive: true });
      for (let f = 0; f < 500; f++) writeFileSync(join(dir, `d${d}`, `f${f}`), '');
    }
    const original = snapshot(dir);
    const args = ['shift', '--from', '0:0:65536', '--to', '0:100000:65536', dir];
    // Kill the shift (and with it the walk: it dies with its parent) once it has changed something.
    const child = spawn(process.execPath, [BIN, ...args, '--root', stateRoot, '-v'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    await new Promise<void>((resolve) => {
      child.stdout.once('data', () => {
        child.kill('SIGKILL');
        resolve();
      });
      child.once('exit', () => resolve());
    });
    await new Promise((resolve) =>
      child.exitCode === null && child.signalCode === null ? child.once('exit', resolve) : resolve(null),
    );
    const killed = snapshot(dir);
    const done = [...killed.values()].filter((e) => e.uid >= 100000).length;
    t.diagnostic(`killed after ${done} of ${killed.size} entries`);
    // Rerun: finishes exactly the rest, and the tree is what one uninterrupted shift makes.
    const r = await runCli([...args, '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const summary = JSON.parse(r.stdout);
    const counts = expectShiftOutcome(killed, snapshot(dir), summary, { from: range(0), to: range(100000) });
    assert.equal(counts.alreadyShifted, done);
    assert.equal(counts.changed, killed.size - done);
    const whole = shifted(original, 100000, (id) => id < 65536);
    assert.deepEqual(normalizeSnapshot(snapshot(dir)), normalizeSnapshot(whole));
    // And once more: nothing to do, and the text says why.
    const again = await runCli(args);
    assert.equal(again.code, 0);
    assert.match(again.stdout, /0 changed, 10,021 already shifted/);
    assert.match(again.stdout, /already shifted to this map\?/);
  });

  test('fit: exit 1 and the smallest map; exit 0 when it fits', async () => {
    const dir = tree('t3');
    const r = await runCli(['fit', '0:100000:10', dir]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /cannot represent 1 ID/);
    assert.match(r.stdout, /gid 42 +owner \(1 entry\): etc\/shadow/);
    assert.match(r.stdout, /smallest map from 0 that fits: count 43/);
    const ok = await runCli(['fit', '--json', '0:100000:43', dir]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(JSON.parse(ok.stdout).fits, true);
  });

  test(
    'rootless: an unprivileged user shifts a tree between two parts of its own subordinate range',
    {
      skip: throwawayUserUnavailable(),
    },
    () =>
      withThrowawayUser(async (user) => {
        const base = user.subuid.start;
        const gbase = user.subgid.start;
        const dir = join(user.home, 'rootfs');
        mkdirSync(join(dir, 'etc'), { recursive: true });
        writeFileSync(join(dir, 'etc/shadow'), '');
        writeFileSync(join(dir, 'foreign'), '');
        chownSync(dir, base, gbase);
        chownSync(join(dir, 'etc'), base, gbase);
        chownSync(join(dir, 'etc/shadow'), base, gbase + 42);
        chmodSync(join(dir, 'etc'), 0o700);
        // owned by root: outside the user's ranges, must stay as it is
        chownSync(join(dir, 'foreign'), 0, 0);
        const uidFrom = `0:${base}:1000`;
        const uidTo = `0:${base + 1000}:1000`;
        const args = [
          readableBin(),
          'shift',
          '--from',
          uidFrom,
          '--from-gid',
          `0:${gbase}:1000`,
          '--to',
          uidTo,
          '--to-gid',
          `0:${gbase + 1000}:1000`,
          '--unmapped',
          'skip',
          '--json',
          dir,
        ];
        const before = snapshot(dir);
        const r = await runAs(user, [process.execPath, ...args]);
        assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
        const summary = JSON.parse(r.stdout);
        assert.equal(summary.protectiveNamespace, true);
        const kindMaps = (u: number, g: number) => ({
          uid: new IdMap([{ inside: 0, outside: u, count: 1000 }]),
          gid: new IdMap([{ inside: 0, outside: g, count: 1000 }]),
        });
        expectShiftOutcome(before, snapshot(dir), summary, {
          from: kindMaps(base, gbase),
          to: kindMaps(base + 1000, gbase + 1000),
          policy: 'skip',
        });
        assert.equal(lstatSync(join(dir, 'etc/shadow')).uid, base + 1000);
        assert.equal(lstatSync(join(dir, 'etc/shadow')).gid, gbase + 1042);
        assert.equal(lstatSync(join(dir, 'etc')).mode & 0o777, 0o700);
        assert.equal(lstatSync(join(dir, 'foreign')).uid, 0);
        assert.deepEqual(
          summary.unmapped.map((u: { kind: string; id: number }) => [u.kind, u.id]),
          [
            ['uid', 0],
            ['gid', 0],
          ],
        );

        // Without the namespace an unprivileged user cannot chown at all: refused, nothing changed.
        const plain = await runAs(user, [process.execPath, ...args.slice(0, -2), '--no-userns', dir]);
        assert.equal(plain.code, 1);
        assert.equal(lstatSync(join(dir, 'etc/shadow')).uid, base + 1000);

        // Ranges the user does not own are refused before anything is touched.
        const foreign = await runAs(user, [
          process.execPath,
          readableBin(),
          'shift',
          '--from',
          '0:0:1',
          '--to',
          uidTo,
          dir,
        ]);
        assert.equal(foreign.code, 1);
        assert.equal(lstatSync(join(dir, 'etc/shadow')).uid, base + 1000);

        // Overlapping ranges: two phases, through free IDs of the user's own subordinate ranges
        // (newuidmap maps nothing else into the protective namespace).
        const overlapping = await runAs(user, [
          process.execPath,
          readableBin(),
          'shift',
          '--from',
          `0:${base + 1000}:1000`,
          '--from-gid',
          `0:${gbase + 1000}:1000`,
          '--to',
          `0:${base + 1500}:1000`,
          '--to-gid',
          `0:${gbase + 1500}:1000`,
          '--unmapped',
          'skip',
          '--json',
          dir,
        ]);
        assert.equal(overlapping.code, 0, overlapping.stdout + overlapping.stderr);
        const two = JSON.parse(overlapping.stdout);
        assert.equal(two.method, 'two-phase');
        for (const [kind, sub] of [
          ['uid', user.subuid],
          ['gid', user.subgid],
        ] as const) {
          const mid = two.intermediate[kind];
          assert.equal(mid.count, 1000);
          assert.ok(
            mid.start >= sub.start + 2500 && mid.start + mid.count <= sub.start + sub.count,
            JSON.stringify(mid),
          );
        }
        assert.deepEqual(
          [lstatSync(join(dir, 'etc/shadow')).uid, lstatSync(join(dir, 'etc/shadow')).gid],
          [base + 1500, gbase + 1542],
        );
        assert.equal(lstatSync(join(dir, 'etc')).uid, base + 1500);
        assert.equal(lstatSync(join(dir, 'foreign')).uid, 0);
      }),
  );
});
