/**
 * Kernel checks. user.max_user_namespaces is set to 0 for real (globally, restored in finally,
 * and inside a child user namespace, where the limit is the kernel's own per-namespace one);
 * the knobs this kernel does not have (Debian's unprivileged_userns_clone, Ubuntu's AppArmor
 * restriction) are read from a substitute /proc tree.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runDoctor } from '../../src/doctor/index.js';
import { kernelChecks } from '../../src/doctor/kernel.js';
import { probeHere } from '../../src/doctor/probe.js';
import type { DoctorContext } from '../../src/doctor/types.js';
import { packagedHelperPath } from '../../src/native/helper-binary.js';
import {
  appArmor,
  INIT_USER_NS_INODE,
  maxUserNamespaces,
  nesting,
  rootMountPropagation,
  sysctlSettings,
  unprivilegedUsernsClone,
  userNamespaceSupport,
} from '../../src/system/knobs.js';
import { runCli } from '../cli/run-cli.js';
import { type DoctorJson, find, summary } from './helpers.js';

const root = process.geteuid?.() === 0;
const MAX = '/proc/sys/user/max_user_namespaces';

/** Why the initial namespace's limit cannot be changed here (writing it needs CAP_SYS_RESOURCE). */
function globalLimitUnwritable(): string | undefined {
  if (!root) return 'needs root';
  const m = /^CapEff:\s*([0-9a-f]+)/m.exec(readFileSync('/proc/self/status', 'latin1'));
  if (m && (BigInt(`0x${m[1]}`) & (1n << 24n)) === 0n) {
    return 'machine: no CAP_SYS_RESOURCE here (a sandbox dropped it): the global limit cannot be written; the child-namespace test below covers it';
  }
  return undefined;
}

function write(path: string, text: string): void {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, text);
}

describe('knob readers', () => {
  test('real machine: user namespaces, initial namespace, max_user_namespaces', () => {
    const s = userNamespaceSupport();
    assert.equal(s.supported, true);
    const n = nesting();
    assert.equal(typeof n.nested, 'boolean');
    if (s.inode === INIT_USER_NS_INODE) {
      assert.equal(n.nested, false);
      assert.equal(n.fullIdentity, true);
      assert.equal(n.uidCount, 4294967295);
    }
    const k = maxUserNamespaces();
    assert.equal(k.file, MAX);
    assert.equal(k.value, Number(readFileSync(MAX, 'utf8')));
  });

  test('substitute /proc: absent knobs, values, nesting, mountinfo propagation', () => {
    const dir = mkdtempSync(join(tmpdir(), 'userns-knobs-'));
    try {
      assert.equal(unprivilegedUsernsClone({ procRoot: dir }).exists, false);
      assert.equal(unprivilegedUsernsClone({ procRoot: dir }).errno, 'ENOENT');
      write(join(dir, 'sys/kernel/unprivileged_userns_clone'), '0\n');
      assert.deepEqual(unprivilegedUsernsClone({ procRoot: dir }).value, 0);
      write(join(dir, 'self/ns/user'), 'user:[4026532000]');
      write(join(dir, 'self/uid_map'), '         0     100000      65536\n');
      write(join(dir, 'self/gid_map'), '         0     100000      65536\n');
      const n = nesting({ procRoot: dir });
      assert.equal(n.nested, true);
      assert.equal(n.inode, 4026532000);
      assert.equal(n.uidCount, 65536);
      write(
        join(dir, 'self/mountinfo'),
        '1 0 8:1 / / rw - ext4 /dev/sda1 rw\n25 1 0:5 / /dev rw shared:2 - devtmpfs udev rw\n27 1 254:0 / / rw,relatime shared:1 master:3 - ext4 /dev/vda rw\n',
      );
      const p = rootMountPropagation({ procRoot: dir });
      assert.deepEqual({ shared: p.shared, line: p.line }, { shared: true, line: 3 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('AppArmor profiles with a userns rule, attached to a program by path or glob', () => {
    const dir = mkdtempSync(join(tmpdir(), 'userns-aa-'));
    try {
      writeFileSync(join(dir, 'other'), 'profile other /usr/bin/other {\n  capability,\n}\n');
      writeFileSync(
        join(dir, 'userns-helper'),
        'abi <abi/4.0>,\ninclude <tunables/global>\nprofile userns-helper /opt/**/build/userns-helper flags=(unconfined) {\n  userns,\n}\n',
      );
      const a = appArmor('/opt/x/node_modules/userns/build/userns-helper', {
        apparmorDir: dir,
        sysRoot: dir,
      });
      assert.equal(a.enabled, false);
      assert.equal(a.usernsProfiles.length, 1);
      assert.deepEqual(
        { line: a.usernsProfiles[0]!.line, match: a.usernsProfiles[0]!.matchesProgram },
        { line: 4, match: true },
      );
      assert.equal(
        appArmor('/usr/bin/elsewhere', { apparmorDir: dir }).usernsProfiles[0]!.matchesProgram,
        false,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('sysctl.d settings are found with file and line (last one wins)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'userns-sysctl-'));
    try {
      writeFileSync(join(dir, '10-a.conf'), '# comment\nuser.max_user_namespaces = 0\n');
      writeFileSync(join(dir, '20-b.conf'), 'kernel.x=1\nuser/max_user_namespaces=100\n');
      const conf = join(dir, 'sysctl.conf');
      writeFileSync(conf, '-user.max_user_namespaces=5\n');
      assert.deepEqual(sysctlSettings('user.max_user_namespaces', { sysctlDirs: [dir], sysctlConf: conf }), [
        { file: join(dir, '10-a.conf'), line: 2, value: '0' },
        { file: join(dir, '20-b.conf'), line: 2, value: '100' },
        { file: conf, line: 1, value: '5' },
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('kernel checks on a substitute /proc (knobs this kernel lacks)', () => {
  let dir: string;
  let aaDir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'userns-proc-'));
    aaDir = mkdtempSync(join(tmpdir(), 'userns-aa-'));
    write(join(dir, 'self/ns/user'), `user:[${INIT_USER_NS_INODE}]`);
    write(join(dir, 'self/uid_map'), '         0          0 4294967295\n');
    write(join(dir, 'self/gid_map'), '         0          0 4294967295\n');
    write(join(dir, 'self/status'), 'Name:\tnode\nNoNewPrivs:\t0\nSeccomp:\t0\n');
    write(join(dir, 'sys/user/max_user_namespaces'), '15000\n');
    write(join(dir, 'sys/kernel/threads-max'), '30000\n');
    write(join(dir, 'sys/kernel/overflowuid'), '65534\n');
    write(join(dir, 'sys/kernel/overflowgid'), '65534\n');
    write(join(dir, 'sys/kernel/unprivileged_userns_clone'), '0\n');
    write(join(dir, 'sys/kernel/apparmor_restrict_unprivileged_userns'), '1\n');
    mkdirSync(join(dir, 'kernel/security/apparmor'), { recursive: true });
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(aaDir, { recursive: true, force: true });
  });
  const opts = () => ({ procRoot: dir, sysRoot: dir, apparmorDir: aaDir, probe: false });

  test('unprivileged user: unprivileged_userns_clone=0 and the AppArmor restriction are errors with fixes', async () => {
    const r = await runDoctor({ ...opts(), user: 'nobody' });
    const clone = find(r, 'kernel.unprivileged_userns_clone');
    assert.equal(clone.status, 'error', clone.message);
    assert.equal(clone.evidence.value, 0);
    assert.equal(clone.evidence.file, join(dir, 'sys/kernel/unprivileged_userns_clone'));
    assert.match(clone.fix!, /^sysctl -w kernel\.unprivileged_userns_clone=1/);
    const aa = find(r, 'kernel.apparmor_userns');
    assert.equal(aa.status, 'error', aa.message);
    assert.match(aa.fix!, /userns,/);
    assert.match(aa.fix!, /apparmor_parser -r/);
    assert.match(aa.fix!, /sysctl -w kernel\.apparmor_restrict_unprivileged_userns=0/);
    assert.equal(find(r, 'kernel.max_user_namespaces').status, 'ok');
    assert.equal(find(r, 'kernel.nesting').status, 'ok');
    assert.equal(r.blocking, true);
  });

  test('a profile with a userns rule for the helper lifts the AppArmor error', async () => {
    const helper = packagedHelperPath();
    writeFileSync(
      join(aaDir, 'userns-helper'),
      `abi <abi/4.0>,\nprofile userns-helper ${helper} flags=(unconfined) {\n  userns,\n}\n`,
    );
    try {
      const aa = find(await runDoctor({ ...opts(), user: 'nobody' }), 'kernel.apparmor_userns');
      assert.equal(aa.status, 'ok', aa.message);
      assert.equal(aa.evidence.file, join(aaDir, 'userns-helper'));
      assert.equal(aa.evidence.line, 3);
    } finally {
      rmSync(join(aaDir, 'userns-helper'));
    }
  });

  test('root: the same settings do not block root (warning / ok)', { skip: !root }, async () => {
    const r = await runDoctor(opts());
    assert.equal(find(r, 'kernel.unprivileged_userns_clone').status, 'warning');
    assert.equal(find(r, 'kernel.apparmor_userns').status, 'ok');
  });

  test('no /proc/self/ns/user: user namespaces are not compiled in', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'userns-proc-empty-'));
    try {
      const c = find(
        await runDoctor({ procRoot: empty, sysRoot: empty, probe: false }),
        'kernel.user_namespaces',
      );
      assert.equal(c.status, 'error');
      assert.match(c.fix!, /CONFIG_USER_NS=y/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  test('nested namespace with 65536 IDs: warning with the count', async () => {
    const nested = mkdtempSync(join(tmpdir(), 'userns-proc-nested-'));
    try {
      write(join(nested, 'self/ns/user'), 'user:[4026532999]');
      write(join(nested, 'self/uid_map'), '         0     100000      65536\n');
      write(join(nested, 'self/gid_map'), '         0     100000      65536\n');
      const c = find(await runDoctor({ procRoot: nested, sysRoot: nested, probe: false }), 'kernel.nesting');
      assert.equal(c.status, 'warning');
      assert.equal(c.evidence.uids, 65536);
      assert.equal(c.evidence.nested, true);
    } finally {
      rmSync(nested, { recursive: true, force: true });
    }
  });
});

describe('user.max_user_namespaces = 0, for real', { skip: root ? false : 'needs root' }, () => {
  test('globally (restored at once): error with the sysctl fix, the probe fails at unshare with ENOSPC', {
    skip: globalLimitUnwritable() ?? false,
  }, async () => {
    const old = readFileSync(MAX, 'utf8');
    const ctx: DoctorContext = {
      options: {},
      target: { name: 'root', uid: 0, gid: 0, home: '/root', shell: '' },
      targetIsRoot: true,
      targetIsSelf: true,
      privileged: true,
    };
    let checks: ReturnType<typeof kernelChecks>;
    let probe: Awaited<ReturnType<typeof probeHere>>;
    // The window is kept as short as possible: every user namespace creation on the machine
    // fails while it is open.
    writeFileSync(MAX, '0\n');
    try {
      checks = kernelChecks(ctx);
      probe = await probeHere({ timeoutMs: 5000 });
    } finally {
      writeFileSync(MAX, old);
    }
    assert.equal(readFileSync(MAX, 'utf8'), old);
    const c = find({ checks }, 'kernel.max_user_namespaces');
    assert.equal(c.status, 'error');
    assert.equal(c.evidence.value, 0);
    assert.equal(c.evidence.file, MAX);
    assert.match(c.fix!, /^sysctl -w user\.max_user_namespaces=[1-9][0-9]*/);
    assert.equal(probe.status, 'error', probe.message);
    assert.equal(probe.evidence.step, 'unshare');
    assert.equal(probe.evidence.code, 'UNSHARE_FAILED');
    assert.equal(probe.evidence.errno, 'ENOSPC');
  });

  test('inside a child user namespace (its own limit), through the CLI: exit 1', async () => {
    // userns run as root: identity map; root inside has CAP_SYS_RESOURCE over the new
    // namespace, so it may lower that namespace's limit, which binds everything below it.
    const r = await runCli([
      'run',
      '--',
      'sh',
      '-c',
      `echo 0 > ${MAX} && exec "$0" "$1" doctor --json`,
      process.execPath,
      new URL('../../../bin/userns', import.meta.url).pathname,
    ]);
    assert.equal(r.code, 1, r.stderr);
    const out = JSON.parse(r.stdout) as DoctorJson;
    assert.equal(out.ok, false);
    const max = out.checks.find((c) => c.id === 'kernel.max_user_namespaces')!;
    assert.equal(max.status, 'error');
    assert.equal(max.evidence.value, 0);
    assert.match(max.fix!, /sysctl -w user\.max_user_namespaces=/);
    const probe = out.checks.find((c) => c.id === 'probe.userns')!;
    assert.equal(probe.status, 'error');
    assert.equal(probe.evidence.step, 'unshare');
    assert.equal(probe.evidence.errno, 'ENOSPC');
    assert.match(probe.fix!, /kernel\.max_user_namespaces/);
    assert.equal(find(out as never, 'kernel.nesting').evidence.nested, true);
    // Nothing leaked out of the child namespace.
    assert.notEqual(readFileSync(MAX, 'utf8').trim(), '0');
  });

  test('in a nested namespace with only 65536 IDs: nesting warning, ranges checked against it', async () => {
    const r = await runCli([
      'run',
      '--uidmap',
      '0:0:65536',
      '--',
      process.execPath,
      new URL('../../../bin/userns', import.meta.url).pathname,
      'doctor',
      '--json',
      '--no-probe',
    ]);
    const out = JSON.parse(r.stdout) as DoctorJson;
    const n = out.checks.find((c) => c.id === 'kernel.nesting')!;
    assert.equal(n.status, 'warning', summary(out as never));
    assert.equal(n.evidence.uids, 65536);
    assert.match(n.message, /65536 uids/);
  });
});
