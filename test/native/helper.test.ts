/**
 * The native helper and its driver against the real kernel (as root: maps written directly).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SpawnError } from '../../src/errors/index.js';
import {
  type HelperOptions,
  helperArgs,
  helperPath,
  launchHelper as launchPlain,
} from '../../src/native/helper.js';
import { packagedHelperPath } from '../../src/native/helper-binary.js';
import { explainSpawnFailure } from '../../src/spawn/explain.js';

const isRoot = process.geteuid?.() === 0;

/** The driver with spawn()'s explanation of failures (the driver alone reports plain ones). */
const launchHelper = (options: HelperOptions) => launchPlain({ explain: explainSpawnFailure, ...options });
const MAP = '0 100000 65536\n';

function collect(child: ChildProcess): {
  out: () => string;
  exit: Promise<{ code: number | null; signal: string | null }>;
} {
  let out = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (d: string) => {
    out += d;
  });
  const exit = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null)
      resolve({ code: child.exitCode, signal: child.signalCode });
    else child.once('close', (code, signal) => resolve({ code, signal }));
  });
  return { out: () => out, exit };
}

async function runWithMaps(options: Partial<HelperOptions> & { command: string[] }, map = MAP) {
  const h = await launchHelper({ namespaces: ['user'], stdio: ['ignore', 'pipe', 'inherit'], ...options });
  const c = collect(h.child);
  writeFileSync(`/proc/${h.pid}/uid_map`, map);
  writeFileSync(`/proc/${h.pid}/gid_map`, map);
  await h.go();
  const { code, signal } = await c.exit;
  return { h, code, signal, stdout: c.out() };
}

function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

describe('native helper', { skip: isRoot ? false : 'needs root (maps are written directly)' }, () => {
  test('ready → maps written → go: the command sees the maps and its exit status comes through', async () => {
    const r = await runWithMaps({
      command: ['sh', '-c', 'cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; exit 7'],
    });
    assert.equal(r.code, 7);
    const lines = r.stdout.trim().split('\n');
    assert.deepEqual(
      lines.slice(0, 2).map((l) => l.trim().split(/\s+/).join(' ')),
      ['0 100000 65536', '0 100000 65536'],
    );
    assert.deepEqual(lines.slice(2), ['0', '0']);
  });

  test('same PID: the ChildProcess is the command (no PID namespace)', async () => {
    const r = await runWithMaps({ command: ['sh', '-c', 'echo $$'] });
    assert.equal(Number(r.stdout.trim()), r.h.pid);
  });

  test('user and group inside, supplementary groups dropped', async () => {
    const r = await runWithMaps({
      command: ['sh', '-c', 'id -u; id -g; id -G'],
      user: { uid: 1000, gid: 1001 },
    });
    assert.equal(r.code, 0);
    assert.deepEqual(r.stdout.trim().split('\n'), ['1000', '1001', '1001']);
  });

  test('killed by a signal: the ChildProcess sees the signal', async () => {
    const r = await runWithMaps({ command: ['sh', '-c', 'kill -TERM $$'] });
    assert.equal(r.code, null);
    assert.equal(r.signal, 'SIGTERM');
  });

  test('no leaked fds: only 0, 1, 2 (and the one ls opens)', async () => {
    const r = await runWithMaps({ command: ['ls', '/proc/self/fd'], stdio: ['pipe', 'pipe', 'pipe'] });
    assert.deepEqual(r.stdout.trim().split('\n').sort(), ['0', '1', '2', '3']);
  });

  test('extra stdio entries become fds 3… in the command', async () => {
    const h = await launchHelper({
      namespaces: ['user'],
      command: ['sh', '-c', 'echo to-three >&3; ls /proc/self/fd'],
      stdio: ['ignore', 'pipe', 'inherit', 'pipe'],
    });
    const c = collect(h.child);
    let three = '';
    const extra = (h.child.stdio as unknown as Readable[])[5]!;
    extra.setEncoding('utf8');
    extra.on('data', (d: string) => {
      three += d;
    });
    writeFileSync(`/proc/${h.pid}/uid_map`, MAP);
    writeFileSync(`/proc/${h.pid}/gid_map`, MAP);
    await h.go();
    await c.exit;
    assert.equal(three, 'to-three\n');
    assert.deepEqual(c.out().trim().split('\n').sort(), ['0', '1', '2', '3', '4']);
  });

  test('PID namespace: the command is PID 1 and /proc shows only its processes', async () => {
    const r = await runWithMaps({
      namespaces: ['user', 'pid'],
      mountProc: true,
      command: ['sh', '-c', 'echo $$; ls /proc | grep -E "^[0-9]+$" | tr "\\n" " "'],
    });
    assert.equal(r.code, 0);
    const [pid, procs] = r.stdout.split('\n');
    assert.equal(pid, '1');
    // sh (1), ls (2), grep (3), tr (4): nothing of the host.
    const pids = procs!.trim().split(' ').map(Number);
    assert.ok(
      pids.every((p) => p >= 1 && p <= 4),
      procs,
    );
  });

  test('PID namespace: exit status passes through the supervisor; forwarded signals reach a handling init', async () => {
    const r = await runWithMaps({ namespaces: ['user', 'pid'], command: ['sh', '-c', 'exit 9'] });
    assert.equal(r.code, 9);
    const h = await launchHelper({
      namespaces: ['user', 'pid'],
      stdio: ['ignore', 'pipe', 'inherit'],
      command: ['sh', '-c', 'trap "exit 5" TERM; echo up; while :; do sleep 0.02; done'],
    });
    const c = collect(h.child);
    writeFileSync(`/proc/${h.pid}/uid_map`, MAP);
    writeFileSync(`/proc/${h.pid}/gid_map`, MAP);
    await h.go();
    while (!c.out().includes('up')) await new Promise((r) => setTimeout(r, 5));
    h.child.kill('SIGTERM');
    assert.deepEqual(await c.exit, { code: 5, signal: null });
  });

  test('PID namespace: the init killed by SIGKILL → the supervisor dies of SIGKILL too', async () => {
    const h = await launchHelper({
      namespaces: ['user', 'pid'],
      stdio: ['ignore', 'pipe', 'inherit'],
      command: ['sleep', '30'],
    });
    const c = collect(h.child);
    writeFileSync(`/proc/${h.pid}/uid_map`, MAP);
    writeFileSync(`/proc/${h.pid}/gid_map`, MAP);
    await h.go();
    const inner = Number(readFileSync(`/proc/${h.pid}/task/${h.pid}/children`, 'utf8').trim());
    assert.ok(inner > 0);
    process.kill(inner, 'SIGKILL');
    assert.deepEqual(await c.exit, { code: null, signal: 'SIGKILL' });
    assert.equal(isRunning(inner), false);
  });

  test('run mode without mounts takes "go" on the report socket (--one-socket): no control socket', async () => {
    const args = (options: Partial<HelperOptions>) => helperArgs({ command: ['true'], ...options });
    assert.ok(args({}).includes('--one-socket'));
    assert.ok(!args({ mode: 'hold', command: undefined }).includes('--one-socket'));
    assert.ok(!args({ mounts: [{ source: '/', target: '/mnt', readOnly: true }] }).includes('--one-socket'));
    // The helper itself: the report socket alone (fd 4 closed) carries ready, go and the exec's EOF.
    const child = spawn(helperPath(), ['--mode=run', '--one-socket', '--', 'sh', '-c', 'exit 7'], {
      stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'ignore'],
    });
    const report = child.stdio[3] as import('node:net').Socket;
    let text = '';
    report.setEncoding('utf8');
    report.on('data', (d: string) => {
      text += d;
      if (text.startsWith('ready ') && text.endsWith('\n')) report.write('go\n');
    });
    const status = await new Promise((resolve) => child.on('close', (code) => resolve(code)));
    // No maps were written: the helper stays uid/gid nobody, so --uid/--gid are not given here.
    assert.match(text, /^ready \d+\n$/);
    assert.equal(status, 7);
    // EOF instead of "go" (the parent shut its side, or died) is an abort, as is any other text.
    for (const answer of [null, 'no\n', 'g']) {
      const aborted = spawn(helperPath(), ['--mode=run', '--one-socket', '--', 'sh', '-c', 'exit 7'], {
        stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'ignore'],
      });
      const socket = aborted.stdio[3] as import('node:net').Socket;
      socket.once('data', () => (answer === null ? socket.end() : socket.end(answer)));
      socket.resume();
      assert.equal(
        await new Promise((resolve) => aborted.on('close', (code) => resolve(code))),
        125,
        String(answer),
      );
    }
    // Without --one-socket fd 4 must be there; --one-socket is refused with mounts and outside run.
    const usage = (argv: string[]) => {
      const r = spawnSync(helperPath(), argv, {
        stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
        encoding: 'utf8',
      });
      assert.equal(r.status, 127, argv.join(' '));
      return String(r.output[3]);
    };
    assert.match(usage(['--mode=run', '--', 'true']), /^error usage 9 .*fd 4 \(control\) is not open/);
    assert.match(usage(['--mode=hold', '--one-socket']), /^error usage 22 /);
    assert.match(
      usage(['--mode=run', '--one-socket', '--unshare=user,mount', '--mount=r:-:1:/:/mnt', '--', 'true']),
      /^error usage 22 .*--one-socket cannot take --mount/,
    );
  });

  // How fast this is belongs in `npm run bench` (spawn), not in a timed assertion.
  test('abort before go reaps the helper (exit 125), 30 times in a row', async () => {
    for (let i = 0; i < 30; i++) {
      const h = await launchHelper({ namespaces: ['user'], command: ['/bin/true'] });
      await h.abort();
      assert.equal(h.child.exitCode, 125);
      assert.equal(isRunning(h.pid), false);
    }
  });

  test('an abort whose text is "go" is still an abort (one socket: the text follows a word of its own)', async () => {
    const h = await launchHelper({ namespaces: ['user'], command: ['sh', '-c', 'exit 7'] });
    await h.abort('go');
    assert.equal(h.child.exitCode, 125);
  });

  test('abort after go kills and reaps the command', async () => {
    const h = await launchHelper({ namespaces: ['user'], command: ['sleep', '30'] });
    writeFileSync(`/proc/${h.pid}/uid_map`, MAP);
    writeFileSync(`/proc/${h.pid}/gid_map`, MAP);
    await h.go();
    await h.abort();
    assert.equal(h.child.signalCode, 'SIGKILL');
  });

  test('command not found → SpawnError COMMAND_NOT_FOUND, helper reaped', async () => {
    const h = await launchHelper({ namespaces: ['user'], command: ['no-such-command-xyz'] });
    writeFileSync(`/proc/${h.pid}/uid_map`, MAP);
    writeFileSync(`/proc/${h.pid}/gid_map`, MAP);
    await assert.rejects(h.go(), (e: unknown) => {
      assert.ok(e instanceof SpawnError);
      assert.equal(e.code, 'COMMAND_NOT_FOUND');
      assert.equal(e.message, 'command not found: no-such-command-xyz');
      return true;
    });
    assert.equal(h.child.exitCode, 127);
  });

  test('go without maps: switching to uid 0 fails → ID_NOT_MAPPED', async () => {
    const h = await launchHelper({ namespaces: ['user'], command: ['/bin/true'] });
    await assert.rejects(h.go(), (e: unknown) => e instanceof SpawnError && e.code === 'ID_NOT_MAPPED');
  });

  test('bad cwd → CWD_FAILED', async () => {
    const h = await launchHelper({ namespaces: ['user'], command: ['/bin/true'], cwd: '/nonexistent-dir' });
    writeFileSync(`/proc/${h.pid}/uid_map`, MAP);
    writeFileSync(`/proc/${h.pid}/gid_map`, MAP);
    await assert.rejects(h.go(), (e: unknown) => e instanceof SpawnError && e.code === 'CWD_FAILED');
  });

  test('missing helper binary → HELPER_MISSING', async () => {
    await assert.rejects(
      launchHelper({
        namespaces: ['user'],
        command: ['/bin/true'],
        helperPath: '/nonexistent/userns-helper',
      }),
      (e: unknown) =>
        e instanceof SpawnError && e.code === 'HELPER_MISSING' && /helperPath unset/.test(e.hint ?? ''),
    );
  });

  test('killing the parent before go leaves no orphan helper', async () => {
    const helperModule = fileURLToPath(new URL('../../src/native/helper.js', import.meta.url));
    const script = `import { launchHelper } from ${JSON.stringify(helperModule)};
      const h = await launchHelper({ namespaces: ['user'], command: ['/bin/true'] });
      process.stdout.write(h.pid + '\\n');
      setInterval(() => {}, 1000);`;
    const parent = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const pid = await new Promise<number>((resolve) => {
      parent.stdout.setEncoding('utf8');
      parent.stdout.once('data', (d: string) => resolve(Number(d.trim())));
    });
    assert.ok(isRunning(pid));
    parent.kill('SIGKILL');
    // A bound on waiting for the kernel's parent-death signal, generous for a loaded machine.
    const deadline = Date.now() + 20_000;
    while (isRunning(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(isRunning(pid), false, `helper ${pid} survived its parent`);
  });
});

describe('native helper without root', () => {
  test('the helper binary is built', () => {
    assert.ok(existsSync(packagedHelperPath()), "run 'npm run build'");
  });

  test('hold mode: go() waits for both "held" and "keeper <pid>", whichever comes first', async () => {
    // The keeper (child) and the helper (parent) write these two lines after the fork: on a busy
    // machine "held" can come first. A stand-in helper writes them in that order, apart.
    const dir = mkdtempSync(join(tmpdir(), 'userns-hold-order-'));
    try {
      const fake = join(dir, 'helper');
      writeFileSync(
        fake,
        '#!/bin/sh\necho "ready $$" >&3\ncat <&4 >/dev/null\necho held >&3\nsleep 0.2\necho "keeper 4242" >&3\nexec sleep 5\n',
        { mode: 0o755 },
      );
      const h = await launchHelper({
        namespaces: [],
        command: [],
        mode: 'hold',
        stdio: 'ignore',
        helperPath: fake,
      });
      await h.go();
      assert.deepEqual(h.reports, ['held', 'keeper 4242']);
      await h.abort();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
