/**
 * spawn()/run() and `userns run` as root against the real kernel (maps written directly).
 */
import assert from 'node:assert/strict';
import { spawn as spawnChild } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { NewIdmapError, SpawnError } from '../../src/errors/index.js';
import { IdMap } from '../../src/idmap/idmap.js';
import { dryRunSpawn, planSpawn, run, spawn } from '../../src/spawn/index.js';
import { readableBin } from '../fixtures/readable-repo.js';

const isRoot = process.geteuid?.() === 0;
const BIN = fileURLToPath(new URL('../../../bin/userns', import.meta.url));
const REPO = fileURLToPath(new URL('../../../', import.meta.url));

function cli(
  args: string[],
): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawnChild(process.execPath, [BIN, ...args], {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** /proc/self/uid_map text → IdMap. */
function parseProc(text: string): IdMap {
  return new IdMap(
    text
      .trim()
      .split('\n')
      .map((l) => l.trim().split(/\s+/).map(Number))
      .map(([inside, outside, count]) => ({ inside: inside!, outside: outside!, count: count! })),
  );
}

/** Children of this process that are zombies. */
function zombieChildren(): number[] {
  const out: number[] = [];
  for (const tid of readdirSync(`/proc/${process.pid}/task`)) {
    const children = readFileSync(`/proc/${process.pid}/task/${tid}/children`, 'utf8').trim();
    for (const pid of children.split(/\s+/).filter(Boolean)) {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) out.push(Number(pid));
      } catch {
        // gone
      }
    }
  }
  return out;
}

describe('spawn() as root', {
  skip: isRoot ? false : 'needs root (rootless cases are in rootless.test.ts)',
}, () => {
  test('maps read back inside equal the request; the result reports them', async () => {
    const uidMap = '0:100000:65536,65536:0:1';
    const r = await run('sh', ['-c', 'cat /proc/self/uid_map; echo --; cat /proc/self/gid_map'], {
      uidMap,
      gidMap: '0:200000:1000',
    });
    assert.equal(r.exitCode, 0, r.stderr);
    const [u, g] = r.stdout.split('--\n');
    assert.equal(parseProc(u!).toString(), '0:100000:65536,65536:0:1');
    assert.equal(parseProc(g!).toString(), '0:200000:1000');
    assert.equal(r.uidMap.toString(), '0:100000:65536,65536:0:1');
    assert.equal(r.gidMap.toString(), '0:200000:1000');
  });

  test('default (auto as root) is the full identity map; IdMap objects are accepted', async () => {
    const r = await run('cat', ['/proc/self/uid_map']);
    assert.equal(parseProc(r.stdout).toString(), '0:0:4294967295');
    const m = await run('cat', ['/proc/self/gid_map'], {
      gidMap: new IdMap([{ inside: 0, outside: 5000, count: 10 }]),
    });
    assert.equal(parseProc(m.stdout).toString(), '0:5000:10');
  });

  test('setgroups allow and deny', async () => {
    const allow = await run('sh', ['-c', 'cat /proc/self/setgroups; id -G'], {
      uidMap: '0:100000:65536',
      setgroups: 'allow',
    });
    assert.equal(allow.stdout, 'allow\n0\n');
    assert.equal(allow.setgroups, 'allow');
    const deny = await run('cat', ['/proc/self/setgroups'], { uidMap: '0:100000:65536', setgroups: 'deny' });
    assert.equal(deny.stdout, 'deny\n');
    assert.equal(deny.setgroups, 'deny');
  });

  test('user and group inside', async () => {
    const r = await run('sh', ['-c', 'id -u; id -g'], { uidMap: '0:100000:65536', user: 1000, group: 1001 });
    assert.equal(r.stdout, '1000\n1001\n');
  });

  test('PID namespace: PID 1, /proc shows only its processes', async () => {
    const r = await run('sh', ['-c', 'echo $$; ls /proc | grep -E "^[0-9]+$" | wc -l'], {
      uidMap: '0:100000:65536',
      namespaces: ['pid'],
    });
    assert.equal(r.exitCode, 0, r.stderr);
    const [pid, count] = r.stdout.trim().split('\n');
    assert.equal(pid, '1');
    assert.ok(Number(count) <= 4, `processes visible: ${count}`);
  });

  test('exit status and signals come through', async () => {
    assert.equal((await run('sh', ['-c', 'exit 7'])).exitCode, 7);
    const killed = await run('sh', ['-c', 'kill -TERM $$']);
    assert.equal(killed.exitCode, null);
    assert.equal(killed.signal, 'SIGTERM');
  });

  test('the ChildProcess is usable at once and is the command (same PID)', async () => {
    const child = spawn('sh', ['-c', 'read line; echo "$$ $line"'], { uidMap: '0:100000:65536' });
    child.stdin!.end('hello\n');
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    const result = await child;
    assert.equal(out, `${child.pid} hello\n`);
    assert.equal(result.pid, child.pid);
  });

  test('no leaked fds: ls /proc/self/fd shows 0, 1, 2 and its own', async () => {
    const r = await run('ls', ['/proc/self/fd'], { stdio: ['pipe', 'pipe', 'pipe'] });
    assert.deepEqual(r.stdout.trim().split('\n').sort(), ['0', '1', '2', '3']);
  });

  test('beforeExec runs after the maps are written; oomScoreAdj is applied', async () => {
    let seen = '';
    const r = await run('cat', ['/proc/self/oom_score_adj'], {
      uidMap: '0:100000:65536',
      oomScoreAdj: 500,
      beforeExec: (pid) => {
        seen = readFileSync(`/proc/${pid}/uid_map`, 'utf8');
      },
    });
    assert.equal(parseProc(seen).toString(), '0:100000:65536');
    assert.equal(r.stdout, '500\n');
  });

  test('a helper killed between the map writes and "go" ends the spawn (SIGKILL), never hangs', async () => {
    // No turn of the event loop between the kill and go(): "go" meets a dead socket (EPIPE) and
    // Node destroys it without an EOF (src/native/helper.ts: the 'close' handler).
    const child = spawn('/bin/true', [], {
      uidMap: '0:100000:65536',
      stdio: 'ignore',
      beforeExec: (pid) => {
        process.kill(pid, 'SIGKILL');
        while (!/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))) {
          // a zombie now: its socket is closed
        }
      },
    });
    const result = await child;
    assert.equal(result.signal, 'SIGKILL');
    assert.equal(result.exitCode, null);
  });

  test('typed errors: command not found, unmapped ID in parent, invalid map, failing hook', async () => {
    await assert.rejects(
      run('no-such-command-xyz'),
      (e: unknown) => e instanceof SpawnError && e.code === 'COMMAND_NOT_FOUND',
    );
    await assert.rejects(run('true', [], { uidMap: '0:100000:10,5:200000:10' }), (e: unknown) => {
      assert.ok(e instanceof NewIdmapError);
      assert.equal(e.code, 'MAP_WRITE_FAILED');
      assert.match(e.message, /EINVAL/);
      return true;
    });
    await assert.rejects(
      run('true', [], { beforeExec: () => Promise.reject(new Error('no cgroup')) }),
      (e: unknown) => e instanceof SpawnError && e.code === 'HOOK_FAILED',
    );
    // The 'error' event fires too when someone listens, like child_process.
    const child = spawn('no-such-command-xyz');
    const event = new Promise((resolve) => child.on('error', resolve));
    await assert.rejects(child);
    assert.ok((await event) instanceof SpawnError);
  });

  test('planSpawn: maps and argv without running anything', async () => {
    const plan = await planSpawn('id', ['-u'], { uidMap: '0:100000:65536', namespaces: ['pid'] });
    assert.equal(plan.uidMap.toString(), '0:100000:65536');
    assert.equal(plan.uidMethod, 'direct');
    assert.deepEqual(plan.command, ['id', '-u']);
    assert.deepEqual(plan.namespaces.sort(), ['mount', 'pid', 'user']);
    assert.ok(plan.helperArgv.includes('--mount-proc'));
    assert.deepEqual(plan.helperArgv.slice(-3), ['--', 'id', '-u']);
    assert.deepEqual((await planSpawn('id')).command, ['id']);
  });

  test('planSpawn: the 0.1 form (one argv array) gives the same plan', async () => {
    const options = { uidMap: '0:100000:65536', namespaces: ['pid'] } as const;
    const now = await planSpawn('id', ['-u'], options);
    const old = await planSpawn(['id', '-u'], options);
    assert.deepEqual(old, now);
    assert.deepEqual((await planSpawn(['true'])).command, ['true']);
  });

  test("dryRunSpawn: the shape of planSpawn, and the run's own failure for a missing command", async () => {
    const options = { uidMap: '0:100000:65536', namespaces: ['pid'] } as const;
    const dry = await dryRunSpawn('id', ['-u'], options);
    assert.deepEqual(dry, await planSpawn('id', ['-u'], options));
    assert.deepEqual((await dryRunSpawn('true')).command, ['true']);
    await assert.rejects(dryRunSpawn('no-such-command-in-this-test', ['-x'], options), (error: unknown) => {
      assert.ok(error instanceof SpawnError);
      assert.equal(error.code, 'COMMAND_NOT_FOUND');
      return true;
    });
  });

  test('no zombies left behind', () => {
    assert.deepEqual(zombieChildren(), []);
  });
});

describe('userns run (CLI) as root', { skip: isRoot ? false : 'needs root' }, () => {
  test('exit status 7; killed by SIGTERM → 143', async () => {
    assert.equal((await cli(['run', '--', 'sh', '-c', 'exit 7'])).code, 7);
    assert.equal((await cli(['run', '--', 'sh', '-c', 'kill -TERM $$'])).code, 143);
  });

  test('signals received by userns are forwarded to the command', async () => {
    const child = spawnChild(
      process.execPath,
      [BIN, 'run', '--', 'sh', '-c', 'trap "exit 42" USR1; echo up; while :; do sleep 0.02; done'],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    await new Promise((resolve) => child.stdout.once('data', resolve));
    child.kill('SIGUSR1');
    const code = await new Promise((resolve) => child.on('close', resolve));
    assert.equal(code, 42);
  });

  test('--dry-run --json: the exact maps and tools', async () => {
    const r = await cli([
      'run',
      '--dry-run',
      '--json',
      '--uidmap',
      '0:1000:1',
      '--uidmap',
      '1:100000:65536',
      '--',
      'true',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const plan = JSON.parse(r.stdout);
    assert.deepEqual(plan.uidMap, [
      [0, 1000, 1],
      [1, 100000, 65536],
    ]);
    assert.deepEqual(plan.gidMap, plan.uidMap);
    assert.equal(plan.newuidmap, null);
  });

  test('command not found → 127 with a clear message; the dry run fails the same way', async () => {
    for (const dry of [[], ['--dry-run']]) {
      for (const name of ['no-such-command-xyz', '/no/such/command']) {
        const r = await cli(['run', ...dry, '--', name]);
        assert.equal(r.code, 127, `${dry.join('')} ${name}: ${r.stdout}${r.stderr}`);
        assert.match(r.stderr, new RegExp(`command not found: ${name}`));
      }
    }
  });

  test('--dry-run fails exactly as the run: a map the kernel refuses is 125 and the same error', async () => {
    for (const uidmap of ['0:4294967290:10', '0:100000:10,5:200000:10']) {
      const real = await cli(['run', '--uidmap', uidmap, '--json', '--', 'true']);
      const dry = await cli(['run', '--uidmap', uidmap, '--dry-run', '--json', '--', 'true']);
      assert.equal(real.code, 125, real.stdout);
      assert.equal(dry.code, 125, dry.stdout);
      const [r, d] = [JSON.parse(real.stdout), JSON.parse(dry.stdout)];
      assert.deepEqual([d.code, d.message], [r.code, r.message]);
    }
  });

  test('nested: inside 0:1000:1 + 1:100000:65536, --uidmap 0:0:100 is split and works; --no-split gets EPERM explained', async () => {
    // Inside, uid 0 is host uid 1000: it runs the readable copy of the CLI (the checkout may be private).
    const outer = [
      'run',
      '--uidmap',
      '0:1000:1,1:100000:65536',
      '--',
      process.execPath,
      readableBin(),
      'run',
    ];
    const ok = await cli([...outer, '--uidmap', '0:0:100', '--', 'cat', '/proc/self/uid_map']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(parseProc(ok.stdout).toString(), '0:0:1,1:1:99');
    const refused = await cli([...outer, '--no-split', '--uidmap', '0:0:100', '--', 'true']);
    assert.equal(refused.code, 125);
    assert.match(refused.stderr, /EPERM/);
    assert.match(refused.stderr, /spans 2 extents/);
    assert.match(refused.stderr, /userns doctor/);
    const missing = await cli([...outer, '--uidmap', '0:0:100000', '--json', '--', 'true']);
    assert.equal(missing.code, 125);
    assert.equal(JSON.parse(missing.stdout).code, 'NOT_MAPPED_IN_PARENT');
  });

  test("usage errors exit 125 (run passes the command's status through; as env and podman)", async () => {
    for (const args of [
      ['run'],
      ['run', '--unshare', 'bogus', '--', 'true'],
      ['run', '--bogus', '--', 'true'],
    ]) {
      const r = await cli(['run', '--json', ...args.slice(1)]);
      assert.equal(r.code, 125, args.join(' '));
      assert.equal(JSON.parse(r.stdout).code, 'USAGE');
    }
    const help = await cli(['run', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Examples:/);
  });
});
