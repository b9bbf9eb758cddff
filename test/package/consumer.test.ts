/**
 * A new user's project, for real: the packed tarball installed into a fresh temporary project
 * with `--ignore-scripts` and no C compiler (a `cc`, `gcc`, `make`… that fail loudly come first
 * in PATH), a strict TypeScript program type-checked against every entry point with this
 * project's own TypeScript, run as ES modules and through `require()`, and `npx userns run --
 * true` with the helper the package ships.
 *
 * Hermetic: the project's dependencies come from npm's cache, with a lockfile made of this
 * repository's own (its non-dev entries, which `npm ci` here has fetched), installed with
 * `--offline`; only when the cache lacks one does it fall back to the registry (printed).
 *
 * Dependencies with native code (the SQLite binding of the allocation registry) are not built
 * under `--ignore-scripts`: importing `userns`, `userns/idmap` and `userns/spawn` must not load
 * them, and everything that does not use the registry must work.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { entryPoints, type PackageJson, pack, packageJson, ROOT } from './pack.js';

/** Native or registry-only dependencies that importing the main entry points must not load. */
const LAZY_DEPENDENCIES = ['better-sqlite3', 'bindings', 'etcd3', '@grpc/grpc-js'];
/** The entry points that must load none of them. */
const LIGHT_ENTRIES = ['userns', 'userns/idmap', 'userns/spawn'];
const COMPILERS = ['cc', 'gcc', 'g++', 'c++', 'clang', 'make', 'node-gyp', 'aarch64-linux-gnu-gcc'];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runIn(cwd: string, command: string, args: string[], env: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env, maxBuffer: 16 << 20, timeout: 120_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
      resolve({ code, stdout, stderr });
    });
  });
}

function output(r: Run): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

/** package-lock.json for a project that depends on the tarball: this repository's non-dev entries. */
function consumerLockfile(pkg: PackageJson, tarball: string, integrity: string): object {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean; [key: string]: unknown }>;
  };
  const packages: Record<string, unknown> = {
    '': { name: 'consumer', version: '1.0.0', dependencies: { userns: `file:${tarball}` } },
    'node_modules/userns': {
      version: pkg.version,
      resolved: `file:${tarball}`,
      integrity,
      license: 'Apache-2.0',
      dependencies: pkg.dependencies ?? {},
      bin: pkg.bin,
      engines: { node: '>=20' },
    },
  };
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (path === '' || entry.dev === true || !path.startsWith('node_modules/')) continue;
    packages[path] = entry;
  }
  return { name: 'consumer', version: '1.0.0', lockfileVersion: 3, requires: true, packages };
}

/** The strict ESM program: every entry point, and the main API used with its types. */
function esmProgram(entries: { specifier: string }[]): string {
  return `${entries.map((e, i) => `import * as entry${i} from '${e.specifier}';`).join('\n')}
import { createRequire } from 'node:module';
import { IdMap, splitAcrossParent, validateMap, type Extent, type Verdict } from 'userns/idmap';
import { planSpawn, run, spawn, SpawnError, type RunResult, type SpawnPlan } from 'userns/spawn';
import { UsernsError } from 'userns';

const names: Record<string, string[]> = {
${entries.map((e, i) => `  '${e.specifier}': Object.keys(entry${i}).sort(),`).join('\n')}
};

// The ID-map core: split a request across a nested parent, as the kernel needs it.
const parentExtents: Extent[] = [
  { inside: 0, outside: 1000, count: 1 },
  { inside: 1, outside: 100000, count: 65536 },
];
const parent = new IdMap(parentExtents);
const split: IdMap = splitAcrossParent(new IdMap([{ inside: 0, outside: 0, count: 100 }]), parent, 'uid');
const verdict: Verdict = validateMap(split, { kind: 'uid', parent });

// spawn, run and planSpawn take (command, args, options).
const plan: SpawnPlan = await planSpawn('true', [], { userns: 'self' });
const result: RunResult = await run('cat', ['/proc/self/uid_map'], { userns: 'self' });
const child = spawn('true', [], { userns: 'self', stdio: 'ignore' });
const { exitCode } = await child;
let error: unknown;
try {
  await run('no-such-command-in-this-consumer', []);
} catch (e) {
  error = e;
}
const version: string = (createRequire(import.meta.url)('userns/package.json') as { version: string }).version;

console.log(
  JSON.stringify({
    exports: names,
    split: split.toString(),
    valid: verdict.ok,
    plan: plan.command,
    uidMap: result.uidMap.toString(),
    exitCode,
    error: error instanceof SpawnError && error instanceof UsernsError ? error.code : String(error),
    version,
  }),
);
`;
}

/** The same entry points through require() (Node 20.19+ loads ES modules synchronously). */
function cjsProgram(entries: { specifier: string }[]): string {
  return `${entries.map((e, i) => `import entry${i} = require('${e.specifier}');`).join('\n')}
import idmap = require('userns/idmap');

const map: InstanceType<typeof idmap.IdMap> = new idmap.IdMap([{ inside: 0, outside: 100000, count: 65536 }]);
const names: Record<string, string[]> = {
${entries.map((e, i) => `  '${e.specifier}': Object.keys(entry${i}).sort(),`).join('\n')}
};
const version: string = (require('userns/package.json') as { version: string }).version;
console.log(JSON.stringify({ exports: names, outside: map.toOutside(5), version }));
`;
}

/** Imports the light entry points, then lists the lazy dependencies Node has loaded. */
function lazyProgram(how: 'import' | 'require'): string {
  const load =
    how === 'import'
      ? LIGHT_ENTRIES.map((s) => `await import('${s}');`).join('\n')
      : LIGHT_ENTRIES.map((s) => `require('${s}');`).join('\n');
  return `const { createRequire } = require('node:module');
${how === 'import' ? '(async () => {' : ''}
${load}
const loaded = Object.keys(createRequire(__filename).cache).filter((path) =>
  ${JSON.stringify(LAZY_DEPENDENCIES)}.some((name) => path.includes('/node_modules/' + name + '/')),
);
console.log(JSON.stringify(loaded));
${how === 'import' ? '})();' : ''}
`;
}

// Each step runs npm, tsc or several Node processes: 10-20 s alone, over a minute on a loaded
// machine; so each test names its own timeout (the runner's default is 45 s).
const SLOW = { timeout: 240_000 };

describe('a consumer project installs the packed tarball', () => {
  const base = mkdtempSync(join(tmpdir(), 'userns-consumer-'));
  after(() => rmSync(base, { recursive: true, force: true }));
  const project = join(base, 'consumer');
  const stubs = join(base, 'no-compiler');
  const marker = join(base, 'compiler-called');
  const pkg = packageJson();
  const entries = entryPoints(pkg);
  let env: NodeJS.ProcessEnv;
  let installed = false;

  before(() => {
    mkdirSync(project);
    mkdirSync(stubs);
    for (const name of COMPILERS) {
      const stub = join(stubs, name);
      writeFileSync(
        stub,
        `#!/bin/sh\necho "$0 $*" >> '${marker}'\necho "${name}: no compiler here (a consumer install must need none)" >&2\nexit 97\n`,
      );
      chmodSync(stub, 0o755);
    }
    env = {
      ...process.env,
      PATH: `${stubs}:${process.env.PATH}`,
      CC: join(stubs, 'cc'),
      CXX: join(stubs, 'c++'),
    };
    delete env.USERNS_HELPER;
    delete env.NODE_OPTIONS;
    for (const key of Object.keys(env)) if (key.toLowerCase().startsWith('npm_')) delete env[key];
  });

  test('npm pack, then npm ci --ignore-scripts in a fresh project without a compiler', SLOW, async (t) => {
    const packed = await pack(base);
    const tarball = packed.filename;
    const integrity = `sha512-${createHash('sha512')
      .update(readFileSync(join(base, tarball)))
      .digest('base64')}`;
    t.diagnostic(
      `${tarball}: ${(packed.size / 1024).toFixed(0)} KiB packed, ${(packed.unpackedSize / 1024).toFixed(0)} KiB unpacked, ${packed.files.length} files`,
    );
    writeFileSync(
      join(project, 'package.json'),
      JSON.stringify({
        name: 'consumer',
        version: '1.0.0',
        private: true,
        dependencies: { userns: `file:../${tarball}` },
      }),
    );
    writeFileSync(
      join(project, 'package-lock.json'),
      JSON.stringify(consumerLockfile(pkg, `../${tarball}`, integrity)),
    );
    const args = ['ci', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'];
    let r = await runIn(project, 'npm', [...args, '--offline'], env);
    if (r.code !== 0 && /ENOTCACHED|offline/i.test(r.stderr)) {
      t.diagnostic('npm cache lacks a dependency: installing it from the registry');
      r = await runIn(project, 'npm', [...args, '--prefer-offline'], env);
    }
    assert.equal(r.code, 0, output(r));
    assert.ok(existsSync(join(project, 'node_modules/userns/package.json')));
    assert.ok(existsSync(join(project, 'node_modules/.bin/userns')), 'npm linked the bin');
    installed = true;
  });

  test(
    'a strict TypeScript program type-checks against every entry point (ESM and require)',
    SLOW,
    async (t) => {
      if (!installed) return t.skip('not installed');
      writeFileSync(join(project, 'esm.mts'), esmProgram(entries));
      writeFileSync(join(project, 'cjs.cts'), cjsProgram(entries));
      writeFileSync(
        join(project, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            strict: true,
            noUncheckedIndexedAccess: true,
            exactOptionalPropertyTypes: true,
            noImplicitOverride: true,
            module: 'nodenext',
            moduleResolution: 'nodenext',
            target: 'es2022',
            lib: ['es2023'],
            types: ['node'],
            typeRoots: [join(ROOT, 'node_modules/@types')],
            // Our declarations are checked too, as a consumer with skipLibCheck off sees them.
            skipLibCheck: false,
            outDir: 'out',
          },
          files: ['esm.mts', 'cjs.cts'],
        }),
      );
      const r = await runIn(
        project,
        process.execPath,
        [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', '.'],
        env,
      );
      assert.equal(r.code, 0, output(r));
    },
  );

  test('it runs: ES modules and require() see the same exports; the API works', SLOW, async (t) => {
    if (!existsSync(join(project, 'out/esm.mjs'))) return t.skip('not compiled');
    const esm = await runIn(project, process.execPath, ['out/esm.mjs'], env);
    assert.equal(esm.code, 0, output(esm));
    const cjs = await runIn(project, process.execPath, ['out/cjs.cjs'], env);
    assert.equal(cjs.code, 0, output(cjs));
    const fromImport = JSON.parse(esm.stdout);
    const fromRequire = JSON.parse(cjs.stdout);
    for (const { specifier } of entries) {
      assert.ok(fromImport.exports[specifier].length > 0, `${specifier} exports something`);
      assert.deepEqual(fromRequire.exports[specifier], fromImport.exports[specifier], specifier);
    }
    assert.equal(fromImport.split, '0:0:1,1:1:99');
    assert.equal(fromImport.valid, true);
    assert.deepEqual(fromImport.plan, ['true']);
    assert.match(fromImport.uidMap, /^0:\d+:1$/);
    assert.equal(fromImport.exitCode, 0);
    assert.equal(fromImport.error, 'COMMAND_NOT_FOUND');
    assert.equal(fromImport.version, pkg.version);
    assert.equal(fromRequire.outside, 100005);
    assert.equal(fromRequire.version, pkg.version);
  });

  test(`importing ${LIGHT_ENTRIES.join(', ')} loads no native or registry dependency`, SLOW, async (t) => {
    if (!installed) return t.skip('not installed');
    for (const how of ['import', 'require'] as const) {
      writeFileSync(join(project, `lazy-${how}.cjs`), lazyProgram(how));
      const r = await runIn(project, process.execPath, [`lazy-${how}.cjs`], env);
      assert.equal(r.code, 0, output(r));
      assert.deepEqual(JSON.parse(r.stdout), [], `${how}: loaded ${r.stdout}`);
    }
  });

  test(
    'npx userns: run -- true with the shipped helper, --version, map split, named namespaces',
    SLOW,
    async (t) => {
      if (!installed) return t.skip('not installed');
      const npx = (...args: string[]) =>
        runIn(project, 'npx', ['--offline', '--no', '--', 'userns', ...args], env);
      const r = await npx('run', '--', 'true');
      assert.equal(r.code, 0, output(r));
      const dry = await npx('run', '--dry-run', '--json', '--', 'true');
      assert.equal(dry.code, 0, output(dry));
      assert.equal(
        JSON.parse(dry.stdout).helper !== undefined,
        true,
        'the helper arguments are planned (the packaged helper is used)',
      );
      const version = await npx('--version');
      assert.equal(version.stdout, `userns ${pkg.version}\n`);
      const split = await npx('map', 'split', '--parent', '0:1000:1,1:100000:65536', '0:0:100');
      assert.equal(split.stdout, '0 0 1\n1 1 99\n', output(split));
      const state = join(base, 'state');
      const create = await npx('create', '--root', state, 'box');
      assert.equal(create.code, 0, output(create));
      try {
        const exec = await npx('exec', '--root', state, 'box', '--', 'cat', '/proc/self/uid_map');
        assert.equal(exec.code, 0, output(exec));
        assert.match(exec.stdout, /^\s*0\s+0\s+4294967295\s*$/);
      } finally {
        const rm = await npx('rm', '--root', state, 'box');
        assert.equal(rm.code, 0, output(rm));
      }
    },
  );

  test(
    'without its native binding (--ignore-scripts), the registry fails with one typed error',
    SLOW,
    async (t) => {
      if (!installed) return t.skip('not installed');
      if (pkg.dependencies?.['better-sqlite3'] === undefined) {
        return t.skip('the package has no SQLite binding (better-sqlite3) among its dependencies');
      }
      if (existsSync(join(project, 'node_modules/better-sqlite3/build/Release/better_sqlite3.node'))) {
        return t.skip('the binding came prebuilt in the package: nothing is missing');
      }
      const r = await runIn(
        project,
        'npx',
        ['--offline', '--no', '--', 'userns', 'alloc', 'list', '--root', join(base, 'alloc-state'), '--json'],
        env,
      );
      assert.equal(r.code, 1, output(r));
      const body = JSON.parse(r.stdout);
      assert.equal(body.ok, false);
      assert.match(`${body.message} ${body.hint}`, /better-sqlite3/);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    },
  );

  test('no compiler was called', () => {
    assert.equal(existsSync(marker), false, existsSync(marker) ? readFileSync(marker, 'utf8') : '');
  });
});
