/**
 * Bind, read-only and idmapped mounts (`--mount`, spawn's `mounts`, the detached-mount API, the
 * support probe, the user-namespace fd cache), as root on a tmpfs and on the filesystem the tests
 * run on, and rootless on a tmpfs the user's own namespace mounted.
 */
import assert from 'node:assert/strict';
import { spawn as spawnChild, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  mkdirSync,
  mkdtempSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MountError, SpawnError } from '../../src/errors/index.js';
import type { IdMap } from '../../src/idmap/idmap.js';
import { clearIdmapProbeCache } from '../../src/mount/detached.js';
import {
  mountInfoOf,
  openDetachedMount,
  openIdmappedMount,
  parseMountSpec,
  probeIdmapSupport,
  usernsFd,
} from '../../src/mount/index.js';
import { helperMountsFor } from '../../src/mount/prepare.js';
import { clearUsernsFdCache, usernsFdCacheStats } from '../../src/mount/userns-fd.js';
import { helperArgs, helperPath } from '../../src/native/helper.js';
import { run } from '../../src/spawn/spawn.js';
import { mountOf, nosuidMountOf } from '../../src/system/index.js';
import { readableRepo } from '../fixtures/readable-repo.js';
import { runAs, throwawayUserUnavailable, withThrowawayUser } from '../fixtures/throwaway-user.js';

const BIN = fileURLToPath(new URL('../../../bin/userns', import.meta.url));
const root = process.geteuid?.() === 0;
const OWNER = 1234;

function cli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('--mount specs', () => {
  test('parse SRC:DST[:OPTIONS]', () => {
    assert.deepEqual(parseMountSpec('/a:/b'), { source: '/a', target: '/b' });
    assert.deepEqual(parseMountSpec('a:/b:ro,rbind,idmap', '/x'), {
      source: '/x/a',
      target: '/b',
      readOnly: true,
      recursive: true,
      idmap: true,
    });
    const m = parseMountSpec('/a:/b:idmap=0:1000,u1:2000:10,g5:3000:2,ro');
    assert.equal(m.readOnly, true);
    const idmap = m.idmap as { uidMap: IdMap; gidMap: IdMap };
    assert.equal(idmap.uidMap.toString(), '0:1000:1,1:2000:10');
    assert.equal(idmap.gidMap.toString(), '0:1000:1,5:3000:2');
  });
  test('bad specs are MOUNT_SPEC_INVALID / IDMAP_MAP_EMPTY', () => {
    for (const bad of [
      '/a',
      ':/b',
      '/a:',
      '/a:/b:ro,rw',
      '/a:/b:bogus',
      '/a:/b:idmap=x',
      '/a:/b:idmap,idmap',
      '/a:/b:idmap=0:1:0',
    ]) {
      assert.throws(
        () => parseMountSpec(bad),
        (e: unknown) => e instanceof MountError && e.code === 'MOUNT_SPEC_INVALID',
        bad,
      );
    }
    assert.throws(
      () => parseMountSpec('/a:/b:idmap=u0:1'),
      (e: unknown) => e instanceof MountError && e.code === 'IDMAP_MAP_EMPTY',
    );
  });
  test('CLI: a bad --mount is a usage error (exit 125: run passes the command status through)', () => {
    const r = cli(['run', '--mount', '/tmp:/mnt:bogus', '--', 'true']);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /unknown option 'bogus'/);
  });
});

/** Rejects with Error('timed out') when `p` has not settled within `ms`. */
function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

describe('mount checks (no privileges needed)', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'userns-mountcheck-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('a target that is a symbolic link is refused with MOUNT_TARGET_SYMLINK, naming the real path', () => {
    const real = join(dir, 'real');
    mkdirSync(real);
    const link = join(dir, 'link');
    symlinkSync(real, link);
    const dangling = join(dir, 'dangling');
    symlinkSync(join(dir, 'nowhere'), dangling);
    for (const [target, resolved] of [
      [link, realpathSync(real)],
      [dangling, join(dir, 'nowhere')],
    ] as const) {
      assert.throws(
        () => helperMountsFor([{ source: dir, target }]),
        (e: unknown) =>
          e instanceof MountError &&
          e.code === 'MOUNT_TARGET_SYMLINK' &&
          /symbolic link/.test(e.message) &&
          e.message.includes(resolved) &&
          (e.hint ?? '').includes(resolved),
        target,
      );
    }
    // A symbolic link in a directory above the target is fine (move_mount follows those).
    const viaLink = join(dir, 'via');
    symlinkSync(dir, viaLink);
    assert.equal(helperMountsFor([{ source: dir, target: join(viaLink, 'real') }]).length, 1);
  });

  test('openDetachedMount rejects promptly when the helper cannot be started', async () => {
    // An executable file passes the helper check, but spawning it fails (its interpreter does
    // not exist: ENOENT): 'error', never 'exit'.
    const notAProgram = join(dir, 'helper-without-interpreter');
    writeFileSync(notAProgram, '#!/nonexistent/interpreter\n', { mode: 0o755 });
    await assert.rejects(within(openDetachedMount(dir, { helperPath: notAProgram }), 5000), (e: unknown) => {
      assert.ok(e instanceof SpawnError, String(e));
      assert.equal(e.code, 'HELPER_DIED');
      return true;
    });
  });

  test('mounts are refused with join (helperArgs), and the helper refuses --mount in join mode', async () => {
    const join_ = { pid: process.pid, namespaces: [{ type: 'user' as const, inode: 1 }] };
    assert.throws(
      () =>
        helperArgs({
          namespaces: [],
          command: ['true'],
          join: join_,
          mounts: [{ source: '/tmp', target: '/mnt' }],
        }),
      (e: unknown) => e instanceof SpawnError && /--mount|mounts/.test(e.message),
    );
    // The helper itself: --join with --mount is a usage error, not a mount silently left out.
    const ino = statSync('/proc/self/ns/user').ino;
    const child = spawnChild(
      helperPath(),
      ['--mode=join', `--target=${process.pid}`, `--ns=user:${ino}`, '--mount=-:-:4:/tmp:/mnt', '--', 'true'],
      { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] },
    );
    const report = child.stdio[3] as NodeJS.ReadableStream;
    (child.stdio[4] as NodeJS.WritableStream & { destroy(): void }).destroy();
    let out = '';
    report.setEncoding('utf8');
    report.on('data', (d: string) => {
      out += d;
    });
    const code = await within(
      new Promise<number | null>((res) => child.once('close', (c) => res(c))),
      5000,
    ).catch((error) => {
      child.kill('SIGKILL');
      throw error;
    });
    // Join mode takes no --mount (the option table): a usage error (EINVAL = 22) naming it.
    assert.match(out, /^error usage 22 .*--mount=/m, out);
    assert.notEqual(code, 0);
  });

  test('mountOf / mountInfoOf follow symbolic links; nosuidMountOf keeps its answers', () => {
    const link = join(dir, 'shm-link');
    symlinkSync('/dev/shm', link);
    const direct = mountOf('/dev/shm');
    assert.ok(direct !== undefined);
    assert.deepEqual(mountOf(link), direct);
    assert.equal(mountInfoOf(link)?.mountPoint, direct.mountPoint);
    assert.equal(mountInfoOf(link)?.fsType, direct.fsType);
    assert.equal(mountOf('/nonexistent/path'), undefined);
    const mountinfo = [
      '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,errors=remount-ro',
      '28 27 0:25 / /opt/tools ro,nosuid,nodev,relatime shared:5 - tmpfs x ro',
      '29 27 0:26 / /opt/my\\040tools rw,nosuid - tmpfs y rw',
    ].join('\n');
    assert.deepEqual(mountOf('/', mountinfo), {
      mountPoint: '/',
      fsType: 'ext4',
      source: '/dev/vda',
      options: ['rw', 'relatime'],
      superOptions: ['rw', 'errors=remount-ro'],
    });
    assert.equal(nosuidMountOf('/', mountinfo), undefined);
    assert.equal(nosuidMountOf('/nonexistent/path', mountinfo), undefined);
    // The real path decides: a link to / is on /.
    assert.equal(mountOf(join(dir, 'shm-link'), mountinfo)?.mountPoint, '/');
  });
});

describe('mounts as root', { skip: root ? false : 'needs root' }, () => {
  const dirs: string[] = [];
  let target: string;
  const places: { name: string; base: string }[] = [
    { name: 'tmpfs', base: '/dev/shm' },
    { name: 'the test filesystem', base: tmpdir() },
  ];
  /** A source directory owned by OWNER:OWNER, holding `f` owned by OWNER:OWNER. */
  function source(base: string): string {
    const dir = mkdtempSync(join(base, 'userns-mount-'));
    dirs.push(dir);
    chmodSync(dir, 0o755); // searchable whatever its owner appears as
    chownSync(dir, OWNER, OWNER); // a directory of OWNER's (root inside may write only where the owner is mapped)
    writeFileSync(join(dir, 'f'), 'x');
    chownSync(join(dir, 'f'), OWNER, OWNER);
    return dir;
  }
  before(() => {
    target = mkdtempSync(join(tmpdir(), 'userns-target-'));
    chmodSync(target, 0o755);
    dirs.push(target);
  });
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  for (const place of places) {
    test(`idmapped on ${place.name}: on-disk owners appear mapped, new files get the right on-disk owner`, async (t) => {
      const support = await probeIdmapSupport(place.base);
      if (!support.supported) {
        t.skip(`kernel: ${support.fsType} does not support idmapped mounts here`);
        return;
      }
      const src = source(place.base);
      const uidMap = '0:100000:65536';
      // Without idmap, OWNER is not in the namespace's map: nobody.
      const plain = await run('stat', ['-c', '%u:%g', join(target, 'f')], {
        uidMap,
        mounts: [parseMountSpec(`${src}:${target}`)],
      });
      assert.equal(plain.stdout.trim(), '65534:65534');
      // idmap: the namespace's own map, so on-disk N appears inside as N; root inside creates files owned by 0.
      const own = await run(
        'sh',
        ['-c', `stat -c %u:%g ${target}/f; touch ${target}/by-root; stat -c %u ${target}/by-root`],
        {
          uidMap,
          mounts: [parseMountSpec(`${src}:${target}:idmap`)],
        },
      );
      assert.equal(own.exitCode, 0, own.stderr);
      assert.deepEqual(own.stdout.trim().split('\n'), [`${OWNER}:${OWNER}`, '0']);
      assert.equal(statSync(join(src, 'by-root')).uid, 0, 'created as root inside = 0 on disk');
      // idmap=0:OWNER: the owner's files appear as root's; root's new files are OWNER's on disk.
      const shifted = await run('sh', ['-c', `stat -c %u:%g ${target}/f; touch ${target}/new`], {
        uidMap,
        mounts: [parseMountSpec(`${src}:${target}:idmap=0:${OWNER}`)],
      });
      assert.equal(shifted.exitCode, 0, shifted.stderr);
      assert.equal(shifted.stdout.trim(), '0:0');
      assert.equal(statSync(join(src, 'new')).uid, OWNER);
      assert.equal(statSync(join(src, 'new')).gid, OWNER);
      // Nothing is left mounted on the host.
      assert.equal(statSync(target).dev, statSync(tmpdir()).dev);
    });
  }

  test('ro is read-only, and the command cannot remount it writable', async () => {
    const src = source('/dev/shm');
    const r = await run(
      'sh',
      [
        '-c',
        `touch ${target}/x 2>&1; mount -o remount,bind,rw ${target} 2>/dev/null && echo remounted; cat ${target}/f`,
      ],
      { uidMap: '0:100000:65536', mounts: [parseMountSpec(`${src}:${target}:ro,idmap`)] },
    );
    assert.match(r.stdout, /Read-only file system/);
    assert.doesNotMatch(r.stdout, /remounted/);
    assert.match(r.stdout, /x$/);
  });

  test('an unsupported filesystem gives IDMAP_UNSUPPORTED_FS, and the probe says so (cached)', async () => {
    await assert.rejects(
      run('true', [], { mounts: [parseMountSpec(`/proc:${target}:idmap`)] }),
      (e: unknown) =>
        e instanceof MountError &&
        e.code === 'IDMAP_UNSUPPORTED_FS' &&
        /proc .* does not support idmapped mounts/.test(e.message),
    );
    clearIdmapProbeCache();
    const first = await probeIdmapSupport('/proc');
    assert.equal(first.supported, false);
    assert.equal(first.fsType, 'proc');
    assert.equal(first.code, 'IDMAP_UNSUPPORTED_FS');
    assert.equal(first.cached, false);
    assert.equal((await probeIdmapSupport('/proc/self')).cached, true);
    const tmpfs = await probeIdmapSupport('/dev/shm');
    assert.equal(tmpfs.supported, true);
    assert.equal(tmpfs.fsType, 'tmpfs');
    const r = cli(['run', '--mount', `/proc:${target}:idmap`, '--', 'true']);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /filesystem proc \(\/proc\) does not support idmapped mounts/);
  });

  test('missing source or target, unmapped idmap ID: worded errors', async () => {
    const src = source('/dev/shm');
    await assert.rejects(run('true', [], { mounts: [parseMountSpec(`/nonexistent-src:${target}`)] }), {
      code: 'MOUNT_SOURCE_MISSING',
    });
    await assert.rejects(run('true', [], { mounts: [parseMountSpec(`${src}:/nonexistent-dst`)] }), {
      code: 'MOUNT_TARGET_MISSING',
    });
    await assert.rejects(
      run('true', [], {
        uidMap: '0:100000:10',
        mounts: [parseMountSpec(`${src}:${target}:idmap=20:${OWNER}`)],
      }),
      (e: unknown) =>
        e instanceof MountError && e.code === 'IDMAP_ID_NOT_MAPPED' && /uid 20 \(inside\)/.test(e.message),
    );
  });

  test('the detached-mount API returns a usable fd (attached through the helper)', async () => {
    const src = source('/dev/shm');
    const m = await openIdmappedMount(src, `7:${OWNER}:1`);
    try {
      assert.equal(m.idmapped, true);
      // This process sees the files through the detached mount with the map applied.
      assert.equal(statSync(join(m.path, 'f')).uid, 7);
      for (let i = 0; i < 2; i++) {
        const r = await run('stat', ['-c', '%u:%g', join(target, 'f')], {
          mounts: [{ source: { fd: m.fd }, target, readOnly: true }],
        });
        assert.equal(r.stdout.trim(), '7:7', r.stderr);
      }
    } finally {
      await m.close();
    }
    assert.throws(() => process.kill(m.holderPid, 0), 'the holder is gone after close()');
  });

  test('user-namespace fds are cached per map', async (t) => {
    clearUsernsFdCache();
    const before = usernsFdCacheStats();
    const t0 = performance.now();
    const a = await usernsFd('0:300000:1000');
    const cold = performance.now() - t0;
    const t1 = performance.now();
    const b = await usernsFd('0:300000:1000');
    const warm = performance.now() - t1;
    const c = await usernsFd('0:400000:1000');
    assert.equal(a.fd, b.fd);
    assert.equal(a.cached, false);
    assert.equal(b.cached, true);
    assert.notEqual(c.fd, a.fd);
    const after = usernsFdCacheStats();
    assert.equal(after.created - before.created, 2);
    assert.equal(after.hits - before.hits, 1);
    // The fd is a user namespace with exactly that map (uid and gid: the same string given once).
    for (const file of ['uid_map', 'gid_map']) {
      const r = spawnSync('nsenter', [`--user=${a.path}`, 'cat', `/proc/self/${file}`], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(
        r.stdout
          .trim()
          .split('\n')
          .map((l) => l.trim().split(/\s+/).join(' ')),
        ['0 300000 1000'],
        file,
      );
    }
    const rc = spawnSync('nsenter', [`--user=${c.path}`, 'cat', '/proc/self/uid_map'], { encoding: 'utf8' });
    assert.equal(rc.stdout.trim().split(/\s+/).join(' '), '0 400000 1000', rc.stderr);
    t.diagnostic(`userns fd: cold ${cold.toFixed(2)} ms, cached ${warm.toFixed(3)} ms`);
    for (const l of [a, b, c]) l.release();
  });

  test('a symbolic-link target fails before the helper runs (MOUNT_TARGET_SYMLINK), not at mount-attach', async () => {
    const src = source('/dev/shm');
    const link = join(mkdtempSync(join(tmpdir(), 'userns-link-')), 'link');
    dirs.push(join(link, '..'));
    symlinkSync(target, link);
    await assert.rejects(
      run('true', [], { mounts: [parseMountSpec(`${src}:${link}`)] }),
      (e: unknown) =>
        e instanceof MountError && e.code === 'MOUNT_TARGET_SYMLINK' && e.message.includes(target),
    );
    const r = cli(['run', '--mount', `${src}:${link}`, '--', 'true']);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /symbolic link/);
    assert.doesNotMatch(r.stderr, /mount-attach/);
  });

  test('a failed start releases the user-namespace fds of its idmapped mounts', async () => {
    const src = source('/dev/shm');
    // A helper that dies at once when asked for mounts (the namespace launch fails), and is slow
    // otherwise (the user namespace for the idmapped mount is made after the launch failed).
    const wrapDir = mkdtempSync(join(tmpdir(), 'userns-wrap-'));
    dirs.push(wrapDir);
    const wrapper = join(wrapDir, 'helper');
    writeFileSync(
      wrapper,
      `#!/bin/sh\ncase "$*" in *--mount=*) exit 3 ;; esac\nsleep 0.3\nexec ${helperPath()} "$@"\n`,
      { mode: 0o755 },
    );
    clearUsernsFdCache();
    const created = usernsFdCacheStats().created;
    await assert.rejects(
      run('true', [], {
        helperPath: wrapper,
        uidMap: '0:510000:1000',
        mounts: [parseMountSpec(`${src}:${target}:idmap`)],
      }),
      (e: unknown) => e instanceof SpawnError,
    );
    const deadline = Date.now() + 5000;
    while (usernsFdCacheStats().created === created && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    assert.equal(usernsFdCacheStats().created, created + 1, 'the user namespace was made after the failure');
    await new Promise((r) => setTimeout(r, 50));
    clearUsernsFdCache();
    assert.equal(usernsFdCacheStats().size, 0, 'no lease is left pinning a cache entry');
  });

  test('create + exec see the mount', () => {
    const src = source('/dev/shm');
    const stateRoot = mkdtempSync(join(tmpdir(), 'userns-mount-root-'));
    dirs.push(stateRoot);
    const name = `m${process.pid}`;
    const made = cli([
      'create',
      '--root',
      stateRoot,
      '--uidmap',
      '0:100000:65536',
      '--mount',
      `${src}:${target}:ro,idmap`,
      '--json',
      name,
    ]);
    assert.equal(made.code, 0, made.stderr);
    try {
      assert.deepEqual(JSON.parse(made.stdout).state.options.mounts, [`${src}:${target}:ro,idmap`]);
      const r = cli([
        'exec',
        '--root',
        stateRoot,
        name,
        '--',
        'sh',
        '-c',
        `stat -c %u:%g ${target}/f; touch ${target}/y 2>&1`,
      ]);
      assert.match(r.stdout, new RegExp(`^${OWNER}:${OWNER}\n.*Read-only file system`));
    } finally {
      assert.equal(cli(['rm', '--root', stateRoot, name]).code, 0);
    }
  });
});

const rootlessSkip = throwawayUserUnavailable();

describe('rootless idmapped mounts', { skip: rootlessSkip ?? false }, () => {
  test('a tmpfs mounted in the own namespace can be idmapped; host filesystems cannot', () =>
    withThrowawayUser(async (user) => {
      const bin = join(readableRepo(), 'bin/userns');
      const node = process.execPath;
      const env = { ...process.env, HOME: user.home, USER: user.name, LOGNAME: user.name, NO_COLOR: '1' };
      // Outer: the user's namespace (0 = the user, 1… = subordinate IDs) with a mount namespace; a
      // tmpfs there belongs to it. Inner: a nested namespace mapping 0…99 to 1000…1099 of the outer.
      const script = [
        'set -e',
        // A tmpfs of the namespace's own on /mnt (the home is 0700: not searchable by nested IDs).
        'mount -t tmpfs -o mode=755 none /mnt',
        'mkdir /mnt/t /mnt/m',
        'mount -t tmpfs -o mode=755 none /mnt/t',
        'touch /mnt/t/f && chown 5:5 /mnt/t/f',
        `${node} ${bin} run --uidmap 0:1000:100 --mount /mnt/t:/mnt/m:idmap -- stat -c %u:%g /mnt/m/f`,
        `${node} ${bin} run --uidmap 0:1000:100 --mount /mnt/t:/mnt/m -- stat -c %u:%g /mnt/m/f`,
        `${node} ${bin} run --uidmap 0:1000:100 --mount /mnt/t:/mnt/m:idmap -- touch /mnt/m/g`,
        'stat -c %u /mnt/t/g',
      ].join('\n');
      const r = await runAs(user, [node, bin, 'run', '--unshare', 'mount', '--', 'sh', '-c', script], {
        env,
      });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.trim().split('\n'), ['5:5', '65534:65534', '0']);
      // Without a namespace of its own, the user may not idmap the host's filesystem.
      const host = await runAs(
        user,
        [node, bin, 'run', '--mount', `${user.home}:${user.home}:idmap`, '--', 'true'],
        { env },
      );
      assert.equal(host.code, 125);
      assert.match(host.stderr, /not privileged/);
    }));
});
