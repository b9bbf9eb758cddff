/** Mode → map resolution (pure) and argument handling. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { splitCommand } from '../../src/cli/run.js';
import { NewIdmapError } from '../../src/errors/index.js';
import { compose } from '../../src/idmap/compose.js';
import { IdMap } from '../../src/idmap/idmap.js';
import { normalize } from '../../src/idmap/normalize.js';
import {
  type ModeContext,
  mapForMode,
  modeContext,
  needsSubordinate,
  parseModeSpec,
  resolveMapSpec,
  rootlessMap,
  usablePool,
} from '../../src/maps/modes.js';
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

describe('podman + and @ at the top level (issue 14 item 1)', () => {
  // alice (uid 2001, gid 2001): subuid alice:100000:65536; subgid alice:100000:65536 and alice:3000:1.
  const alice: ModeContext = {
    uid: 2001,
    gid: 2001,
    privileged: false,
    ownUidMap: IdMap.identity(),
    ownGidMap: IdMap.identity(),
    subuid: [{ start: 100000, count: 65536 }],
    subgid: [
      { start: 100000, count: 65536 },
      { start: 3000, count: 1 },
    ],
  };
  test('rootless: + fills from the IDs the caller may map (podman rootless semantics)', async () => {
    assert.equal(
      (await resolveMapSpec('+100000:@3000:1', 'gid', alice)).toString(),
      '0:2001:1,1:100000:65536,100000:3000:1',
    );
    assert.equal(
      (await resolveMapSpec('+1000:@2001:1', 'uid', alice)).toString(),
      '0:100000:1000,1000:2001:1,1001:101000:64536',
    );
    // without @ the host column is an ID of the current namespace (here the host): same result
    assert.equal(
      (await resolveMapSpec('+1000:2001:1', 'uid', alice)).toString(),
      '0:100000:1000,1000:2001:1,1001:101000:64536',
    );
  });
  test('the top-level result equals the nested one composed with the rootless map', async () => {
    // Nested inside `userns run` (auto), the caller is root over a namespace mapped by its auto
    // map; there podman's own rule applies (fill from the parent's inside IDs).
    for (const [spec, kind] of [
      ['+100000:@3000:1', 'gid'],
      ['+1000:@2001:1', 'uid'],
      ['+5:@100010:3,+0:@2001', 'uid'],
    ] as const) {
      const parent = rootlessMap(kind, alice);
      const nested: ModeContext = {
        ...alice,
        uid: 0,
        gid: 0,
        privileged: true,
        ownUidMap: parent,
        ownGidMap: parent,
      };
      const inner = await resolveMapSpec(spec, kind, nested);
      const top = await resolveMapSpec(spec, kind, alice);
      assert.equal(top.toString(), normalize(compose(inner, parent)).toString(), spec);
    }
  });
  test('no subordinate IDs: the fill has only the caller', async () => {
    const bare = { ...alice, subuid: [], subgid: [] };
    assert.equal((await resolveMapSpec('+5:@100000:1', 'uid', bare)).toString(), '0:2001:1,5:100000:1');
  });
  test('privileged callers and entries without + keep their meaning', async () => {
    const root: ModeContext = { ...alice, uid: 0, gid: 0, privileged: true, subuid: [], subgid: [] };
    assert.equal((await resolveMapSpec('0:100000:65536', 'uid', alice)).toString(), '0:100000:65536');
    assert.equal((await resolveMapSpec('+1000:@1000:1', 'uid', root)).toString(), '0:0:4294967295');
    assert.equal(needsSubordinate(['+1000:@2001:1', undefined], true), false);
    assert.equal(needsSubordinate(['+1000:@2001:1', '0:1:1'], false), true);
    assert.equal(needsSubordinate(['0:100000:10', '0:100000:10'], false), false);
  });
});

describe('keep-id:uid=N,gid=N,size=N (issue 14 item 4)', () => {
  const alice: ModeContext = {
    uid: 2001,
    gid: 2002,
    privileged: false,
    ownUidMap: IdMap.identity(),
    ownGidMap: IdMap.identity(),
    subuid: [{ start: 100000, count: 65536 }],
    subgid: [{ start: 200000, count: 65536 }],
  };
  const keep = (text: string, kind: 'uid' | 'gid', ctx = alice) => {
    const parsed = parseModeSpec(text)!;
    return mapForMode(parsed.mode, kind, ctx, parsed.keepId).toString();
  };
  test("podman's layout: the caller at uid=/gid=, subordinate IDs around it, size= IDs in all", () => {
    assert.equal(keep('keep-id', 'uid'), '2001:2001:1,0:100000:2001,2002:102001:63535');
    assert.equal(keep('keep-id:uid=1000,gid=1000', 'uid'), '1000:2001:1,0:100000:1000,1001:101000:64536');
    assert.equal(keep('keep-id:uid=1000,gid=1000', 'gid'), '1000:2002:1,0:200000:1000,1001:201000:64536');
    assert.equal(keep('keep-id:uid=1000,size=3000', 'uid'), '1000:2001:1,0:100000:1000,1001:101000:1999');
    // the kept ID beyond size: podman maps 0…size-2 below it and nothing above
    assert.equal(keep('keep-id:uid=5000,size=3000', 'uid'), '5000:2001:1,0:100000:2999');
    assert.equal(keep('keep-id:uid=0', 'uid'), '0:2001:1,1:100000:65536');
    assert.equal(keep('keep-id:size=1', 'uid'), '2001:2001:1');
  });
  test('equals podman getRootlessKeepIDMapping composed with the rootless map', () => {
    for (const [uid, size] of [
      [0, undefined],
      [1, 10],
      [65536, undefined],
      [70000, undefined],
      [300, 300],
      [300, 301],
      [300, 302],
    ] as const) {
      // podman, in the rootless namespace's IDs: 0 = the caller, 1… = subordinate IDs
      const total = 65536;
      const max = size === undefined ? total : Math.min(total, size - 1);
      const podman = [];
      if (uid !== 0) podman.push({ inside: 0, outside: 1, count: Math.min(uid, max) });
      podman.push({ inside: uid, outside: 0, count: 1 });
      if (max > uid) podman.push({ inside: uid + 1, outside: uid + 1, count: max - uid });
      const expected = normalize(
        compose(new IdMap(podman.filter((e) => e.count > 0)), rootlessMap('uid', alice)),
      );
      const text = `keep-id:uid=${uid}${size === undefined ? '' : `,size=${size}`}`;
      const parsed = parseModeSpec(text)!;
      assert.equal(
        normalize(mapForMode('keep-id', 'uid', alice, parsed.keepId)).toString(),
        expected.toString(),
        text,
      );
    }
  });
  test('privileged: identity; malformed options are usage errors', () => {
    const root: ModeContext = { ...alice, uid: 0, gid: 0, privileged: true, subuid: [], subgid: [] };
    assert.equal(keep('keep-id:uid=1000', 'uid', root), '0:0:4294967295');
    assert.deepEqual(parseModeSpec('keep-id:uid=1,gid=2,size=3'), {
      mode: 'keep-id',
      keepId: { uid: 1, gid: 2, size: 3 },
    });
    assert.equal(parseModeSpec('auto:size=5'), undefined);
    for (const bad of [
      'keep-id:',
      'keep-id:uid=x',
      'keep-id:size=0',
      'keep-id:uid=-1',
      'keep-id:user=1',
      'keep-id:uid=4294967295',
    ])
      assert.throws(() => parseModeSpec(bad), { code: 'USAGE' }, bad);
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
