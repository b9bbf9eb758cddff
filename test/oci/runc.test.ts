/**
 * End to end with a real runtime: a bundle made by `runc spec --rootless`, filled by
 * `userns oci`, started with `runc run` as root; the maps read back from /proc/self/uid_map and
 * gid_map inside the container must be the ones userns wrote.
 *
 * The root filesystem is built from this machine's own /bin/sh and /bin/cat and the libraries
 * `ldd` names (no download). runc comes from the Debian package (scripts/install-test-deps).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { runCli } from '../cli/run-cli.js';
import { isolateHostFiles } from '../fixtures/host-files.js';

// Root's allocation pool must not depend on the host's /etc/subuid (a `containers` line).
isolateHostFiles();

const RUNC = ['/usr/sbin/runc', '/usr/bin/runc', '/sbin/runc', '/usr/local/sbin/runc'].find((p) =>
  existsSync(p),
);

function skipReason(): string | undefined {
  if (process.geteuid?.() !== 0) return 'needs root (runc run as root)';
  if (RUNC === undefined)
    return 'runc is not installed (scripts/install-test-deps installs the Debian package runc)';
  if (spawnSync('ldd', ['--version']).status !== 0) return 'ldd is not available to build a root filesystem';
  return undefined;
}

const skip = skipReason();
const base = mkdtempSync(join(tmpdir(), 'userns-runc-'));
chmodSync(base, 0o755);
after(() => rmSync(base, { recursive: true, force: true }));

/** A root filesystem with sh and cat and their libraries, readable by any uid. */
function buildRootfs(rootfs: string): void {
  for (const dir of ['bin', 'proc', 'dev', 'sys', 'tmp'])
    mkdirSync(join(rootfs, dir), { recursive: true, mode: 0o755 });
  for (const program of ['/bin/sh', '/bin/cat']) {
    copyFileSync(realpathSync(program), join(rootfs, program));
    chmodSync(join(rootfs, program), 0o755);
    const ldd = spawnSync('ldd', [program], { encoding: 'utf8' });
    for (const lib of ldd.stdout.match(/\/\S+/g) ?? []) {
      if (!existsSync(lib)) continue;
      mkdirSync(join(rootfs, dirname(lib)), { recursive: true, mode: 0o755 });
      copyFileSync(realpathSync(lib), join(rootfs, lib));
      chmodSync(join(rootfs, lib), 0o755);
    }
  }
}

const procMap = (text: string) =>
  text
    .trim()
    .split('\n')
    .map((l) => l.trim().split(/\s+/).map(Number));

describe('runc runs a bundle filled by userns oci', { skip: skip ?? false }, () => {
  let n = 0;
  const makeBundle = () => {
    const bundle = join(base, `bundle${n++}`);
    mkdirSync(bundle, { mode: 0o755 });
    const spec = spawnSync(RUNC!, ['spec', '--rootless'], { cwd: bundle, encoding: 'utf8' });
    assert.equal(spec.status, 0, spec.stderr);
    buildRootfs(join(bundle, 'rootfs'));
    // What a user edits: the command, no terminal (runc's own layout: tabs).
    const config = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
    config.process.terminal = false;
    config.process.args = [
      'sh',
      '-c',
      'cat /proc/self/uid_map; echo --; cat /proc/self/gid_map; echo --; cat /proc/self/setgroups',
    ];
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(config, null, '\t'));
    return bundle;
  };

  const runBundle = (bundle: string, id: string) => {
    const state = join(base, 'runc-state');
    const r = spawnSync(RUNC!, ['--root', state, 'run', '--bundle', bundle, id], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60_000,
    });
    spawnSync(RUNC!, ['--root', state, 'delete', '--force', id]);
    return r;
  };

  test('--allocate: the allocated maps are in force inside the container', async () => {
    const bundle = makeBundle();
    const fill = await runCli([
      'oci',
      '--allocate=size=65536',
      '--root',
      join(base, 'userns-state'),
      bundle,
      '--json',
    ]);
    assert.equal(fill.code, 0, fill.stdout + fill.stderr);
    const filled = JSON.parse(fill.stdout);
    assert.equal(filled.allocation.size, 65536);
    const text = readFileSync(join(bundle, 'config.json'), 'utf8');
    assert.ok(text.startsWith('{\n\t"ociVersion"'), 'runc layout kept');
    const r = runBundle(bundle, `userns-test-${process.pid}-a`);
    assert.equal(r.status, 0, `runc run: ${r.stderr}`);
    const [uid, gid] = r.stdout.split('--\n');
    assert.deepEqual(procMap(uid!), filled.uidMap);
    assert.deepEqual(procMap(gid!), filled.gidMap);
    assert.equal(filled.uidMap[0][0], 0);
    assert.notEqual(filled.uidMap[0][1], 0, 'container root is not host root');
  });

  test('several extents, different uid and gid maps', async () => {
    const bundle = makeBundle();
    const fill = await runCli([
      'oci',
      '--uidmap',
      '0:200000:1000,1000:400000:64536',
      '--gidmap',
      '0:300000:65536',
      join(bundle, 'config.json'),
      '--json',
    ]);
    assert.equal(fill.code, 0, fill.stderr);
    const check = await runCli(['oci', '--check', bundle]);
    assert.equal(check.code, 0, check.stderr);
    const r = runBundle(bundle, `userns-test-${process.pid}-b`);
    assert.equal(r.status, 0, `runc run: ${r.stderr}`);
    const [uid, gid] = r.stdout.split('--\n');
    assert.deepEqual(procMap(uid!), [
      [0, 200000, 1000],
      [1000, 400000, 64536],
    ]);
    assert.deepEqual(procMap(gid!), [[0, 300000, 65536]]);
  });
});
