/**
 * The linux-arm64 helper the package ships (build/linux-arm64/userns-helper), tested on this
 * x86-64 machine two ways:
 *
 * 1. Under qemu-aarch64-static (user-mode emulation), driven by the real driver
 *    (src/native/helper.ts) through a wrapper script: the protocol handshake, a usage error, and
 *    the walk of `userns shift` compared record for record with the x64 helper's. qemu-user
 *    cannot create or enter a user namespace: it runs its own second thread, and the kernel
 *    refuses unshare(CLONE_NEWUSER) and setns() into a user namespace to a multi-threaded
 *    process (EINVAL). That refusal is checked too (it comes back as a typed UNSHARE_FAILED).
 *    qemu 7.2 also lacks open_tree/move_mount/mount_setattr (ENOSYS), so mounts are not tried.
 *
 * 2. Under qemu-system-aarch64 with Debian's arm64 kernel (installed by scripts/install-test-deps):
 *    the real thing. A tiny static arm64 init (arm64/vm-init.c) drives the helper by the protocol
 *    and runs a static arm64 `true`, and more, in new user namespaces on a real arm64 kernel.
 *
 * Missing tools are a printed skip, except under CI=true, where they fail the test.
 */
import assert from 'node:assert/strict';
import { spawn as spawnChild, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import type { Readable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SpawnError } from '../../src/errors/index.js';
import { launchHelper } from '../../src/native/helper.js';
import { packagedHelperPath } from '../../src/native/helper-binary.js';
import { runWalk, type WalkJob, type WalkRecord } from '../../src/shift/tree-walk.js';
import { run } from '../../src/spawn/spawn.js';

const CI = process.env.CI === 'true';
const ARM64_HELPER = packagedHelperPath('linux', 'arm64');
const X64_HELPER = packagedHelperPath('linux', 'x64');
const CROSS_CC = 'aarch64-linux-gnu-gcc';
const VM_INIT_SOURCE = fileURLToPath(new URL('../../../test/native/arm64/vm-init.c', import.meta.url));
/** The arm64 kernel scripts/install-test-deps unpacks (Debian's linux-image-cloud-arm64). */
const ARM64_KERNEL = process.env.USERNS_TEST_ARM64_KERNEL || '/var/cache/userns-tests/linux-arm64/vmlinuz';
const isRoot = process.geteuid?.() === 0;

function have(command: string): boolean {
  return spawnSync('sh', ['-c', 'command -v "$1"', 'sh', command], { stdio: 'ignore' }).status === 0;
}

/** Why these tests cannot run here, or false. Under CI=true a reason fails the test instead. */
function missing(extra: [boolean, string][]): string | false {
  const reasons = [
    [process.platform === 'linux' && process.arch === 'x64', 'not an x86-64 Linux machine'] as [
      boolean,
      string,
    ],
    [isRoot, 'needs root (maps are written directly)'] as [boolean, string],
    [existsSync(ARM64_HELPER), `${ARM64_HELPER} is not built (needs ${CROSS_CC})`] as [boolean, string],
    [have(CROSS_CC), `no ${CROSS_CC} (Debian: gcc-aarch64-linux-gnu libc6-dev-arm64-cross)`] as [
      boolean,
      string,
    ],
    ...extra,
  ]
    .filter(([ok]) => !ok)
    .map(([, why]) => why);
  return reasons.length === 0
    ? false
    : `${reasons.join('; ')} (scripts/install-test-deps installs what is missing)`;
}

function skipUnlessCi(reason: string | false): string | false {
  return CI ? false : reason;
}

const work = mkdtempSync(join(tmpdir(), 'userns-arm64-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** Cross-compiles a static arm64 program (a C file, or C text) into the run's temp dir. */
function crossCompile(name: string, source: { file: string } | { text: string }): string {
  const out = join(work, name);
  const input = 'file' in source ? source.file : join(work, `${name}.c`);
  if ('text' in source) writeFileSync(input, source.text);
  const r = spawnSync(CROSS_CC, ['-std=c11', '-O2', '-Wall', '-Werror', '-static', '-s', '-o', out, input], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, `${CROSS_CC} ${name}: ${r.stderr}`);
  return out;
}

const TRUE_C = { text: 'int main(void) { return 0; }\n' };

function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

describe('arm64 helper under qemu-aarch64-static (user-mode emulation)', () => {
  const reason = missing([
    [have('qemu-aarch64-static'), 'no qemu-aarch64-static (Debian: qemu-user-static)'],
  ]);
  const skip = skipUnlessCi(reason);
  // The driver execs helperPath with the helper's arguments: a script that execs qemu keeps the
  // PID (the helper's "ready <pid>" names the process Node started) and the fds 3 and 4.
  const wrapper = join(work, 'arm64-helper');
  if (!reason) {
    writeFileSync(wrapper, `#!/bin/sh\nexec qemu-aarch64-static ${shellQuote(ARM64_HELPER)} "$@"\n`);
    chmodSync(wrapper, 0o755);
  }

  test('handshake: "ready <pid>" for the process Node started, then an abort exits 125', {
    skip,
    timeout: 30_000,
  }, async () => {
    assert.equal(reason, false, reason || '');
    const h = await launchHelper({
      namespaces: [],
      command: [],
      mode: 'walk',
      noUserns: true,
      user: null,
      setgroupsCall: false,
      stdio: ['ignore', 'ignore', 'inherit'],
      helperPath: wrapper,
    });
    assert.equal(h.pid, h.child.pid);
    const closed = new Promise<number | null>((resolve) => h.child.once('close', (code) => resolve(code)));
    await h.abort();
    assert.equal(await closed, 125);
  });

  test('a usage error is reported on fd 3 as "error usage 22" (EINVAL) with exit 127', {
    skip,
    timeout: 30_000,
  }, async () => {
    assert.equal(reason, false, reason || '');
    const child = spawnChild(wrapper, ['--mode=run', `--ppid=${process.pid}`, '--no-such-option'], {
      stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'],
    });
    let report = '';
    const fd3 = child.stdio[3] as Readable;
    fd3.setEncoding('utf8');
    fd3.on('data', (d: string) => {
      report += d;
    });
    const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
    assert.match(report, /^error usage 22 .*--no-such-option/);
    assert.equal(code, 127);
  });

  test('the walk of a shift: the same records, summary and owners as the x64 helper', {
    skip,
    timeout: 60_000,
  }, async () => {
    assert.equal(reason, false, reason || '');
    const acl = have('setfacl') && have('getfacl');
    if (!acl) console.log('# arm64 walk: no setfacl/getfacl, ACLs left out (Debian: acl)');
    const walk = async (name: string, helperPath: string) => {
      const root = join(work, `tree-${name}`);
      mkdirSync(join(root, 'd/e'), { recursive: true });
      writeFileSync(join(root, 'd/f'), 'x');
      chownSync(join(root, 'd/f'), 5, 7);
      linkSync(join(root, 'd/f'), join(root, 'd/hardlink'));
      symlinkSync('f', join(root, 'd/l'));
      writeFileSync(join(root, 'outside'), 'y');
      chownSync(join(root, 'outside'), 70000, 70000);
      if (acl) spawnSync('setfacl', ['-m', 'u:3:r,g:4:rw', join(root, 'd/f')]);
      const records: WalkRecord[] = [];
      const job: WalkJob = {
        root,
        apply: true,
        list: true,
        uid: [{ from: 0, to: 100000, count: 65536 }],
        gid: [{ from: 0, to: 100000, count: 65536 }],
        unmapped: 'skip',
        v2root: null,
        crossFilesystems: false,
        progress: 0,
        count: false,
        workers: 2,
      };
      const summary = await runWalk(job, { namespace: null, helperPath, onRecord: (r) => records.push(r) });
      const owners = readdirSync(root, { recursive: true, encoding: 'utf8' })
        .sort()
        .map((p) => `${p} ${lstatSync(join(root, p)).uid}:${lstatSync(join(root, p)).gid}`);
      const acls = acl
        ? spawnSync('getfacl', ['-pRn', root], { encoding: 'utf8' }).stdout.replaceAll(root, '.')
        : '';
      const shown = records
        .map((r) => JSON.stringify('path' in r ? { ...r, path: relative(root, r.path) } : r))
        .sort();
      rmSync(root, { recursive: true, force: true });
      return { summary, records: shown, owners, acls };
    };
    const x64 = await walk('x64', X64_HELPER);
    const arm64 = await walk('arm64', wrapper);
    assert.ok(x64.summary.changed >= 5, JSON.stringify(x64.summary));
    assert.ok(x64.owners.includes('d/f 100005:100007'), x64.owners.join('\n'));
    if (acl) assert.match(x64.acls, /user:100003:r--/);
    assert.deepEqual(arm64, x64);
  });

  test('creating a user namespace fails under qemu-user (its second thread): UNSHARE_FAILED, EINVAL', {
    skip,
    timeout: 30_000,
  }, async () => {
    assert.equal(reason, false, reason || '');
    const trueArm64 = crossCompile('true-user', TRUE_C);
    await assert.rejects(
      run(trueArm64, [], { helperPath: wrapper }),
      (e: unknown) => e instanceof SpawnError && e.code === 'UNSHARE_FAILED' && e.errno === 'EINVAL',
    );
  });
});

/** A newc ("070701") cpio archive, the format the kernel unpacks as an initramfs. */
function cpioNewc(entries: { name: string; mode: number; data?: Buffer }[]): Buffer {
  const parts: Buffer[] = [];
  const pad = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);
  const hex = (n: number) => n.toString(16).padStart(8, '0');
  let ino = 1;
  for (const { name, mode, data = Buffer.alloc(0) } of [...entries, { name: 'TRAILER!!!', mode: 0 }]) {
    const nameBytes = Buffer.from(`${name}\0`);
    // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
    // rdevminor, namesize, check
    const fields = [ino++, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, nameBytes.length, 0];
    const header = Buffer.from(`070701${fields.map(hex).join('')}`);
    parts.push(header, nameBytes, pad(header.length + nameBytes.length), data, pad(data.length));
  }
  return Buffer.concat(parts);
}

describe('arm64 helper on an arm64 kernel (qemu-system-aarch64)', () => {
  const reason = missing([
    [have('qemu-system-aarch64'), 'no qemu-system-aarch64 (Debian: qemu-system-arm)'],
    [existsSync(ARM64_KERNEL), `no arm64 kernel at ${ARM64_KERNEL} (or set USERNS_TEST_ARM64_KERNEL)`],
  ]);
  const skip = skipUnlessCi(reason);

  test('runs a static arm64 true (and more) in new user namespaces through the arm64 helper', {
    skip,
    timeout: 180_000,
  }, async () => {
    assert.equal(reason, false, reason || '');
    const init = crossCompile('vm-init', { file: VM_INIT_SOURCE });
    const trueArm64 = crossCompile('true', TRUE_C);
    const runs = [
      '--unshare=user --uid=0 --gid=0 --setgroups=try -- /true',
      '--unshare=user,pid,mount --mount-proc --report-ns --uid=0 --gid=0 --setgroups=try -- /init probe',
      '--unshare=user --uid=0 --gid=0 -- /no-such-command',
      'abort --unshare=user --uid=0 --gid=0 -- /true',
    ];
    const initrd = join(work, 'initrd.cpio');
    writeFileSync(
      initrd,
      cpioNewc([
        { name: 'proc', mode: 0o040755 },
        { name: 'dev', mode: 0o040755 },
        { name: 'init', mode: 0o100755, data: readFileSync(init) },
        { name: 'true', mode: 0o100755, data: readFileSync(trueArm64) },
        { name: 'userns-helper', mode: 0o100755, data: readFileSync(ARM64_HELPER) },
        { name: 'runs', mode: 0o100644, data: Buffer.from(`${runs.join('\n')}\n`) },
      ]),
    );
    const qemu = spawnChild(
      'qemu-system-aarch64',
      [
        ...['-M', 'virt', '-cpu', 'cortex-a57', '-m', '256M', '-smp', '1'],
        ...['-display', 'none', '-monitor', 'none', '-serial', 'stdio', '-nic', 'none', '-no-reboot'],
        ...['-kernel', ARM64_KERNEL, '-initrd', initrd],
        ...['-append', 'console=ttyAMA0 rdinit=/init panic=-1 quiet'],
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    qemu.stdout.setEncoding('utf8');
    qemu.stdout.on('data', (d: string) => {
      output += d;
    });
    qemu.stderr.setEncoding('utf8');
    qemu.stderr.on('data', (d: string) => {
      output += d;
    });
    const timer = setTimeout(() => qemu.kill('SIGKILL'), 150_000);
    const code = await new Promise<number | null>((resolve) => qemu.once('close', (c) => resolve(c)));
    clearTimeout(timer);
    output = output.replaceAll('\r', '');
    assert.equal(code, 0, `qemu-system-aarch64 exited ${code}:\n${output}`);
    assert.match(output, /^DONE 4$/m, output);
    const result = (n: number) => {
      const m = new RegExp(`^RESULT ${n} child=(\\d+) status=(\\S+) reports=(.*)$`, 'm').exec(output);
      assert.ok(m, `no result of run ${n}:\n${output}`);
      return { child: m[1]!, status: m[2]!, reports: m[3]!.split('|').filter((l) => l !== '') };
    };

    // 1. The arm64 true: "ready <its pid>", maps written, go, exec (EOF on fd 3), exit 0.
    const r1 = result(1);
    assert.deepEqual(r1.reports, [`ready ${r1.child}`]);
    assert.equal(r1.status, '0');

    // 2. The command sees the map and the IDs, is PID 1 of its PID namespace with a fresh /proc,
    //    and its exit status comes back through the helper's supervisor.
    const r2 = result(2);
    assert.equal(r2.status, '7');
    const ready = r2.reports.indexOf(`ready ${r2.child}`);
    assert.ok(ready >= 0, r2.reports.join(' | '));
    // --report-ns: the namespaces that exist before "ready"; the PID namespace only has a
    // process once the helper forked, after "go", and its first process reports it then
    // (protocol.md "Reports"); handles are '-' before Linux 6.18.
    const types = (lines: string[]) => lines.map((l) => /^ns (\S+) \d+ \S+$/.exec(l)?.[1]);
    assert.deepEqual(types(r2.reports.slice(0, ready)), ['user', 'mount'], r2.reports.join(' | '));
    assert.deepEqual(types(r2.reports.slice(ready + 1)), ['pid'], r2.reports.join(' | '));
    const probe = /^PROBE uid=(\d+) gid=(\d+) pid=(\d+) uid_map=(.*)$/m.exec(output);
    assert.ok(probe, output);
    assert.deepEqual(probe.slice(1, 4), ['0', '0', '1']);
    assert.deepEqual(probe[4]!.trim().split(/\s+/), ['0', '100000', '65536;']);

    // 3. A missing command: a typed failure on fd 3, exit 127.
    const r3 = result(3);
    assert.equal(r3.status, '127');
    assert.equal(r3.reports[0], `ready ${r3.child}`);
    assert.match(r3.reports[1] ?? '', /^error exec 2 /); // ENOENT

    // 4. Abort instead of go: exit 125, nothing reported after "ready".
    const r4 = result(4);
    assert.equal(r4.status, '125');
    assert.deepEqual(r4.reports, [`ready ${r4.child}`]);
    assert.doesNotMatch(output, /^DRIVER /m);
  });
});
