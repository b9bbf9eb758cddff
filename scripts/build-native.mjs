// Builds the one native helper executable (src/native/*.c: userns-helper.c and the parts it
// links in) with the machine's C compiler. Rebuilds only when a source is newer than the binary,
// so `npm run build` stays fast.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = join(root, 'src/native');
const sources = readdirSync(nativeDir)
  .filter((name) => name.endsWith('.c') || name.endsWith('.h'))
  .map((name) => join(nativeDir, name));
const output = join(root, 'build/userns-helper');

function mtime(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

if (sources.length === 0) {
  process.exit(0);
}
if (
  sources.every((source) => mtime(output) >= mtime(source)) &&
  mtime(output) >= mtime(import.meta.filename ?? fileURLToPath(import.meta.url))
) {
  process.exit(0);
}
mkdirSync(dirname(output), { recursive: true });
const cc = process.env.CC || 'cc';
const flags = [
  '-std=c11',
  '-O2',
  '-Wall',
  '-Wextra',
  '-Werror',
  '-D_GNU_SOURCE',
  '-o',
  `${output}.tmp`,
  ...sources.filter((source) => source.endsWith('.c')),
];
// Linked statically when the C library allows it: no dynamic loader at every start saves about
// 0.3 ms per spawn (bench/spawn.ts). Falls back to a dynamic link (e.g. without libc.a).
try {
  execFileSync(cc, [...flags, '-static'], { stdio: ['ignore', 'ignore', 'pipe'] });
} catch {
  try {
    execFileSync(cc, flags, { stdio: 'inherit' });
  } catch {
    console.error(
      `userns: building the native helper with '${cc}' failed; install a C compiler (Debian: apt-get install gcc).`,
    );
    process.exit(1);
  }
}
execFileSync('mv', ['-f', `${output}.tmp`, output]);
