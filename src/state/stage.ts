import { chmodSync, cpSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsernsError } from '../errors/index.js';
import { findUnreachable } from '../system/reachability.js';

/**
 * A staged copy of this package, for code that must run as ANOTHER user (doctor's probe as
 * `--user NAME`) when the install itself is private (a checkout under /root, mode 0700): the
 * package's compiled code (dist/src), its native helper (build/), package.json and its runtime
 * dependencies, copied into a fresh directory that root owns and everyone may read and search
 * (directories 0755, files 0644 or 0755), under the temporary directory. Nothing of the user's
 * own directories is loosened; the copy holds only the package's public files, and is removed by
 * `remove()` (call it in finally).
 *
 * Why a copy and not a file descriptor: the probe is a Node program whose modules import each
 * other by path, so the user must be able to open every one of them; an fd would do for the one
 * helper binary, not for a module graph.
 */
export interface StagedPackage {
  /** The copy's root: `<root>/dist/src/…`, `<root>/build/…`, `<root>/package.json`. */
  root: string;
  remove(): void;
}

/** The package this file belongs to (dist/src/state/stage.js → three levels up). */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** Runtime dependencies of a package directory (name → directory), resolved as Node would, with theirs (transitively). */
export function runtimeDependencies(root: string, seen = new Map<string, string>()): Map<string, string> {
  let manifest: { dependencies?: Record<string, string> };
  try {
    manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  } catch {
    return seen;
  }
  const require = createRequire(join(root, 'package.json'));
  for (const name of Object.keys(manifest.dependencies ?? {})) {
    if (seen.has(name)) continue;
    let dir: string;
    try {
      dir = dirname(require.resolve(`${name}/package.json`));
    } catch {
      continue; // optional or not installed: the code that needs it says so when it runs
    }
    seen.set(name, dir);
    runtimeDependencies(dir, seen);
  }
  return seen;
}

/** Directories 0755; files 0755 when any x bit is set, else 0644; symbolic links untouched. */
function openUp(path: string): void {
  const st = lstatSync(path);
  if (st.isSymbolicLink()) return;
  if (st.isDirectory()) {
    chmodSync(path, 0o755);
    for (const name of readdirSync(path)) openUp(join(path, name));
  } else chmodSync(path, st.mode & 0o111 ? 0o755 : 0o644);
}

/** Every directory from / to `dir` searchable by others (a base others can reach). */
function reachableByOthers(dir: string): boolean {
  try {
    return findUnreachable(dir, { uid: 65534, gid: 65534, groups: [] }, 'search') === undefined;
  } catch {
    return false;
  }
}

/** The temporary directory when others can reach it, else /tmp. */
export function sharedTempBase(): string {
  const base = tmpdir();
  return reachableByOthers(base) ? base : '/tmp';
}

/**
 * Copies `parts` of the package (default: package.json, dist/src, build) and its runtime
 * dependencies (into node_modules/) into a new world-readable directory. `parts` are paths
 * relative to the package root; missing ones are skipped.
 */
export function stagePackage(
  options: {
    packageRoot?: string;
    parts?: readonly string[];
    base?: string;
    /** Copy the runtime dependencies too (default true; several MB for etcd3 and its own). */
    dependencies?: boolean;
  } = {},
): StagedPackage {
  const source = options.packageRoot ?? PACKAGE_ROOT;
  const base = options.base ?? sharedTempBase();
  const root = mkdtempSync(join(base, 'userns-stage-'));
  const remove = () => rmSync(root, { recursive: true, force: true });
  try {
    for (const part of options.parts ?? ['package.json', 'dist/src', 'build']) {
      try {
        lstatSync(join(source, part));
      } catch {
        continue;
      }
      cpSync(join(source, part), join(root, part), { recursive: true });
    }
    const dependencies =
      options.dependencies === false ? new Map<string, string>() : runtimeDependencies(source);
    for (const [name, dir] of dependencies)
      cpSync(dir, join(root, 'node_modules', name), { recursive: true });
    openUp(root);
  } catch (error) {
    remove();
    throw new UsernsError(
      'STAGE_FAILED',
      `cannot stage a copy of userns in ${base}: ${(error as Error).message}`,
      {
        hint: 'set TMPDIR to a directory every user can search (e.g. /tmp) that has free space',
        data: { base },
        cause: error,
      },
    );
  }
  return { root, remove };
}
