/**
 * Output that cannot be written: a reader that closes the pipe early (`| head -1`, `| true`)
 * ends the output quietly with the operation's exit status, and never loses or repeats what
 * the operation committed; any other write error is one line and exit 1.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
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
    const dir = join(work, 'tree');
    mkdirSync(dir);
    for (let i = 0; i < 3000; i++) writeFileSync(join(dir, `f${i}`), '');
    const args = [
      'shift',
      '--from',
      '0:0:65536',
      '--to',
      '0:100000:65536',
      '--root',
      join(work, 'state'),
      '-v',
    ];
    const dry = await closedEarly([...args, '--dry-run', dir], 10);
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(dry.stderr, '');
    const real = await closedEarly([...args, dir], 10);
    assert.equal(real.code, 0, real.stderr);
    const again = JSON.parse((await runCli(['shift', ...args.slice(1, 7), '--json', dir])).stdout);
    assert.equal(again.changed, 0);
    assert.equal(again.alreadyShifted, 3001);
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
