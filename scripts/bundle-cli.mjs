// Bundles the CLI into dist/src/cli/main.bundle.cjs (+ .map, + .cache), which bin/userns loads
// when it exists (issue 18: start-up), and into two smaller bundles of one command each,
// run.bundle.cjs and map.bundle.cjs, which bin/userns picks for those commands (see BUNDLES).
// Node 20 loads each ES module through an asynchronous pipeline (resolve, realpath, package.json scope lookup, a read on the thread pool, compile):
// the ~50 modules of `userns run` cost more than the work the command does. One file is read and
// compiled once; V8 still compiles each function lazily, so the commands that do not run cost
// little more than a scan of their text.
//
// Everything but npm packages (better-sqlite3, the etcd client: loaded by the commands that use
// them) is inside, so every class exists once and `instanceof` holds. The bundle sits beside
// main.js and `import.meta.url` becomes the bundle's own URL, so every
// `new URL('../../../', import.meta.url)` (the package root) still points where it did; no module
// of the CLI may use import.meta.url for its own file (src/doctor/probe.ts finds itself from the
// package root).
//
// The source map maps to src/**/*.ts (through tsc's maps); src/cli/stack.ts applies it to the
// stack of an internal error, so bug reports name TypeScript files and lines.
//
// V8's code cache of each bundle (<bundle>.cache) is written last, by this Node, after the
// commands in its `warm` list ran through it (bin/userns: writeCodeCache): with it, a start-up
// skips compiling the bundle and the functions those commands use. A bundle and its cache are
// written together here and nowhere else (V8 checks only the source's length): the old cache
// goes before the new bundle is written, the new one comes after it.
//
// Usage: node scripts/bundle-cli.mjs  (after tsc; `npm run build` runs it)
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cliDir = join(root, 'dist/src/cli');
const entry = join(cliDir, 'main.js');

/** The command modules main.js imports on demand (its LOADERS: the only `import()`s there). */
const COMMAND_MODULE = /^\.\/([a-z]+)\.js$/;

/**
 * The bundles. `only`: the one command a bundle holds (main.js's loaders of the others, and
 * `absent` modules, become stubs that throw: bin/userns never sends them there). `warm`: commands
 * without side effects whose functions the code cache holds compiled.
 *
 * Measured (in-process, bundle read + compiled + evaluated, a loaded 2-core machine, 10 runs):
 * the whole CLI (570 kB minified) took a median 60 ms with its cache, run.bundle.cjs (210 kB)
 * 19 ms. The allocator (`run --userns auto:…`, 140 kB) is left out of the run bundle:
 * bin/userns sends a command line that mentions `auto:` to the whole CLI.
 */
const BUNDLES = [
  {
    name: 'main',
    warm: [
      ['run', '--dry-run', '--', 'true'],
      ['map', 'split', '--parent', 'self', '0:0:100'],
    ],
  },
  { name: 'run', only: 'run', absent: [/\/alloc\/auto\.js$/], warm: [['run', '--dry-run', '--', 'true']] },
  { name: 'map', only: 'map', warm: [['map', 'split', '--parent', 'self', '0:0:100']] },
];

const outfile = (name) => join(cliDir, `${name}.bundle.cjs`);
const removeBundle = (name) => {
  for (const suffix of ['', '.map', '.cache']) rmSync(`${outfile(name)}${suffix}`, { force: true });
};
for (const { name } of BUNDLES) rmSync(`${outfile(name)}.cache`, { force: true });

let esbuild;
try {
  esbuild = await import('esbuild');
} catch {
  // An install without dev dependencies: bin/userns falls back to the unbundled modules.
  for (const { name } of BUNDLES) removeBundle(name);
  console.error('bundle-cli: esbuild is not installed; the CLI runs unbundled (slower start-up)');
  process.exit(0);
}

if (!existsSync(entry)) {
  console.error(`bundle-cli: ${entry} is missing: run tsc first`);
  process.exit(1);
}

/** What main.js imports beside a command's own module (its LOADERS). */
const COMPANIONS = { run: ['../spawn/spawn.js'] };

/**
 * The command table (commands.js) of a one-command bundle: only that command's entries (`map`
 * and every `map …`), MAPPING and PROGRAM; the rest of the table is help text that bundle never
 * prints (a fifth of a one-command bundle, read and compiled at every start). Built from the
 * compiled table itself, as JSON, which must give back the same values.
 */
async function commandTableFor(only) {
  const table = await import(pathToFileURL(join(cliDir, 'commands.js')).href);
  const keep = Object.fromEntries(
    Object.entries(table.COMMANDS).filter(([name]) => name === only || name.startsWith(`${only} `)),
  );
  const exported = {
    MAPPING: table.MAPPING,
    COMMANDS: keep,
    TOP_COMMANDS: table.TOP_COMMANDS,
    PROGRAM: table.PROGRAM,
  };
  const names = Object.keys(table).sort().join(',');
  if (names !== 'COMMANDS,MAPPING,PROGRAM,TOP_COMMANDS')
    throw new Error(`bundle-cli: commands.js exports ${names}; the one-command table knows only four`);
  for (const [name, value] of Object.entries(exported))
    assert.deepStrictEqual(JSON.parse(JSON.stringify(value)), name === 'COMMANDS' ? keep : value);
  return Object.entries(exported)
    .map(([name, value]) => `export const ${name} = ${JSON.stringify(value)};`)
    .join('\n');
}

/** Replaces modules a one-command bundle leaves out by a module whose every use throws. */
function leaveOut(bundle) {
  return {
    name: 'leave-out',
    setup(build) {
      if (bundle.only === undefined) return;
      build.onResolve({ filter: /^\.\.?\/[a-z/-]+\.js$/ }, (args) => {
        if (args.kind !== 'dynamic-import' || !args.importer.endsWith('/cli/main.js')) return undefined;
        const command = COMMAND_MODULE.exec(args.path)?.[1];
        if (command === bundle.only || COMPANIONS[bundle.only]?.includes(args.path)) return undefined;
        return { path: args.path, namespace: 'left-out' };
      });
      for (const filter of bundle.absent ?? [])
        build.onResolve({ filter }, (args) => ({ path: args.path, namespace: 'left-out' }));
      build.onLoad({ filter: /\/cli\/commands\.js$/ }, async () => ({
        loader: 'js',
        contents: await commandTableFor(bundle.only),
      }));
      // What main.js (`main`) and run.js (`withAutoUserns`) take from a left-out module.
      build.onLoad({ filter: /.*/, namespace: 'left-out' }, (args) => ({
        loader: 'js',
        contents: `export function main() { throw new Error(${JSON.stringify(
          `${bundle.name}.bundle.cjs holds no ${args.path}: bin/userns chose the wrong bundle`,
        )}); }\nexport const withAutoUserns = main;\n`,
      }));
    },
  };
}

for (const bundle of BUNDLES) {
  await esbuild.build({
    entryPoints: [entry],
    outfile: outfile(bundle.name),
    bundle: true,
    platform: 'node',
    // CommonJS: a bundled module's imports (node:crypto, node:child_process, …) then run when the
    // module is first used, not all at start as hoisted ES imports would.
    format: 'cjs',
    define: { 'import.meta.url': '__bundleUrl' },
    banner: { js: 'const __bundleUrl = require("node:url").pathToFileURL(__filename).href;' },
    target: 'node20',
    packages: 'external',
    sourcemap: 'linked',
    // Paths in the map are relative to the map; the sources themselves are in the package (src/).
    sourcesContent: false,
    // Whitespace and comments out, names kept (stack traces and a debugger show real names): a
    // bundle is read and turned into a string on every start, and that costs by the byte.
    minifyWhitespace: true,
    minifySyntax: true,
    charset: 'ascii',
    logLevel: 'warning',
    legalComments: 'none',
    plugins: [leaveOut(bundle)],
  });
}

// A child Node without NODE_OPTIONS: V8 rejects a cache made under other flags.
const env = { ...process.env };
delete env.NODE_OPTIONS;
for (const bundle of BUNDLES) {
  const made = spawnSync(
    process.execPath,
    [
      '-e',
      `require(${JSON.stringify(join(root, 'bin/userns'))}).writeCodeCache(${JSON.stringify(bundle.name)}, ${JSON.stringify(bundle.warm)})`,
    ],
    { env, stdio: ['ignore', 'ignore', 'inherit'] },
  );
  if (made.status !== 0) {
    // The CLI works without it, only slower to start; the build says so and goes on.
    rmSync(`${outfile(bundle.name)}.cache`, { force: true });
    console.error(
      `bundle-cli: no code cache for ${bundle.name}.bundle.cjs (exit ${made.status ?? made.signal}): it is compiled on each start`,
    );
  }
}
