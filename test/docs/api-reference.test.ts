/**
 * The API reference (TypeDoc, `npm run docs`): every entry point of the package is in it, and
 * every exported function, class, interface, type and constant has a docstring. TypeDoc runs
 * once, on the real entry points plus a planted undocumented function, which must be the only
 * warning: so the check is shown to fail on a missing docstring, and passes otherwise.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const FIXTURE = 'test/docs/undocumented-fixture.ts';

interface TypedocConfig {
  entryPoints: string[];
  out: string;
  treatWarningsAsErrors: boolean;
  validation: Record<string, boolean>;
}

const config = JSON.parse(readFileSync(join(ROOT, 'typedoc.json'), 'utf8')) as TypedocConfig;

function typedoc(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'node_modules/typedoc/bin/typedoc'), ...args], {
      cwd: ROOT,
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      output += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output: output.replace(/\x1b\[[0-9;]*m/g, '') }));
  });
}

describe('API reference', { timeout: 600_000 }, () => {
  test('typedoc.json documents exactly the entry points package.json exports', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      exports: Record<string, string | { types: string }>;
    };
    const exported = Object.values(pkg.exports)
      .filter((target): target is { types: string } => typeof target !== 'string')
      .map((target) => target.types.replace(/^\.\/dist\//, '').replace(/\.d\.ts$/, '.ts'))
      .sort();
    assert.deepEqual([...config.entryPoints].sort(), exported);
    assert.equal(config.treatWarningsAsErrors, true, 'npm run docs fails on a warning');
    assert.equal(config.validation.notDocumented, true);
    assert.equal(config.out, 'docs/api');
    assert.match(readFileSync(join(ROOT, '.gitignore'), 'utf8'), /^docs\/api\/$/m);
  });

  // TypeDoc compiles the whole program: 15 s alone, over a minute under load.
  test('every export has a docstring: the planted undocumented function is the only warning', {
    timeout: 300_000,
  }, async () => {
    const entryPoints = [...config.entryPoints, FIXTURE].flatMap((e) => ['--entryPoints', e]);
    const r = await typedoc([...entryPoints, '--emit', 'none', '--treatWarningsAsErrors', 'false']);
    const warnings = r.output.split('\n').filter((line) => /^\[(warning|error)\]/.test(line));
    const planted = warnings.filter(
      (w) => w.includes('undocumentedFixture') && w.includes('does not have any documentation'),
    );
    const others = warnings.filter(
      (w) => !planted.includes(w) && !/^\[warning\] Found \d+ errors and \d+ warnings$/.test(w),
    );
    assert.equal(planted.length, 1, `the missing docstring was reported:\n${r.output}`);
    assert.deepEqual(others, [], 'every real export is documented (this is what npm run docs reports)');
  });
});
