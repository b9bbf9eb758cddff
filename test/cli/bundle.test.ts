/**
 * The CLI's bundle (scripts/bundle-cli.mjs): built by `npm run build`, what bin/userns runs, and
 * its internal errors still name TypeScript files and lines (src/cli/stack.ts).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { PassThrough } from 'node:stream';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { COMMANDS } from '../../src/cli/commands.js';
import type { CliIo } from '../../src/cli/common.js';
import { main as unbundledMain } from '../../src/cli/main.js';
import { mapStack } from '../../src/cli/stack.js';

const BUNDLE = fileURLToPath(new URL('../../src/cli/main.bundle.cjs', import.meta.url));
const require = createRequire(import.meta.url);
const BIN = fileURLToPath(new URL('../../../bin/userns', import.meta.url));

/** bin/userns's exports when it is required rather than run. */
interface Entry {
  bundleFor(argv: string[]): string;
  bundlePath(name: string): string;
  loadBundle(
    name: string,
  ): { exports: { main: typeof unbundledMain }; script: { cachedDataRejected?: boolean } } | undefined;
}
const entry = require(BIN) as Entry;

function bufferIo(overrides: Partial<CliIo> = {}): CliIo & { out(): string; err(): string } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  stderr.on('data', (d: Buffer) => {
    err += d.toString();
  });
  return {
    stdout,
    stderr,
    stdin: new PassThrough(),
    env: {},
    ...overrides,
    out: () => out,
    err: () => err,
  };
}

/** A bundle's main answers argv with the exit code, output and errors of the unbundled modules. */
async function assertSameAsUnbundled(bundled: { main: typeof unbundledMain }, argv: string[]): Promise<void> {
  const a = bufferIo();
  const b = bufferIo();
  const codeA = await bundled.main(argv, a);
  const codeB = await unbundledMain(argv, b);
  assert.equal(codeA, codeB, argv.join(' '));
  assert.equal(a.out(), b.out(), argv.join(' '));
  assert.equal(a.err(), b.err(), argv.join(' '));
}

describe('the CLI bundle', { timeout: 30_000 }, () => {
  test('npm run build made it (esbuild is a dev dependency), with its source map', () => {
    assert.ok(existsSync(BUNDLE), `${BUNDLE} is missing: the build did not bundle the CLI`);
    assert.ok(existsSync(`${BUNDLE}.map`), 'the bundle has no source map');
  });

  test('gives what the unbundled modules give', async () => {
    const bundled = require(BUNDLE) as { main: typeof unbundledMain };
    for (const argv of [
      ['map', 'split', '--parent', '0:1000:1,1:100000:65536', '0:0:100'],
      ['map', 'validate', '--json', '0:1000:10,5:5000:1'],
      ['nonsense'],
    ]) {
      await assertSameAsUnbundled(bundled, argv);
    }
  });

  test('holds every command of the command table: each --help as the unbundled modules print it', async () => {
    const bundled = require(BUNDLE) as { main: typeof unbundledMain };
    const names = Object.keys(COMMANDS);
    assert.ok(names.length > 20, 'the command table');
    for (const name of names) {
      const argv = [...name.split(' '), '--help'];
      const a = bufferIo();
      const b = bufferIo();
      const codeA = await bundled.main(argv, a);
      const codeB = await unbundledMain(argv, b);
      assert.equal(codeA, 0, `${argv.join(' ')}: ${a.err()}`);
      assert.equal(codeA, codeB, argv.join(' '));
      assert.equal(a.out(), b.out(), argv.join(' '));
      assert.ok(a.out().length > 0, argv.join(' '));
    }
  });

  test('an internal error prints a stack with TypeScript positions', async () => {
    const bundled = require(BUNDLE) as { main: typeof unbundledMain };
    const io = bufferIo();
    // A stdout that throws a plain TypeError: a bug as far as the CLI knows (exit 70).
    Object.defineProperty(io, 'stdout', {
      get() {
        throw new TypeError('synthetic failure');
      },
    });
    const code = await bundled.main(['--version'], io);
    assert.equal(code, 70);
    assert.match(io.err(), /^userns: internal error: TypeError: synthetic failure\n/);
    assert.match(io.err(), /\/src\/cli\/main\.ts:\d+:\d+\)/, io.err());
    assert.doesNotMatch(io.err(), /main\.bundle\.cjs/, io.err());
  });
});

describe('bin/userns: one bundle per command line, with V8 code caches', { timeout: 60_000 }, () => {
  test('run and map have bundles of their own; run --userns auto:… and every other command the whole CLI', () => {
    assert.equal(entry.bundleFor(['run', '--', 'true']), 'run');
    assert.equal(entry.bundleFor(['run', '--uid-map', '0:100000:65536', '--', 'sh', '-c', 'id']), 'run');
    assert.equal(entry.bundleFor(['run', '--userns', 'auto:size=65536', '--', 'true']), 'main');
    assert.equal(entry.bundleFor(['run', '--userns=auto:size=65536', '--', 'true']), 'main');
    assert.equal(entry.bundleFor(['map', 'split', '--parent', 'self', '0:0:100']), 'map');
    for (const argv of [[], ['--help'], ['doctor'], ['shift', 'x'], ['help', 'run'], ['version']])
      assert.equal(entry.bundleFor(argv), 'main', argv.join(' '));
  });

  test('each bundle has a code cache that this Node accepts (the build made it with this Node)', () => {
    for (const name of ['main', 'run', 'map']) {
      assert.ok(existsSync(`${entry.bundlePath(name)}.cache`), `${name}: no code cache`);
      const loaded = entry.loadBundle(name);
      assert.ok(loaded !== undefined, name);
      assert.equal(loaded.script.cachedDataRejected, false, `${name}: V8 rejected the code cache`);
    }
  });

  test('the one-command bundles answer as the unbundled modules do', async () => {
    const cases: [string, string[]][] = [
      [
        'run',
        ['run', '--dry-run', '--uid-map', '0:100000:65536', '--gid-map', '0:100000:65536', '--', 'true'],
      ],
      ['run', ['run', '--help']],
      ['run', ['run', '--no-such-option']],
      ['map', ['map', 'split', '--parent', '0:1000:1,1:100000:65536', '0:0:100']],
      ['map', ['map', 'validate', '--json', '0:1000:10,5:5000:1']],
      ['map', ['map', '--help']],
    ];
    for (const [name, argv] of cases) {
      await assertSameAsUnbundled(entry.loadBundle(name)!.exports, argv);
    }
  });

  test("a one-command bundle's table holds its command whole (every --help as unbundled), and no other", async () => {
    for (const name of ['run', 'map'] as const) {
      const own = Object.keys(COMMANDS).filter((c) => c === name || c.startsWith(`${name} `));
      assert.ok(own.length > (name === 'map' ? 5 : 0), name);
      for (const command of own)
        await assertSameAsUnbundled(entry.loadBundle(name)!.exports, [...command.split(' '), '--help']);
      // The other commands' help is left out (scripts/bundle-cli.mjs: commandTableFor).
      const text = readFileSync(entry.bundlePath(name), 'utf8');
      for (const other of ['shift', 'alloc', 'doctor', name === 'run' ? 'map' : 'run'] as const) {
        const first = COMMANDS[other].description.split('\n')[0]!;
        assert.ok(!text.includes(JSON.stringify(first).slice(1, -1)), `${name} bundle holds ${other}'s help`);
      }
      assert.ok(text.includes(COMMANDS[name].summary), `${name} bundle lacks its own summary`);
    }
  });

  test('a one-command bundle sent another command fails as an internal error, never silently', async () => {
    const io = bufferIo();
    const code = await entry.loadBundle('run')!.exports.main(['map', 'show', '0:0:1'], io);
    assert.equal(code, 70);
    assert.match(io.err(), /run\.bundle\.cjs holds no \.\/map\.js: bin\/userns chose the wrong bundle/);
  });

  test('an internal error in a bundle loaded by bin/userns names TypeScript files and lines', async () => {
    for (const name of ['main', 'run', 'map']) {
      const io = bufferIo();
      Object.defineProperty(io, 'stdout', {
        get() {
          throw new TypeError('synthetic failure');
        },
      });
      // --help of the bundle's command writes to stdout: the getter throws inside the bundle.
      const argv = name === 'main' ? ['--version'] : [name, '--help'];
      const code = await entry.loadBundle(name)!.exports.main(argv, io);
      assert.equal(code, 70, name);
      assert.match(io.err(), /\/src\/cli\/[a-z-]+\.ts:\d+:\d+\)/, io.err());
      assert.doesNotMatch(io.err(), /\.bundle\.cjs/, io.err());
    }
  });
});

describe('mapStack', () => {
  test('leaves frames without a map, and text that is no frame, as they are', () => {
    const stack =
      'Error: x\n    at f (node:internal/foo:1:2)\n    at g (/nonexistent/a.js:3:4)\n    at h (12:3)';
    assert.equal(mapStack(stack), stack);
  });

  test('maps a frame of a tsc-compiled module through the .map beside it', () => {
    const here = fileURLToPath(import.meta.url);
    const mapped = mapStack(`Error: y\n    at t (${here}:1:1)`);
    assert.match(mapped, /\/test\/cli\/bundle\.test\.ts:\d+:\d+\)$/);
  });
});
