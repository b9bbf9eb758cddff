/**
 * Everything but the allocation registry works without the SQLite binding (as after
 * `npm install --ignore-scripts`): better-sqlite3 is loaded only when a registry is opened.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runCli } from '../cli/run-cli.js';

const HIDE = fileURLToPath(new URL('../../../test/fixtures/no-sqlite.cjs', import.meta.url));
const base = mkdtempSync(join(tmpdir(), 'userns-no-sqlite-'));
after(() => rmSync(base, { recursive: true, force: true }));
const env = { NODE_OPTIONS: `--require ${HIDE}` };

describe('without the SQLite binding', { timeout: 60_000 }, () => {
  test('named namespaces, run and map work; the registry says what is missing and how to build it', async () => {
    const root = join(base, 'root');
    const created = await runCli(['create', '--root', root, '--uidmap', '0:100000:65536', 'plain'], { env });
    assert.equal(created.code, 0, created.stderr);
    const list = await runCli(['list', '--root', root, '--json'], { env });
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /"running"/);
    const exec = await runCli(['exec', '--root', root, 'plain', '--', 'id', '-u'], { env });
    assert.equal(exec.code, 0, exec.stderr);
    assert.equal(exec.stdout.trim(), '0');
    const map = await runCli(['map', 'split', '--parent', '0:1000:1,1:100000:65536', '0:0:100'], { env });
    assert.equal(map.code, 0, map.stderr);
    const removed = await runCli(['rm', '--root', root, 'plain'], { env });
    assert.equal(removed.code, 0, removed.stderr);

    const alloc = await runCli(['alloc', 'list', '--root', root, '--json'], { env });
    assert.equal(alloc.code, 1);
    const error = JSON.parse(alloc.stdout);
    assert.equal(error.code, 'REGISTRY_UNAVAILABLE');
    assert.match(error.hint, /npm rebuild better-sqlite3/);
    const auto = await runCli(['create', '--root', root, '--userns', 'auto:size=1000', 'auto'], { env });
    assert.equal(auto.code, 1, auto.stdout);
    assert.match(auto.stderr, /SQLite binding/);
    assert.deepEqual(
      readdirSync(join(root, 'ns')).filter((e) => !e.startsWith('@')),
      [],
      'a create that failed leaves no entry',
    );
  });
});
