/**
 * Path reachability (src/system/reachability.ts): the kernel's permission rules for a walk down
 * a path, checked on small trees and, as root, against the real kernel: the same question asked
 * of `test -r/-x` run with setpriv as the same IDs, on random modes and owners.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { IdMap } from '../../src/idmap/idmap.js';
import {
  type Accessor,
  findUnreachable,
  formatMode,
  type Need,
  namespaceAccessor,
} from '../../src/system/reachability.js';

const root = process.geteuid?.() === 0;
const base = mkdtempSync(join(tmpdir(), 'userns-reach-'));
chmodSync(base, 0o755);
after(() => rmSync(base, { recursive: true, force: true }));

const other: Accessor = { uid: 100000, gid: 100000, groups: [] };

describe('findUnreachable', { skip: root ? false : 'needs root (chown)' }, () => {
  // base/priv (0700 root) / tools (0755) / tool (0755); base/open (0755) / file (0600, uid 100000)
  const priv = join(base, 'priv');
  const tool = join(priv, 'tools', 'tool');
  mkdirSync(join(priv, 'tools'), { recursive: true });
  writeFileSync(tool, '#!/bin/sh\n');
  chmodSync(priv, 0o700);
  chmodSync(join(priv, 'tools'), 0o755);
  chmodSync(tool, 0o755);

  test('a private directory on the way blocks: named, with its mode and owner', () => {
    const u = findUnreachable(tool, other, 'execute');
    assert.ok(u);
    assert.equal(u.path, priv);
    assert.equal(u.need, 'search');
    assert.equal(u.errno, 'EACCES');
    assert.equal(u.mode, 0o700);
    assert.deepEqual(u.owner, { uid: 0, gid: 0 });
    assert.match(u.reason, /mode 0700, owner 0:0\) is not searchable/);
    assert.equal(
      findUnreachable(tool, { uid: 0, gid: 0, groups: [], capabilities: 'all' }, 'execute'),
      undefined,
    );
  });

  test('root inside a namespace: capabilities only over inodes whose owner is mapped', () => {
    const unmapped = namespaceAccessor(
      {
        uidMap: new IdMap([{ inside: 0, outside: 100000, count: 65536 }]),
        gidMap: new IdMap([{ inside: 0, outside: 100000, count: 65536 }]),
      },
      { uid: 0, gid: 0 },
    )!;
    const u = findUnreachable(tool, unmapped, 'execute');
    assert.equal(u?.path, priv);
    assert.match(u!.reason, /uid 0 inside the namespace \(uid 100000, gid 100000 outside\)/);
    assert.match(u!.reason, /its owner uid 0 and gid 0 are not mapped into the namespace/);
    const mapped = namespaceAccessor(
      {
        uidMap: new IdMap([
          { inside: 0, outside: 0, count: 1 },
          { inside: 1, outside: 100000, count: 65536 },
        ]),
        gidMap: new IdMap([{ inside: 0, outside: 0, count: 1 }]),
      },
      { uid: 0, gid: 0 },
    )!;
    assert.equal(findUnreachable(tool, mapped, 'execute'), undefined);
    // Not root inside: no capabilities at all.
    const user = namespaceAccessor(
      {
        uidMap: new IdMap([{ inside: 0, outside: 0, count: 2000 }]),
        gidMap: new IdMap([{ inside: 0, outside: 0, count: 2000 }]),
      },
      { uid: 1000, gid: 1000 },
    )!;
    assert.equal(findUnreachable(tool, user, 'execute')?.path, priv);
  });

  test('one class of bits: the owner gets the owner bits even when others may', () => {
    const dir = join(base, 'owner-class');
    mkdirSync(dir);
    const file = join(dir, 'f');
    writeFileSync(file, '');
    chownSync(file, 100000, 100000);
    chmodSync(file, 0o044);
    assert.equal(findUnreachable(file, other, 'read')?.path, file);
    assert.equal(findUnreachable(file, { uid: 100001, gid: 5, groups: [] }, 'read'), undefined);
    chmodSync(file, 0o404);
    // group class via a supplementary group
    chmodSync(file, 0o040);
    assert.equal(findUnreachable(file, { uid: 7, gid: 7, groups: [100000] }, 'read'), undefined);
    assert.equal(findUnreachable(file, { uid: 7, gid: 7, groups: [] }, 'read')?.path, file);
  });

  test('symbolic links are followed, and the target path is walked', () => {
    const link = join(base, 'link-to-tool');
    symlinkSync(tool, link);
    assert.equal(findUnreachable(link, other, 'execute')?.path, priv);
    const rel = join(base, 'rel-link');
    symlinkSync('priv/tools', rel);
    assert.equal(findUnreachable(join(rel, 'tool'), other, 'execute')?.path, priv);
  });

  test('missing paths, non-directories on the way, files that cannot be executed', () => {
    assert.equal(findUnreachable(join(base, 'nope', 'x'), other, 'read')?.errno, 'ENOENT');
    const file = join(base, 'plain');
    writeFileSync(file, '');
    chmodSync(file, 0o644);
    assert.equal(findUnreachable(join(file, 'x'), other, 'read')?.errno, 'ENOTDIR');
    const u = findUnreachable(file, { uid: 0, gid: 0, groups: [], capabilities: 'all' }, 'execute');
    assert.match(u!.reason, /has no execute bit at all/);
    assert.match(findUnreachable(base, other, 'execute')!.reason, /not a regular file/);
    assert.equal(formatMode(0o4755), '04755');
  });
});

/** The kernel's answer: `test -r/-x` (or cd) as uid:gid with no groups and no capabilities. */
function kernelSays(path: string, who: { uid: number; gid: number }, need: Need): boolean {
  const check =
    need === 'read' ? `test -r "$1"` : need === 'execute' ? `test -f "$1" && test -x "$1"` : `cd "$1"`;
  const r = spawnSync('setpriv', [
    `--reuid=${who.uid}`,
    `--regid=${who.gid}`,
    '--clear-groups',
    '--inh-caps=-all',
    '--bounding-set=-all',
    '--',
    'sh',
    '-c',
    check,
    'sh',
    path,
  ]);
  return r.status === 0;
}

describe('findUnreachable agrees with the kernel', {
  skip: !root
    ? 'needs root (setpriv to other IDs)'
    : spawnSync('setpriv', ['--version']).status !== 0
      ? 'setpriv (util-linux) is not installed'
      : false,
}, () => {
  test('random modes and owners on a two-level path', () => {
    let n = 0;
    fc.assert(
      fc.property(
        fc.tuple(
          fc.integer({ min: 0, max: 0o777 }),
          fc.integer({ min: 0, max: 0o777 }),
          fc.integer({ min: 0, max: 0o777 }),
          fc.constantFrom(100000, 100001),
          fc.constantFrom(100000, 100001),
          fc.constantFrom(100000, 100001),
          fc.constantFrom<Need>('read', 'execute', 'search'),
        ),
        ([m1, m2, m3, o1, o2, g, need]) => {
          const top = join(base, `k${n++}`);
          const mid = join(top, 'mid');
          const leaf = need === 'search' ? join(mid, 'leaf') : join(mid, 'leaf.sh');
          mkdirSync(mid, { recursive: true });
          if (need === 'search') mkdirSync(leaf);
          else writeFileSync(leaf, '#!/bin/sh\n');
          chownSync(top, o1, g);
          chownSync(mid, o2, g);
          chownSync(leaf, o1, o2);
          chmodSync(top, m1);
          chmodSync(mid, m2);
          chmodSync(leaf, m3);
          const who = { uid: 100000, gid: 100001 };
          const model = findUnreachable(leaf, { ...who, groups: [] }, need) === undefined;
          const kernel = kernelSays(leaf, who, need);
          rmSync(top, { recursive: true, force: true });
          assert.equal(
            model,
            kernel,
            `modes ${formatMode(m1)} ${formatMode(m2)} ${formatMode(m3)} owners ${o1}/${o2}:${g} ${need}`,
          );
        },
      ),
      { numRuns: 60 },
    );
  });
});
