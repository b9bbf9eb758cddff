import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The repository's bin/userns, run as a separate process exactly as a user runs it. */
export const BIN = fileURLToPath(new URL('../../../bin/userns', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function runCli(
  args: string[],
  options: { input?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, NO_COLOR: '1', ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    child.stdin.end(options.input ?? '');
  });
}

/**
 * The CLI's main() in this process, with buffers for its streams: for tests that run many
 * commands (a property over formats), without a Node start per command.
 */
export async function runInProcess(args: string[], options: { input?: string } = {}): Promise<CliResult> {
  const { PassThrough } = await import('node:stream');
  const { main } = await import('../../src/cli/main.js');
  const collect = () => {
    const stream = new PassThrough();
    let text = '';
    stream.on('data', (d: Buffer) => {
      text += d.toString();
    });
    return { stream, text: () => text };
  };
  const stdout = collect();
  const stderr = collect();
  const stdin = new PassThrough();
  stdin.end(options.input ?? '');
  const code = await main(args, {
    stdout: stdout.stream,
    stderr: stderr.stream,
    stdin,
    env: { ...process.env, NO_COLOR: '1' },
  });
  return { code, signal: null, stdout: stdout.text(), stderr: stderr.text() };
}

/**
 * `userns alloc` options that replace every host file it reads (subuid, subgid, passwd, group,
 * the pool configuration) with empty ones of its own under `dir`: nothing of the host's is read.
 */
export function hostless(dir: string): string[] {
  const etc = `${dir}/etc`;
  mkdirSync(etc, { recursive: true });
  const files: Record<string, string> = {
    subuid: '',
    subgid: '',
    passwd: 'root:x:0:0:root:/root:/bin/sh\n',
    group: 'root:x:0:\n',
  };
  for (const [name, text] of Object.entries(files)) writeFileSync(`${etc}/${name}`, text);
  return [
    '--subuid-file',
    `${etc}/subuid`,
    '--subgid-file',
    `${etc}/subgid`,
    '--passwd-file',
    `${etc}/passwd`,
    '--group-file',
    `${etc}/group`,
    '--config',
    `${etc}/no-alloc.json`,
  ];
}
