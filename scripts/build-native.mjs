// Builds the native helper (src/native/*.c: userns-helper.c and the parts it links in), one
// executable per platform, into build/linux-<arch>/userns-helper (the directory names follow
// Node's process.platform and process.arch; src/native/helper-binary.ts picks one at run time):
//
//   - for this machine's architecture with $CC or `cc`;
//   - for the other shipped architecture (x64 <-> arm64) with Debian's cross compiler when it is
//     installed (gcc-aarch64-linux-gnu + libc6-dev-arm64-cross on x64), else skipped with a note.
//
// Every helper is linked statically (no dynamic loader at each start, about 0.3 ms per spawn in
// bench/spawn.ts; and one binary runs on any Linux distribution and C library) and stripped (-s).
// A target is rebuilt only when a source or this script is newer than its binary, so
// `npm run build` stays fast.
//
// Usage: node scripts/build-native.mjs [--all]
//   --all   (npm's prepack) every shipped platform is required, static and stripped: a package
//           must never lack a helper. Without it a missing cross compiler is a note, and a host
//           C library without libc.a falls back to a dynamic link (a note too).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = join(root, 'src/native');
const requireAll = process.argv.includes('--all');

/** The platforms the package ships a prebuilt helper for, with Debian's cross compiler for each. */
const SHIPPED = {
  x64: { cross: 'x86_64-linux-gnu-gcc', debian: 'gcc-x86-64-linux-gnu libc6-dev-amd64-cross' },
  arm64: { cross: 'aarch64-linux-gnu-gcc', debian: 'gcc-aarch64-linux-gnu libc6-dev-arm64-cross' },
};

const sources = readdirSync(nativeDir)
  .filter((name) => name.endsWith('.c') || name.endsWith('.h'))
  .map((name) => join(nativeDir, name));
if (sources.length === 0) process.exit(0);
if (process.platform !== 'linux') {
  console.error(`userns: the native helper is Linux-only; not built on ${process.platform}.`);
  process.exit(requireAll ? 1 : 0);
}

function mtime(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

function have(command) {
  return spawnSync('sh', ['-c', 'command -v "$1"', 'sh', command], { stdio: 'ignore' }).status === 0;
}

const thisScript = fileURLToPath(import.meta.url);
const newestInput = Math.max(...sources.map(mtime), mtime(thisScript));

/** The targets: this machine's architecture first, then the other shipped ones. */
const targets = [{ arch: process.arch, cc: process.env.CC || 'cc', host: true }];
for (const [arch, { cross }] of Object.entries(SHIPPED)) {
  if (arch !== process.arch) targets.push({ arch, cc: cross, host: false });
}

let failed = false;
for (const target of targets) {
  const output = join(root, 'build', `linux-${target.arch}`, 'userns-helper');
  const shown = relative(root, output);
  // --all rebuilds every time: a binary left by an earlier, lenient build may be dynamic.
  if (!requireAll && mtime(output) >= newestInput) continue;
  if (!have(target.cc)) {
    const install = target.host ? 'gcc libc6-dev' : SHIPPED[target.arch].debian;
    const fatal = target.host || requireAll;
    const what = fatal
      ? `cannot build ${shown}${target.host ? '' : ' (a package needs every shipped helper)'}`
      : `skipped ${shown}`;
    console.error(`userns: ${what}: no C compiler '${target.cc}' (Debian: apt-get install ${install})`);
    if (fatal) failed = true;
    continue;
  }
  mkdirSync(dirname(output), { recursive: true });
  const tmp = `${output}.tmp`;
  const flags = [
    '-std=c11',
    '-O2',
    '-Wall',
    '-Wextra',
    '-Werror',
    '-D_GNU_SOURCE',
    '-s',
    '-o',
    tmp,
    ...sources.filter((source) => source.endsWith('.c')),
  ];
  const staticBuild = spawnSync(target.cc, [...flags, '-static'], { encoding: 'utf8' });
  if (staticBuild.status !== 0) {
    if (requireAll || !target.host) {
      process.stderr.write(staticBuild.stderr ?? '');
      console.error(
        `userns: linking ${shown} statically with '${target.cc}' failed (Debian: the C library's static part is in libc6-dev, or the libc6-dev-*-cross package).`,
      );
      failed = true;
      rmSync(tmp, { force: true });
      continue;
    }
    // Without libc.a, a from-source build for this machine still works, dynamically linked.
    try {
      execFileSync(target.cc, flags, { stdio: 'inherit' });
    } catch {
      console.error(
        `userns: building the native helper with '${target.cc}' failed; install a C compiler (Debian: apt-get install gcc libc6-dev).`,
      );
      rmSync(tmp, { force: true });
      process.exit(1);
    }
    console.error(`userns: ${shown} is linked dynamically (no static C library here).`);
  }
  renameSync(tmp, output);
}
// The helper's location before per-platform directories: remove it so nothing runs a stale copy.
rmSync(join(root, 'build/userns-helper'), { force: true });
process.exit(failed ? 1 : 0);
