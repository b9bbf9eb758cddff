/** Mode → map resolution (pure) and argument handling. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { splitCommand } from '../../src/cli/run.js';
import { compose } from '../../src/idmap/compose.js';
import { IdMap } from '../../src/idmap/idmap.js';
import { normalize } from '../../src/idmap/normalize.js';
import {
  type ModeContext,
  mapForMode,
  needsSubordinate,
  resolveMapSpec,
  rootlessMap,
  usablePool,
} from '../../src/maps/modes.js';
import { newidmapArgv, singleMap } from '../../src/maps/write-maps.js';

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
