/**
 * Named namespaces (userns create/exec/list/inspect/rm) against the real kernel, as root.
 * Rootless cases are in rootless.test.ts.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  createNamespace,
  execInNamespace,
  inspectNamespace,
  listNamespaces,
  type NamespaceState,
  removeNamespace,
  spawnInNamespace,
} from '../../src/namespaces/index.js';

const isRoot = process.geteuid?.() === 0;
const BIN = fileURLToPath(new URL('../../../bin/userns', import.meta.url));
const MODULE = fileURLToPath(new URL('../../src/namespaces/index.js', import.meta.url));
const MAP = '0:100000:65536';

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runNode(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1', ...env },
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

const cli = (args: string[]) => runNode([BIN, ...args]);

/** PIDs of keepers (helpers in hold mode) running as root. */
function keepers(): Set<number> {
  const out = new Set<number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'latin1').split('\0');
      const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${entry}/status`, 'latin1'))?.[1];
      if (uid === '0' && cmd[0]?.endsWith('userns-helper') && cmd.includes('--mode=hold'))
        out.add(Number(entry));
    } catch {
      // gone
    }
  }
  return out;
}

function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return /^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
  } catch {
    return true;
  }
}

async function waitFor(cond: () => boolean, ms = 3000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}

describe('named namespaces (root)', { skip: isRoot ? false : 'needs root (maps written directly)' }, () => {
  let base: string;
  let root: string;
  let outside: string;
  before(() => {
    base = mkdtempSync(join(tmpdir(), 'userns-named-'));
    root = join(base, 'root');
    outside = join(base, 'outside');
    mkdirSync(outside);
  });
  after(async () => {
    for (const e of await listNamespaces({ root }).catch(() => [])) {
      await removeNamespace(e.name, { root, force: true }).catch(() => {});
    }
    rmSync(base, { recursive: true, force: true });
  });

  test('two execs see the same namespaces (user, pid, uts); state.json records what the kernel applied', async () => {
    const state = await createNamespace('shared', {
      root,
      uidMap: MAP,
      gidMap: MAP,
      namespaces: ['pid', 'mount', 'uts'],
    });
    assert.equal(state.version, 2);
    assert.equal(state.hold, 'keeper');
    assert.deepEqual(state.uidMap, [[0, 100000, 65536]]);
    assert.deepEqual(state.gidMap, [[0, 100000, 65536]]);
    assert.deepEqual(
      state.namespaces.map((n) => n.type),
      ['user', 'mount', 'pid', 'uts'],
    );
    const onDisk = JSON.parse(
      readFileSync(join(root, 'ns', 'shared', 'state.json'), 'utf8'),
    ) as NamespaceState;
    assert.deepEqual(onDisk, state);
    assert.match(state.keeperStartTime!, /^\d+$/);
    assert.ok(!existsSync(join(root, 'ns', 'shared', 'creating')));
    const script =
      'stat -L -c %i /proc/self/ns/user /proc/self/ns/pid /proc/self/ns/uts; cat /proc/self/uid_map; hostname';
    const a = await execInNamespace('shared', ['sh', '-c', `hostname one; ${script}`], { root });
    const b = await execInNamespace('shared', ['sh', '-c', script], { root });
    assert.equal(a.exitCode, 0, a.stderr);
    assert.equal(b.exitCode, 0, b.stderr);
    const [userA, pidA, utsA] = a.stdout.split('\n');
    const [userB, pidB, utsB, mapB, host] = b.stdout.split('\n');
    assert.equal(userA, userB);
    assert.equal(pidA, pidB);
    assert.equal(utsA, utsB);
    assert.equal(Number(userA), state.namespaces.find((n) => n.type === 'user')!.inode);
    assert.notEqual(Number(userA), lstatSync('/proc/self/ns/user').ino);
    assert.deepEqual(mapB!.trim().split(/\s+/).map(Number), [0, 100000, 65536]);
    assert.equal(host, 'one', 'the UTS namespace (hostname) is shared by later execs');
    // The keeper is PID 1 of the PID namespace; the command is not.
    const ps = await execInNamespace('shared', ['sh', '-c', 'echo $$; cat /proc/1/cmdline | tr "\\0" " "'], {
      root,
    });
    assert.notEqual(ps.stdout.split('\n')[0], '1');
    assert.match(ps.stdout, /userns-helper --mode=hold /);
    // nsfs handles where the kernel has them (6.18+): type f1, 16 bytes.
    for (const ns of state.namespaces) if (ns.handle !== null) assert.match(ns.handle, /^f1:[0-9a-f]{32}$/);
    const info = await inspectNamespace('shared', { root });
    assert.equal(info.status, 'running');
    assert.deepEqual(info.live?.uidMap, state.uidMap);
    await removeNamespace('shared', { root });
  });

  test('exit status, signals, --user and --cwd through the CLI', async () => {
    const made = await cli(['create', '--root', root, '--uidmap', MAP, 'cli']);
    assert.equal(made.code, 0, made.stderr);
    // create's text is inspect's layout, after one line that says what was done.
    const shown = await cli(['inspect', '--root', root, 'cli']);
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal(made.stdout, `created cli\n${shown.stdout}`);
    assert.match(shown.stdout, /^name: +cli\nstatus: +running\n/);
    assert.equal((await cli(['exec', '--root', root, 'cli', '--', 'sh', '-c', 'exit 7'])).code, 7);
    assert.equal((await cli(['exec', '--root', root, 'cli', '--', 'sh', '-c', 'kill -TERM $$'])).code, 143);
    assert.equal((await cli(['exec', '--root', root, 'cli', '--', 'no-such-command-xyz'])).code, 127);
    // userns's own errors, usage included, are 125: never mistaken for the command's status.
    for (const args of [
      ['--bogus', 'cli', '--', 'true'],
      ['cli'],
      ['--user', 'x', 'cli', '--', 'true'],
      ['no-such-ns', '--', 'true'],
    ]) {
      const failed = await cli(['exec', '--root', root, '--json', ...args]);
      assert.equal(failed.code, 125, args.join(' '));
      assert.equal(JSON.parse(failed.stdout).ok, false);
    }
    const r = await cli([
      'exec',
      '--root',
      root,
      '--user',
      '5:6',
      '--cwd',
      '/tmp',
      'cli',
      'sh',
      '-c',
      'id -u; id -g; pwd',
    ]);
    assert.equal(r.stdout, '5\n6\n/tmp\n', r.stderr);
    const list = await cli(['list', '--root', root]);
    assert.match(list.stdout, /^NAME\s+STATUS\s+HOLD\s+KEEPER/);
    assert.match(list.stdout, /\ncli\s+running\s+keeper\s+\d+\s+user\s+0:100000:65536/);
    const rm = await cli(['rm', '--root', root, 'cli']);
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal((await cli(['rm', '--root', root, 'cli'])).code, 1);
    assert.equal((await cli(['rm', '--root', root, '--force', 'cli'])).code, 0);
  });

  test('state survives the creating process; killing the keeper makes it stale, exec refuses, rm cleans', async () => {
    const made = await cli([
      'create',
      '--root',
      root,
      '--uidmap',
      MAP,
      '--unshare',
      'pid,mount',
      '--json',
      'survivor',
    ]);
    assert.equal(made.code, 0, made.stderr);
    const { state } = JSON.parse(made.stdout) as { state: NamespaceState };
    assert.ok(!processGone(state.keeperPid!), 'the keeper outlives the CLI process that created it');
    const r = await execInNamespace('survivor', ['sh', '-c', 'stat -L -c %i /proc/self/ns/user'], { root });
    assert.equal(Number(r.stdout), state.namespaces[0]!.inode);

    process.kill(state.keeperPid!, 'SIGKILL');
    assert.ok(await waitFor(() => processGone(state.keeperPid!)));
    const listed = await listNamespaces({ root });
    const entry = listed.find((e) => e.name === 'survivor');
    assert.equal(entry?.status, 'stale');
    assert.match(entry?.reason ?? '', /keeper \(PID \d+\) is gone/);
    assert.throws(() => spawnInNamespace('survivor', 'true', [], { root }), {
      code: 'NS_STALE',
      hint: /userns rm survivor/,
    });
    const viaCli = await cli(['exec', '--root', root, '--json', 'survivor', '--', 'true']);
    assert.equal(viaCli.code, 125);
    assert.equal(JSON.parse(viaCli.stdout).code, 'NS_STALE');
    await assert.rejects(createNamespace('survivor', { root, uidMap: MAP }), { code: 'NS_EXISTS' });
    const removed = await removeNamespace('survivor', { root });
    assert.equal(removed.status, 'stale');
    assert.ok(!existsSync(join(root, 'ns', 'survivor')));
  });

  test('PID reuse: a recorded keeper PID that belongs to another process counts as stale', async () => {
    const state = await createNamespace('reuse', { root, uidMap: MAP });
    const path = join(root, 'ns', 'reuse', 'state.json');
    // Pretend the keeper was another process that has since been replaced (same PID, other start time).
    writeFileSync(path, JSON.stringify({ ...state, keeperStartTime: '1' }));
    const info = await inspectNamespace('reuse', { root });
    assert.equal(info.status, 'stale');
    assert.match(info.reason ?? '', /now belongs to another process/);
    assert.throws(() => spawnInNamespace('reuse', 'true', [], { root }), { code: 'NS_STALE' });
    // rm must not kill a process it cannot prove is the keeper.
    const r = await removeNamespace('reuse', { root });
    assert.equal(r.keeperStopped, false);
    assert.ok(!processGone(state.keeperPid!));
    process.kill(state.keeperPid!, 'SIGTERM');
    assert.ok(await waitFor(() => processGone(state.keeperPid!)));
  });

  test('a namespace identity that changed is stale, and the helper refuses to join it', async () => {
    const state = await createNamespace('ident', { root, uidMap: MAP });
    const path = join(root, 'ns', 'ident', 'state.json');
    const forged = { ...state, namespaces: [{ type: 'user', inode: 4026531837, handle: null }] };
    writeFileSync(path, JSON.stringify(forged));
    assert.equal((await inspectNamespace('ident', { root })).status, 'stale');
    assert.throws(() => spawnInNamespace('ident', 'true', [], { root }), { code: 'NS_STALE' });
    // The helper checks the inodes itself (the keeper could die between the check and the join).
    const { launchHelper } = await import('../../src/native/helper.js');
    const { explainSpawnFailure } = await import('../../src/spawn/explain.js');
    await assert.rejects(
      launchHelper({
        namespaces: [],
        command: ['true'],
        explain: explainSpawnFailure,
        join: { pid: state.keeperPid!, namespaces: [{ type: 'user', inode: 4026531837 }] },
        stdio: 'ignore',
      }),
      { code: 'NS_STALE', message: /expected 4026531837/ },
    );
    writeFileSync(path, JSON.stringify(state));
    await removeNamespace('ident', { root });
  });

  test('invalid names are refused and nothing is created outside the root', async () => {
    for (const bad of ['..', '.', 'a/b', '', 'x'.repeat(300), 'a\0b', '../outside', '/etc']) {
      await assert.rejects(
        createNamespace(bad, { root, uidMap: MAP }),
        { code: 'INVALID_NAME' },
        JSON.stringify(bad),
      );
      assert.throws(() => spawnInNamespace(bad, 'true', [], { root }), { code: 'INVALID_NAME' });
      await assert.rejects(removeNamespace(bad, { root, force: true }), { code: 'INVALID_NAME' });
      await assert.rejects(inspectNamespace(bad, { root }), { code: 'INVALID_NAME' });
    }
    // An entry that is a symlink to elsewhere is never followed.
    mkdirSync(join(root, 'ns'), { recursive: true });
    symlinkSync(outside, join(root, 'ns', 'evil'));
    await assert.rejects(createNamespace('evil', { root, uidMap: MAP }), { code: 'NS_UNSAFE' });
    assert.throws(() => spawnInNamespace('evil', 'true', [], { root }), { code: 'NS_UNSAFE' });
    assert.equal((await listNamespaces({ root })).find((e) => e.name === 'evil')?.status, 'unsafe');
    await assert.rejects(removeNamespace('evil', { root }), { code: 'NS_UNSAFE' });
    const r = await removeNamespace('evil', { root, force: true });
    assert.equal(r.removed, true);
    assert.ok(!existsSync(join(root, 'ns', 'evil')));
    assert.deepEqual(readdirSync(outside), [], 'nothing was written through the link');
    assert.ok(lstatSync(outside).isDirectory(), 'the link target was not removed');
    // A state root that is a symlink is refused too.
    const linkedRoot = join(base, 'linked-root');
    symlinkSync(outside, linkedRoot);
    await assert.rejects(createNamespace('ok', { root: linkedRoot, uidMap: MAP }), {
      code: 'STATE_ROOT_UNSAFE',
    });
    assert.deepEqual(readdirSync(outside), []);
    // Names are what runc allows.
    await createNamespace('A_b+c.d-1', { root, uidMap: MAP });
    await removeNamespace('A_b+c.d-1', { root });
  });

  test('8 concurrent creates of one name: exactly one succeeds, the others get NS_EXISTS', async () => {
    const results = await Promise.all(
      Array.from({ length: 8 }, () => cli(['create', '--root', root, '--uidmap', MAP, '--json', 'race'])),
    );
    const winners = results.filter((r) => r.code === 0);
    assert.equal(winners.length, 1, results.map((r) => r.stdout + r.stderr).join('\n'));
    for (const r of results.filter((x) => x.code !== 0)) {
      assert.equal(r.code, 1);
      const body = JSON.parse(r.stdout);
      assert.equal(body.code, 'NS_EXISTS');
      assert.match(body.message, /namespace race already exists/);
    }
    const list = (await listNamespaces({ root })).filter((e) => e.name === 'race');
    assert.equal(list.length, 1);
    assert.equal(list[0]!.status, 'running');
    const made = JSON.parse(winners[0]!.stdout) as { state: NamespaceState };
    const state = made.state;
    assert.equal(list[0]!.state?.keeperPid, state.keeperPid!);
    // create prints the layout inspect prints (JSON and text), nothing else to script against.
    const inspected = JSON.parse((await cli(['inspect', '--root', root, '--json', 'race'])).stdout);
    assert.deepEqual(made, inspected);
    const text = (await cli(['inspect', '--root', root, 'race'])).stdout;
    assert.match(text, /^name: +race\nstatus: +running\n/);
    await removeNamespace('race', { root });
    assert.ok(await waitFor(() => processGone(state.keeperPid!)));
  });

  test('a SIGKILL at any point of create leaves nothing that blocks a later create, and no keeper', async () => {
    const before = keepers();
    const script = `import { createNamespace } from ${JSON.stringify(MODULE)};
      process.stdout.write('go\\n');
      await createNamespace('killed', { root: ${JSON.stringify(root)}, uidMap: '${MAP}', namespaces: ['pid', 'mount'] });
      process.stdout.write('done\\n');
      setInterval(() => {}, 1000);`;
    const outcomes = new Set<string>();
    // First an uninterrupted create measures how long one takes (T); then kills spread over [0, T].
    let took = 0;
    const delays: (number | null)[] = [null];
    for (let i = 0; i < 14; i++) delays.push(i);
    for (const step of delays) {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      let started = 0;
      const finished = new Promise<void>((resolveDone) => {
        child.stdout.setEncoding('utf8').on('data', (d: string) => {
          out += d;
          if (out.includes('done\n')) resolveDone();
        });
      });
      await new Promise<void>((resolve) => {
        const poll = () => (out.includes('go\n') ? resolve() : setTimeout(poll, 0));
        poll();
      });
      started = performance.now();
      if (step === null) {
        await finished;
        took = performance.now() - started;
      }
      await new Promise((r) => setTimeout(r, step === null ? 0 : (step * took) / 12));
      child.kill('SIGKILL');
      await new Promise((r) => child.once('close', r));
      const dir = join(root, 'ns', 'killed');
      outcomes.add(
        out.includes('done')
          ? 'done'
          : !existsSync(dir)
            ? 'nothing'
            : `${existsSync(join(dir, 'creating')) ? 'marker' : ''}+${existsSync(join(dir, 'state.json')) ? 'state' : ''}`,
      );
      const entry = (await listNamespaces({ root })).find((e) => e.name === 'killed');
      // Whatever was left, a later create of the same name works (or finds the finished one).
      if (entry?.status === 'running') await removeNamespace('killed', { root });
      const state = await createNamespace('killed', { root, uidMap: MAP, namespaces: ['pid', 'mount'] });
      const r = await execInNamespace('killed', ['true'], { root });
      assert.equal(r.exitCode, 0);
      await removeNamespace('killed', { root });
      assert.ok(await waitFor(() => processGone(state.keeperPid!)));
    }
    // Keepers whose creator died before committing exit by themselves.
    assert.ok(
      await waitFor(() => [...keepers()].every((pid) => before.has(pid))),
      `keepers left: ${[...keepers()].filter((p) => !before.has(p))}`,
    );
    assert.deepEqual(
      readdirSync(join(root, 'ns')).filter((e) => e !== '@locks'),
      [],
    );
    process.stderr.write(`# SIGKILL outcomes seen: ${[...outcomes].join(', ')}\n`);
    assert.ok(outcomes.size >= 2, `the kills hit different points: ${[...outcomes]}`);
  });

  test('rm stops the keeper (and everything in its PID namespace)', async () => {
    const state = await createNamespace('stop', { root, uidMap: MAP, namespaces: ['pid'] });
    const child = spawnInNamespace('stop', 'sleep', ['60'], { root, stdio: 'ignore' });
    const done = child.then((r) => r);
    await new Promise((r) => setTimeout(r, 50));
    const r = await removeNamespace('stop', { root });
    assert.equal(r.keeperStopped, true);
    assert.ok(processGone(state.keeperPid!));
    const result = await done;
    assert.equal(result.signal, 'SIGKILL', 'the command died with its PID namespace');
  });
});
