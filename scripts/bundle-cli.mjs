// Bundles the CLI into one module, dist/src/cli/main.bundle.js (+ .map), which bin/userns loads
// when it exists (issue 18: start-up). Node 20 loads each ES module through an asynchronous
// pipeline (resolve, realpath, package.json scope lookup, a read on the thread pool, compile):
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
// Usage: node scripts/bundle-cli.mjs  (after tsc; `npm run build` runs it)
import { existsSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cliDir = join(root, 'dist/src/cli');
const entry = join(cliDir, 'main.js');
const outfile = join(cliDir, 'main.bundle.cjs');

let esbuild;
try {
  esbuild = await import('esbuild');
} catch {
  // An install without dev dependencies: bin/userns falls back to the unbundled modules.
  rmSync(outfile, { force: true });
  rmSync(`${outfile}.map`, { force: true });
  console.error('bundle-cli: esbuild is not installed; the CLI runs unbundled (slower start-up)');
  process.exit(0);
}

if (!existsSync(entry)) {
  console.error(`bundle-cli: ${entry} is missing: run tsc first`);
  process.exit(1);
}
await esbuild.build({
  entryPoints: [entry],
  outfile,
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
  logLevel: 'warning',
  legalComments: 'none',
});
