/**
 * $USERNS_SUBUID_FILE, $USERNS_SUBGID_FILE and $USERNS_ALLOC_CONFIG: userns reads its own files
 * instead of /etc/subuid, /etc/subgid and /etc/userns/alloc.json (tests, images, chroots).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { resolvePools, SYSTEMD_CONTAINER_RANGE } from '../../src/alloc/pool.js';
import { getSubordinateRanges, subidFile } from '../../src/system/subordinate.js';
import { isolateHostFiles, withRealHostFiles } from '../fixtures/host-files.js';

const dir = mkdtempSync(join(tmpdir(), 'userns-hostfiles-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('the variables choose the files; options still win', async () => {
  const files = isolateHostFiles();
  assert.equal(subidFile('uid'), files.subuid);
  assert.equal(subidFile('gid'), files.subgid);
  assert.equal(subidFile('uid', { subuidPath: '/x' }), '/x');
  writeFileSync(files.subuid, 'alice:100000:65536\n5000:300000:10\n');
  const r = await getSubordinateRanges({ name: 'alice', uid: 5000 }, 'uid');
  assert.equal(r.file, files.subuid);
  assert.deepEqual(r.ranges, [
    { start: 100000, count: 65536 },
    { start: 300000, count: 10 },
  ]);
  assert.deepEqual(
    Object.keys(withRealHostFiles(process.env)).filter((k) => k.startsWith('USERNS_SUB')),
    [],
  );
});

test("root's pool: the containers user's ranges in the substituted files, else systemd's range; the configuration file", async () => {
  const files = isolateHostFiles();
  writeFileSync(files.subuid, 'containers:231072:65536\n');
  writeFileSync(files.subgid, 'containers:231072:65536\n');
  const podman = await resolvePools({ euid: 0 });
  assert.deepEqual(podman.uid.ranges, [{ start: 231072, count: 65536 }]);
  assert.match(podman.uid.source, new RegExp(files.subuid));
  writeFileSync(files.subuid, '');
  writeFileSync(files.subgid, '');
  const plain = await resolvePools({ euid: 0 });
  assert.deepEqual(plain.uid.ranges, [SYSTEMD_CONTAINER_RANGE]);
  writeFileSync(files.allocConfig, JSON.stringify({ pool: ['1000000:2000'] }));
  const configured = await resolvePools({ euid: 0 });
  assert.deepEqual(configured.gid.ranges, [{ start: 1000000, count: 2000 }]);
  assert.equal(configured.gid.source, files.allocConfig);
  rmSync(files.allocConfig);
});
