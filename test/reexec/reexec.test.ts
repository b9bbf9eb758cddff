/**
 * reexecInUserNamespace() end to end: a small Node program (written to a temp directory,
 * importing the built module by absolute path) run as root and as a throwaway unprivileged
 * user: exit statuses, signals (128+N, or re-raised), forwarding, stdio/argv/env/cwd kept,
 * calling it twice, a leaked marker, joining a named namespace, a setup error.
 */
import assert from 'node:assert/strict';
import { type SpawnOptions, spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createNamespace, removeNamespace } from '../../src/namespaces/index.js';
import { isolateHostFiles } from '../fixtures/host-files.js';
import { readablePath } from '../fixtures/readable-repo.js';
import {
  holdThrowawayUser,
  runAs,
  type ThrowawayUser,
  throwawayUserUnavailable,
} from '../fixtures/throwaway-user.js';

// The program runs as mapped IDs and as a throwaway user: it imports the readable copy.
// Root's allocation pool must not depend on the host's /etc/subuid (a `containers` line).
isolateHostFiles();
const REEXEC = readablePath('dist/src/reexec/index.js');
const root = process.geteuid?.() === 0;
const base = mkdtempSync(join(tmpdir(), 'userns-reexec-'));
chmodSync(base, 0o755);
after(() => rmSync(base, { recursive: true, force: true }));

/**
 * The program: argv[2] says what to do once inside; OPTS (JSON) are the options. It prints one
 * JSON line from inside; the launcher prints nothing.
 */
const PROGRAM = join(base, 'program.mjs');
writeFileSync(
  PROGRAM,
  `import { reexecInUserNamespace } from ${JSON.stringify(REEXEC)};
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
const out = (v) => process.stdout.write(JSON.stringify(v) + '\\n');
let ns;
try {
  ns = await reexecInUserNamespace(JSON.parse(process.env.OPTS || '{}'));
} catch (e) {
  out({ error: e.name, code: e.code, message: e.message });
  process.exit(3);
}
const again = await reexecInUserNamespace();
const [what, arg] = process.argv.slice(2);
const report = {
  pid: process.pid, uid: process.geteuid(), gid: process.getegid(), argv: process.argv.slice(2),
  cwd: process.cwd(), foo: process.env.FOO ?? null, inside: ns.inside, rootless: ns.rootless,
  uidMap: ns.uidMap.toString(), gidMap: ns.gidMap.toString(), userNamespace: ns.userNamespace,
  launcherPid: ns.launcherPid, launcherUid: ns.launcherUid, namespace: ns.namespace,
  secondCall: again.userNamespace === ns.userNamespace && again.inside,
};
if (what === 'stdin') report.stdin = readFileSync(0, 'utf8');
if (what === 'child') {
  // A child process inherits the marker: its own call returns at once, in the same namespace.
  const r = spawnSync(process.execPath, [process.argv[1], 'exit', '0'], { encoding: 'utf8' });
  report.child = JSON.parse(r.stdout.trim().split('\\n').pop());
}
if (what === 'wait') {
  process.on('SIGTERM', () => { out({ got: 'SIGTERM' }); process.exit(42); });
  out({ ...report, ready: true });
  setInterval(() => {}, 1000);
} else {
  out(report);
  if (what === 'exit') process.exit(Number(arg));
  if (what === 'signal') process.kill(process.pid, arg);
}
`,
);
chmodSync(PROGRAM, 0o644);

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  lines: Record<string, unknown>[];
}

function outcome(r: {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}): Outcome {
  const lines = r.stdout
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { ...r, lines };
}

function runProgram(
  args: string[],
  options: { opts?: object; env?: NodeJS.ProcessEnv; input?: string } = {},
): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const spawnOptions: SpawnOptions = {
      cwd: base,
      env: { ...process.env, OPTS: JSON.stringify(options.opts ?? {}), FOO: 'bar', ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    };
    const child = spawn(process.execPath, [PROGRAM, ...args], spawnOptions);
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve(outcome({ code, signal, stdout, stderr })));
    child.stdin!.end(options.input ?? '');
  });
}

const hostUserNamespace = statSync('/proc/self/ns/user').ino;

describe('reexecInUserNamespace as root', { skip: root ? false : 'needs root' }, () => {
  test('runs the program again inside: maps, argv, env, cwd, stdin kept; exit status passed on', async () => {
    const r = await runProgram(['stdin', 'x'], { input: 'hello' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.lines.length, 1, 'the program ran once inside, the launcher printed nothing');
    const inside = r.lines[0]!;
    assert.equal(inside.inside, true);
    assert.equal(inside.rootless, false);
    assert.equal(inside.uid, 0);
    assert.equal(inside.uidMap, '0:0:4294967295');
    assert.notEqual(inside.userNamespace, hostUserNamespace);
    assert.deepEqual(inside.argv, ['stdin', 'x']);
    assert.equal(inside.cwd, base);
    assert.equal(inside.foo, 'bar');
    assert.equal(inside.stdin, 'hello');
    assert.equal(inside.secondCall, true);

    for (const status of [0, 7, 255]) {
      const e = await runProgram(['exit', String(status)]);
      assert.equal(e.code, status, e.stderr);
      assert.equal(e.signal, null);
    }
  });

  test('killed by a signal: 128+N by default, the same signal with onSignal reraise', async () => {
    const term = await runProgram(['signal', 'SIGTERM']);
    assert.equal(term.code, 143, term.stderr);
    const kill = await runProgram(['signal', 'SIGKILL']);
    assert.equal(kill.code, 137);
    const reraised = await runProgram(['signal', 'SIGTERM'], { opts: { onSignal: 'reraise' } });
    assert.equal(reraised.signal, 'SIGTERM');
    assert.equal(reraised.code, null);
    const usr2 = await runProgram(['signal', 'SIGUSR2'], { opts: { onSignal: 'reraise' } });
    assert.equal(usr2.signal, 'SIGUSR2');
  });

  test('signals sent to the launcher are forwarded to the program', async () => {
    const child = spawn(process.execPath, [PROGRAM, 'wait'], {
      env: { ...process.env, OPTS: '{}' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    const ready = new Promise<Record<string, unknown>>((resolve) => {
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        stdout += d;
        const line = stdout.split('\n').find((l) => l.includes('"ready"'));
        if (line !== undefined) resolve(JSON.parse(line));
      });
    });
    const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const info = await ready;
    assert.equal(info.launcherPid, child.pid);
    child.kill('SIGTERM');
    assert.equal(await closed, 42);
    assert.match(stdout, /"got":"SIGTERM"/);
  });

  test('called twice, and by a child process: returns at once inside, same namespace', async () => {
    const r = await runProgram(['child']);
    assert.equal(r.code, 0, r.stderr);
    const inside = r.lines[0]!;
    const child = inside.child as Record<string, unknown>;
    assert.equal(inside.secondCall, true);
    assert.equal(child.userNamespace, inside.userNamespace);
    assert.equal(child.launcherPid, inside.launcherPid, 'the child reports the original launcher');
  });

  test('a marker that leaked outside is not believed', async () => {
    const leaked = JSON.stringify({
      v: 1,
      from: hostUserNamespace,
      uid: 0,
      gid: 0,
      rootless: false,
      pid: 1,
      ns: null,
    });
    const r = await runProgram(['exit', '0'], { env: { USERNS_REEXEC: leaked } });
    assert.equal(r.code, 0, r.stderr);
    assert.notEqual(r.lines[0]!.userNamespace, hostUserNamespace);
    assert.notEqual(r.lines[0]!.launcherPid, 1);
  });

  test('explicit maps, an allocation, and a setup error (typed, nothing ran)', async () => {
    const r = await runProgram(['exit', '0'], {
      opts: { uidMap: '0:100000:65536', gidMap: '0:200000:65536' },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.lines[0]!.uidMap, '0:100000:65536');
    assert.equal(r.lines[0]!.gidMap, '0:200000:65536');
    const state = join(base, 'state');
    const a = await runProgram(['exit', '0'], { opts: { userns: 'auto:size=1024', stateRoot: state } });
    assert.equal(a.code, 0, a.stderr);
    assert.match(String(a.lines[0]!.uidMap), /^0:\d+:1024$/);
    const bad = await runProgram(['exit', '0'], { opts: { uidMap: '0:100000:10,5:200000:10' } });
    assert.equal(bad.code, 3);
    assert.equal(bad.lines.length, 1);
    assert.equal(bad.lines[0]!.code, 'MAP_WRITE_FAILED');
  });

  test('joins a named namespace instead of creating one', async () => {
    const state = join(base, 'named');
    const created = await createNamespace('rx', { root: state, uidMap: '0:300000:65536' });
    try {
      const r = await runProgram(['exit', '5'], { opts: { namespace: 'rx', stateRoot: state } });
      assert.equal(r.code, 5, r.stderr);
      const inside = r.lines[0]!;
      assert.equal(inside.namespace, 'rx');
      assert.equal(inside.uidMap, '0:300000:65536');
      assert.equal(inside.userNamespace, created.namespaces.find((n) => n.type === 'user')!.inode);
      const missing = await runProgram(['exit', '0'], { opts: { namespace: 'nope', stateRoot: state } });
      assert.equal(missing.code, 3);
      assert.equal(missing.lines[0]!.code, 'NS_NOT_FOUND');
    } finally {
      await removeNamespace('rx', { root: state });
    }
  });

  test('overhead against a plain node start (measured side by side)', async (t) => {
    const plain = join(base, 'plain.mjs');
    writeFileSync(plain, `import ${JSON.stringify(REEXEC)};\nprocess.stdout.write('{}\\n');\n`);
    const time = (args: string[]) => {
      const start = process.hrtime.bigint();
      const r = spawnSync(process.execPath, args, { env: { ...process.env, OPTS: '{}' }, stdio: 'ignore' });
      assert.equal(r.status, 0);
      return Number(process.hrtime.bigint() - start) / 1e6;
    };
    const a: number[] = [];
    const b: number[] = [];
    for (let i = 0; i < 7; i++) {
      a.push(time([plain]));
      b.push(time([PROGRAM, 'exit', '0']));
    }
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
    t.diagnostic(
      `median of 7: node + import: ${median(a).toFixed(1)} ms; with reexecInUserNamespace: ${median(b).toFixed(1)} ms (overhead ${(median(b) - median(a)).toFixed(1)} ms)`,
    );
  });
});

describe('reexecInUserNamespace as an unprivileged user', {
  skip: throwawayUserUnavailable() ?? false,
}, () => {
  const held = holdThrowawayUser();
  let user: ThrowawayUser;
  before(async () => {
    await held.open();
    user = held.user;
  });
  after(async () => {
    await held.close();
  });

  const asUser = async (args: string[], opts: object = {}) =>
    outcome(
      await runAs(user, [process.execPath, PROGRAM, ...args], {
        cwd: base,
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: user.home,
          OPTS: JSON.stringify(opts),
          FOO: 'bar',
        },
      }),
    );

  test('root inside over the subordinate IDs; exit status, signals; twice', async () => {
    const r = await asUser(['child']);
    assert.equal(r.code, 0, r.stderr);
    const inside = r.lines[0]!;
    assert.equal(inside.uid, 0);
    assert.equal(inside.rootless, true);
    assert.equal(inside.launcherUid, user.uid);
    assert.equal(inside.uidMap, `0:${user.uid}:1,1:${user.subuid.start}:${user.subuid.count}`);
    assert.equal(inside.gidMap, `0:${user.gid}:1,1:${user.subgid.start}:${user.subgid.count}`);
    assert.equal(inside.secondCall, true);
    assert.equal((inside.child as Record<string, unknown>).userNamespace, inside.userNamespace);
    assert.equal((await asUser(['exit', '9'])).code, 9);
    assert.equal((await asUser(['signal', 'SIGINT'])).code, 130);
    const self = await asUser(['exit', '0'], { userns: 'self' });
    assert.equal(self.lines[0]!.uidMap, `0:${user.uid}:1`);
  });
});
