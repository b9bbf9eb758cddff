/**
 * "Permission denied" inside a namespace, explained: a command (or a re-executed program) under a
 * private directory, run with maps that leave the directory's owner unmapped. The error names the
 * directory, its mode and owner, and the IDs inside and outside, not just "must be executable".
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createNamespace, execInNamespace, removeNamespace } from '../../src/namespaces/index.js';
import { run } from '../../src/spawn/spawn.js';
import { runCli } from '../cli/run-cli.js';
import { readablePath } from '../fixtures/readable-repo.js';

const root = process.geteuid?.() === 0;
const base = mkdtempSync(join(tmpdir(), 'userns-unreach-'));
chmodSync(base, 0o755);
after(() => rmSync(base, { recursive: true, force: true }));

// base/private (0700, root) / tools (0755) / tool (0755): the tool itself is executable by all.
const priv = join(base, 'private');
const tool = join(priv, 'tools', 'tool');
mkdirSync(join(priv, 'tools'), { recursive: true, mode: 0o755 });
writeFileSync(tool, '#!/bin/sh\necho ran\n', { mode: 0o755 });
chmodSync(priv, 0o700);
chmodSync(tool, 0o755);
const MAP = ['--uidmap', '0:100000:65536', '--gidmap', '0:100000:65536'];

describe('an unreachable command inside the namespace', {
  skip: root ? false : 'needs root (maps written directly)',
}, () => {
  test('run: names the private directory, its mode and owner, and the IDs (exit 126)', async () => {
    const r = await runCli(['run', ...MAP, '--', tool]);
    assert.equal(r.code, 126, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(`cannot execute ${tool}: ${priv} \\(mode 0700, owner 0:0\\) is not searchable`),
    );
    assert.match(r.stderr, /uid 0 inside the namespace \(uid 100000, gid 100000 outside\)/);
    assert.match(r.stderr, /its owner uid 0 and gid 0 are not mapped into the namespace/);
    assert.doesNotMatch(r.stderr, /must be executable/);
    const json = await runCli(['run', '--json', ...MAP, '--', tool]);
    const out = JSON.parse(json.stdout);
    assert.equal(out.code, 'COMMAND_NOT_EXECUTABLE');
    assert.deepEqual(out.data.unreachable, {
      target: tool,
      path: priv,
      need: 'search',
      errno: 'EACCES',
      mode: '0700',
      owner: { uid: 0, gid: 0 },
      outside: { uid: 100000, gid: 100000, groups: [] },
      inside: { uid: 0, gid: 0 },
    });
  });

  test('with host uid 0 mapped the same tool runs: the message is about the map, not the file', async () => {
    const r = await run(tool, [], { uidMap: '0:0:65536', gidMap: '0:0:65536' });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, 'ran\n');
  });

  test('a working directory that cannot be entered is named the same way', async () => {
    await assert.rejects(
      run('/bin/true', [], { uidMap: '0:100000:65536', gidMap: '0:100000:65536', cwd: join(priv, 'tools') }),
      (e: Error & { code?: string; data?: Record<string, unknown> }) => {
        assert.equal(e.code, 'CWD_FAILED');
        assert.match(e.message, new RegExp(`${priv} \\(mode 0700, owner 0:0\\)`));
        assert.equal((e.data?.unreachable as { path: string } | undefined)?.path, priv);
        return true;
      },
    );
  });

  test('exec in a named namespace: the same explanation', async () => {
    const state = join(base, 'state');
    await createNamespace('unreach', { root: state, uidMap: '0:100000:65536', gidMap: '0:100000:65536' });
    try {
      await assert.rejects(
        execInNamespace('unreach', [tool], { root: state }),
        (e: Error & { code?: string }) => {
          assert.equal(e.code, 'COMMAND_NOT_EXECUTABLE');
          assert.match(e.message, new RegExp(`${priv} \\(mode 0700, owner 0:0\\) is not searchable`));
          return true;
        },
      );
    } finally {
      await removeNamespace('unreach', { root: state, force: true });
    }
  });

  test('reexecInUserNamespace: a program under a private directory fails with PATH_UNREACHABLE before it runs', () => {
    const program = join(priv, 'tools', 'program.mjs');
    writeFileSync(
      program,
      `import { reexecInUserNamespace } from ${JSON.stringify(readablePath('dist/src/reexec/index.js'))};
try {
  await reexecInUserNamespace({ uidMap: '0:100000:65536', gidMap: '0:100000:65536' });
  console.log(JSON.stringify({ inside: true }));
} catch (e) {
  console.log(JSON.stringify({ code: e.code, message: e.message, data: e.data }));
}
`,
      { mode: 0o644 },
    );
    const r = spawnSync(process.execPath, [program], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    assert.equal(out.code, 'PATH_UNREACHABLE', r.stdout);
    assert.match(
      out.message,
      new RegExp(`${program} cannot be reached inside the namespace: ${priv} \\(mode 0700, owner 0:0\\)`),
    );
    assert.equal(out.data.unreachable.path, priv);
    assert.deepEqual(out.data.unreachable.outside, { uid: 100000, gid: 100000, groups: [] });
  });
});
