import assert from 'node:assert/strict';
import { chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  allocate,
  allocateForRun,
  listAllocations,
  parseAutoUserns,
  parsePassthrough,
  release,
  releaseAllocation,
  resolvePools,
} from '../../src/alloc/index.js';
import { clipPool, type Pools } from '../../src/alloc/pool.js';
import { Registry } from '../../src/alloc/registry.js';
import { IdMap } from '../../src/idmap/idmap.js';
import { validateMap } from '../../src/idmap/validate.js';
import { gcAllocations } from '../../src/namespaces/index.js';
import { openDatabase } from '../../src/state/database.js';
import { defaultStateRoot, ensureStateRoot } from '../../src/state/state-root.js';
import { ownMap } from '../../src/system/self.js';

const base = mkdtempSync(join(tmpdir(), 'userns-alloc-'));
after(() => rmSync(base, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(base, `r${n++}`, 'alloc');

const POOL: Pools = {
  uid: { ranges: [{ start: 100_000, count: 1_000_000 }], source: 'test' },
  gid: { ranges: [{ start: 200_000, count: 1_000_000 }], source: 'test' },
};

describe('registry', () => {
  test('allocate, list, release; uid and gid pools are separate', async () => {
    const r = new Registry(freshDir(), { systemTaken: null });
    const a = await r.allocate({ size: 65536, policy: { kind: 'first-fit' }, pools: POOL, name: 'one' });
    assert.deepEqual(a.uidMap, [{ inside: 0, outside: 100_000, count: 65536 }]);
    assert.deepEqual(a.gidMap, [{ inside: 0, outside: 200_000, count: 65536 }]);
    const b = await r.allocate({ size: 1000, policy: { kind: 'first-fit' }, pools: POOL });
    assert.equal(b.name, b.id);
    assert.equal(b.uids[0]!.start, 165_536);
    assert.deepEqual(
      (await r.list()).map((x) => x.id),
      [a.id, b.id],
    );
    await r.release('one');
    const c = await r.allocate({ size: 2000, policy: { kind: 'first-fit' }, pools: POOL });
    assert.equal(c.uids[0]!.start, 100_000, 'reuses released space');
    // Another process's view (a fresh instance) agrees.
    const other = new Registry(r.dir, { systemTaken: null });
    assert.deepEqual(
      (await other.list()).map((x) => x.id),
      [b.id, c.id],
    );
    assert.deepEqual((await other.verify()).problems, []);
  });

  test('names are validated and unique; unknown ids are ALLOC_NOT_FOUND', async () => {
    const r = new Registry(freshDir(), { systemTaken: null });
    await r.allocate({ size: 10, policy: { kind: 'first-fit' }, pools: POOL, name: 'web' });
    await assert.rejects(r.allocate({ size: 10, policy: { kind: 'first-fit' }, pools: POOL, name: 'web' }), {
      code: 'ALLOC_NAME_TAKEN',
    });
    await assert.rejects(r.allocate({ size: 10, policy: { kind: 'first-fit' }, pools: POOL, name: '../x' }), {
      code: 'INVALID_NAME',
    });
    await assert.rejects(r.release('nope'), { code: 'ALLOC_NOT_FOUND' });
    assert.equal(await r.release('nope', { ifExists: true }), undefined);
  });

  test('running out says how much was asked, how much is free and where', async () => {
    const r = new Registry(freshDir(), { systemTaken: null });
    const pools: Pools = {
      uid: { ranges: [{ start: 100_000, count: 100_000 }], source: 'test' },
      gid: { ranges: [{ start: 100_000, count: 100_000 }], source: 'test' },
    };
    await r.allocate({ size: 65536, policy: { kind: 'first-fit' }, pools });
    await assert.rejects(
      r.allocate({ size: 65536, policy: { kind: 'first-fit' }, pools }),
      (error: Error & { code: string; data: Record<string, unknown> }) => {
        assert.equal(error.code, 'ALLOC_EXHAUSTED');
        assert.match(
          error.message,
          /asked for 65536 uids; the largest free block in pool \[100000-199999\] is 34464 \(34464 free in total\)/,
        );
        assert.equal(error.data.largestFree, 34464);
        return true;
      },
    );
  });

  test('first-fit takes several free blocks when none is large enough; contiguous does not (issue 14 item 3)', async () => {
    // containers/storage's case: pools 11000:9000, 25000:5000, 35000:65000, size 65536.
    const ranges = [
      { start: 11000, count: 9000 },
      { start: 25000, count: 5000 },
      { start: 35000, count: 65000 },
    ];
    const pools: Pools = { uid: { ranges, source: 'test' }, gid: { ranges, source: 'test' } };
    const r = new Registry(freshDir(), { systemTaken: null });
    await assert.rejects(
      r.allocate({ size: 65536, policy: { kind: 'contiguous' }, pools }),
      (error: Error & { code: string }) => {
        assert.equal(error.code, 'ALLOC_EXHAUSTED');
        assert.match(error.message, /largest free block in pool .* is 65000 \(79000 free in total\)/);
        return true;
      },
    );
    const a = await r.allocate({ size: 65536, policy: { kind: 'first-fit' }, pools });
    const expected = [
      { inside: 0, outside: 11000, count: 9000 },
      { inside: 9000, outside: 25000, count: 5000 },
      { inside: 14000, outside: 35000, count: 51536 },
    ];
    assert.deepEqual(a.uidMap, expected);
    assert.deepEqual(a.gidMap, expected);
    assert.deepEqual(a.uids, [
      { start: 11000, count: 9000 },
      { start: 25000, count: 5000 },
      { start: 35000, count: 51536 },
    ]);
    assert.equal(a.size, 65536);
    // A block that fits is still taken whole, even behind a smaller gap: 13464 left at the top.
    const b = await r.allocate({ size: 10000, policy: { kind: 'first-fit' }, pools });
    assert.deepEqual(b.uidMap, [{ inside: 0, outside: 86536, count: 10000 }]);
    // What is left (3464) is too little, for any policy.
    await assert.rejects(r.allocate({ size: 5000, policy: { kind: 'first-fit' }, pools }), {
      code: 'ALLOC_EXHAUSTED',
    });
    // Released blocks come back whole; passthrough mappings punch across the blocks.
    await r.release(a.id);
    const c = await r.allocate({
      size: 12000,
      policy: { kind: 'first-fit' },
      pools: { uid: { ranges: ranges.slice(0, 2), source: 'test' }, gid: pools.gid },
      uidPassthrough: [{ inside: 8999, outside: 5, count: 2 }],
    });
    assert.ok(c.uidMap.length > 1);
    assert.deepEqual((await r.verify()).problems, []);
  });

  test('first-fit gives up, saying why, when the free IDs are spread over more than 340 blocks', async () => {
    const ranges = Array.from({ length: 400 }, (_, i) => ({ start: 100_000 + i * 20, count: 10 }));
    const pools: Pools = { uid: { ranges, source: 'test' }, gid: { ranges, source: 'test' } };
    const r = new Registry(freshDir(), { systemTaken: null });
    await assert.rejects(
      r.allocate({ size: 3410, policy: { kind: 'first-fit' }, pools }),
      (error: Error & { code: string }) => {
        assert.equal(error.code, 'ALLOC_EXHAUSTED');
        assert.match(error.message, /spread over more blocks than one map can hold: 340 lines, 4095 bytes/);
        return true;
      },
    );
    const ok = await r.allocate({ size: 2000, policy: { kind: 'first-fit' }, pools });
    assert.equal(ok.uidMap.length, 200);
    assert.equal(validateMap(ok.uidMap, { kind: 'uid' }).ok, true);
    // Short lines: the 340-line limit binds before the byte limit.
    const small = Array.from({ length: 400 }, (_, i) => ({ start: 10 + i * 2, count: 1 }));
    const r2 = new Registry(freshDir(), { systemTaken: null });
    const smallPools: Pools = {
      uid: { ranges: small, source: 'test' },
      gid: { ranges: small, source: 'test' },
    };
    assert.equal(
      (await r2.allocate({ size: 340, policy: { kind: 'first-fit' }, pools: smallPools })).uidMap.length,
      340,
    );
    await assert.rejects(r2.allocate({ size: 61, policy: { kind: 'first-fit' }, pools: smallPools }), {
      code: 'ALLOC_EXHAUSTED',
    });
    assert.equal(
      (await r2.allocate({ size: 60, policy: { kind: 'first-fit' }, pools: smallPools })).uidMap.length,
      60,
    );
  });

  test('slot policy: aligned, consecutive slots for larger sizes; the (u32)-1 slot is never used', async () => {
    const r = new Registry(freshDir(), { systemTaken: null });
    const kube: Pools = {
      uid: { ranges: clipPool([{ start: 65536, count: 4294967296 - 65536 }]), source: 'kubelet default' },
      gid: { ranges: clipPool([{ start: 65536, count: 4294967296 - 65536 }]), source: 'kubelet default' },
    };
    const a = await r.allocate({ size: 65536, policy: { kind: 'slot', slotSize: 65536 }, pools: kube });
    assert.equal(a.uids[0]!.start, 65536);
    const b = await r.allocate({ size: 70000, policy: { kind: 'slot', slotSize: 65536 }, pools: kube });
    assert.deepEqual(b.uids, [{ start: 131072, count: 131072 }]);
    assert.deepEqual(b.uidMap, [{ inside: 0, outside: 131072, count: 70000 }]);
    await assert.rejects(
      r.allocate({ size: 65536, policy: { kind: 'base', base: 4294901760 }, pools: kube }),
      { code: 'ALLOC_EXHAUSTED' },
    );
    const c = await r.allocate({
      size: 65536,
      policy: { kind: 'base', base: 4294901760 - 65536 },
      pools: kube,
    });
    assert.equal(c.uidMap[0]!.outside + c.uidMap[0]!.count, 4294901760);
  });

  test('passthrough mappings that overlap one another are refused, not cut short (host or container side)', async () => {
    const r = new Registry(freshDir(), { systemTaken: null });
    const ask = (uidPassthrough: ReturnType<typeof parsePassthrough>) =>
      r.allocate({ size: 1000, policy: { kind: 'first-fit' }, pools: POOL, uidPassthrough });
    // Host side: 3005-3009 would be mapped twice (before, the first was cut to 5 IDs and
    // container uids 10-14 were left unmapped, reported as success).
    await assert.rejects(ask([...parsePassthrough('5:3000:10'), ...parsePassthrough('100:3005:5')]), {
      code: 'ALLOC_MAP_INVALID',
      message: /uidmappings 5:3000:10 and 100:3005:5 overlap \(host uids 3005-3009\)/,
    });
    // Container side: 8-12 twice.
    await assert.rejects(ask([...parsePassthrough('5:3000:10'), ...parsePassthrough('8:4000:5')]), {
      code: 'ALLOC_MAP_INVALID',
      message: /container uids 8-12\)/,
    });
    assert.deepEqual(await r.list(), [], 'nothing recorded');
    // Apart, they are fine (adjacent on both sides: one line once normalized).
    const ok = await ask([...parsePassthrough('5:3000:10'), ...parsePassthrough('15:3010:5')]);
    assert.deepEqual(
      ok.uidMap.filter((e) => e.outside < 100_000),
      [{ inside: 5, outside: 3000, count: 15 }],
    );
  });

  test('passthrough mappings: punched in; from the pool reserved, from outside shared', async () => {
    const r = new Registry(freshDir(), { systemTaken: null });
    const a = await r.allocate({
      size: 65536,
      policy: { kind: 'first-fit' },
      pools: POOL,
      name: 'dev',
      uidPassthrough: parsePassthrough('1000:1000:1'),
      gidPassthrough: parsePassthrough('1000:500000:2'),
    });
    assert.deepEqual(a.uidMap, [
      { inside: 0, outside: 100_000, count: 1000 },
      { inside: 1000, outside: 1000, count: 1 },
      { inside: 1001, outside: 101_001, count: 64535 },
    ]);
    assert.deepEqual(
      a.uids,
      [{ start: 100_000, count: 65536 }],
      'host 1000 is outside the pool: not reserved',
    );
    assert.deepEqual(a.gids, [
      { start: 200_000, count: 65536 },
      { start: 500_000, count: 2 },
    ]);
    // Someone else may pass host uid 1000 through too, but not gid 500000 of the pool.
    await r.allocate({
      size: 10,
      policy: { kind: 'first-fit' },
      pools: POOL,
      uidPassthrough: parsePassthrough('0:1000'),
    });
    await assert.rejects(
      r.allocate({
        size: 10,
        policy: { kind: 'first-fit' },
        pools: POOL,
        gidPassthrough: parsePassthrough('5:500001'),
      }),
      { code: 'ALLOC_PASSTHROUGH_TAKEN' },
    );
    // And the reserved gids are never allocated to anyone.
    const big = await r.allocate({ size: 300_000, policy: { kind: 'first-fit' }, pools: POOL });
    assert.ok(big.gids[0]!.start >= 500_002 || big.gids[0]!.start + 300_000 <= 500_000);
    assert.deepEqual((await r.verify()).problems, []);
  });

  test('IDs of passwd/group entries and systemd-nsresourced registrations count as taken', async () => {
    const etc = join(base, `etc${n++}`);
    mkdirSync(join(etc, 'nsr'), { recursive: true });
    writeFileSync(join(etc, 'passwd'), 'root:x:0:0::/root:/bin/sh\nsvc:x:100005:300:::\n');
    writeFileSync(join(etc, 'group'), 'root:x:0:\ngrp:x:200003:\n');
    writeFileSync(
      join(etc, 'nsr', 'u100100.userns'),
      JSON.stringify({ name: 'x', start: 100100, size: 65536 }),
    );
    writeFileSync(join(etc, 'nsr', 'g300000.userns'), '{');
    writeFileSync(join(etc, 'subuid'), '');
    writeFileSync(join(etc, 'subgid'), '');
    const r = new Registry(freshDir(), {
      systemTaken: {
        passwdPath: join(etc, 'passwd'),
        groupPath: join(etc, 'group'),
        nsresourceDir: join(etc, 'nsr'),
        subuidPath: join(etc, 'subuid'),
        subgidPath: join(etc, 'subgid'),
        getent: false,
      },
    });
    const a = await r.allocate({ size: 5, policy: { kind: 'first-fit' }, pools: POOL });
    assert.equal(a.uids[0]!.start, 100_000);
    assert.equal(a.gids[0]!.start, 200_004, 'group gid 200003 is taken');
    const b = await r.allocate({ size: 100, policy: { kind: 'first-fit' }, pools: POOL });
    assert.equal(b.uids[0]!.start, 100_100 + 65536, 'skips the passwd uid 100005 and the nsresourced range');
    // A new passwd entry is noticed without restarting.
    writeFileSync(
      join(etc, 'passwd'),
      'root:x:0:0::/root:/bin/sh\nsvc:x:100005:300:::\nnew:x:100002:300:::\n',
    );
    await r.release(a.id);
    const c = await r.allocate({ size: 3, policy: { kind: 'first-fit' }, pools: POOL });
    assert.equal(c.uids[0]!.start, 100_006);
    const e = await r.allocate({ size: 65536, policy: { kind: 'first-fit' }, pools: POOL });
    assert.ok(
      e.gids[0]!.start >= 300_000 + 65536 || e.gids[0]!.start + 65536 <= 300_000,
      'unreadable nsresourced file = 65536',
    );
  });

  test('other instances follow incrementally, and rebuild when the release log was trimmed past them', async () => {
    const dir = freshDir();
    const r = new Registry(dir, { systemTaken: null, releaseLog: 8 });
    const other = new Registry(dir, { systemTaken: null, releaseLog: 8 });
    const live = new Set<string>();
    for (let i = 0; i < 600; i++) {
      const x = await (i % 2 ? r : other).allocate({
        size: 100 + i,
        policy: { kind: 'first-fit' },
        pools: POOL,
      });
      live.add(x.id);
      if (i % 3 === 0) {
        const victim = [...live][i % live.size]!;
        await (i % 2 ? other : r).release(victim);
        live.delete(victim);
      }
      // A third instance that looks only now and then falls behind the trimmed log.
    }
    for (const reg of [r, other, new Registry(dir, { systemTaken: null })]) {
      assert.deepEqual(new Set((await reg.list()).map((x) => x.id)), live);
      assert.deepEqual((await reg.verify()).problems, []);
    }
    // Both instances' indexes agree with a fresh one: the same next block everywhere.
    const fresh = new Registry(dir, { systemTaken: null });
    const usage = await fresh.usage(POOL);
    for (const reg of [r, other]) assert.deepEqual(await reg.usage(POOL), usage);
  });

  test('the database refuses what it must never hold: overlapping ranges (trigger), duplicate names', async () => {
    const r = new Registry(freshDir(), { systemTaken: null });
    const a = await r.allocate({ size: 10, policy: { kind: 'first-fit' }, pools: POOL, name: 'a' });
    const db = openDatabase({ path: r.path, what: 'the test registry' });
    try {
      assert.throws(
        () => db.prepare("INSERT INTO ranges VALUES ('uid', ?, 5, 'x')").run(a.uids[0]!.start + 3),
        /two allocations would share IDs/,
      );
      assert.throws(
        () => db.prepare("INSERT INTO ranges VALUES ('uid', ?, 1, 'x')").run(4294967295),
        /CHECK/,
      );
      db.prepare("INSERT INTO ranges VALUES ('uid', ?, 5, 'x')").run(a.uids[0]!.start + 10);
    } finally {
      db.close();
    }
    assert.match((await r.verify()).problems.join('\n'), /belongs to no allocation/);
  });

  test('gc releases allocations of gone namespaces and exited processes, keeps the rest', async () => {
    const root = join(base, `root${n++}`);
    const common = { root, registry: { systemTaken: null }, pool: [{ start: 100_000, count: 1_000_000 }] };
    const manual = await allocate({ ...common, name: 'manual', size: 10 });
    const alive = await allocate({ ...common, name: 'a1', namespace: 'alive', size: 10 });
    const gone = await allocate({ ...common, name: 'g1', namespace: 'gone', size: 10 });
    const dead = await allocate({
      ...common,
      name: 'p1',
      holder: { pid: 999_999_999, startTime: '1' },
      size: 10,
    });
    const mine = await allocateForRun({ ...common, name: 'run', size: 10 });
    mkdirSync(join(root, 'ns', 'alive'), { recursive: true });
    writeFileSync(join(root, 'ns', 'alive', 'state.json'), JSON.stringify({ keeperPid: process.pid }));
    const released = await gcAllocations({ root });
    assert.deepEqual(released.map((a) => a.name).sort(), ['g1', 'p1']);
    assert.deepEqual(
      (await listAllocations({ root })).map((a) => a.id),
      [manual.id, alive.id, mine.id],
    );
    assert.equal(await releaseAllocation(mine.id, { root }), true);
    assert.equal(await releaseAllocation(mine.id, { root }), false);
    await release('manual', { root });
    await assert.rejects(release(gone.id, { root }), { code: 'ALLOC_NOT_FOUND' });
    void dead;
  });

  test('parseAutoUserns (podman --userns=auto options)', () => {
    assert.deepEqual(parseAutoUserns('auto'), {});
    assert.equal(parseAutoUserns('keep-id'), undefined);
    assert.deepEqual(parseAutoUserns('auto:size=10,policy=contiguous'), {
      size: 10,
      policy: { kind: 'contiguous' },
    });
    assert.deepEqual(parseAutoUserns('auto:size=2000,uidmapping=0:1000:1,gidmapping=5:6'), {
      size: 2000,
      uidMapping: [{ inside: 0, outside: 1000, count: 1 }],
      gidMapping: [{ inside: 5, outside: 6, count: 1 }],
    });
    assert.throws(() => parseAutoUserns('auto:sise=1'), { code: 'USAGE' });
  });

  test('@HOST in uidmapping=/gidmapping= is translated through the current map (issue 14 item 2)', () => {
    // In a namespace mapped 0 1000 1, 1 100000 65536: host 100010 is ID 11 here.
    const nested = new IdMap([
      { inside: 0, outside: 1000, count: 1 },
      { inside: 1, outside: 100000, count: 65536 },
    ]);
    assert.deepEqual(parsePassthrough('1000:@100010:5', 'uidmapping', 'uid', nested), [
      { inside: 1000, outside: 11, count: 5 },
    ]);
    assert.deepEqual(parsePassthrough('0:@1000', 'gidmapping', 'gid', nested), [
      { inside: 0, outside: 0, count: 1 },
    ]);
    assert.throws(() => parsePassthrough('0:@5:1', 'uidmapping', 'uid', nested), {
      code: 'HOST_ID_NOT_MAPPED',
    });
    // without a map given, this process's own map translates
    const own = ownMap('uid');
    const here = own.toInside(5000);
    if (here !== undefined) {
      assert.deepEqual(parseAutoUserns('auto:size=2000,uidmapping=1000:@5000:1')?.uidMapping, [
        { inside: 1000, outside: here, count: 1 },
      ]);
    }
  });

  test('pools: root defaults to the containers user or the systemd range; --pool overrides', async () => {
    const cfg = join(base, 'alloc.json');
    writeFileSync(cfg, JSON.stringify({ uidPool: ['1000000:65536'] }));
    const pools = await resolvePools({
      configPath: cfg,
      gidPool: [{ start: 5, count: 4294967295 }],
      euid: 0,
    });
    assert.deepEqual(pools.uid.ranges, [{ start: 1_000_000, count: 65536 }]);
    assert.deepEqual(pools.gid.ranges, [{ start: 5, count: 4294967290 }], 'clipped before (u32)-1');
    const dflt = await resolvePools({
      configPath: join(base, 'missing.json'),
      euid: 0,
      subordinate: {
        subuidPath: join(base, 'none'),
        subgidPath: join(base, 'none'),
        getsubidsPath: '/nonexistent',
      },
    });
    assert.deepEqual(dflt.uid.ranges, [{ start: 0x80000, count: 0x6ff80000 }]);
    const subuid = join(base, 'subuid');
    writeFileSync(subuid, 'containers:2147483647:2147483648\n');
    const fromContainers = await resolvePools({
      configPath: join(base, 'missing.json'),
      euid: 0,
      subordinate: { subuidPath: subuid, subgidPath: join(base, 'none'), getsubidsPath: '/nonexistent' },
    });
    assert.deepEqual(fromContainers.uid.ranges, [{ start: 2147483647, count: 2147483648 }]);
    assert.equal(fromContainers.gid.ranges[0]!.start, 0x80000);
  });

  test('state root: default locations, never a shared /tmp path; refuses symlinks and directories of others', () => {
    assert.equal(defaultStateRoot({}, 0), '/run/userns');
    // XDG_RUNTIME_DIR only when it is the user's own private directory.
    const xdg = join(base, 'xdg-runtime');
    mkdirSync(xdg, { mode: 0o700 });
    chownSync(xdg, 4321, 4321);
    assert.equal(defaultStateRoot({ XDG_RUNTIME_DIR: xdg, HOME: '/home/u' }, 4321), join(xdg, 'userns'));
    // Inherited from another user (su), or world-readable: skipped.
    assert.equal(
      defaultStateRoot({ XDG_RUNTIME_DIR: xdg, HOME: '/home/other' }, 4322),
      '/home/other/.local/state/userns',
    );
    assert.equal(
      defaultStateRoot({ XDG_RUNTIME_DIR: '/nonexistent/run', XDG_STATE_HOME: '/home/u/st' }, 4321),
      '/home/u/st/userns',
    );
    assert.equal(defaultStateRoot({ HOME: '/home/u' }, 4321), '/home/u/.local/state/userns');
    for (const env of [{}, { HOME: '/home/u' }, { XDG_STATE_HOME: 'relative', HOME: '/h' }]) {
      let root: string;
      try {
        root = defaultStateRoot(env, 4321);
      } catch (error) {
        assert.equal((error as { code?: string }).code, 'STATE_ROOT_UNUSABLE');
        continue;
      }
      assert.ok(!root.startsWith('/tmp/'), `${root} is not in a shared directory`);
    }
    const made = ensureStateRoot(join(base, 'sr', 'deep'));
    assert.equal(made, join(base, 'sr', 'deep'));
    symlinkSync(made, join(base, 'link'));
    assert.throws(() => ensureStateRoot(join(base, 'link')), { code: 'STATE_ROOT_UNSAFE' });
    const theirs = join(base, 'theirs');
    mkdirSync(theirs);
    chownSync(theirs, 1234, 1234);
    assert.throws(() => ensureStateRoot(theirs), { code: 'STATE_ROOT_UNSAFE' });
  });
});
