/**
 * Subordinate-ID findings, each made for real in /etc/subuid and /etc/subgid for throwaway
 * users and undone in finally: no ranges, subgid missing, a range keyed by the numeric UID,
 * the user's own UID inside its range, a range under 65536 IDs, ranges overlapping another
 * user's.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { runDoctor } from '../../src/doctor/index.js';
import { runCli } from '../cli/run-cli.js';
import { holdThrowawayUser, throwawayUserUnavailable } from '../fixtures/throwaway-user.js';
import {
  addSubidLines,
  type DoctorJson,
  errors,
  find,
  freeStart,
  SUBGID,
  SUBUID,
  summary,
} from './helpers.js';

describe('subordinate IDs, for real', { skip: throwawayUserUnavailable() ?? false }, () => {
  const a = holdThrowawayUser();
  const b = holdThrowawayUser({ noSubids: true });
  before(async () => {
    await Promise.all([a.open(), b.open()]);
  });
  after(async () => {
    await Promise.all([a.close(), b.close()]);
  });

  test('no ranges: errors naming usermod --add-subuids and the /etc/subuid line', async () => {
    const user = b.user;
    const r = await runDoctor({ user: user.name, probe: false });
    const uid = find(r, 'subids.subuid');
    assert.equal(uid.status, 'error', uid.message);
    assert.match(uid.message, new RegExp(`no line for ${user.name} or ${user.uid} in /etc/subuid`));
    const m = /usermod --add-subuids (\d+)-(\d+) --add-subgids \1-\2 (\S+)/.exec(uid.fix!);
    assert.ok(m, uid.fix);
    assert.equal(m[3], user.name);
    assert.equal(Number(m[2]) - Number(m[1]) + 1, 65536);
    assert.match(uid.fix!, new RegExp(`'${user.name}:${m[1]}:65536' to /etc/subuid`));
    assert.equal(find(r, 'subids.subgid').status, 'error');
    assert.equal(find(r, 'subids.size').status, 'skipped');
    assert.equal(r.blocking, true);
  });

  test('no ranges, CLI: exit 1; the probe fails the way run does (no silent single-ID map)', async () => {
    const r = await runCli(['doctor', '--user', b.user.name, '--json']);
    assert.equal(r.code, 1, r.stderr);
    const out = JSON.parse(r.stdout) as DoctorJson;
    assert.equal(out.ok, false);
    assert.equal(out.checks.find((c) => c.id === 'subids.subuid')!.status, 'error');
    const probe = out.checks.find((c) => c.id === 'probe.userns')!;
    assert.equal(probe.status, 'error', probe.message);
    assert.match(probe.message, /no subordinate uids/);
  });

  test('subuid keyed by the numeric UID is recognised (and newuidmap honours it)', async () => {
    const user = b.user;
    const start = freeStart();
    const lines = [`${user.uid}:${start}:65536`];
    const undoU = addSubidLines(SUBUID, lines);
    const undoG = addSubidLines(SUBGID, lines);
    try {
      const r = await runDoctor({ user: user.name });
      assert.deepEqual(errors(r), [], summary(r));
      const c = find(r, 'subids.subuid');
      assert.equal(c.status, 'ok');
      assert.match(c.message, new RegExp(`keyed by the numeric UID ${user.uid}`));
      assert.deepEqual((c.evidence.entries as { owner: string }[])[0]!.owner, String(user.uid));
      const probe = find(r, 'probe.userns');
      assert.equal(probe.status, 'ok', probe.message);
      assert.deepEqual((probe.evidence.value as { uid_map: string[] }).uid_map, [
        `0 ${user.uid} 1`,
        `1 ${start} 65536`,
      ]);
    } finally {
      undoU();
      undoG();
    }
  });

  test('subuid without subgid: subgid is an error with usermod --add-subgids', async () => {
    const user = b.user;
    const start = freeStart();
    const undo = addSubidLines(SUBUID, [`${user.name}:${start}:65536`]);
    try {
      const r = await runDoctor({ user: user.name, probe: false });
      assert.equal(find(r, 'subids.subuid').status, 'ok');
      const g = find(r, 'subids.subgid');
      assert.equal(g.status, 'error', g.message);
      assert.match(g.message, /subordinate uids but no subordinate gids/);
      assert.match(g.fix!, new RegExp(`^usermod --add-subgids \\d+-\\d+ ${user.name}`));
      assert.doesNotMatch(g.fix!, /--add-subuids/);
    } finally {
      undo();
    }
  });

  test("the user's own UID inside its range: warning with a move fix; the probe still works", async () => {
    const user = b.user;
    const start = user.uid - 100;
    const lines = [`${user.name}:${start}:65536`];
    const undoU = addSubidLines(SUBUID, lines);
    const undoG = addSubidLines(SUBGID, [`${user.name}:${user.gid - 100}:65536`]);
    try {
      const r = await runDoctor({ user: user.name });
      const c = find(r, 'subids.own_id');
      assert.equal(c.status, 'warning', c.message);
      assert.match(
        c.message,
        new RegExp(`own uid ${user.uid} lies inside its subordinate range ${start}-${start + 65535}`),
      );
      assert.equal(c.evidence.file, SUBUID);
      assert.match(
        c.fix!,
        new RegExp(`usermod --del-subuids ${start}-${start + 65535} --add-subuids \\d+-\\d+ ${user.name}`),
      );
      assert.equal(find(r, 'subids.subuid').status, 'ok');
      const probe = find(r, 'probe.userns');
      assert.equal(probe.status, 'ok', probe.message);
      // The own uid is mapped once, as 0; the range around it in two pieces.
      assert.deepEqual((probe.evidence.value as { uid_map: string[] }).uid_map, [
        `0 ${user.uid} 1`,
        `1 ${start} 100`,
        `101 ${user.uid + 1} 65435`,
      ]);
    } finally {
      undoU();
      undoG();
    }
  });

  test('a range under 65536 IDs: warning, no error; the probe maps what there is', async () => {
    const user = b.user;
    const start = freeStart();
    const lines = [`${user.name}:${start}:1000`];
    const undoU = addSubidLines(SUBUID, lines);
    const undoG = addSubidLines(SUBGID, lines);
    try {
      const r = await runDoctor({ user: user.name });
      const c = find(r, 'subids.size');
      assert.equal(c.status, 'warning', c.message);
      assert.match(c.message, /only 1000 usable subordinate uids/);
      assert.match(c.fix!, /usermod --add-subuids \d+-\d+/);
      assert.deepEqual(errors(r), [], summary(r));
      const probe = find(r, 'probe.userns');
      assert.equal(probe.status, 'ok', probe.message);
      assert.deepEqual((probe.evidence.value as { uid_map: string[] }).uid_map, [
        `0 ${user.uid} 1`,
        `1 ${start} 1000`,
      ]);
    } finally {
      undoU();
      undoG();
    }
  });

  test("ranges overlapping another user's: warning for both users, and machine-wide for root", async () => {
    const overlapping = `${b.user.name}:${a.user.subuid.start + 1000}:65536`;
    const undoU = addSubidLines(SUBUID, [overlapping]);
    const undoG = addSubidLines(SUBGID, [overlapping]);
    try {
      const ra = await runDoctor({ user: a.user.name, probe: false });
      const c = find(ra, 'subids.overlap');
      assert.equal(c.status, 'warning', c.message);
      assert.match(
        c.message,
        new RegExp(
          `${a.user.name}:${a.user.subuid.start}:65536 \\(/etc/subuid:\\d+\\) overlaps ${overlapping}`,
        ),
      );
      assert.match(c.fix!, /usermod --del-subuids \d+-\d+ --add-subuids \d+-\d+ /);
      assert.deepEqual(errors(ra), [], summary(ra));
      const rb = await runDoctor({ user: b.user.name, probe: false });
      assert.equal(find(rb, 'subids.overlap').status, 'warning');
      if (process.geteuid?.() === 0) {
        const root = await runDoctor({ probe: false });
        assert.equal(find(root, 'subids.overlap').status, 'warning');
      }
    } finally {
      undoU();
      undoG();
    }
    const after = await runDoctor({ user: a.user.name, probe: false });
    assert.equal(find(after, 'subids.overlap').status, 'ok');
  });

  test('the subid files can be substituted (subuidPath/subgidPath)', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'userns-subid-'));
    try {
      writeFileSync(join(dir, 'subuid'), `# comment\n${b.user.name}:200000:65536\nbroken line\n`);
      writeFileSync(join(dir, 'subgid'), `${b.user.name}:200000:65536\n`);
      const r = await runDoctor({
        user: b.user.name,
        subuidPath: join(dir, 'subuid'),
        subgidPath: join(dir, 'subgid'),
        probe: false,
      });
      const c = find(r, 'subids.subuid');
      assert.equal(c.status, 'ok');
      assert.equal(c.evidence.file, join(dir, 'subuid'));
      assert.equal(c.evidence.line, 2);
      const syntax = find(r, 'subids.syntax');
      assert.equal(syntax.status, 'warning');
      assert.equal(syntax.evidence.line, 3);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
