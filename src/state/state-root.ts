import { existsSync, lstatSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { StateRootError } from '../errors/index.js';

/**
 * The state root: where named namespaces (`<root>/ns/<name>/`) and the ID allocation registry
 * (`<root>/alloc/`) live. Runtime state, on tmpfs, gone at reboot like the namespaces it names.
 *
 * - root: /run/userns
 * - others: $XDG_RUNTIME_DIR/userns; without XDG_RUNTIME_DIR, /run/user/<uid>/userns when that
 *   directory exists, else /tmp/userns-<uid> (ensureStateRoot refuses it if someone else made it).
 * - `--root DIR` overrides all of these.
 */

export function defaultStateRoot(
  env: NodeJS.ProcessEnv = process.env,
  euid: number = process.geteuid?.() ?? 0,
): string {
  if (euid === 0) return '/run/userns';
  const xdg = env.XDG_RUNTIME_DIR;
  if (xdg?.startsWith('/')) return join(xdg, 'userns');
  const runUser = `/run/user/${euid}`;
  if (existsSync(runUser)) return join(runUser, 'userns');
  return `/tmp/userns-${euid}`;
}

/**
 * Checks that `dir` is a real directory (not a symlink) owned by this user and not writable by
 * anyone else, creating it (mode 0700, parents as needed) when missing. Returns the absolute path.
 */
export function ensurePrivateDir(dir: string, what = 'state directory'): string {
  const path = resolve(dir);
  const euid = process.geteuid?.() ?? 0;
  try {
    mkdirSync(path, { recursive: true, mode: 0o700 });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EEXIST') {
      throw new StateRootError(
        'STATE_ROOT_UNUSABLE',
        `cannot create the ${what} ${path}: ${(error as Error).message}`,
        {
          hint: 'choose another directory with --root DIR',
          data: { path, errno: code ?? null },
          cause: error,
        },
      );
    }
  }
  const st = lstatSync(path);
  if (st.isSymbolicLink()) {
    throw new StateRootError(
      'STATE_ROOT_UNSAFE',
      `the ${what} ${path} is a symbolic link; userns refuses to follow it`,
      {
        hint: 'remove the link, or choose another directory with --root DIR',
        data: { path },
      },
    );
  }
  if (!st.isDirectory()) {
    throw new StateRootError('STATE_ROOT_UNSAFE', `the ${what} ${path} exists and is not a directory`, {
      hint: 'remove it, or choose another directory with --root DIR',
      data: { path },
    });
  }
  if (st.uid !== euid) {
    throw new StateRootError(
      'STATE_ROOT_UNSAFE',
      `the ${what} ${path} is owned by uid ${st.uid}, not by you (uid ${euid})`,
      {
        hint: 'someone else created it: remove it, or choose another directory with --root DIR',
        data: { path, owner: st.uid, euid },
      },
    );
  }
  if ((st.mode & 0o022) !== 0) {
    throw new StateRootError(
      'STATE_ROOT_UNSAFE',
      `the ${what} ${path} is writable by others (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')})`,
      {
        hint: `chmod 700 ${path}, or choose another directory with --root DIR`,
        data: { path, mode: st.mode & 0o7777 },
      },
    );
  }
  return path;
}

/** mkdir -p the state root (mode 0700) and refuse a symlink or a directory someone else owns. */
export function ensureStateRoot(root: string): string {
  return ensurePrivateDir(root, 'state root');
}
