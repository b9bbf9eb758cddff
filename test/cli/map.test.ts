import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { runCli } from './run-cli.js';

const dir = mkdtempSync(join(tmpdir(), 'userns-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));
function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}
const nested = () =>
  file('nested-parent', '         0       1000          1\n         1     100000      65536\n');

describe('userns map validate', () => {
  test('accepted map: exit 0, JSON verdict', async () => {
    const r = await runCli(['map', 'validate', '--json', '0:100000:65536']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { ok: true, errno: null, reason: null, line: null });
  });
  test('overlap: exit 1 with EINVAL and the line', async () => {
    const r = await runCli(['map', 'validate', '--json', '0:1000:10,5:5000:1']);
    assert.equal(r.code, 1);
    const verdict = JSON.parse(r.stdout);
    assert.equal(verdict.ok, false);
    assert.equal(verdict.errno, 'EINVAL');
    assert.equal(verdict.line, 2);
  });
  test('crossing parent extents: EPERM with a reason that says so', async () => {
    const r = await runCli(['map', 'validate', '--parent', nested(), '0:0:100']);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /rejected \(EPERM\): line 1 \(0:0:100\) spans 2 extents/);
  });
  test('kernel text with a syntax error is a verdict (EINVAL), judged by the kernel grammar', async () => {
    const r = await runCli(['map', 'validate', '--json', '-'], { input: '0 1000 1\n\n' });
    assert.equal(r.code, 1, r.stderr);
    assert.equal(JSON.parse(r.stdout).errno, 'EINVAL');
  });
  test('unprivileged prediction: own uid ok, two IDs EPERM', async () => {
    const ok = await runCli(['map', 'validate', '--unprivileged', '--euid', '1001', '0:1001:1']);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    const no = await runCli(['map', 'validate', '--unprivileged', '--euid', '1001', '--json', '0:1001:2']);
    assert.equal(no.code, 1);
    assert.equal(JSON.parse(no.stdout).errno, 'EPERM');
  });
  test('usage errors exit 2 without a stack trace', async () => {
    const r = await runCli(['map', 'validate', '--bogus', '0:0:1']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^userns: /);
    assert.doesNotMatch(r.stderr, /at .*\.js:\d+/);
  });
});

describe('userns map split', () => {
  test('the nested case the kernel refuses is split into pieces it accepts', async () => {
    const r = await runCli(['map', 'split', '--parent', nested(), '0:0:100']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '0 0 1\n1 1 99\n');
    const json = await runCli(['map', 'split', '--json', '--parent', nested(), '0:0:100']);
    assert.deepEqual(JSON.parse(json.stdout), {
      ok: true,
      map: [
        [0, 0, 1],
        [1, 1, 99],
      ],
    });
  });
  test('an unmapped ID fails, naming the first missing range', async () => {
    const r = await runCli(['map', 'split', '--json', '--parent', nested(), '0:65530:100']);
    assert.equal(r.code, 1);
    const body = JSON.parse(r.stdout);
    assert.equal(body.ok, false);
    assert.match(body.reason, /uid 65537-65629 .*not mapped/);
  });
  test('--parent self works (the README example)', async () => {
    const r = await runCli(['map', 'split', '--parent', 'self', '0:0:100']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '0 0 100\n');
  });
  test('missing --parent is a usage error', async () => {
    assert.equal((await runCli(['map', 'split', '0:0:1'])).code, 2);
  });
});

describe('userns map lookup, compose, show, convert', () => {
  test('lookup both directions; unmapped exits 1', async () => {
    const r = await runCli(['map', 'lookup', '0:1000:1,1:100000:65536', '0', '5', '70000']);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '0 -> 1000\n5 -> 100004\n70000 -> unmapped\n');
    const back = await runCli(['map', 'lookup', '--reverse', '--json', '0:1000:1,1:100000:65536', '100004']);
    assert.equal(back.code, 0);
    assert.deepEqual(JSON.parse(back.stdout).results, [{ id: 100004, result: 5 }]);
  });
  test('compose a nested map down to host IDs', async () => {
    const r = await runCli(['map', 'compose', '0:0:1,1:1:99', nested()]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '0 1000 1\n1 100000 99\n');
  });
  test('show draws bars without colour when NO_COLOR is set, with colour when forced', async () => {
    const plain = await runCli(['map', 'show', '0:1000:1,1:100000:65536']);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /uid map: 2 extents, 65537 IDs/);
    assert.match(plain.stdout, /█/);
    assert.doesNotMatch(plain.stdout, /\x1b\[/);
    const colour = await runCli(['map', 'show', '0:1000:1,1:100000:65536'], {
      env: { NO_COLOR: '', FORCE_COLOR: '1' },
    });
    assert.match(colour.stdout, /\x1b\[3\dm/);
  });
  test('convert kernel text to OCI JSON and back', async () => {
    const oci = await runCli(['map', 'convert', '--to', 'oci', '-'], { input: '0 100000 65536\n' });
    assert.equal(oci.code, 0, oci.stderr);
    assert.deepEqual(JSON.parse(oci.stdout), [{ containerID: 0, hostID: 100000, size: 65536 }]);
    const back = await runCli(['map', 'convert', '--from', 'oci', '--to', 'kernel', '-'], {
      input: oci.stdout,
    });
    assert.equal(back.stdout, '0 100000 65536\n');
  });
  test('every subcommand has --help', async () => {
    for (const sub of ['validate', 'split', 'convert', 'lookup', 'compose', 'show']) {
      const r = await runCli(['map', sub, '--help']);
      assert.equal(r.code, 0);
      assert.match(r.stdout, new RegExp(`Usage: userns map ${sub}`));
    }
  });
  test('a parse error names the file, line and column', async () => {
    const path = file('bad-map', '0 1000 1\n1 2x 3\n');
    const r = await runCli(['map', 'show', '--from', 'kernel', path]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`${path}:2:4: `));
    const json = await runCli(['map', 'show', '--json', '--from', 'kernel', path]);
    const body = JSON.parse(json.stdout);
    assert.equal(body.ok, false);
    assert.equal(body.code, 'SYNTAX');
    assert.equal(body.data.line, 2);
  });
});

describe('inline values in every format (issue 14 item 5)', () => {
  test('--from FORMAT parses inline arguments, files and - alike; podman arguments are one map', async () => {
    // podman's own vector (pkg/util tests): 0:2000:100000 then +1:100:1 punches 1 out of it
    const expected = '0 2000 1\n1 100 1\n2 2002 99998\n';
    const inline = await runCli([
      'map',
      'convert',
      '--from',
      'podman',
      '--to',
      'kernel',
      '0:2000:100000',
      '+1:100:1',
    ]);
    assert.equal(inline.stdout, expected, inline.stderr);
    const stdin = await runCli(['map', 'convert', '--from', 'podman', '--to', 'kernel', '-'], {
      input: '0:2000:100000 +1:100:1',
    });
    assert.equal(stdin.stdout, expected);
    const path = file('podman-map', '0:2000:100000,+1:100:1\n');
    const fromFile = await runCli(['map', 'convert', '--from', 'podman', '--to', 'kernel', path]);
    assert.equal(fromFile.stdout, expected);
  });
  test('proc is another name for the kernel format; other formats inline', async () => {
    const proc = await runCli([
      'map',
      'convert',
      '--from',
      'proc',
      '--to',
      'podman',
      '0 1000 1',
      '1 100000 65536',
    ]);
    assert.equal(proc.stdout, '0:1000:1,1:100000:65536\n', proc.stderr);
    const toProc = await runCli([
      'map',
      'convert',
      '--to',
      'proc',
      '--from',
      'oci',
      '[{"containerID":0,"hostID":1000,"size":5}]',
    ]);
    assert.equal(toProc.stdout, '0 1000 5\n', toProc.stderr);
    const lxc = await runCli(['map', 'convert', '--to', 'kernel', 'u 0 100000 65536']); // detected
    assert.equal(lxc.stdout, '0 100000 65536\n', lxc.stderr);
    const unshare = await runCli(['map', 'convert', '--from', 'unshare', '--to', 'kernel', '100000,0,65536']);
    assert.equal(unshare.stdout, '0 100000 65536\n', unshare.stderr);
    const validate = await runCli(['map', 'validate', '--from', 'incus', '--json', 'both 1000 0']);
    assert.equal(JSON.parse(validate.stdout).ok, true, validate.stderr);
  });
  test('a missing file is still reported as one; text in no format is a usage error', async () => {
    const missing = await runCli(['map', 'convert', '--from', 'kernel', '--to', 'podman', join(dir, 'nope')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /cannot read map file .*nope: ENOENT/);
    const garbage = await runCli(['map', 'convert', '--to', 'kernel', 'garbage']);
    assert.equal(garbage.code, 2);
    assert.match(garbage.stderr, /'garbage' is neither a file nor a map in a known format/);
    const badFormat = await runCli(['map', 'convert', '--from', 'kernel', '--to', 'podman', 'garbage']);
    assert.equal(badFormat.code, 1);
    assert.match(badFormat.stderr, /^userns: argument:1:1: /);
    const unknown = await runCli(['map', 'convert', '--from', 'nope', '--to', 'kernel', '0:0:1']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /proc \(= kernel\)/);
  });
  test('map validate --allowed: host IDs outside the allow-list are named (issue 14 item 7)', async () => {
    const allowed = file('allowed-subid', 'alice:100000:65536\nalice:3000:1\n');
    const ok = await runCli(['map', 'validate', '--allowed', allowed, '0:100000:65536,65536:3000:1']);
    assert.equal(ok.code, 0, ok.stderr);
    const bad = await runCli([
      'map',
      'validate',
      '--json',
      '--allowed',
      allowed,
      '--from',
      'kernel',
      '0 100000 65536\n65536 3000 2',
    ]);
    assert.equal(bad.code, 1);
    assert.deepEqual(JSON.parse(bad.stdout).uncovered, { kind: 'uid', id: 3001 });
    assert.equal(JSON.parse(bad.stdout).line, 2);
    // Incus raw.idmap as the allow-list: gid entries allow gids only
    const gid = await runCli(['map', 'validate', '--kind', 'gid', '--allowed', 'gid 3000 0', '0:3000:1']);
    assert.equal(gid.code, 0, gid.stdout);
    const uid = await runCli(['map', 'validate', '--kind', 'uid', '--allowed', 'gid 3000 0', '0:3000:1']);
    assert.equal(uid.code, 1);
    assert.match(
      uid.stdout,
      /^not allowed: line 1 \(0:3000:1\) maps host uid 3000, which is not in the allowed host uids/,
    );
  });
});
