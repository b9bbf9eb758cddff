/**
 * Output that cannot be written: a reader that closes the pipe early (`| head -1`, `| true`)
 * ends the output quietly with the operation's exit status, and never loses or repeats what
 * the operation committed; any other write error is one line and exit 1.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, constants, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BIN, hostless, runCli } from './run-cli.js';

/** Runs the CLI with its standard output read for `keep` bytes, then closed (as `| head -c`). */
function closedEarly(
  args: string[],
  keep = 0,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    if (keep === 0) child.stdout.destroy();
    else
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (stdout.length >= keep) child.stdout.destroy();
      });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const rootOnly = process.geteuid?.() === 0 ? false : 'needs root';

describe('a closed output pipe', () => {
  let work: string;
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'userns-output-'));
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  /** A tree of `files` empty files, and the arguments that shift it (0 → 100000, a state root of its own). */
  function shiftable(name: string, files: number, fileName: (i: number) => string) {
    const dir = join(work, name);
    mkdirSync(dir);
    for (let i = 0; i < files; i++) writeFileSync(join(dir, fileName(i)), '');
    const args = [
      'shift',
      '--from',
      '0:0:65536',
      '--to',
      '0:100000:65536',
      '--root',
      join(work, `${name}-state`),
    ];
    return { dir, args };
  }

  test('map show | true: exit 0, no stack trace', { timeout: 30_000 }, async () => {
    const r = await closedEarly(['map', 'show', '0:100000:65536']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
  });

  test('alloc | true commits once and exits 0; alloc list | true exits 0', {
    skip: rootOnly,
    timeout: 60_000,
  }, async () => {
    const root = join(work, 'state');
    const pool = ['--root', root, '--pool', '3000000000:1000000', ...hostless(work)];
    const made = await closedEarly(['alloc', '--size', '10', '--name', 'e1', ...pool]);
    assert.equal(made.code, 0, made.stderr);
    assert.equal(made.stderr, '');
    for (let i = 0; i < 2; i++) assert.equal((await runCli(['alloc', '--size', '10', ...pool])).code, 0);
    const head = await closedEarly(['alloc', 'list', '--root', root, ...hostless(work)]);
    assert.equal(head.code, 0, head.stderr);
    assert.equal(head.stderr, '');
    // The allocation made while the pipe was closed is there, once.
    const list = JSON.parse(
      (await runCli(['alloc', 'list', '--root', root, '--json', ...hostless(work)])).stdout,
    );
    assert.equal(list.allocations.filter((a: { name: string | null }) => a.name === 'e1').length, 1);
    assert.equal(list.allocations.length, 3);
  });

  test('shift -v | head -1: the shift runs to its end, exit 0', {
    skip: rootOnly,
    timeout: 60_000,
  }, async () => {
    const { dir, args: shift } = shiftable('tree', 3000, (i) => `f${i}`);
    const args = [...shift, '-v'];
    const dry = await closedEarly([...args, '--dry-run', dir], 10);
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(dry.stderr, '');
    const real = await closedEarly([...args, dir], 10);
    assert.equal(real.code, 0, real.stderr);
    const again = JSON.parse((await runCli([...shift, '--json', dir])).stdout);
    assert.equal(again.changed, 0);
    assert.equal(again.alreadyShifted, 3001);
  });

  test('a non-blocking pipe that fills up (EAGAIN) gets the whole output', {
    skip: rootOnly,
    timeout: 60_000,
  }, async () => {
    // The CLI writes with writeSync (src/cli/output.ts); on a descriptor someone else made
    // non-blocking, a full pipe is EAGAIN, and the rest must go through Node's stream, which waits.
    const { dir, args } = shiftable('eagain-tree', 4000, (i) => `file-${String(i).padStart(5, '0')}`);
    const fifo = join(work, 'fifo');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
    const readFd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const writeFd = openSync(fifo, constants.O_WRONLY);
    // Node's spawn makes a child's fds 0-2 blocking again; perl (Debian's perl-base is always
    // there) makes fd 1 non-blocking and then becomes the CLI, as a non-Node parent can leave it.
    const nonBlocking =
      'use Fcntl; fcntl(STDOUT, F_SETFL, fcntl(STDOUT, F_GETFL, 0) | O_NONBLOCK) or die "fcntl: $!"; exec @ARGV or die "exec: $!"';
    const child = spawn('perl', ['-e', nonBlocking, process.execPath, BIN, ...args, '--dry-run', '-v', dir], {
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['ignore', writeFd, 'pipe'],
    });
    closeSync(writeFd);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    // Nothing is read for 2 s: the output (over 64 KiB, a pipe's capacity) fills the pipe. A CLI
    // that took EAGAIN for a failure has exited by then.
    const early = await Promise.race([exited, new Promise((r) => setTimeout(() => r('running'), 2000))]);
    assert.equal(early, 'running', `exited before anything was read: ${stderr}`);
    const reader = new Socket({ fd: readFd, readable: true, writable: false });
    let stdout = '';
    reader.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    const drained = new Promise((resolve) => reader.on('end', resolve));
    assert.equal(await exited, 0, stderr);
    await drained;
    assert.equal(stderr, '');
    assert.ok(stdout.length > 65536, `only ${stdout.length} bytes of output`);
    const listed = stdout.split('\n').filter((l) => l.includes('file-'));
    assert.equal(listed.length, 4000, stdout.slice(-300));
    // The same lines as the command's output to a plain pipe (the walk's workers list entries in
    // no fixed order), each whole: none lost, cut or repeated.
    const plain = await runCli([...args, '--dry-run', '-v', dir]);
    assert.equal(plain.code, 0, plain.stderr);
    const entries = (text: string) =>
      text
        .split('\n')
        .filter((l) => !l.startsWith('would shift '))
        .sort();
    assert.deepEqual(entries(stdout), entries(plain.stdout));
    assert.match(stdout, /\nwould shift .*: 4,001 entries seen, 4,001 to change \(/);
  });

  test('any other write error (a full disk) is one line and exit 1', { timeout: 30_000 }, async () => {
    const full = openSync('/dev/full', 'w');
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [BIN, 'map', 'show', '0:100000:65536'], {
        stdio: ['ignore', full, 'pipe'],
      });
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stderr }));
    });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'userns: cannot write to standard output: ENOSPC\n');
  });
});
