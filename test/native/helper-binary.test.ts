/**
 * Which helper executable runs (src/native/helper-binary.ts), what the build made of each shipped
 * one (static, stripped, the right machine). That the package lists both (executable) is
 * checked with the rest of its contents in test/package/contents.test.ts.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SpawnError } from '../../src/errors/index.js';
import { helperPath } from '../../src/native/helper.js';
import {
  PREBUILT_HELPER_PLATFORMS,
  packagedHelperPath,
  resolveHelperBinary,
} from '../../src/native/helper-binary.js';
import { EM_AARCH64, EM_X86_64, readElf } from './elf.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CI = process.env.CI === 'true';

function isSpawnError(code: string, pattern?: RegExp) {
  return (e: unknown) =>
    e instanceof SpawnError &&
    e.code === code &&
    (pattern === undefined || pattern.test(`${e.message} ${e.hint}`));
}

describe('choice of the helper executable', () => {
  const dir = mkdtempSync(join(tmpdir(), 'userns-helper-binary-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const fake = join(dir, 'my-helper');
  writeFileSync(fake, '#!/bin/sh\n');
  chmodSync(fake, 0o755);
  const notExecutable = join(dir, 'plain');
  writeFileSync(notExecutable, '');
  chmodSync(notExecutable, 0o644);

  test('each shipped platform has its own build/<platform>-<arch>/userns-helper', () => {
    assert.deepEqual(PREBUILT_HELPER_PLATFORMS, ['linux-x64', 'linux-arm64']);
    assert.equal(packagedHelperPath('linux', 'x64'), join(ROOT, 'build/linux-x64/userns-helper'));
    assert.equal(packagedHelperPath('linux', 'arm64'), join(ROOT, 'build/linux-arm64/userns-helper'));
  });

  test("this machine's architecture picks the package's helper for it", () => {
    const path = resolveHelperBinary({ env: {} });
    assert.equal(path, packagedHelperPath(process.platform, process.arch));
    if (process.env.USERNS_HELPER === undefined) assert.equal(helperPath(), path);
  });

  test('x64 and arm64 each pick their own binary (when built)', () => {
    for (const arch of ['x64', 'arm64']) {
      const expected = packagedHelperPath('linux', arch);
      if (!existsSync(expected)) continue;
      assert.equal(resolveHelperBinary({ env: {}, platform: 'linux', arch }), expected);
    }
  });

  test('USERNS_HELPER overrides, an explicit path overrides both', () => {
    assert.equal(resolveHelperBinary({ env: { USERNS_HELPER: fake } }), fake);
    assert.equal(
      resolveHelperBinary({ env: { USERNS_HELPER: fake }, platform: 'linux', arch: 'riscv64' }),
      fake,
    );
    assert.equal(
      resolveHelperBinary({ env: { USERNS_HELPER: fake }, platform: 'darwin', arch: 'arm64' }),
      fake,
    );
    assert.equal(resolveHelperBinary({ explicit: fake, env: { USERNS_HELPER: notExecutable } }), fake);
    // An empty USERNS_HELPER is unset, as in a shell.
    assert.equal(resolveHelperBinary({ env: { USERNS_HELPER: '' } }), packagedHelperPath());
  });

  test('a USERNS_HELPER that is not an executable file → HELPER_MISSING naming the variable', () => {
    for (const bad of [notExecutable, dir, join(dir, 'absent')]) {
      assert.throws(
        () => resolveHelperBinary({ env: { USERNS_HELPER: bad } }),
        isSpawnError('HELPER_MISSING', /USERNS_HELPER=.* is not an executable file.*unset it/),
      );
    }
  });

  test('another Linux architecture without a helper built there → HELPER_MISSING saying what to do', () => {
    assert.throws(
      () => resolveHelperBinary({ env: {}, platform: 'linux', arch: 'riscv64' }),
      (e: unknown) => {
        assert.ok(e instanceof SpawnError);
        assert.equal(e.code, 'HELPER_MISSING');
        assert.match(e.message, /no native helper for linux-riscv64: .*linux-x64 and linux-arm64 only/);
        assert.match(e.hint ?? '', /'node scripts\/build-native\.mjs' in \/.*'npm run build' in a checkout/);
        assert.match(e.hint ?? '', /USERNS_HELPER to a userns-helper built for linux-riscv64/);
        assert.equal(e.data?.path, packagedHelperPath('linux', 'riscv64'));
        return true;
      },
    );
  });

  test('a system other than Linux → PLATFORM_UNSUPPORTED pointing to the pure modules', () => {
    for (const [platform, arch] of [
      ['darwin', 'arm64'],
      ['win32', 'x64'],
      ['freebsd', 'x64'],
    ] as const) {
      assert.throws(
        () => resolveHelperBinary({ env: {}, platform, arch }),
        isSpawnError(
          'PLATFORM_UNSUPPORTED',
          new RegExp(`only on Linux; this is ${platform}-${arch}.*userns/idmap`),
        ),
      );
    }
  });

  test('an explicit helper path that is not there → HELPER_MISSING', () => {
    assert.throws(
      () => resolveHelperBinary({ explicit: join(dir, 'absent') }),
      isSpawnError('HELPER_MISSING', /absent is not an executable file.*leave helperPath unset/),
    );
  });
});

describe('the helpers the build made', () => {
  const shipped = [
    { arch: 'x64', machine: EM_X86_64 },
    { arch: 'arm64', machine: EM_AARCH64 },
  ];
  for (const { arch, machine } of shipped) {
    const path = packagedHelperPath('linux', arch);
    const host = arch === process.arch;
    const missing = !existsSync(path);
    // This machine's helper is always built; the other one needs the cross compiler, which CI has.
    const skip =
      missing && !host && !CI
        ? `no ${path}: the cross compiler is not installed (scripts/install-test-deps installs it)`
        : false;
    test(`linux-${arch}: static, stripped, for the right machine`, { skip }, () => {
      assert.ok(!missing, `${path} is missing: run scripts/install-test-deps, then npm run build`);
      const elf = readElf(path);
      assert.equal(elf.machine, machine);
      assert.equal(elf.interpreter, false, 'statically linked: no dynamic loader (PT_INTERP)');
      assert.equal(elf.dynamic, false, 'statically linked: no PT_DYNAMIC');
      assert.equal(elf.symbolTable, false, 'stripped: no .symtab');
      assert.deepEqual(
        elf.sections.filter((name) => name.startsWith('.debug')),
        [],
        'stripped: no debug sections',
      );
    });
  }
});
