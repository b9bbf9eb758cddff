import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { FORMATS } from '../../src/idmap/formats/index.js';
import { byKind } from '../../src/idmap/formats/kinds.js';
import { mapsEqual } from '../../src/idmap/normalize.js';
import { validExtents } from '../arbitraries.js';
import { BIN, runCli, runInProcess } from './run-cli.js';

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
    // The error shape of every command: ok, error, code, message, hint, data.
    assert.deepEqual(Object.keys(body), ['ok', 'error', 'code', 'message', 'hint', 'data']);
    assert.equal(body.ok, false);
    assert.equal(body.code, 'NOT_MAPPED_IN_PARENT');
    assert.match(body.message, /uid 65537-65629 .*not mapped/);
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
    // ok is what the exit status says: never "ok": true with exit 1.
    const unmapped = await runCli(['map', 'lookup', '--json', '0:1000:1', '0', '5']);
    assert.equal(unmapped.code, 1);
    assert.equal(JSON.parse(unmapped.stdout).ok, false);
    assert.equal(JSON.parse(back.stdout).ok, true);
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
  test('convert keeps both kinds (the LXC example of the issue): kubernetes, lxc and json keep the gid lines', async () => {
    const input = 'lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 200000 65536\n';
    const k8s = await runCli(['map', 'convert', '--from', 'lxc', '--to', 'kubernetes', '-'], { input });
    assert.equal(k8s.code, 0, k8s.stderr);
    assert.deepEqual(JSON.parse(k8s.stdout), {
      uidMappings: [{ hostId: 100000, containerId: 0, length: 65536 }],
      gidMappings: [{ hostId: 200000, containerId: 0, length: 65536 }],
    });
    const lxc = await runCli(['map', 'convert', '--from', 'lxc', '--to', 'lxc', '-'], { input });
    assert.equal(lxc.stdout, input);
    const json = '{"uid":[[0,100000,65536]],"gid":[[0,200000,65536]]}\n';
    const viaJson = await runCli(['map', 'convert', '--from', 'json', '--to', 'json', '-'], { input: json });
    assert.equal(viaJson.stdout, json);
    // A one-kind format needs --kind: a usage error without it, that kind's map with it.
    for (const to of ['kernel', 'triples', 'newuidmap']) {
      const refused = await runCli(['map', 'convert', '--from', 'lxc', '--to', to, '-'], { input });
      assert.equal(refused.code, 2, to);
      assert.match(refused.stderr, /holds one map, and the input has both a uid map and a gid map/);
      assert.match(refused.stderr, /--kind uid or --kind gid/);
    }
    const gid = await runCli(['map', 'convert', '--from', 'lxc', '--to', 'kernel', '--kind', 'gid', '-'], {
      input,
    });
    assert.equal(gid.stdout, '0 200000 65536\n');
    const machine = await runCli(['map', 'convert', '--from', 'lxc', '--to', 'json', '--json', '-'], {
      input,
    });
    const body = JSON.parse(machine.stdout);
    assert.deepEqual([body.uidMap, body.gidMap], [[[0, 100000, 65536]], [[0, 200000, 65536]]]);
  });
  test('convert between every pair of two-kind formats keeps each kind exactly (property)', {
    timeout: 120_000,
  }, async () => {
    const twoKind = ['lxc', 'incus', 'json', 'kubernetes', 'oci', 'podman', 'unshare'] as const;
    await fc.assert(
      fc.asyncProperty(
        validExtents({ maxLength: 3 }),
        validExtents({ maxLength: 3 }),
        fc.constantFrom(...twoKind),
        fc.constantFrom(...twoKind),
        async (uid, gid, from, to) => {
          const entries = [
            ...uid.map((e) => ({ ...e, kind: 'uid' as const })),
            ...gid.map((e) => ({ ...e, kind: 'gid' as const })),
          ];
          const input = FORMATS[from].format(entries, {});
          const r = await runInProcess(['map', 'convert', '--from', from, '--to', to, '-'], { input });
          assert.equal(r.code, 0, `${from} → ${to}: ${r.stderr}`);
          const back = byKind(FORMATS[to].parse(r.stdout, {}));
          assert.ok(mapsEqual(back.uid, uid), `${from} → ${to}: uid map ${r.stdout}`);
          assert.ok(mapsEqual(back.gid, gid), `${from} → ${to}: gid map ${r.stdout}`);
        },
      ),
      { numRuns: 150 },
    );
  });
  test('input larger than any real map (a file, an endless stdin) is INPUT_TOO_LARGE, with bounded memory', {
    timeout: 60_000,
  }, async () => {
    const big = file('big-map', '1'.repeat(3 << 20));
    for (const sub of [
      ['validate'],
      ['convert', '--to', 'kernel'],
      ['split', '--parent', '0:0:4294967295'],
      ['show'],
    ]) {
      const r = await runCli(['map', ...sub, '--json', big]);
      assert.equal(r.code, 1, `${sub[0]}: ${r.stdout}${r.stderr}`);
      const body = JSON.parse(r.stdout);
      assert.equal(body.code, 'INPUT_TOO_LARGE');
      assert.equal(body.data.limit, 1 << 20);
    }
    // /dev/zero on standard input: stops at the limit instead of growing without end.
    const endless = await new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [BIN, 'map', 'validate', '--json', '-'], {
        stdio: [openSync('/dev/zero', 'r'), 'pipe', 'ignore'],
      });
      let stdout = '';
      child.stdout!.on('data', (d: Buffer) => {
        stdout += d.toString();
      });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout }));
    });
    assert.equal(endless.code, 1);
    assert.equal(JSON.parse(endless.stdout).code, 'INPUT_TOO_LARGE');
  });
  test('validation errors in an LXC file name the line of the file, not only the line of the map', async () => {
    const path = file(
      'overlap.lxc',
      '# web\nlxc.idmap = g 0 200000 10\n\nlxc.idmap = u 0 100000 65536\nlxc.idmap = u 5 200000 10\n',
    );
    const shown = await runCli(['map', 'show', '--json', path]);
    assert.equal(shown.code, 1);
    const error = JSON.parse(shown.stdout);
    assert.equal(error.code, 'MAP_INVALID');
    assert.equal(error.data.sourceLine, 5);
    assert.match(
      error.message,
      new RegExp(
        `^${path}:5: .*line 2 \\(5:200000:10, ${path}:5\\) overlaps line 1 \\(0:100000:65536, ${path}:4\\)`,
      ),
    );
    const verdict = JSON.parse((await runCli(['map', 'validate', '--json', path])).stdout);
    assert.equal(verdict.sourceLine, 5);
    assert.match(verdict.reason, new RegExp(`line 2 \\(5:200000:10, ${path}:5\\)`));
    // Parse errors already name file, line and column.
    const bad = file('bad.lxc', 'lxc.idmap = u 0 100000 65536\nlxc.idmap = x 0 1 1\n');
    assert.match((await runCli(['map', 'show', bad])).stderr, new RegExp(`${bad}:2:13: `));
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
