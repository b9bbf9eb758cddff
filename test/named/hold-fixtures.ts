/**
 * What the hold-mode tests share: the CLI run to completion, the processes of a user namespace,
 * and polling with a deadline (the kernel drops a namespace a moment after its last process;
 * docs/nsfs-handles.md section 5).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../../bin/userns', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `userns ARGS` (optionally under `wrap`, e.g. `unshare --pid --fork`) to completion. */
export function cli(args: string[], env: NodeJS.ProcessEnv = {}, wrap: string[] = []): CliResult {
  const argv = [...wrap, process.execPath, BIN, ...args];
  const r = spawnSync(argv[0]!, argv.slice(1), {
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1', ...env },
    timeout: 30_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * PIDs of processes in the user namespace `inode` whose uid map is `map` ("0 100000 65536"), as
 * /proc shows them. The map too: the kernel reuses a namespace inode as soon as it is free, and
 * other suites on this machine make namespaces all the time.
 */
export function membersOf(inode: number, map: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (statSync(`/proc/${entry}/ns/user`).ino !== inode) continue;
      if (readFileSync(`/proc/${entry}/uid_map`, 'latin1').trim().split(/\s+/).join(' ') === map)
        out.push(Number(entry));
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

/** Calls fn until it returns a value (not undefined), at most `ms`; throws naming `what`. */
export async function until<T>(
  fn: () => Promise<T | undefined> | T | undefined,
  ms: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
