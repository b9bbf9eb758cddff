// Builds the one native helper (src/native/userns-helper.c) with the machine's C compiler.
// Rebuilds only when the source is newer than the binary, so `npm run build` stays fast.
import { execFileSync } from 'node:child_process';
import { mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'src/native/userns-helper.c');
const output = join(root, 'build/userns-helper');

function mtime(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

if (mtime(source) < 0) {
  process.exit(0);
}
if (
  mtime(output) >= mtime(source) &&
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
  source,
];
try {
  execFileSync(cc, flags, { stdio: 'inherit' });
} catch {
  console.error(
    `userns: building the native helper with '${cc}' failed; install a C compiler (Debian: apt-get install gcc).`,
  );
  process.exit(1);
}
execFileSync('mv', ['-f', `${output}.tmp`, output]);
