import assert from 'node:assert/strict';
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
import { readableBin } from '../fixtures/readable-repo.js';
import { runAs, throwawayUserUnavailable, withThrowawayUser } from '../fixtures/throwaway-user.js';
import { runCli } from './run-cli.js';

const rootOnly = process.geteuid?.() === 0 ? false : 'needs root';

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

    const r = await runCli(['shift', '--from', '0:0:65536', '--to', '0:100000:65536', '--json', dir]);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout);
    assert.equal(summary.ok, true);
    assert.equal(summary.changed, 3);
    assert.equal(summary.protectiveNamespace, true);
    assert.equal(lstatSync(join(dir, 'etc/shadow')).gid, 100042);

    const back = await runCli(['shift', '--from', '0:0:65536', '--to', '0:100000:65536', '--reverse', dir]);
    assert.equal(back.code, 0, back.stderr);
    assert.equal(lstatSync(join(dir, 'etc/shadow')).gid, 42);
  });

  test('an untranslatable ID: exit 1, nothing changed, the error names the ID and a path', async () => {
    const dir = tree('t2');
    const r = await runCli(['shift', '--from', '0:0:10', '--to', '0:100000:10', dir]);
    assert.equal(r.code, 1);
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
        const r = await runAs(user, [process.execPath, ...args]);
        assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
        const summary = JSON.parse(r.stdout);
        assert.equal(summary.protectiveNamespace, true);
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
      }),
  );
});
