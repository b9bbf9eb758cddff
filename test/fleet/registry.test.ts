/**
 * The fleet registry's protocol against a real 3-member etcd cluster (test/fixtures/
 * etcd-cluster.ts): allocation and release, names read by later nodes, policies from the
 * configuration, conflict retries and their bound, a commit whose answer was lost (repeated
 * commit), a transaction whose outcome is unknown (no orphan left), the offline cache (members
 * hung), node leases (expiry loses only the leased ranges; a restarted agent adopts its lease),
 * gc, the configuration and verify. Each test has its own key prefix. Skipped, with the reason,
 * where etcd is not installed.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { NodeAgent } from '../../src/alloc/fleet/agent.js';
import { connectFleet, type TxnRequest, type TxnResponse } from '../../src/alloc/fleet/client.js';
import { FleetRegistry, type FleetRegistryOptions } from '../../src/alloc/fleet/registry.js';
import { parseRegistryUrl } from '../../src/alloc/fleet/url.js';
import type { Allocation } from '../../src/alloc/registry.js';
import { procPidNamespace } from '../../src/system/proc.js';
import { EtcdCluster, etcdUnavailable } from '../fixtures/etcd-cluster.js';

const skip = etcdUnavailable();
const require = createRequire(import.meta.url);

const POOL = {
  uidPool: [{ start: 100_000, count: 10_000_000 }],
  gidPool: [{ start: 100_000, count: 10_000_000 }],
};
const FIRST_FIT = { kind: 'first-fit' } as const;

/** An error the etcd client raises when no member answers (what a lost answer looks like). */
function unavailable(): Error {
  const { GRPCUnavailableError } = require('etcd3') as { GRPCUnavailableError: new (m: string) => Error };
  return new GRPCUnavailableError('test: the answer was lost');
}

const overlaps = (a: Allocation, b: Allocation) =>
  (['uids', 'gids'] as const).some((k) =>
    a[k].some((x) => b[k].some((y) => x.start < y.start + y.count && y.start < x.start + x.count)),
  );

describe('fleet registry on etcd (3 members)', { skip, timeout: 180_000 }, () => {
  let cluster: EtcdCluster;
  let base: string;
  let n = 0;
  const open: { close(): void }[] = [];
  const hosts = () => cluster.endpoints.map((e) => e.replace('http://', '')).join(',');

  /** A registry for `node` under prefix `/t/<prefix>`, with its own state directory per node. */
  function registry(
    prefix: string,
    node: string,
    options: Partial<FleetRegistryOptions> & { query?: string } = {},
  ) {
    const { query, ...rest } = options;
    const r = new FleetRegistry(parseRegistryUrl(`etcd://${hosts()}/t/${prefix}${query ?? ''}`), {
      dir: join(base, prefix, node),
      node,
      systemTaken: null,
      idleCloseMs: 0,
      ...rest,
    });
    open.push(r);
    return r;
  }

  async function configured(prefix: string, extra: object = {}) {
    const r = registry(prefix, 'admin');
    await r.setConfig({ ...POOL, ...extra });
    return r;
  }

  before(async () => {
    cluster = await EtcdCluster.start();
    base = mkdtempSync(join(tmpdir(), 'userns-fleet-'));
  });

  after(async () => {
    for (const r of open) r.close();
    await cluster?.stop();
    if (base !== undefined) rmSync(base, { recursive: true, force: true });
  });

  test('allocate, list, release; the same name gives the same range on every node', {
    timeout: 30_000,
  }, async () => {
    const p = `basic${n++}`;
    const a = registry(p, 'a');
    await assert.rejects(a.allocate({ size: 10, policy: FIRST_FIT }), { code: 'REGISTRY_NOT_CONFIGURED' });
    await configured(p);
    const b = registry(p, 'b');
    const x = await a.allocate({ size: 65536, policy: FIRST_FIT });
    assert.deepEqual(x.uidMap, [{ inside: 0, outside: 100_000, count: 65536 }]);
    assert.equal(x.node, 'a');
    assert.equal(x.lease, undefined, 'persistent by default');
    const y = await b.allocate({ size: 1000, policy: FIRST_FIT });
    assert.equal(y.uids[0]!.start, 165_536, 'the other node sees the first allocation');
    const first = await a.allocate({ size: 65536, policy: FIRST_FIT, name: 'tenant' });
    const again = await b.allocate({ size: 65536, policy: FIRST_FIT, name: 'tenant' });
    assert.equal(again.id, first.id);
    assert.deepEqual(again.uids, first.uids);
    assert.equal(again.reused, true);
    assert.equal(first.reused, undefined);
    await assert.rejects(b.allocate({ size: 1000, policy: FIRST_FIT, name: 'tenant' }), {
      code: 'ALLOC_NAME_MISMATCH',
    });
    await assert.rejects(b.allocate({ size: 65536, policy: FIRST_FIT, name: 'tenant', reuse: false }), {
      code: 'ALLOC_NAME_TAKEN',
    });
    const list = await b.list();
    assert.deepEqual(
      list.map((q) => [q.id, q.node]),
      [
        [x.id, 'a'],
        [y.id, 'b'],
        [first.id, 'a'],
      ],
    );
    assert.ok(list[0]!.seq < list[1]!.seq && list[1]!.seq < list[2]!.seq, 'seq: the creation revision');
    const released = await b.release(x.id);
    assert.equal(released?.allocation.id, x.id);
    await assert.rejects(a.release(x.id), { code: 'ALLOC_NOT_FOUND' });
    assert.equal(await a.release(x.id, { ifExists: true }), undefined);
    assert.equal(
      (await a.allocate({ size: 500, policy: FIRST_FIT })).uids[0]!.start,
      100_000,
      'freed space is reused',
    );
    const { problems } = await a.verify();
    assert.deepEqual(problems, []);
  });

  test('policies: the configured default, slots, base, passthrough', { timeout: 30_000 }, async () => {
    const p = `policy${n++}`;
    await configured(p, { policy: 'slot:131072' });
    const a = registry(p, 'a');
    const dflt = await a.allocate({ size: 65536, policy: FIRST_FIT, defaults: { policy: true, size: true } });
    assert.equal(dflt.policy, 'slot:131072');
    assert.equal(dflt.size, 131072, 'the slot size when the size was not chosen');
    assert.equal(dflt.uids[0]!.start % 131072, 0);
    const chosen = await a.allocate({ size: 1000, policy: FIRST_FIT });
    assert.equal(chosen.policy, 'first-fit');
    const based = await a.allocate({ size: 100, policy: { kind: 'base', base: 5_000_000 } });
    assert.deepEqual(based.uids, [{ start: 5_000_000, count: 100 }]);
    await assert.rejects(a.allocate({ size: 100, policy: { kind: 'base', base: 5_000_050 } }), {
      code: 'ALLOC_EXHAUSTED',
    });
    await assert.rejects(a.allocate({ size: 20_000_000, policy: FIRST_FIT }), { code: 'ALLOC_EXHAUSTED' });
    // A passthrough of pool IDs held by another allocation is refused; outside the pool it is shared.
    await assert.rejects(
      a.allocate({
        size: 1000,
        policy: FIRST_FIT,
        uidPassthrough: [{ inside: 0, outside: 5_000_010, count: 1 }],
      }),
      { code: 'ALLOC_PASSTHROUGH_TAKEN' },
    );
    const pass = await a.allocate({
      size: 65536,
      policy: FIRST_FIT,
      uidPassthrough: [{ inside: 1000, outside: 1000, count: 1 }],
    });
    assert.deepEqual(pass.uidMap, [
      { inside: 0, outside: pass.uids[0]!.start, count: 1000 },
      { inside: 1000, outside: 1000, count: 1 },
      { inside: 1001, outside: pass.uids[0]!.start + 1001, count: 64535 },
    ]);
    assert.deepEqual((await a.verify()).problems, []);
  });

  test('several free blocks under first-fit, one under contiguous (issue 14 item 3, placement.ts shared with the local registry)', {
    timeout: 30_000,
  }, async () => {
    // containers/storage's case: free blocks 11000:9000, 25000:5000, 35000:65000, size 65536.
    const ranges = [
      { start: 11000, count: 9000 },
      { start: 25000, count: 5000 },
      { start: 35000, count: 65000 },
    ];
    const p = `blocks${n++}`;
    const admin = await configured(p, { uidPool: ranges, gidPool: ranges, policy: 'contiguous' });
    const a = registry(p, 'a');
    const b = registry(p, 'b');
    // The configured default: one block or nothing.
    await assert.rejects(
      a.allocate({ size: 65536, policy: FIRST_FIT, defaults: { policy: true, size: false } }),
      (error: Error & { code: string }) => {
        assert.equal(error.code, 'ALLOC_EXHAUSTED');
        assert.match(error.message, /largest free block in pool .* is 65000 \(79000 free in total\)/);
        return true;
      },
    );
    await assert.rejects(a.preview({ size: 65536, policy: { kind: 'contiguous' } }), {
      code: 'ALLOC_EXHAUSTED',
    });
    // first-fit asked for: the lowest free IDs of the three blocks, inside IDs contiguous from 0.
    const x = await a.allocate({ size: 65536, policy: FIRST_FIT, name: 'spread' });
    const expected = [
      { inside: 0, outside: 11000, count: 9000 },
      { inside: 9000, outside: 25000, count: 5000 },
      { inside: 14000, outside: 35000, count: 51536 },
    ];
    assert.deepEqual(x.uidMap, expected);
    assert.deepEqual(x.gidMap, expected);
    assert.deepEqual(x.uids, [
      { start: 11000, count: 9000 },
      { start: 25000, count: 5000 },
      { start: 35000, count: 51536 },
    ]);
    assert.equal(x.policy, 'first-fit');
    // Another node reads the same map under the name, and places around all three blocks.
    const again = await b.allocate({ size: 65536, policy: FIRST_FIT, name: 'spread' });
    assert.deepEqual([again.id, again.uidMap], [x.id, expected]);
    const y = await b.allocate({ size: 10000, policy: { kind: 'contiguous' } });
    assert.deepEqual(y.uidMap, [{ inside: 0, outside: 86536, count: 10000 }]);
    await assert.rejects(b.allocate({ size: 5000, policy: FIRST_FIT }), { code: 'ALLOC_EXHAUSTED' });
    assert.deepEqual((await admin.verify()).problems, []);
    // A release frees every block: the same map comes back.
    await b.release('spread');
    const z = await a.allocate({ size: 65536, policy: FIRST_FIT });
    assert.deepEqual(z.uidMap, expected);
    assert.deepEqual((await admin.verify()).problems, []);
  });

  test('a size grown past the slot (to cover --user) is kept under the configured slot policy', {
    timeout: 30_000,
  }, async () => {
    const p = `minsize${n++}`;
    await configured(p, { policy: 'slot' });
    const a = registry(p, 'a');
    const grown = await a.allocate({
      size: 200_000,
      policy: FIRST_FIT,
      defaults: { policy: true, size: true },
    });
    assert.equal(grown.policy, 'slot:65536');
    assert.equal(grown.size, 200_000);
    assert.equal(grown.uids[0]!.start % 65536, 0);
    assert.equal(grown.uids[0]!.count, 4 * 65536);
  });

  test('preview (dry run): what allocate would give, committing nothing', { timeout: 30_000 }, async () => {
    const p = `preview${n++}`;
    const a = registry(p, 'a');
    await assert.rejects(a.preview({ size: 10, policy: FIRST_FIT }), { code: 'REGISTRY_NOT_CONFIGURED' });
    const admin = await configured(p, { policy: 'slot' });
    await admin.allocate({ size: 1000, policy: FIRST_FIT, name: 'held' });
    const seen = await a.preview({ size: 65536, policy: FIRST_FIT, defaults: { policy: true, size: true } });
    assert.equal(seen.seq, 0);
    assert.deepEqual(await admin.list().then((l) => l.map((q) => q.name)), ['held'], 'nothing committed');
    const made = await a.allocate({ size: 65536, policy: FIRST_FIT, defaults: { policy: true, size: true } });
    assert.deepEqual([seen.uidMap, seen.gidMap, seen.policy], [made.uidMap, made.gidMap, made.policy]);
    const named = await a.preview({ size: 1000, policy: FIRST_FIT, name: 'held' });
    assert.equal(named.reused, true);
    await assert.rejects(a.preview({ size: 999, policy: FIRST_FIT, name: 'held' }), {
      code: 'ALLOC_NAME_MISMATCH',
    });
    await assert.rejects(a.preview({ size: 10, policy: FIRST_FIT, lease: 'node' }), {
      code: 'NODE_NOT_REGISTERED',
    });
    await assert.rejects(a.preview({ size: 20_000_000, policy: FIRST_FIT }), { code: 'ALLOC_EXHAUSTED' });
    assert.equal((await admin.list()).length, 2);
  });

  test('a conflicting commit between read and write is retried; the retries are bounded', {
    timeout: 30_000,
  }, async () => {
    const p = `conflict${n++}`;
    const admin = await configured(p);
    let sends = 0;
    let competitors = 2;
    const racing = registry(p, 'a', {
      txnHook: async (send, request, op) => {
        if (op === 'allocate') {
          sends++;
          if (competitors-- > 0) {
            // Another node commits first: the head moves, this transaction's compare fails.
            await admin.allocate({ size: 10, policy: FIRST_FIT });
          }
        }
        return send(request);
      },
    });
    const won = await racing.allocate({ size: 10, policy: FIRST_FIT });
    assert.equal(sends, 3, 'two conflicts, then a commit');
    const all = await admin.list();
    assert.equal(all.length, 3);
    assert.ok(all.every((q, i) => all.every((r, j) => i === j || !overlaps(q, r))));
    assert.equal(all[2]!.id, won.id);

    competitors = Number.POSITIVE_INFINITY;
    sends = 0;
    const loser = registry(p, 'b', {
      conflictRetries: 3,
      txnHook: async (send, request, op) => {
        if (op === 'allocate') {
          sends++;
          await admin.allocate({ size: 10, policy: FIRST_FIT });
        }
        return send(request);
      },
    });
    await assert.rejects(loser.allocate({ size: 10, policy: FIRST_FIT }), { code: 'ALLOC_CONTENDED' });
    assert.equal(sends, 4, 'the first try and three retries');
    assert.equal(
      (await admin.list()).filter((q) => q.node === 'b').length,
      0,
      'nothing of the loser was committed',
    );
    assert.deepEqual(loser.cache.pendings(loser.url.key), [], 'no pending mark left');
  });

  test('a commit whose answer was lost is recognized when the retry fails its compare', {
    timeout: 30_000,
  }, async () => {
    const p = `repeat${n++}`;
    const admin = await configured(p);
    const twice = registry(p, 'a', {
      // The client's retry sends the transaction again after the first was applied.
      txnHook: async (send, request, op) => {
        if (op !== 'allocate' && op !== 'release') return send(request);
        await send(request);
        return send(request);
      },
    });
    const a = await twice.allocate({ size: 1000, policy: FIRST_FIT, name: 'once' });
    const listed = await admin.list();
    assert.deepEqual(
      listed.map((q) => [q.id, q.seq]),
      [[a.id, a.seq]],
      'exactly one allocation, reported with its real creation revision',
    );
    assert.equal(a.reused, undefined, "ours, not somebody else's of the same name");
    const released = await twice.release('once');
    assert.equal(released?.allocation.id, a.id);
    assert.deepEqual(await admin.list(), []);
  });

  test('an allocation whose outcome was never known is released, never left behind', {
    timeout: 30_000,
  }, async () => {
    const p = `unknown${n++}`;
    const admin = await configured(p);
    let lose = true;
    const flaky = registry(p, 'a', {
      txnHook: async (send, request, op) => {
        if (op === 'allocate' && lose) {
          lose = false;
          await send(request); // applied…
          throw unavailable(); // …but the answer never came
        }
        return send(request);
      },
    });
    await assert.rejects(flaky.allocate({ size: 1000, policy: FIRST_FIT }), { code: 'REGISTRY_UNREACHABLE' });
    const orphan = await admin.list();
    assert.equal(orphan.length, 1, 'the transaction did commit');
    // Another process of the node leaves it alone while its sender runs (it may still be waiting)…
    const other = registry(p, 'a');
    const o = await other.allocate({ size: 10, policy: FIRST_FIT });
    assert.equal((await admin.list()).length, 2);
    assert.equal(other.cache.pendings(other.url.key).length, 1);
    // …and the sender, which gave up on it, releases it at its next call.
    const next = await flaky.allocate({ size: 10, policy: FIRST_FIT });
    assert.deepEqual(
      (await admin.list()).map((q) => q.id),
      [o.id, next.id],
    );
    assert.deepEqual(flaky.cache.pendings(flaky.url.key), []);
  });

  test('the node lease: expiry takes only the leased ranges; an agent restarted in time keeps them', {
    timeout: 45_000,
  }, async () => {
    const p = `lease${n++}`;
    const admin = await configured(p);
    const url = admin.url;
    const a = registry(p, 'a');
    const b = registry(p, 'b');
    await assert.rejects(a.allocate({ size: 10, policy: FIRST_FIT, lease: 'node' }), {
      code: 'NODE_NOT_REGISTERED',
    });
    const auto = await a.allocate({ size: 10, policy: FIRST_FIT, lease: 'auto' });
    assert.equal(auto.lease, undefined, "'auto' without an agent: persistent");
    let agentA = await NodeAgent.start(url, {
      dir: join(base, p, 'a'),
      node: 'a',
      ttl: 2,
      systemTaken: null,
    });
    const agentB = await NodeAgent.start(url, {
      dir: join(base, p, 'b'),
      node: 'b',
      ttl: 2,
      systemTaken: null,
    });
    try {
      await assert.rejects(
        NodeAgent.start(url, { dir: join(base, p, 'a'), node: 'a', ttl: 2, systemTaken: null }),
        {
          code: 'AGENT_RUNNING',
        },
      );
      const leasedA = await a.allocate({ size: 1000, policy: FIRST_FIT, lease: 'node', name: 'a-leased' });
      assert.equal(leasedA.lease, agentA.lease);
      const persistentA = await a.allocate({ size: 1000, policy: FIRST_FIT });
      const leasedB = await b.allocate({ size: 1000, policy: FIRST_FIT, lease: 'auto' });
      assert.equal(leasedB.lease, agentB.lease);
      // A leased range cannot be shared; a persistent one can, and the reader's agent records that.
      await assert.rejects(b.allocate({ size: 1000, policy: FIRST_FIT, name: 'a-leased' }), {
        code: 'ALLOC_NAME_TAKEN',
      });
      await a.allocate({ size: 5, policy: FIRST_FIT, name: 'shared' });
      const read = await b.allocate({ size: 5, policy: FIRST_FIT, name: 'shared' });
      assert.deepEqual(read.holders, ['b']);
      await assert.rejects(a.release('shared'), { code: 'ALLOC_IN_USE' });
      // The agent of a stops and starts again within the TTL: it adopts its lease.
      const lease = agentA.lease;
      await agentA.stop();
      agentA = await NodeAgent.start(url, { dir: join(base, p, 'a'), node: 'a', ttl: 2, systemTaken: null });
      assert.equal(agentA.lease, lease, 'adopted');
      await new Promise((resolve) => setTimeout(resolve, 2500));
      assert.ok(
        (await admin.list()).some((q) => q.id === leasedA.id),
        'kept across the restart',
      );
      // Node a is gone for longer than its TTL: its leased allocation goes, nothing else.
      await agentA.stop();
      const before = Date.now();
      let ids: string[] = [];
      for (;;) {
        ids = (await admin.list()).map((q) => q.id);
        if (!ids.includes(leasedA.id) || Date.now() - before > 10_000) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      assert.ok(!ids.includes(leasedA.id), 'the leased allocation of the dead node is gone');
      for (const kept of [auto, persistentA, leasedB, read])
        assert.ok(ids.includes(kept.id), `${kept.name} stays`);
      assert.deepEqual((await admin.verify()).problems, []);
      await a.release('shared', { force: true });
    } finally {
      await agentA.stop();
      await agentB.stop({ revoke: true });
    }
    assert.ok(
      !(await admin.list()).some((q) => q.node === 'b' && q.lease !== undefined),
      'revoked: b leased ones gone',
    );
  });

  test('offline: a node keeps its named ranges from its cache, never gets a new one', {
    timeout: 45_000,
  }, async () => {
    const p = `offline${n++}`;
    const admin = await configured(p);
    const a = registry(p, 'a', { query: '?timeout=800&try-timeout=300' });
    const agent = await NodeAgent.start(a.url, {
      dir: join(base, p, 'a'),
      node: 'a',
      ttl: 2,
      systemTaken: null,
    });
    const persistent = await a.allocate({ size: 1000, policy: FIRST_FIT, name: 'web' });
    const leased = await a.allocate({ size: 1000, policy: FIRST_FIT, name: 'job', lease: 'node' });
    await admin.allocate({ size: 1000, policy: FIRST_FIT, name: 'elsewhere' });
    for (let i = 0; i < 3; i++) cluster.pause(i); // hung members: calls time out
    try {
      const w = await a.allocate({ size: 1000, policy: FIRST_FIT, name: 'web' });
      assert.deepEqual([w.id, w.uids], [persistent.id, persistent.uids]);
      assert.ok(w.offline !== undefined && /did not answer/.test(w.offline.reason));
      const j = await a.allocate({ size: 1000, policy: FIRST_FIT, name: 'job' });
      assert.equal(j.id, leased.id, 'leased: usable while its lease cannot have expired');
      await assert.rejects(
        a.allocate({ size: 1000, policy: FIRST_FIT, name: 'elsewhere' }),
        (e: Error & { code?: string }) =>
          e.code === 'REGISTRY_UNREACHABLE' && /never allocated offline/.test(e.message),
      );
      await assert.rejects(a.allocate({ size: 1000, policy: FIRST_FIT }), { code: 'REGISTRY_UNREACHABLE' });
      await assert.rejects(a.allocate({ size: 999, policy: FIRST_FIT, name: 'web' }), {
        code: 'ALLOC_NAME_MISMATCH',
      });
      await assert.rejects(a.release('web'), { code: 'REGISTRY_UNREACHABLE' });
      const listed = await a.list();
      assert.deepEqual(listed.map((q) => q.name).sort(), ['job', 'web'], "the node's own, from its cache");
      assert.ok(listed.every((q) => q.offline !== undefined));
      // Past the TTL after the last keepalive that was answered, the leased one may be gone.
      await new Promise((resolve) =>
        setTimeout(resolve, Math.max(0, agent.keptAt + 2000 - Date.now()) + 100),
      );
      await assert.rejects(
        a.allocate({ size: 1000, policy: FIRST_FIT, name: 'job' }),
        (e: Error & { code?: string }) => e.code === 'REGISTRY_UNREACHABLE' && /TTL/.test(e.message),
      );
      assert.equal((await a.allocate({ size: 1000, policy: FIRST_FIT, name: 'web' })).id, persistent.id);
    } finally {
      for (let i = 0; i < 3; i++) cluster.resume(i);
      await agent.stop({ revoke: true }).catch(() => {});
    }
    // Back online: the real state again.
    const back = await a.allocate({ size: 1000, policy: FIRST_FIT, name: 'web' });
    assert.equal(back.offline, undefined);
  });

  test('no quorum (2 of 3 members killed): nothing is allocated or reported; the cache serves what the node holds', {
    timeout: 60_000,
  }, async () => {
    const p = `quorum${n++}`;
    const admin = await configured(p);
    const a = registry(p, 'a', { query: '?timeout=1000&try-timeout=300' });
    const held = await a.allocate({ size: 1000, policy: FIRST_FIT, name: 'web' });
    const before = (await admin.list()).map((q) => q.id);
    await cluster.kill(1);
    await cluster.kill(2);
    try {
      // The member left answers serializable reads, but no write and no linearizable read.
      await assert.rejects(a.allocate({ size: 1000, policy: FIRST_FIT }), { code: 'REGISTRY_UNREACHABLE' });
      await assert.rejects(a.allocate({ size: 1000, policy: FIRST_FIT, name: 'new' }), {
        code: 'REGISTRY_UNREACHABLE',
      });
      await assert.rejects(a.release('web'), { code: 'REGISTRY_UNREACHABLE' });
      const w = await a.allocate({ size: 1000, policy: FIRST_FIT, name: 'web' });
      assert.deepEqual([w.id, w.uidMap, w.gidMap], [held.id, held.uidMap, held.gidMap]);
      assert.ok(w.offline !== undefined);
    } finally {
      await Promise.all([cluster.restart(1), cluster.restart(2)]);
    }
    // Quorum back: whatever a lost try may have left is released by the node's next call.
    const next = await a.allocate({ size: 10, policy: FIRST_FIT });
    assert.deepEqual(
      (await admin.list()).map((q) => q.id),
      [...before, next.id],
      'only what was reported',
    );
    assert.deepEqual((await admin.verify()).problems, []);
  });

  test('gc releases the allocations of this node whose process is gone, only those', {
    timeout: 30_000,
  }, async () => {
    const p = `gc${n++}`;
    const admin = await configured(p);
    const a = registry(p, 'a');
    const b = registry(p, 'b');
    const ns = procPidNamespace();
    const gone = { pid: 4_194_305, startTime: '1', ...(ns === undefined ? {} : { pidNamespace: ns }) };
    const alive = { pid: process.pid, startTime: '', pidNamespace: null };
    const deadA = await a.allocate({ size: 10, policy: FIRST_FIT, holder: gone });
    const deadB = await b.allocate({ size: 10, policy: FIRST_FIT, holder: gone });
    const unknownA = await a.allocate({ size: 10, policy: FIRST_FIT, holder: alive });
    const nsA = await a.allocate({ size: 10, policy: FIRST_FIT, namespace: 'box' });
    const result = await a.collectGarbage(async (name) => (name === 'box' ? 'dead' : 'alive'));
    assert.deepEqual(result.released.map((q) => q.id).sort(), [deadA.id, nsA.id].sort());
    assert.deepEqual(
      result.kept.map((k) => k.allocation.id),
      [unknownA.id],
    );
    const left = (await admin.list()).map((q) => q.id);
    assert.ok(left.includes(deadB.id), "another node's is judged there, not here");
  });

  test('configuration changes are checked; verify finds what something else wrote', {
    timeout: 30_000,
  }, async () => {
    const p = `verify${n++}`;
    const admin = await configured(p);
    const a = await admin.allocate({ size: 65536, policy: FIRST_FIT });
    await assert.rejects(
      admin.setConfig({ uidPool: [{ start: 200_000, count: 100_000 }], gidPool: POOL.gidPool }),
      {
        code: 'ALLOC_CONFIG_CONFLICT',
      },
    );
    const forced = await admin.setConfig(
      { uidPool: [{ start: 200_000, count: 100_000 }], gidPool: POOL.gidPool },
      { force: true },
    );
    assert.deepEqual(
      forced.outside.map((q) => q.id),
      [a.id],
    );
    let verdict = await admin.verify();
    assert.deepEqual(verdict.problems, []);
    assert.match(verdict.warnings.join('\n'), /outside the pool/);
    // Keys planted by something else: an index entry of no allocation, overlapping another.
    const raw = admin.keys;
    const client = connectFleet(admin.url);
    try {
      await client.kv
        .txn({
          compare: [],
          success: [
            {
              request_put: {
                key: Buffer.from(raw.index('uid', 100_010)),
                value: Buffer.from(JSON.stringify({ id: 'ffffffffffff', count: 10 })),
              },
            },
            { request_put: { key: Buffer.from(raw.name('ghost')), value: Buffer.from('eeeeeeeeeeee') } },
          ],
          failure: [],
        } satisfies TxnRequest)
        .then((r: TxnResponse) => assert.equal(r.succeeded, true));
    } finally {
      client.close();
    }
    verdict = await admin.verify();
    const text = verdict.problems.join('\n');
    assert.match(text, /overlap/);
    assert.match(text, /belongs to no allocation/);
    assert.match(text, /name ghost names no allocation/);
  });

  test('a command that does not use a fleet registry never loads the etcd client', {
    timeout: 30_000,
  }, () => {
    const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
    const root = mkdtempSync(join(base, 'local-'));
    const script = `
      import { createRequire } from 'node:module';
      const { main } = await import(${JSON.stringify(main)});
      const io = { stdout: { write() { return true; } }, stderr: process.stderr, stdin: process.stdin, env: process.env };
      const code = await main(['alloc', 'list', '--root', ${JSON.stringify(root)}, '--json'], io);
      const loaded = Object.keys(createRequire(import.meta.url).cache).filter((k) => /node_modules\\/(etcd3|@grpc|cockatiel)\\//.test(k));
      console.log(JSON.stringify({ code, loaded: loaded.length }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      env: { ...process.env, USERNS_REGISTRY: '' },
    });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').pop()!), { code: 0, loaded: 0 });
  });
});
