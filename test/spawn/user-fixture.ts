/**
 * A real unprivileged user with subordinate ranges, for rootless tests.
 *
 * Uses the shared fixture test/fixtures/throwaway-user.ts when it exists; until then, this
 * private stand-in creates the user with useradd/usermod (which lock /etc/passwd and
 * /etc/subuid like every shadow tool) and removes it with userdel afterwards.
 */
import { type SpawnOptions, spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface ThrowawayUser {
  name: string;
  uid: number;
  gid: number;
  subuid: { start: number; count: number };
  subgid: { start: number; count: number };
}

export interface RunAsResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

type Fixture = {
  withThrowawayUser<T>(fn: (user: ThrowawayUser) => Promise<T>): Promise<T>;
  runAs(
    user: ThrowawayUser,
    argv: string[],
    opts?: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string },
  ): Promise<RunAsResult>;
};

async function shared(): Promise<Fixture | undefined> {
  const specifier = new URL('../fixtures/throwaway-user.js', import.meta.url).href;
  try {
    return (await import(specifier)) as Fixture;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND') return undefined;
    throw error;
  }
}

/** The repository root (dist/test/spawn/ → ../../..). */
export const REPO = fileURLToPath(new URL('../../../', import.meta.url));

/** Why rootless tests cannot run here, or undefined when they can. */
export function rootlessSkipReason(): string | undefined {
  if (process.geteuid?.() !== 0) return 'needs root to create a throwaway user';
  for (const tool of ['useradd', 'userdel', 'usermod', 'runuser']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is not installed`;
  }
  try {
    accessSync(fileURLToPath(new URL('../../src/spawn/spawn.js', import.meta.url)), constants.R_OK);
  } catch {
    return 'the compiled repository is not readable';
  }
  // Every directory from / to the repository must be searchable by others.
  const r = spawnSync(RUNUSER, [
    '-u',
    'nobody',
    '--',
    'test',
    '-r',
    fileURLToPath(new URL('../../src/spawn/spawn.js', import.meta.url)),
  ]);
  if (r.status !== 0) return 'the repository files are not readable by other users';
  return undefined;
}

let counter = 0;
const RUNUSER =
  ['/usr/sbin/runuser', '/sbin/runuser', '/usr/bin/runuser'].find((p) => {
    try {
      accessSync(p, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  }) ?? 'runuser';

export async function withThrowawayUser<T>(fn: (user: ThrowawayUser) => Promise<T>): Promise<T> {
  const fixture = await shared();
  if (fixture) return fixture.withThrowawayUser(fn);
  const name = `unst${process.pid % 100000}x${counter++}`;
  const run = (argv: string[]) => {
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${argv.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  };
  // useradd allocates free subordinate ranges itself (SUB_UID_MIN… in /etc/login.defs).
  run(['useradd', '--no-create-home', '--user-group', '--shell', '/bin/sh', name]);
  try {
    const entry = (file: string) => {
      const line = readFileSync(file, 'utf8')
        .split('\n')
        .find((l) => l.startsWith(`${name}:`));
      if (line === undefined) return undefined;
      const [, start, count] = line.split(':').map(Number) as [number, number, number];
      return { start, count };
    };
    if (entry('/etc/subuid') === undefined || entry('/etc/subgid') === undefined) {
      const start = 1_000_000_000 + ((process.pid * 7 + counter) % 5000) * 65536;
      run([
        'usermod',
        '--add-subuids',
        `${start}-${start + 65535}`,
        '--add-subgids',
        `${start}-${start + 65535}`,
        name,
      ]);
    }
    const subuid = entry('/etc/subuid')!;
    const subgid = entry('/etc/subgid')!;
    const uid = Number(run(['id', '-u', name]).trim());
    const gid = Number(run(['id', '-g', name]).trim());
    return await fn({ name, uid, gid, subuid, subgid });
  } finally {
    spawnSync('userdel', [name]);
    // userdel removes the subordinate entries too; make sure (older shadow versions do not).
    spawnSync('sh', ['-c', `sed -i '/^${name}:/d' /etc/subuid /etc/subgid`]);
  }
}

export async function runAs(
  user: ThrowawayUser,
  argv: string[],
  opts: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<RunAsResult> {
  const fixture = await shared();
  if (fixture) return fixture.runAs(user, argv, opts);
  const options: SpawnOptions = {
    stdio: ['pipe', 'pipe', 'pipe'],
    cwd: opts.cwd ?? '/',
    env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/', LC_ALL: 'C', ...opts.env },
  };
  return new Promise((resolve, reject) => {
    const child = spawn(RUNUSER, ['-u', user.name, '--', ...argv], options);
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    child.stdin!.end(opts.input ?? '');
  });
}
