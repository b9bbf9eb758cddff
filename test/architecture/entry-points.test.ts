/**
 * The package's entry points (package.json `exports`), loaded by the package's own name as a
 * user would: each loads, exports an explicit list, and keeps the internals to itself.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
  name: string;
  exports: Record<string, { types: string; import: string }>;
};

/** Names that are internals of some layer and must not be reachable from any entry point. */
const INTERNALS = [
  'launchHelper',
  'startHelper',
  'helperArgs',
  'parseProcStat',
  'readIdMapSync',
  'clearUsernsFdCache',
  'usernsFdCacheStats',
  'clearIdmapProbeCache',
  'explainMountFailure',
  'Registry',
  'crc32',
  'encodeLine',
  'decodeLine',
  'processStartTimeSync',
  'U32_MAX',
];

describe('entry points', () => {
  test('every entry point loads by the package name and keeps the internals to itself', async () => {
    // ./package.json is exported as data (for tools that read the version), not a module.
    for (const key of Object.keys(pkg.exports).filter((k) => !k.endsWith('.json'))) {
      const specifier = key === '.' ? pkg.name : `${pkg.name}/${key.slice(2)}`;
      const mod = (await import(specifier)) as Record<string, unknown>;
      assert.ok(Object.keys(mod).length > 0, `${specifier} exports nothing`);
      for (const name of INTERNALS)
        assert.equal(name in mod, false, `${specifier} exports the internal ${name}`);
    }
  });

  test('the main entry point has every error class, the public API of each layer', async () => {
    const main = (await import(pkg.name)) as Record<string, unknown>;
    for (const name of [
      'UsernsError',
      'ParseError',
      'MapError',
      'UsageError',
      'SpawnError',
      'NewIdmapError',
      'MountError',
      'NamespaceError',
      'AllocError',
      'OciError',
      'ShiftError',
      'ReexecError',
      'IdMap',
      'spawn',
      'planSpawn',
      'createNamespace',
      'withAutoUserns',
      'gcAllocations',
      'fillOciConfig',
      'shiftTree',
      'reexecInUserNamespace',
      'runDoctor',
      'readIdMap',
    ])
      assert.equal(typeof main[name], 'function', name);
  });
});
