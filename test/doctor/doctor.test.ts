/**
 * The healthy machine (root, and a healthy throwaway user with --user: no error, the probe
 * succeeds with the maps read back), a copy of newuidmap without its setuid bit, and the CLI
 * (report, colour, --json, exit statuses).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runDoctor } from '../../src/doctor/index.js';
import { stepOf } from '../../src/doctor/probe.js';
import { NewIdmapError, SpawnError } from '../../src/errors/index.js';
import { runtimeDependencies } from '../../src/state/stage.js';
import { findProgram } from '../../src/system/exec.js';
import { runCli } from '../cli/run-cli.js';
import { bareImportsUnder } from '../fixtures/imports.js';
import { REPO_ROOT } from '../fixtures/readable-repo.js';
import {
  holdThrowawayUser,
  type ThrowawayUser,
  throwawayUserUnavailable,
} from '../fixtures/throwaway-user.js';
import { type DoctorJson, errors, find, summary } from './helpers.js';

const root = process.geteuid?.() === 0;

test('stepOf: typed errors name the step of userns run that failed', () => {
  assert.equal(stepOf(new SpawnError('HELPER_MISSING', 'x')), 'helper launch');
  assert.equal(stepOf(new SpawnError('UNSHARE_FAILED', 'x')), 'unshare');
  assert.equal(stepOf(new NewIdmapError('NEWUIDMAP_NOT_SETUID', 'x')), 'newuidmap');
  assert.equal(stepOf(new NewIdmapError('NEWGIDMAP_MISSING', 'x')), 'newgidmap');
  assert.equal(
    stepOf(new NewIdmapError('RANGE_NOT_ALLOWED', 'x', { data: { tool: 'newgidmap' } })),
    'newgidmap',
  );
  assert.equal(stepOf(new NewIdmapError('MAP_WRITE_FAILED', 'x', { data: { predicted: false } })), 'write');
  assert.equal(stepOf(new NewIdmapError('MAP_WRITE_FAILED', 'x', { data: { predicted: true } })), 'plan');
  assert.equal(stepOf(new SpawnError('COMMAND_NOT_FOUND', 'x')), 'exec');
  assert.equal(stepOf(new SpawnError('ID_NOT_MAPPED', 'x')), 'setup');
  assert.equal(stepOf(new Error('x')), 'plan');
});

describe('healthy machine, as root', { skip: root ? false : 'needs root' }, () => {
  test('API: no error, every check has id/status/message/evidence, the probe reads the identity map back', async () => {
    const r = await runDoctor();
    assert.deepEqual(errors(r), [], summary(r));
    assert.equal(r.blocking, false);
    assert.equal(r.user.uid, 0);
    const ids = r.checks.map((c) => c.id);
    assert.equal(new Set(ids).size, ids.length, 'ids are unique');
    for (const c of r.checks) {
      assert.match(c.id, /^(kernel|subids|newidmap|environment|namespaces|probe)\.[a-z_]+$/);
      assert.ok(['ok', 'warning', 'error', 'skipped'].includes(c.status));
      assert.ok(c.message.length > 0);
      assert.equal(typeof c.evidence, 'object');
      if (c.status === 'warning' || c.status === 'error') assert.ok(c.fix, `${c.id} has a fix`);
    }
    const probe = find(r, 'probe.userns');
    assert.equal(probe.status, 'ok', probe.message);
    const inside = probe.evidence.value as { uid_map: string[]; gid_map: string[] };
    // Whatever this namespace maps, identity (auto mode as root).
    assert.deepEqual(inside.uid_map, (probe.evidence.planned as { uid_map: string[] }).uid_map);
    assert.ok(inside.uid_map.every((l) => l.split(' ')[0] === l.split(' ')[1]));
    // Root needs no subordinate IDs: informational only.
    assert.equal(find(r, 'subids.subuid').status, 'ok');
  });

  test('CLI --json: exit 0, { ok, user, checks[{id,status,message,evidence,fix}] }', async () => {
    const r = await runCli(['doctor', '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const out = JSON.parse(r.stdout) as DoctorJson;
    assert.equal(out.ok, true);
    assert.equal(out.user.name, 'root');
    for (const c of out.checks) {
      assert.deepEqual(
        ['evidence', 'fix', 'id', 'message', 'status'].filter((k) => !(k in c)),
        [],
        `${c.id} has every key`,
      );
    }
    assert.equal(out.checks.at(-1)!.id, 'probe.userns');
    assert.equal(out.checks.at(-1)!.status, 'ok');
  });

  test('CLI report: grouped, marks, no colour with NO_COLOR, colour when forced', async () => {
    const plain = await runCli(['doctor', '--no-probe']);
    assert.equal(plain.code, 0, plain.stderr);
    for (const heading of ['Kernel', 'Subordinate IDs', 'newuidmap / newgidmap', 'Environment']) {
      assert.match(plain.stdout, new RegExp(`^${heading}$`, 'm'));
    }
    assert.doesNotMatch(plain.stdout, /^Live probe$/m);
    assert.match(plain.stdout, /^ {2}✓ user\.max_user_namespaces: /m);
    assert.doesNotMatch(plain.stdout, /\x1b\[/);
    assert.match(plain.stdout, /nothing blocks user namespaces for root/);
    const coloured = await runCli(['doctor', '--no-probe'], { env: { NO_COLOR: '', FORCE_COLOR: '1' } });
    assert.match(coloured.stdout, /\x1b\[32m✓\x1b\[0m/);
  });

  test('CLI usage: --help exits 0, an unknown user or stray argument exits 2', async () => {
    const help = await runCli(['doctor', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--user NAME/);
    assert.match(help.stdout, /--no-probe/);
    const nobody = await runCli(['doctor', '--user', 'no-such-user-here']);
    assert.equal(nobody.code, 2);
    assert.match(nobody.stderr, /no such user/);
    assert.equal((await runCli(['doctor', 'extra'])).code, 2);
  });
});

describe('a throwaway user (--user NAME, probe run as that user)', {
  skip: throwawayUserUnavailable() ?? false,
}, () => {
  const held = holdThrowawayUser();
  let user: ThrowawayUser;
  let tmp: string;
  let copy: string;

  before(async () => {
    await held.open();
    user = held.user;
    tmp = mkdtempSync(join(tmpdir(), 'userns-doctor-'));
    chmodSync(tmp, 0o755);
    copy = join(tmp, 'newuidmap');
    copyFileSync(findProgram('newuidmap')!, copy);
    chmodSync(copy, 0o755); // no setuid bit
  });
  after(async () => {
    await held.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('healthy: no error; the probe, run as the user, maps 0 = the user and 1… = its range', async () => {
    const r = await runDoctor({ user: user.name });
    assert.deepEqual(errors(r), [], summary(r));
    assert.equal(r.user.uid, user.uid);
    const sub = find(r, 'subids.subuid');
    assert.equal(sub.status, 'ok');
    assert.equal(sub.evidence.file, '/etc/subuid');
    assert.equal(typeof sub.evidence.line, 'number');
    assert.equal(find(r, 'newidmap.newuidmap').status, 'ok');
    const probe = find(r, 'probe.userns');
    assert.equal(probe.status, 'ok', probe.message);
    assert.equal(probe.evidence.ranAs, user.name);
    assert.equal(probe.evidence.uid, user.uid);
    assert.deepEqual((probe.evidence.value as { uid_map: string[] }).uid_map, [
      `0 ${user.uid} 1`,
      `1 ${user.subuid.start} ${user.subuid.count}`,
    ]);
    assert.deepEqual((probe.evidence.value as { gid_map: string[] }).gid_map, [
      `0 ${user.gid} 1`,
      `1 ${user.subgid.start} ${user.subgid.count}`,
    ]);
  });

  test('from a private install (a copy under a 0700 directory): the probe is staged; findings, no stack trace', async () => {
    const priv = mkdtempSync(join(tmpdir(), 'userns-private-install-'));
    try {
      assert.equal(statSync(priv).mode & 0o777, 0o700);
      const pkg = join(priv, 'userns');
      for (const part of ['package.json', 'bin', 'dist/src', 'build'])
        cpSync(join(REPO_ROOT, part), join(pkg, part), { recursive: true });
      if (bareImportsUnder(join(REPO_ROOT, 'dist/src')).size > 0)
        for (const [name, dir] of runtimeDependencies(REPO_ROOT))
          cpSync(dir, join(pkg, 'node_modules', name), { recursive: true });
      const r = spawnSync(
        process.execPath,
        [join(pkg, 'bin/userns'), 'doctor', '--user', user.name, '--json'],
        {
          encoding: 'utf8',
          timeout: 40_000,
        },
      );
      assert.doesNotMatch(r.stderr, /ERR_MODULE_NOT_FOUND|\n\s+at /, r.stderr);
      const out = JSON.parse(r.stdout) as DoctorJson;
      const probe = out.checks.find((c) => c.id === 'probe.userns')!;
      assert.equal(probe.status, 'ok', probe.message);
      const staged = probe.evidence.staged as {
        from: string;
        dir: string;
        because: { path: string; mode: string };
      };
      assert.equal(staged.from, `${pkg}/`);
      assert.equal(staged.because.path, priv);
      assert.equal(staged.because.mode, '0700');
      assert.equal(existsSync(staged.dir), false, 'the staged copy is removed');
      assert.equal(r.status, 0, r.stdout);
    } finally {
      rmSync(priv, { recursive: true, force: true });
    }
  });

  test('healthy, CLI: doctor --user NAME --json exits 0', async () => {
    const r = await runCli(['doctor', '--user', user.name, '--json']);
    assert.equal(r.code, 0, r.stdout);
    const out = JSON.parse(r.stdout) as DoctorJson;
    assert.equal(out.ok, true);
    assert.equal(out.user.name, user.name);
  });

  test('--newuidmap: a copy without the setuid bit is an error with the fix; the probe fails at newuidmap', async () => {
    assert.equal(statSync(copy).mode & 0o4000, 0);
    const r = await runDoctor({ user: user.name, newuidmap: copy });
    const c = find(r, 'newidmap.newuidmap');
    assert.equal(c.status, 'error', c.message);
    assert.equal(c.evidence.file, copy);
    assert.equal(c.evidence.value, '0755');
    assert.equal(c.evidence.setuidRoot, false);
    assert.match(c.fix!, new RegExp(`chmod u\\+s ${copy}`));
    assert.match(c.fix!, new RegExp(`setcap cap_setuid\\+ep ${copy}`));
    assert.equal(find(r, 'newidmap.newgidmap').status, 'ok');
    const probe = find(r, 'probe.userns');
    assert.equal(probe.status, 'error', probe.message);
    assert.equal(probe.evidence.step, 'newuidmap');
    assert.equal(probe.evidence.code, 'NEWUIDMAP_NOT_SETUID');
    assert.match(probe.fix!, /newidmap\.newuidmap/);
    assert.equal(r.blocking, true);
  });

  test('--newuidmap, CLI: exit 1 and the report shows the finding with its fix', async () => {
    const r = await runCli(['doctor', '--user', user.name, '--newuidmap', copy]);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stdout, new RegExp(`✗ newuidmap: ${copy} is neither setuid root`));
    assert.match(r.stdout, /fix: chown root:root/);
    assert.match(r.stdout, /\d+ errors?: something blocks user namespaces for /);
  });

  test('--newuidmap as root for root: only a warning (root maps directly)', { skip: !root }, async () => {
    const r = await runDoctor({ newuidmap: copy });
    assert.equal(find(r, 'newidmap.newuidmap').status, 'warning');
    assert.equal(find(r, 'probe.userns').status, 'ok');
    assert.equal(r.blocking, false, summary(r));
  });
});
