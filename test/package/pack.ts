/**
 * The package as npm packs it: the file list of `npm pack --dry-run`, and a real tarball for the
 * consumer-project test. Both use the build the suite already made (`npm test` runs `npm run
 * build` first), so packing runs no script of ours (`--ignore-scripts`; `prepack` would rebuild).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export interface PackedFile {
  path: string;
  size: number;
  mode: number;
}

export interface PackResult {
  /** The tarball's file name (in `destination` when one was given). */
  filename: string;
  /** Bytes of the .tgz. */
  size: number;
  /** Bytes of the files unpacked. */
  unpackedSize: number;
  files: PackedFile[];
}

/** `npm pack --json` of this repository: the list only, or the tarball written to `destination`. */
export async function pack(destination?: string): Promise<PackResult> {
  const args = ['pack', '--json', '--ignore-scripts', '--silent'];
  args.push(...(destination === undefined ? ['--dry-run'] : ['--pack-destination', destination]));
  const { stdout } = await promisify(execFile)('npm', args, { cwd: ROOT, maxBuffer: 16 << 20 });
  return (JSON.parse(stdout) as PackResult[])[0]!;
}

export interface PackageJson {
  name: string;
  version: string;
  bin: Record<string, string>;
  man: string[];
  exports: Record<string, string | { types: string; default: string }>;
  files: string[];
  dependencies?: Record<string, string>;
}

export function packageJson(): PackageJson {
  return JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as PackageJson;
}

/** The entry points a user imports: `userns`, `userns/idmap`, … (not `userns/package.json`). */
export function entryPoints(
  pkg: PackageJson = packageJson(),
): { specifier: string; types: string; js: string }[] {
  return Object.entries(pkg.exports)
    .filter((entry): entry is [string, { types: string; default: string }] => typeof entry[1] !== 'string')
    .map(([key, target]) => ({
      specifier: key === '.' ? pkg.name : `${pkg.name}/${key.slice(2)}`,
      types: target.types.replace(/^\.\//, ''),
      js: target.default.replace(/^\.\//, ''),
    }));
}
