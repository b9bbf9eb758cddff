/**
 * Where a named namespace lives on disk, runc-style, under the state root:
 *
 *   <root>/ns/<name>/state.json   the state (NamespaceState), written atomically (temp + fsync + rename)
 *   <root>/ns/<name>/creating     present until the create committed (who and when, for people)
 *   <root>/ns/<name>/hold/<type>  `--hold mount`: the bind-mounted namespace files (mnt, user, net, …)
 *   <root>/ns/@locks/<name>       the flock(2) lock that serialises create and rm of <name> (src/state/lock.ts)
 *   <root>/ns/@trash.<name>.<hex> an entry being removed (renamed away first, so removal is atomic)
 *
 * ("@" is not allowed in names, so these never collide with an entry.) Names are validated
 * (src/state/names.ts), the root and <root>/ns are private directories of the caller, files are
 * opened with O_NOFOLLOW: no path derived from a name ever leaves the root.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  unlinkSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { fsyncDirectory } from '../state/atomic.js';
import { defaultStateRoot, ensurePrivateDir, ensureStateRoot } from '../state/state-root.js';

const { O_RDONLY, O_NOFOLLOW } = constants;

/** The state root of named namespaces. */
export interface RootOption {
  /** The state root (default: $XDG_RUNTIME_DIR/userns, /run/userns for root). */
  root?: string;
}

/** The files of one entry (see above). */
export interface Paths {
  root: string;
  nsDir: string;
  entry: string;
  state: string;
  marker: string;
  lock: string;
  /** The directory of the bind-mounted namespace files (`--hold mount`). */
  hold: string;
}

export function pathsFor(name: string, root: string): Paths {
  const nsDir = join(root, 'ns');
  const entry = join(nsDir, name);
  return {
    root,
    nsDir,
    entry,
    state: join(entry, 'state.json'),
    marker: join(entry, 'creating'),
    lock: join(nsDir, '@locks', name),
    hold: join(entry, 'hold'),
  };
}

/**
 * The state root, created (0700, with ns/ and ns/@locks/) when `create` is true; undefined when
 * it is missing and not created. Throws StateRootError for a root that is not safe to use.
 */
export function namespaceRoot(options: RootOption, create: boolean): string | undefined {
  const root = options.root ?? defaultStateRoot();
  if (create) {
    const r = ensureStateRoot(root);
    ensurePrivateDir(join(r, 'ns'), 'namespace directory');
    ensurePrivateDir(join(r, 'ns', '@locks'), 'lock directory');
    return r;
  }
  const r = resolve(root);
  // Existing: checked as strictly as create would (a symlinked or foreign root is refused),
  // without creating anything (and without a syscall more than needed: exec is a hot path).
  const euid = process.geteuid?.() ?? 0;
  for (const dir of [r, join(r, 'ns')]) {
    const st = lstatSync(dir, { throwIfNoEntry: false });
    if (st === undefined) return undefined;
    if (st.isSymbolicLink() || !st.isDirectory() || st.uid !== euid || (st.mode & 0o022) !== 0) {
      // Let the full check explain what is wrong.
      ensurePrivateDir(dir, dir === r ? 'state root' : 'namespace directory');
    }
  }
  return r;
}

export function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Reads a small regular file without following a symlink; undefined when it does not exist. */
export function readNoFollow(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, O_RDONLY | O_NOFOLLOW);
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
  try {
    if (!fstatSync(fd).isFile())
      throw Object.assign(new Error(`${path} is not a regular file`), { code: 'EINVAL' });
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/** Renames the entry away (atomic disappearance), then deletes it; never follows a link. */
export function removeEntry(paths: Paths): void {
  const trash = join(paths.nsDir, `@trash.${randomBytes(6).toString('hex')}`);
  try {
    renameSync(paths.entry, trash);
  } catch (error) {
    if (isMissing(error)) return;
    throw error;
  }
  fsyncDirectory(paths.nsDir);
  const st = lstatSync(trash);
  if (st.isDirectory()) rmSync(trash, { recursive: true, force: true });
  else unlinkSync(trash);
}
