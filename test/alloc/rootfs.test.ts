import assert from 'node:assert/strict';
import { chownSync, lchownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { allocate } from '../../src/alloc/index.js';
import { estimateRootfsSize } from '../../src/alloc/rootfs-size.js';

const isRoot = process.geteuid?.() === 0;
const base = mkdtempSync(join(tmpdir(), 'userns-alloc-rootfs-'));
after(() => rmSync(base, { recursive: true, force: true }));

function tree(name: string, passwd: string, group: string): string {
  const root = join(base, name);
  mkdirSync(join(root, 'etc'), { recursive: true });
  mkdirSync(join(root, 'var', 'lib', 'app'), { recursive: true });
  writeFileSync(join(root, 'etc', 'passwd'), passwd);
  writeFileSync(join(root, 'etc', 'group'), group);
  writeFileSync(join(root, 'var', 'lib', 'app', 'data'), 'x');
  return root;
}

describe('--for-rootfs size estimate', () => {
  test('a small image needs the minimum of 1024', () => {
    const root = tree(
      'small',
      'root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534:::\n',
      'root:x:0:\nnogroup:x:65534:\n',
    );
    const e = estimateRootfsSize(root);
    assert.equal(e.size, 1024);
    assert.equal(e.uid.highest, 0);
  });

  test('highest IDs from files and from /etc/passwd and /etc/group; 65534 ignored', {
    skip: !isRoot && 'chown needs root',
  }, () => {
    const root = tree(
      'big',
      'root:x:0:0::/root:/bin/sh\napp:x:1500:1600:::\nnobody:x:65534:65534:::\nweird:x:70000:5:::\n'.replace(
        'weird:x:70000:5:::\n',
        '',
      ),
      'root:x:0:\napp:x:1600:\nbig:x:2500:\nnogroup:x:65534:\n',
    );
    chownSync(join(root, 'var', 'lib', 'app', 'data'), 3000, 100);
    chownSync(join(root, 'var', 'lib'), 65534, 65534);
    symlinkSync('/etc/shadow', join(root, 'var', 'link'));
    lchownSync(join(root, 'var', 'link'), 4000, 4100);
    const e = estimateRootfsSize(root);
    assert.equal(e.uid.highest, 4000, 'the link itself counts (lchown), its target is not followed');
    assert.equal(e.gid.highest, 4100);
    assert.equal(e.size, 4101);
    // Without the link: the file owner (3000) and the group entry (2500).
    rmSync(join(root, 'var', 'link'));
    const f = estimateRootfsSize(root);
    assert.equal(f.uid.highest, 3000);
    assert.equal(f.gid.highest, 2500);
    assert.match(f.gid.where!, /etc\/group \(big\)/);
    assert.equal(f.size, 3001);
  });

  test('an absolute /etc/passwd link is resolved inside the image, not on the host', () => {
    const root = tree('linked', '', 'root:x:0:\n');
    rmSync(join(root, 'etc', 'passwd'));
    mkdirSync(join(root, 'usr', 'share'), { recursive: true });
    writeFileSync(join(root, 'usr', 'share', 'passwd'), 'app:x:5000:5000:::\n');
    symlinkSync('/usr/share/passwd', join(root, 'etc', 'passwd'));
    assert.equal(estimateRootfsSize(root).uid.highest, 5000);
  });

  test('allocate({ forRootfs }) uses the estimate', async () => {
    const root = tree('alloc', 'root:x:0:0:::\napp:x:2047:2047:::\n', '');
    const a = await allocate({
      root: join(base, 'state'),
      forRootfs: root,
      pool: [{ start: 100_000, count: 100_000 }],
      registry: { systemTaken: null },
    });
    assert.equal(a.size, 2048);
    assert.deepEqual(a.uidMap, [{ inside: 0, outside: 100_000, count: 2048 }]);
    assert.equal(a.estimate?.uid.highest, 2047);
  });

  test('a missing directory is a clear error', () => {
    assert.throws(() => estimateRootfsSize(join(base, 'nope')), { code: 'ROOTFS_UNREADABLE' });
  });
});
