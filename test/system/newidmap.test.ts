import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { chmod, copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  capabilityFlags,
  inspectNewIdmap,
  nosuidMountOf,
  parseGetcapOutput,
} from '../../src/system/newidmap.js';

const real = '/usr/bin/newuidmap';
const realIsSetuid = existsSync(real) && (statSync(real).mode & 0o4000) !== 0 && statSync(real).uid === 0;
const getcap = ['/usr/sbin/getcap', '/sbin/getcap', '/usr/bin/getcap'].find((p) => existsSync(p));
const setcap = ['/usr/sbin/setcap', '/sbin/setcap', '/usr/bin/setcap'].find((p) => existsSync(p));
const root = process.geteuid?.() === 0;

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'userns-newidmap-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function copyOf(name: string): Promise<string> {
  const path = join(dir, name);
  await copyFile(real, path);
  await chmod(path, 0o755);
  return path;
}

async function run(file: string, args: string[]): Promise<void> {
  const { execFile } = await import('node:child_process');
  await new Promise<void>((resolve, reject) => execFile(file, args, (e) => (e ? reject(e) : resolve())));
}

describe('newuidmap / newgidmap inspection', () => {
  test('the installed setuid newuidmap and newgidmap are usable', {
    skip: realIsSetuid ? undefined : `${real} is not installed setuid root (apt-get install uidmap)`,
  }, async () => {
    const info = await inspectNewIdmap('newuidmap');
    assert.equal(info.which, 'newuidmap');
    assert.ok(info.path?.endsWith('/newuidmap'));
    assert.equal(info.exists, true);
    assert.equal(info.owner, 0);
    assert.equal(info.setuidRoot, true);
    assert.equal((info.mode ?? 0) & 0o4000, 0o4000);
    assert.equal(info.usable, true, info.reason);
    assert.equal(info.reason, undefined);
    const gid = await inspectNewIdmap('newgidmap');
    assert.equal(gid.usable, true, gid.reason);
    assert.ok(gid.path?.endsWith('/newgidmap'));
  });

  test('the version comes from the owning Debian package, when there is one', {
    skip: existsSync('/usr/bin/dpkg-query') && realIsSetuid ? undefined : 'not a Debian system with uidmap',
  }, async () => {
    const info = await inspectNewIdmap('newuidmap', { path: real });
    assert.match(info.version ?? '', /^[0-9:]*[0-9][0-9A-Za-z.+~:-]*$/);
  });

  test('a copy without the setuid bit is unusable, and says why and how to fix it', {
    skip: existsSync(real) ? undefined : `${real} is not installed`,
  }, async () => {
    const path = await copyOf('newuidmap-plain');
    const info = await inspectNewIdmap('newuidmap', { path });
    assert.equal(info.path, path);
    assert.equal(info.exists, true);
    assert.equal(info.setuidRoot, false);
    assert.equal(info.fileCaps, undefined);
    assert.equal(info.hasNeededCap, false);
    assert.equal(info.usable, false);
    assert.equal(info.version, undefined);
    assert.ok(info.reason !== undefined);
    if (getcap) {
      assert.match(info.reason, /has no setuid bit nor file capabilities/);
    }
    assert.match(info.reason, /chmod u\+s/);
    assert.match(info.reason, /setcap cap_setuid\+ep/);
    assert.ok(info.reason.includes(path));
  });

  test('file capabilities: cap_setuid+ep makes newuidmap usable, a wrong capability does not', {
    skip: root && setcap && getcap ? undefined : 'needs root, setcap and getcap (libcap2-bin)',
  }, async () => {
    const path = await copyOf('newuidmap-fcaps');
    await run(setcap!, ['cap_setuid+ep', path]);
    const good = await inspectNewIdmap('newuidmap', { path });
    assert.equal(good.setuidRoot, false);
    assert.equal(good.fileCaps, 'cap_setuid=ep');
    assert.equal(good.hasNeededCap, true);
    assert.equal(good.usable, true, good.reason);

    // The same file as newgidmap needs cap_setgid.
    const asGid = await inspectNewIdmap('newgidmap', { path });
    assert.equal(asGid.hasNeededCap, false);
    assert.equal(asGid.usable, false);
    assert.match(asGid.reason ?? '', /lack cap_setgid/);
    assert.match(asGid.reason ?? '', /setcap cap_setgid\+ep/);

    // Permitted only: not enough.
    await run(setcap!, ['cap_setuid=p', path]);
    const permittedOnly = await inspectNewIdmap('newuidmap', { path });
    assert.equal(permittedOnly.hasNeededCap, false);
    assert.equal(permittedOnly.usable, false);
  });

  test('setuid but not owned by root', { skip: root ? undefined : 'needs root to chown' }, async () => {
    const path = await copyOf('newuidmap-notroot');
    const { chown } = await import('node:fs/promises');
    await chown(path, 1, 1);
    await chmod(path, 0o4755);
    const info = await inspectNewIdmap('newuidmap', { path });
    assert.equal(info.owner, 1);
    assert.equal(info.setuidRoot, false);
    assert.equal(info.usable, false);
    assert.match(info.reason ?? '', /owned by uid 1, not root: chown root:root/);
  });

  test('missing and non-executable files', async () => {
    const missing = await inspectNewIdmap('newuidmap', { path: join(dir, 'nope') });
    assert.equal(missing.exists, false);
    assert.equal(missing.usable, false);
    assert.match(missing.reason ?? '', /does not exist.*apt-get install uidmap/);

    const directory = await inspectNewIdmap('newgidmap', { path: dir });
    assert.equal(directory.exists, false);
    assert.match(directory.reason ?? '', /not a regular file/);

    if (existsSync(real)) {
      const path = await copyOf('newuidmap-noexec');
      await chmod(path, 0o4644);
      const info = await inspectNewIdmap('newuidmap', { path });
      assert.equal(info.usable, false);
      assert.match(info.reason ?? '', /not executable/);
    }
  });

  test('not installed at all: PATH and the standard dirs are searched', async (t) => {
    if (
      existsSync('/usr/bin/newuidmap') ||
      existsSync('/usr/sbin/newuidmap') ||
      existsSync('/bin/newuidmap')
    ) {
      const saved = process.env.PATH;
      process.env.PATH = dir;
      try {
        const info = await inspectNewIdmap('newuidmap');
        assert.ok(
          info.path !== undefined && !info.path.startsWith(dir),
          'found outside PATH in the standard dirs',
        );
      } finally {
        process.env.PATH = saved;
      }
      return;
    }
    const info = await inspectNewIdmap('newuidmap');
    assert.equal(info.path, undefined);
    assert.match(info.reason ?? '', /newuidmap is not installed.*apt-get install uidmap/);
    t.diagnostic('newuidmap not installed on this machine');
  });

  test('parseGetcapOutput: both output styles, nothing for no capabilities', () => {
    assert.equal(
      parseGetcapOutput('/usr/bin/newuidmap cap_setuid=ep\n', '/usr/bin/newuidmap'),
      'cap_setuid=ep',
    );
    assert.equal(
      parseGetcapOutput('/usr/bin/newuidmap = cap_setuid+ep\n', '/usr/bin/newuidmap'),
      'cap_setuid+ep',
    );
    assert.equal(
      parseGetcapOutput('/tmp/a b c cap_setgid,cap_setfcap=ep\n', '/tmp/a b c'),
      'cap_setgid,cap_setfcap=ep',
    );
    assert.equal(parseGetcapOutput('/usr/bin/ping cap_net_raw=ep\n'), 'cap_net_raw=ep');
    assert.equal(parseGetcapOutput('/x =ep cap_setuid-ep\n'), '=ep cap_setuid-ep');
    assert.equal(parseGetcapOutput(''), undefined);
    assert.equal(parseGetcapOutput('/usr/bin/newuidmap\n', '/usr/bin/newuidmap'), undefined);
  });

  test('capabilityFlags follows cap_from_text', () => {
    const f = (text: string, cap = 'cap_setuid') => {
      const r = capabilityFlags(text, cap);
      return r === undefined
        ? undefined
        : `${r.effective ? 'e' : ''}${r.inheritable ? 'i' : ''}${r.permitted ? 'p' : ''}`;
    };
    assert.equal(f('cap_setuid=ep'), 'ep');
    assert.equal(f('cap_setuid+ep'), 'ep');
    assert.equal(f('cap_setuid,cap_setgid=ep', 'cap_setgid'), 'ep');
    assert.equal(f('cap_setgid=ep'), '');
    assert.equal(f('cap_setuid=p'), 'p');
    assert.equal(f('cap_setuid=p+e'), 'ep');
    assert.equal(f('cap_setuid=eip cap_setuid-i'), 'ep');
    assert.equal(f('=ep'), 'ep');
    assert.equal(f('all=ep'), 'ep');
    assert.equal(f('=ep cap_setuid-ep'), '');
    assert.equal(f('CAP_SETUID=EP'), 'ep');
    assert.equal(f('cap_setuid'), undefined);
    assert.equal(f('cap_setuid=xz'), undefined);
  });

  test('nosuid mounts are detected from mountinfo', () => {
    const mountinfo = [
      '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw',
      '28 27 0:25 / /opt/tools ro,nosuid,nodev,relatime - tmpfs x ro',
      '29 27 0:26 / /opt/my\\040tools rw,nosuid - tmpfs y rw',
    ].join('\n');
    assert.equal(nosuidMountOf('/', mountinfo), undefined);
    assert.equal(nosuidMountOf(dir, mountinfo), undefined);
    // realpath must exist: use a path that resolves to one of ours only when present
    assert.equal(nosuidMountOf('/nonexistent/path', mountinfo), undefined);
  });
});
