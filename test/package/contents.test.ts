/**
 * What the package holds (`files` and `exports` of package.json), read from `npm pack`'s own
 * list: only what a user needs (README "What the package holds").
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { PREBUILT_HELPER_PLATFORMS } from '../../src/native/helper-binary.js';
import { entryPoints, type PackResult, pack, packageJson, ROOT } from './pack.js';

const CI = process.env.CI === 'true';

/** Every path a package may hold, as patterns over the packed paths. */
const ALLOWED: [RegExp, string][] = [
  [/^package\.json$/, 'the manifest'],
  [/^README\.md$/, 'the README'],
  [/^LICENSE$/, 'the licence'],
  [/^bin\/userns$/, 'the CLI'],
  [/^build\/linux-(x64|arm64)\/userns-helper$/, 'a prebuilt helper'],
  [/^dist\/src\/.+\.js$/, 'compiled JavaScript'],
  [/^dist\/src\/.+\.d\.ts$/, 'type declarations'],
  [/^dist\/man\/userns\.1$/, 'the man page'],
  [/^src\/native\/[a-z-]+\.[ch]$/, "the helper's C sources (to build it on another architecture)"],
  [/^scripts\/build-native\.mjs$/, 'the script that builds a helper'],
];

describe('the package (npm pack)', { timeout: 120_000 }, () => {
  let packed: PackResult;
  const files = () => new Map(packed.files.map((f) => [f.path, f]));

  // npm pack reads the whole tree: seconds alone, more under load.
  test('npm pack lists the package', { timeout: 120_000 }, async (t) => {
    packed = await pack();
    t.diagnostic(
      `${packed.files.length} files, ${(packed.size / 1024).toFixed(0)} KiB packed, ${(packed.unpackedSize / 1024).toFixed(0)} KiB unpacked`,
    );
    assert.ok(packed.files.length > 0);
  });

  test('only what a user needs: no tests, bench, TypeScript sources, source maps or dev scripts', () => {
    const strays = packed.files.map((f) => f.path).filter((p) => !ALLOWED.some(([re]) => re.test(p)));
    assert.deepEqual(strays, [], `files no user needs: ${strays.join(', ')}`);
    for (const path of files().keys()) {
      assert.doesNotMatch(path, /(^|\/)(test|bench)\//);
      assert.doesNotMatch(path, /\.map$|(?<!\.d)\.ts$/);
    }
  });

  test('everything package.json points to is in it: exports (types and code), bin, man', () => {
    const pkg = packageJson();
    const list = files();
    const entries = entryPoints(pkg);
    assert.ok(entries.length >= 10, 'the entry points');
    for (const { specifier, types, js } of entries) {
      assert.ok(list.has(types), `${specifier}: ${types} is not in the package`);
      assert.ok(list.has(js), `${specifier}: ${js} is not in the package`);
    }
    assert.equal(pkg.exports['./package.json'], './package.json', 'userns/package.json is exported');
    for (const bin of Object.values(pkg.bin)) {
      assert.ok(list.has(bin), `${bin} is not in the package`);
      assert.equal(list.get(bin)!.mode & 0o111, 0o111, `${bin} is executable in the package`);
    }
    assert.deepEqual(pkg.man, ['./dist/man/userns.1']);
    assert.ok(list.has('dist/man/userns.1'), 'the man page is not in the package (npm run build makes it)');
    // The CLI's modules and what the build script needs to build a helper elsewhere.
    assert.ok(list.has('dist/src/cli/main.js'));
    assert.ok(list.has('src/native/userns-helper.c') && list.has('scripts/build-native.mjs'));
  });

  test('both prebuilt helpers, executable (none at the old unversioned path)', () => {
    const list = files();
    for (const platform of PREBUILT_HELPER_PLATFORMS) {
      const path = `build/${platform}/userns-helper`;
      const entry = list.get(path);
      // Outside CI the cross compiler may be missing (test/native/helper-binary.test.ts says so).
      if (entry === undefined && !CI && !existsSync(join(ROOT, path))) continue;
      assert.ok(entry, `${path} is not in the package`);
      assert.equal(entry.mode & 0o111, 0o111, `${path} is executable in the package`);
    }
    assert.equal(list.has('build/userns-helper'), false);
  });
});
