import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';

/** The outcome of running a helper program. `missing` = the program could not be started (ENOENT/EACCES). */
export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  missing: boolean;
}

/**
 * Runs a program without a shell and collects its output. Never rejects: a program that is not
 * installed gives `missing: true`; a timeout kills it (SIGKILL) and gives signal SIGKILL.
 */
export function run(
  file: string,
  args: readonly string[],
  options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile(
      file,
      [...args],
      {
        encoding: 'utf8',
        timeout: options.timeoutMs ?? 10_000,
        killSignal: 'SIGKILL',
        maxBuffer: 16 * 1024 * 1024,
        env: options.env ?? { ...process.env, LC_ALL: 'C' },
      },
      (error, stdout, stderr) => {
        if (error === null) {
          resolve({ code: 0, signal: null, stdout, stderr, missing: false });
          return;
        }
        const errno = (error as NodeJS.ErrnoException).code;
        if (errno === 'ENOENT' || errno === 'EACCES') {
          resolve({ code: null, signal: null, stdout: '', stderr: String(error.message), missing: true });
          return;
        }
        const e = error as { code?: number | string; signal?: NodeJS.Signals | null };
        resolve({
          code: typeof e.code === 'number' ? e.code : null,
          signal: e.signal ?? null,
          stdout: String(stdout),
          stderr: String(stderr),
          missing: false,
        });
      },
    );
  });
}

const STANDARD_DIRS = ['/usr/bin', '/usr/sbin', '/bin', '/sbin', '/usr/local/bin', '/usr/local/sbin'];

/**
 * A program's path: the first regular file named `name` in PATH, then in `extraDirs` (default:
 * the standard bin and sbin directories, which an unprivileged PATH often lacks).
 */
export function findProgram(name: string, extraDirs: readonly string[] = STANDARD_DIRS): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), ...extraDirs];
  for (const dir of dirs) {
    if (dir === '' || !dir.startsWith('/')) continue; // relative PATH entries depend on cwd: ignore
    const candidate = `${dir.replace(/\/+$/, '')}/${name}`;
    try {
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}
