/** Mode → map resolution (pure) and argument handling. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { splitCommand } from '../../src/cli/run.js';
import { NewIdmapError } from '../../src/errors/index.js';
import { IdMap } from '../../src/idmap/idmap.js';
import { type ModeContext, mapForMode, modeContext, usablePool } from '../../src/maps/modes.js';
import { newidmapArgv, singleMap } from '../../src/maps/write-maps.js';
import { suggestSubordinateRange } from '../../src/system/subordinate.js';

const rootless: ModeContext = {
  uid: 1001,
  gid: 1002,
  privileged: false,
  ownUidMap: IdMap.identity(),
  ownGidMap: IdMap.identity(),
  subuid: [
    { start: 100000, count: 65536 },
    { start: 300000, count: 10 },
  ],
  subgid: [{ start: 200000, count: 65536 }],
};
const root: ModeContext = { ...rootless, uid: 0, gid: 0, privileged: true, subuid: [], subgid: [] };

describe('mapForMode', () => {
  test('auto, rootless: 0 = the caller, then every subordinate range in order', () => {
    assert.equal(mapForMode('auto', 'uid', rootless).toString(), '0:1001:1,1:100000:65536,65537:300000:10');
    assert.equal(mapForMode('auto', 'gid', rootless).toString(), '0:1002:1,1:200000:65536');
  });
  test('auto, root: the full identity map (or whatever the current namespace has)', () => {
    assert.equal(mapForMode('auto', 'uid', root).toString(), '0:0:4294967295');
    const nested = {
      ...root,
      ownUidMap: new IdMap([
        { inside: 0, outside: 1000, count: 1 },
        { inside: 1, outside: 100000, count: 65536 },
      ]),
    };
    assert.equal(mapForMode('auto', 'uid', nested).toString(), '0:0:65537');
  });
  test('self: only the caller, as 0', () => {
    assert.equal(mapForMode('self', 'uid', rootless).toString(), '0:1001:1');
    assert.equal(mapForMode('self', 'gid', rootless).toString(), '0:1002:1');
  });
  test('keep-id: the caller keeps its uid; subordinate IDs fill 0… around it', () => {
    assert.equal(
      mapForMode('keep-id', 'uid', rootless).toString(),
      '1001:1001:1,0:100000:1001,1002:101001:64535,65537:300000:10',
    );
  });
  test('identity: inside = outside for the caller and its ranges', () => {
    assert.equal(
      mapForMode('identity', 'uid', rootless).toString(),
      '1001:1001:1,100000:100000:65536,300000:300000:10',
    );
  });
  test("the caller's own ID and overlapping lines are taken out of the pool", () => {
    assert.deepEqual(
      usablePool(
        [
          { start: 1000, count: 10 },
          { start: 1005, count: 10 },
        ],
        1003,
      ),
      [
        { start: 1000, count: 3 },
        { start: 1004, count: 6 },
        { start: 1010, count: 5 },
      ],
    );
  });
});

describe('helpers', () => {
  test('newuidmap argv keeps the map order', () => {
    assert.deepEqual(
      newidmapArgv(
        'newuidmap',
        42,
        new IdMap([
          { inside: 1, outside: 100000, count: 5 },
          { inside: 0, outside: 1000, count: 1 },
        ]),
      ),
      ['newuidmap', '42', '1', '100000', '5', '0', '1000', '1'],
    );
  });
  test('single-ID fallback keeps the inside ID the request gave the caller', () => {
    assert.equal(singleMap(new IdMap([{ inside: 5, outside: 1001, count: 1 }]), 1001).toString(), '5:1001:1');
    assert.equal(
      singleMap(new IdMap([{ inside: 0, outside: 100000, count: 1 }]), 1001).toString(),
      '0:1001:1',
    );
  });
  test('the CLI splits its options from the command at -- or at the first word', () => {
    assert.deepEqual(splitCommand(['--uidmap', '0:0:1', '--', 'sh', '-c', 'x']), {
      options: ['--uidmap', '0:0:1'],
      command: ['sh', '-c', 'x'],
    });
    assert.deepEqual(splitCommand(['--userns', 'self', 'sh', '-c', 'x']), {
      options: ['--userns', 'self'],
      command: ['sh', '-c', 'x'],
    });
    assert.deepEqual(splitCommand(['--dry-run', '--json']), {
      options: ['--dry-run', '--json'],
      command: [],
    });
  });
});

describe('a user without subordinate IDs: the hint suggests a free range', () => {
  test('the range nobody has in /etc/subuid or /etc/subgid (as doctor proposes), never a fixed one another user owns', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'userns-free-range-'));
    try {
      const files = {
        subuidPath: join(dir, 'subuid'),
        subgidPath: join(dir, 'subgid'),
        loginDefsPath: join(dir, 'login.defs'),
        getsubidsPath: join(dir, 'no-getsubids'),
        nsswitchPath: join(dir, 'nsswitch.conf'),
      };
      writeFileSync(files.subuidPath, 'alice:100000:65536\nbob:165536:65536\n');
      writeFileSync(files.subgidPath, 'alice:100000:65536\ncarol:231072:65536\n');
      writeFileSync(files.loginDefsPath, 'SUB_UID_MIN 100000\nSUB_UID_COUNT 65536\n');
      writeFileSync(files.nsswitchPath, '');
      const free = await suggestSubordinateRange(files);
      assert.deepEqual(free, { start: 296608, count: 65536 });
      // What the NO_SUBORDINATE_IDS hint of run/create says (the user here has no line).
      const ctx = await modeContext({ subordinate: true, files });
      ctx.privileged = false;
      assert.deepEqual(ctx.subuid, []);
      assert.throws(
        () => mapForMode('auto', 'uid', ctx),
        (e: unknown) =>
          e instanceof NewIdmapError &&
          e.code === 'NO_SUBORDINATE_IDS' &&
          (e.hint ?? '').includes('--add-subuids 296608-362143 --add-subgids 296608-362143'),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
