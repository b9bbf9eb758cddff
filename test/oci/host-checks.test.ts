/**
 * `userns oci --check` applies the runtime's rules, not only the kernel's map rules
 * (docs/oci-runtime-rules.md): an idmapped mount must be a bind mount, only root of the initial
 * namespace may idmap a host filesystem, and the container's root must reach root.path. Real
 * bundles in private directories; each prediction is compared with the real thing: the kernel
 * (entering the directories from a user namespace with the bundle's maps; an idmapped mount
 * tried by a throwaway user) and runc where it is installed.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { OciError } from '../../src/errors/index.js';
import { checkBundleOnHost, type HostEnvironment } from '../../src/oci/host-checks.js';
import { checkConfigText, checkOciConfig, readConfigView } from '../../src/oci/index.js';
import { run } from '../../src/spawn/spawn.js';
import { runCli } from '../cli/run-cli.js';
import { isolateHostFiles } from '../fixtures/host-files.js';
import { readableBin } from '../fixtures/readable-repo.js';
import {
  runAs,
  type ThrowawayUser,
  throwawayUserUnavailable,
  withThrowawayUser,
} from '../fixtures/throwaway-user.js';

isolateHostFiles();

const asRoot = process.geteuid?.() === 0 ? false : 'needs root (creates directories owned by other IDs)';
const base = mkdtempSync(join(tmpdir(), 'userns-oci-host-'));
chmodSync(base, 0o755);
after(() => rmSync(base, { recursive: true, force: true }));

const RUNC = ['/usr/sbin/runc', '/usr/bin/runc', '/sbin/runc', '/usr/local/sbin/runc'].find((p) =>
  existsSync(p),
);

/** setfacl -m SPEC DIR (the acl package: scripts/install-test-deps). */
function setfacl(dir: string, spec: string): void {
  const r = spawnSync('setfacl', ['-m', spec, dir], { encoding: 'utf8', timeout: 10_000 });
  assert.equal(r.status, 0, `setfacl -m ${spec} ${dir}: ${r.stderr}`);
}

/** `runc run` of the bundle as root (and its state removed), or undefined without runc. */
function runcRun(bundle: string) {
  if (RUNC === undefined) return undefined;
  const state = mkdtempSync(join(base, 'runc-state-'));
  const id = `userns-host-check-${process.pid}`;
  const started = spawnSync(RUNC, ['--root', state, 'run', '--bundle', bundle, id], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  spawnSync(RUNC, ['--root', state, 'delete', '--force', id]);
  return started;
}

const map = (hostID: number, size = 65536) => [{ containerID: 0, hostID, size }];

/** A config like `runc spec --rootless` writes, with the given maps and mounts. */
function config(options: { host?: number; mounts?: unknown[]; root?: string; args?: string[] } = {}) {
  const host = options.host ?? 100000;
  return JSON.stringify(
    {
      ociVersion: '1.0.2-dev',
      process: { terminal: false, user: { uid: 0, gid: 0 }, args: options.args ?? ['true'], cwd: '/' },
      root: { path: options.root ?? 'rootfs', readonly: true },
      mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }, ...(options.mounts ?? [])],
      linux: {
        uidMappings: map(host),
        gidMappings: map(host),
        namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'user' }],
      },
    },
    null,
    '\t',
  );
}

const idmapped = (extra: Record<string, unknown>) => ({
  destination: '/data',
  uidMappings: map(100000),
  gidMappings: map(100000),
  ...extra,
});

function refusal(fn: () => unknown): OciError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof OciError, String(error));
    return error;
  }
  assert.fail('expected an OciError');
}

async function refusalOf(promise: Promise<unknown>): Promise<OciError | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    assert.ok(error instanceof OciError, String(error));
    return error;
  }
}

describe('an idmapped mount must be a bind mount (runc)', { timeout: 60_000 }, () => {
  test('ext4 or tmpfs with uidMappings: OCI_IDMAP_NOT_BIND, naming the mount', () => {
    for (const mount of [
      idmapped({ type: 'ext4', source: '/dev/sdb1', options: ['idmap'] }),
      idmapped({ type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'idmap'] }),
      idmapped({ source: '/srv/data', options: ['ro'] }),
    ]) {
      const e = refusal(() => checkConfigText(config({ mounts: [mount] })));
      assert.equal(e.code, 'OCI_IDMAP_NOT_BIND');
      assert.equal(e.data?.path, 'mounts[1]');
      assert.match(
        e.message,
        /mounts\[1\]: \(\/data, type .*is not a bind mount: runc idmaps only bind mounts/,
      );
      assert.match(e.hint ?? '', /rbind/);
    }
  });

  test('a bind or rbind option passes; type "bind" alone is a warning (crun takes it, runc does not)', () => {
    for (const options of [['rbind', 'idmap'], ['bind'], ['ro', 'rbind']]) {
      const r = checkConfigText(config({ mounts: [idmapped({ type: 'none', source: '/srv', options })] }));
      assert.equal(r.idmappedMounts.length, 1);
      assert.ok(!r.warnings.some((w) => /bind/.test(w)), r.warnings.join('\n'));
    }
    const r = checkConfigText(
      config({ mounts: [idmapped({ type: 'bind', source: '/srv', options: ['idmap'] })] }),
    );
    assert.equal(r.warnings.length, 1);
    assert.match(r.warnings[0]!, /mounts\[1\] \(\/data\) .*type "bind" but no "bind" or "rbind" option/);
    // A mount without mappings is not concerned.
    checkConfigText(config({ mounts: [{ destination: '/t', type: 'tmpfs', source: 'tmpfs' }] }));
  });

  test('the CLI: exit 1, the code and the JSON path; nothing filled onto such a mount', async () => {
    const dir = join(base, 'notbind');
    mkdirSync(join(dir, 'rootfs'), { recursive: true, mode: 0o755 });
    const text = config({ mounts: [idmapped({ type: 'ext4', source: '/dev/sdb1' })] });
    writeFileSync(join(dir, 'config.json'), text);
    const r = await runCli(['oci', '--check', dir, '--json']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const err = JSON.parse(r.stdout);
    assert.equal(err.code, 'OCI_IDMAP_NOT_BIND');
    assert.equal(err.data.path, 'mounts[1]');
    const human = await runCli(['oci', '--check', dir]);
    assert.equal(human.code, 1);
    assert.match(human.stderr, /^userns: .*mounts\[1\].*ext4.*not a bind mount/);
    // Filling --idmap-mount onto a tmpfs mount is refused as well; the file stays as it was.
    const t = join(base, 'notbind-fill');
    mkdirSync(t, { mode: 0o755 });
    const plain = config({ mounts: [{ destination: '/scratch', type: 'tmpfs', source: 'tmpfs' }] });
    writeFileSync(join(t, 'config.json'), plain);
    const fill = await runCli([
      'oci',
      '--uidmap',
      '0:100000:65536',
      '--idmap-mount',
      '/scratch',
      t,
      '--json',
    ]);
    assert.equal(fill.code, 1, fill.stdout);
    assert.equal(JSON.parse(fill.stdout).code, 'OCI_IDMAP_NOT_BIND');
  });
});

/** Root of the initial namespace on ext4, no ACLs anywhere; `over` changes what a test needs. */
const env = (over: Partial<HostEnvironment>): HostEnvironment => ({
  initialNamespace: true,
  sysAdmin: true,
  privileged: true,
  uid: 0,
  groups: [],
  fsTypeOf: () => 'ext4',
  readAcls: (paths) => paths.map(() => ({ errno: 'ENODATA' })),
  ...over,
});

describe('who may make an idmapped mount (the kernel; runc when rootless)', { timeout: 60_000 }, () => {
  const view = readConfigView(
    config({
      root: '/nonexistent-root',
      mounts: [idmapped({ type: 'bind', source: 'data', options: ['rbind'] })],
    }),
  );
  const codes = (e: HostEnvironment) =>
    checkBundleOnHost(view, 'config.json', '/srv/bundle', e).refusals.map((r) => r.code);

  test('rules by caller and filesystem', () => {
    assert.deepEqual(codes(env({})), []);
    // Rootless: runc refuses every idmapped mount, and the kernel every one of a host filesystem.
    const rootless = checkBundleOnHost(
      view,
      'config.json',
      '/srv/bundle',
      env({ sysAdmin: false, privileged: false, uid: 1000 }),
    );
    assert.deepEqual(
      rootless.refusals.map((r) => r.code),
      ['OCI_IDMAP_NOT_PRIVILEGED'],
    );
    const msg = rootless.refusals[0]!.message;
    assert.match(msg, /mounts\[1\] \(\/data, source \/srv\/bundle\/data on ext4\)/);
    assert.match(msg, /not supported for rootless containers/);
    assert.match(msg, /CAP_SYS_ADMIN in the user namespace that owns its filesystem/);
    assert.match(msg, /whether or not you own \/srv\/bundle\/data/);
    assert.deepEqual(codes(env({ sysAdmin: false, privileged: false, uid: 1000, fsTypeOf: () => 'tmpfs' })), [
      'OCI_IDMAP_NOT_PRIVILEGED',
    ]);
    // Root of the initial namespace without CAP_SYS_ADMIN.
    assert.deepEqual(codes(env({ sysAdmin: false })), ['OCI_IDMAP_NOT_PRIVILEGED']);
    // Root of a nested namespace: a disk filesystem belongs to a namespace above; a tmpfs may be its own.
    assert.deepEqual(codes(env({ initialNamespace: false })), ['OCI_IDMAP_NOT_PRIVILEGED']);
    assert.deepEqual(codes(env({ initialNamespace: false, fsTypeOf: () => 'tmpfs' })), []);
    assert.deepEqual(codes(env({ initialNamespace: false, fsTypeOf: () => undefined })), []);
  });
});

/** Whether a process with the bundle's maps (container root) can enter `dir`: the kernel decides. */
async function kernelCanEnter(dir: string, host: number): Promise<boolean> {
  // stat DIR/. looks DIR's entry "." up: search permission on DIR and every directory above it.
  const r = await run('stat', ['-c', '%i', '--', `${dir}/.`], {
    uidMap: `0:${host}:65536`,
    gidMap: `0:${host}:65536`,
    cwd: '/',
  });
  if (r.exitCode !== 0 && !/ermission denied/.test(r.stderr)) assert.fail(`unexpected failure: ${r.stderr}`);
  return r.exitCode === 0;
}

/**
 * `--check`'s prediction for the bundle at PARENT/bundle (maps 0:100000:65536) against the
 * kernel: refused exactly when the container's root cannot enter its rootfs, naming the first
 * directory the kernel does not let it into. Returns the refusal.
 */
async function assertPredictionIsKernel(dir: string, parent: string, label: string) {
  const rootfs = join(dir, 'rootfs');
  const predicted = await refusalOf(checkOciConfig(dir));
  const entered = await kernelCanEnter(rootfs, 100000);
  assert.equal(predicted === undefined, entered, `${label}: ${predicted?.message ?? 'predicted reachable'}`);
  if (predicted !== undefined) {
    assert.equal(predicted.code, 'OCI_ROOT_UNREACHABLE', label);
    const parentOpen = await kernelCanEnter(parent, 100000);
    assert.equal(predicted.data?.directory, parentOpen ? rootfs : parent, label);
  }
  return predicted;
}

/** A bundle at PARENT/bundle with a rootfs owned by the container's root. */
function bundleIn(parent: string, host = 100000): string {
  const dir = join(parent, 'bundle');
  mkdirSync(join(dir, 'rootfs'), { recursive: true, mode: 0o755 });
  chownSync(join(dir, 'rootfs'), host, host);
  writeFileSync(join(dir, 'config.json'), config({ host }));
  return dir;
}

describe('the container root must reach root.path (runc: permission denied)', {
  skip: asRoot,
  timeout: 180_000,
}, () => {
  test('a bundle in a 0700 directory of host root, maps 0:100000:65536: refused, naming the directory', async () => {
    const locked = join(base, 'locked');
    mkdirSync(locked, { mode: 0o700 });
    const dir = bundleIn(locked);
    const r = await runCli(['oci', '--check', dir, '--json']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const err = JSON.parse(r.stdout);
    assert.equal(err.code, 'OCI_ROOT_UNREACHABLE');
    assert.equal(err.data.directory, locked);
    assert.equal(err.data.mode, '0700');
    assert.deepEqual(err.data.owner, { uid: 0, gid: 0 });
    assert.deepEqual(err.data.hostRoot, { uid: 100000, gid: 100000, groups: [] });
    assert.ok(err.message.includes(`${locked} (mode 0700, owner 0:0) is not searchable`), err.message);
    assert.match(err.message, /permission denied/);
    assert.match(err.message, /uid 0 and gid 0 are not mapped/);
    // Its ACL was read (there is none): no "may" about it.
    assert.doesNotMatch(err.message, /may still allow it|ACL/);
    assert.equal(
      err.hint,
      `move the bundle under directories the container's root can search, or let it through: chmod o+x ${locked}`,
    );
    // The kernel agrees; and so does runc.
    assert.equal(await kernelCanEnter(join(dir, 'rootfs'), 100000), false);
    const started = runcRun(dir);
    if (started !== undefined) {
      assert.notEqual(started.status, 0);
      assert.match(started.stderr, /preparing rootfs.*permission denied/);
    }
    // Let it through (o+x): the same bundle passes, and the kernel lets the container's root in.
    chmodSync(locked, 0o711);
    const ok = await runCli(['oci', '--check', dir, '--json']);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.equal(await kernelCanEnter(join(dir, 'rootfs'), 100000), true);
  });

  test('prediction = kernel for a table of modes and owners of the parent and of root.path', async () => {
    let n = 0;
    // [parent mode, parent uid, parent gid, rootfs mode, rootfs uid, rootfs gid]
    const cases: [number, number, number, number, number, number][] = [
      [0o700, 0, 0, 0o755, 100000, 100000],
      [0o711, 0, 0, 0o755, 100000, 100000],
      [0o701, 0, 0, 0o755, 100000, 100000],
      [0o750, 0, 0, 0o755, 100000, 100000], // host root's group 0 does not help: groups are dropped
      [0o750, 0, 100000, 0o755, 100000, 100000], // the group class: gid 0 inside
      [0o770, 0, 100005, 0o755, 100000, 100000], // group of another mapped gid, owner unmapped
      [0o700, 100000, 100000, 0o755, 100000, 100000], // owned by the container's root
      [0o700, 100005, 100005, 0o755, 100000, 100000], // mapped owner and group: root's capabilities
      [0o700, 100005, 0, 0o755, 100000, 100000], // mapped owner, unmapped group: no capabilities
      [0o755, 0, 0, 0o700, 0, 0], // root.path itself blocked
      [0o755, 0, 0, 0o700, 100007, 100007], // root.path of a mapped owner: capabilities
      [0o755, 0, 0, 0o070, 100000, 100000], // owner class without x, though the group bits allow
    ];
    for (const [pm, pu, pg, rm, ru, rg] of cases) {
      const parent = join(base, `table${n++}`);
      mkdirSync(parent);
      const dir = bundleIn(parent);
      const rootfs = join(dir, 'rootfs');
      chownSync(parent, pu, pg);
      chmodSync(parent, pm);
      chownSync(rootfs, ru, rg);
      chmodSync(rootfs, rm);
      const label = `parent ${pm.toString(8)} ${pu}:${pg}, rootfs ${rm.toString(8)} ${ru}:${rg}`;
      await assertPredictionIsKernel(dir, parent, label);
    }
  });

  test('a deny ACL for the mapped root on a 0755 directory: refused, naming it; the kernel and runc agree', async () => {
    const denied = join(base, 'acl-denied');
    mkdirSync(denied, { mode: 0o755 });
    const dir = bundleIn(denied);
    setfacl(denied, 'u:100000:---');
    const r = await runCli(['oci', '--check', dir, '--json']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const err = JSON.parse(r.stdout);
    assert.equal(err.code, 'OCI_ROOT_UNREACHABLE');
    assert.equal(err.data.directory, denied);
    assert.ok(err.data.acl.includes('user:100000:---'), JSON.stringify(err.data));
    assert.match(err.message, /POSIX ACL entry user:100000:--- for that uid does not allow search/);
    assert.equal(
      err.hint,
      `move the bundle under directories the container's root can search, or let it through: setfacl -m u:100000:x ${denied}`,
    );
    assert.equal(await kernelCanEnter(join(dir, 'rootfs'), 100000), false);
    const started = runcRun(dir);
    if (started !== undefined) {
      assert.notEqual(started.status, 0);
      assert.match(started.stderr, /preparing rootfs.*permission denied/);
    }
    // The hint's fix: predicted reachable, and the kernel lets the container's root in.
    setfacl(denied, 'u:100000:x');
    const ok = await runCli(['oci', '--check', dir, '--json']);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.equal(await kernelCanEnter(join(dir, 'rootfs'), 100000), true);
    const fixed = runcRun(dir);
    if (fixed !== undefined) {
      // The rootfs is empty: runc gets through preparing it and fails only at the exec.
      assert.doesNotMatch(fixed.stderr, /preparing rootfs|permission denied/);
      assert.match(fixed.stderr, /exec: \\?"true\\?": executable file not found/);
    }
  });

  test('prediction = kernel for a table of POSIX ACLs on the parent and on root.path', async () => {
    let n = 0;
    // [parent mode, parent ACL, rootfs mode, rootfs ACL]; owners 0:0 (unmapped: no capabilities).
    const cases: [number, string, number, string][] = [
      [0o755, 'u:100000:---', 0o755, ''], // named user denies, other would allow
      [0o700, 'u:100000:x', 0o755, ''], // named user allows where the mode bits do not
      [0o711, 'u:100000:rw', 0o755, ''], // named user without x: other's x does not apply
      [0o700, 'u:100000:x,m::r', 0o755, ''], // the mask cuts the named user's x
      [0o700, 'g:100000:x', 0o755, ''], // named group (container root's gid) allows
      [0o700, 'g:100000:x,m::r', 0o755, ''], // the mask cuts the named group's x
      [0o700, 'g:100000:x,m::-', 0o755, ''], // mask empty: group bits 0, ACL not consulted, other bits
      [0o705, 'g:100000:x,m::-', 0o755, ''], // the same, other allows
      [0o755, 'g:100000:---', 0o755, ''], // named group matches and denies: other's x does not apply
      [0o755, 'g:100000:r,g:100001:x', 0o755, ''], // only the groups root is in count
      [0o755, 'u:100001:---', 0o755, ''], // a named user that is not root: other applies
      [0o755, '', 0o700, 'u:100000:x'], // on root.path itself (owned by host root)
      [0o755, '', 0o755, 'u:100000:-'], // denied on root.path itself
    ];
    for (const [pm, pacl, rm, racl] of cases) {
      const parent = join(base, `acl-table${n++}`);
      mkdirSync(parent);
      const dir = bundleIn(parent);
      const rootfs = join(dir, 'rootfs');
      chownSync(rootfs, 0, 0);
      chmodSync(parent, pm);
      chmodSync(rootfs, rm);
      if (pacl !== '') setfacl(parent, pacl);
      if (racl !== '') setfacl(rootfs, racl);
      const label = `parent ${pm.toString(8)} ${pacl}, rootfs ${rm.toString(8)} ${racl}`;
      const predicted = await assertPredictionIsKernel(dir, parent, label);
      // The ACLs were read: a refusal does not hedge.
      if (predicted !== undefined) assert.doesNotMatch(predicted.message, /may still allow/, label);
    }
  });

  test('an ACL that cannot be read: never a clean ok (a warning naming the directory)', () => {
    const parent = join(base, 'acl-unread');
    mkdirSync(parent, { mode: 0o755 });
    const dir = bundleIn(parent);
    const view = readConfigView(config());
    const noHelper = env({
      readAcls: () => {
        throw new Error('no helper');
      },
    });
    const r = checkBundleOnHost(view, 'config.json', dir, noHelper);
    assert.deepEqual(r.refusals, []);
    // Every directory of host root's (unmapped) on the way is named; rootfs (mapped owner) is not.
    for (const d of ['/', parent])
      assert.ok(
        r.warnings.some(
          (w) => w.includes(`can search ${d} (mode`) && /could not be read \(no helper\)/.test(w),
        ),
        `${d}: ${r.warnings.join('\n')}`,
      );
    assert.ok(
      !r.warnings.some((w) => w.includes(`can search ${join(dir, 'rootfs')} `)),
      r.warnings.join('\n'),
    );
    // Bytes that are not an ACL: the same warning, with the reason.
    const garbage = checkBundleOnHost(
      view,
      'config.json',
      dir,
      env({ readAcls: (paths) => paths.map(() => ({ bytes: Buffer.from([1, 0, 0, 0]) })) }),
    );
    assert.match(garbage.warnings.join('\n'), /not an ACL userns can decode/);
  });

  test('a root.path through a symbolic link is refused (runc: invalid rootfs); a missing one is a warning', async () => {
    const parent = join(base, 'linked');
    mkdirSync(parent, { mode: 0o755 });
    const dir = bundleIn(parent);
    const real = join(dir, 'real-rootfs');
    mkdirSync(real, { mode: 0o755 });
    rmSync(join(dir, 'rootfs'), { recursive: true });
    symlinkSync('real-rootfs', join(dir, 'rootfs'));
    const r = await runCli(['oci', '--check', dir, '--json']);
    assert.equal(r.code, 1, r.stdout);
    const err = JSON.parse(r.stdout);
    assert.equal(err.code, 'OCI_ROOT_SYMLINK');
    assert.equal(err.data.link, join(dir, 'rootfs'));
    assert.match(err.hint, /real-rootfs$/);
    const started = runcRun(dir);
    if (started !== undefined) {
      assert.notEqual(started.status, 0);
      assert.match(started.stderr, /invalid rootfs: not an absolute path, or a symlink/);
    }
    // A bundle directory reached through a link is fine (runc resolves it by changing into it).
    symlinkSync(parent, join(base, 'link-to-parent'));
    rmSync(join(dir, 'rootfs'));
    const missing = await runCli([
      'oci',
      '--check',
      join(base, 'link-to-parent', 'bundle', 'config.json'),
      '--json',
    ]);
    assert.equal(missing.code, 0, missing.stdout);
    assert.match(JSON.parse(missing.stdout).warnings.join('\n'), /root\.path .*rootfs does not exist/);
  });

  test('a fill writes the maps and warns about what runc will refuse; --check with options refuses', async () => {
    const locked = join(base, 'locked-fill');
    mkdirSync(locked, { mode: 0o700 });
    const dir = bundleIn(locked);
    const fill = await runCli(['oci', '--uidmap', '0:100000:65536', dir, '--json']);
    assert.equal(fill.code, 0, fill.stdout + fill.stderr);
    assert.match(JSON.parse(fill.stdout).warnings.join('\n'), /permission denied.*locked-fill \(mode 0700/);
    const check = await runCli(['oci', '--check', '--uidmap', '0:100000:65536', dir, '--json']);
    assert.equal(check.code, 1);
    assert.equal(JSON.parse(check.stdout).code, 'OCI_ROOT_UNREACHABLE');
  });
});

/** `userns ARGS` run as the throwaway user (from a copy of the repository it can read). */
function userns(user: ThrowawayUser, args: string[]) {
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: user.home, NO_COLOR: '1' };
  return runAs(user, [process.execPath, readableBin(), ...args], { env, cwd: '/' });
}

describe('rootless: a throwaway user', {
  skip: throwawayUserUnavailable() ?? false,
  timeout: 180_000,
}, () => {
  test('an idmapped bind of a directory the user owns: predicted refused, and the kernel refuses it', async () => {
    await withThrowawayUser(async (user) => {
      const dir = join(user.home, 'bundle');
      const data = join(user.home, 'data');
      for (const d of [dir, join(dir, 'rootfs'), data]) {
        mkdirSync(d, { mode: 0o755 });
        chownSync(d, user.uid, user.gid);
      }
      const maps = {
        uidMappings: [
          { containerID: 0, hostID: user.uid, size: 1 },
          { containerID: 1, hostID: user.subuid.start, size: user.subuid.count },
        ],
        gidMappings: [
          { containerID: 0, hostID: user.gid, size: 1 },
          { containerID: 1, hostID: user.subgid.start, size: user.subgid.count },
        ],
      };
      const text = JSON.parse(config());
      text.linux = { ...text.linux, ...maps };
      text.mounts.push({
        destination: '/data',
        type: 'bind',
        source: data,
        options: ['rbind', 'idmap'],
        ...maps,
      });
      writeFileSync(join(dir, 'config.json'), JSON.stringify(text, null, '\t'));
      chownSync(join(dir, 'config.json'), user.uid, user.gid);
      const r = await userns(user, ['oci', '--check', dir, '--json']);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      const err = JSON.parse(r.stdout);
      assert.equal(err.code, 'OCI_IDMAP_NOT_PRIVILEGED');
      assert.equal(err.data.path, 'mounts[1]');
      assert.equal(err.data.source, data);
      assert.match(err.message, /whether or not you own/);
      // The kernel: as root of the user's own user and mount namespace (where cloning a mount is
      // allowed), idmapping the user's own directory fails with EPERM.
      const k = await userns(user, [
        'run',
        '--userns',
        'auto',
        '--unshare',
        'mount',
        '--',
        process.execPath,
        readableBin(),
        'run',
        '--mount',
        `${data}:/mnt:idmap`,
        '--json',
        '--',
        'true',
      ]);
      assert.equal(k.code, 125, k.stdout + k.stderr); // run's exit status for a failed setup
      const refused = JSON.parse(k.stdout);
      assert.equal(refused.code, 'IDMAP_NOT_PRIVILEGED', k.stdout);
      assert.equal(refused.data.step, 'mount-idmap'); // the clone worked: mount_setattr said EPERM
      assert.equal(refused.data.errno, 'EPERM');
      // Without the idmapped mount the same bundle passes (root.path is the user's, reachable).
      text.mounts.pop();
      writeFileSync(join(dir, 'config.json'), JSON.stringify(text, null, '\t'));
      const ok = await userns(user, ['oci', '--check', dir, '--json']);
      assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    });
  });

  test('root.path owned by host root, mode 0700, in the user bundle: unreachable for the rootless root too', async () => {
    await withThrowawayUser(async (user) => {
      const dir = join(user.home, 'bundle');
      mkdirSync(dir, { mode: 0o755 });
      chownSync(dir, user.uid, user.gid);
      const rootfs = join(dir, 'rootfs');
      mkdirSync(rootfs, { mode: 0o700 }); // host root's: unmapped in the user's namespace
      const text = JSON.parse(config());
      text.linux.uidMappings = [{ containerID: 0, hostID: user.uid, size: 1 }];
      text.linux.gidMappings = [{ containerID: 0, hostID: user.gid, size: 1 }];
      writeFileSync(join(dir, 'config.json'), JSON.stringify(text, null, '\t'));
      chownSync(join(dir, 'config.json'), user.uid, user.gid);
      const r = await userns(user, ['oci', '--check', dir, '--json']);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      const err = JSON.parse(r.stdout);
      assert.equal(err.code, 'OCI_ROOT_UNREACHABLE');
      assert.equal(err.data.directory, rootfs);
      assert.equal(err.data.hostRoot.uid, user.uid);
      // The kernel: root of the user's own namespace cannot enter it.
      const k = await userns(user, [
        'run',
        '--userns',
        'self',
        '--',
        'stat',
        '-c',
        '%i',
        '--',
        `${rootfs}/.`,
      ]);
      assert.notEqual(k.code, 0);
      assert.match(k.stderr, /ermission denied/);
      chmodSync(rootfs, 0o755);
      const ok = await userns(user, ['oci', '--check', dir, '--json']);
      assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    });
  });
});
