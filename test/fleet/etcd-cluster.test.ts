/**
 * Smoke test of the etcd groundwork for the fleet registry (issue 20): the 3-member test cluster
 * (test/fixtures/etcd-cluster.ts) and the `etcd3` client, configured as docs/etcd-notes.md
 * recommends, do what the registry will rely on: compare-revision transactions refuse a writer
 * that read an old revision, a lease's keys go when it expires (and stay while it is kept alive),
 * and the cluster stays usable while its leader is killed and restarted. The fixture's own
 * promises (no member outlives the test process, nothing left in the temp directory) are
 * checked too. Skipped, with the reason, where etcd is not installed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Etcd3 } from 'etcd3';
import { connectEtcd, connectMember, leaderIndex } from '../fixtures/etcd-client.js';
import { EtcdCluster, etcdUnavailable, removeStaleRuns } from '../fixtures/etcd-cluster.js';

const skip = etcdUnavailable();

describe('etcd cluster (3 members on loopback)', { skip, timeout: 90_000 }, () => {
  let cluster: EtcdCluster;
  let client: Etcd3;

  before(async () => {
    cluster = await EtcdCluster.start();
    client = connectEtcd(cluster.endpoints);
  });

  after(async () => {
    client?.close();
    await cluster?.stop();
    if (cluster !== undefined) assert.equal(existsSync(cluster.dir), false, 'run directory removed');
  });

  test('put and get through all three endpoints', { timeout: 20_000 }, async () => {
    assert.equal(cluster.members.length, 3);
    assert.ok(cluster.members.every((m) => m.clientPort !== 2379 && m.peerPort !== 2380));
    await client.put('smoke/a').value('1');
    assert.equal(await client.get('smoke/a').string(), '1');
    for (const [i, m] of cluster.members.entries()) {
      const one = connectMember(cluster, i);
      try {
        assert.equal(await one.get('smoke/a').string(), '1', `read through ${m.name}`);
      } finally {
        one.close();
      }
    }
  });

  test('a transaction comparing an old mod revision is refused', { timeout: 20_000 }, async () => {
    await client.put('smoke/config').value('v1');
    const read = await client.get('smoke/config').exec();
    const revision = read.kvs[0]!.mod_revision; // a decimal string (64-bit)
    // Writer A commits against the revision it read…
    const a = await client
      .if('smoke/config', 'Mod', '==', revision)
      .then(client.put('smoke/config').value('A'), client.put('smoke/alloc/a').value('a'))
      .commit();
    assert.equal(a.succeeded, true);
    // …writer B read the same revision: its transaction must change nothing.
    const b = await client
      .if('smoke/config', 'Mod', '==', revision)
      .then(client.put('smoke/config').value('B'), client.put('smoke/alloc/b').value('b'))
      .else(client.get('smoke/config'))
      .commit();
    assert.equal(b.succeeded, false);
    assert.equal(
      b.responses[0]?.response_range?.kvs[0]?.value.toString(),
      'A',
      'else branch reads the winner',
    );
    assert.equal(await client.get('smoke/config').string(), 'A');
    assert.equal(await client.get('smoke/alloc/b').string(), null);
    // Create-if-absent (create revision 0) admits exactly one of two writers of the same key.
    const first = await client
      .if('smoke/name/x', 'Create', '==', 0)
      .then(client.put('smoke/name/x').value('1'))
      .commit();
    const second = await client
      .if('smoke/name/x', 'Create', '==', 0)
      .then(client.put('smoke/name/x').value('2'))
      .commit();
    assert.deepEqual([first.succeeded, second.succeeded], [true, false]);
    assert.equal(await client.get('smoke/name/x').string(), '1');
  });

  test('an expired lease deletes its keys; a kept-alive one does not', { timeout: 20_000 }, async () => {
    const watcher = await client.watch().prefix('smoke/leased/').create();
    const deleted: string[] = [];
    const bothGone = new Promise<void>((resolve) => {
      watcher.on('delete', (kv) => {
        deleted.push(kv.key.toString());
        if (deleted.length === 2) resolve();
      });
    });
    const kept = client.lease(1); // keepalive every TTL/3
    await kept.put('smoke/kept').value('k');
    const granted = Date.now(); // before the grant: `after` below is at least the lease's age
    const dying = client.lease(1, { autoKeepAlive: false });
    await dying.put('smoke/leased/1').value('x');
    await dying.put('smoke/leased/2').value('y');
    try {
      await bothGone;
      const after = Date.now() - granted;
      assert.deepEqual(deleted.sort(), ['smoke/leased/1', 'smoke/leased/2']);
      // etcd checks expiry every 500 ms: a 1 s lease goes between 1 and about 2 s.
      assert.ok(after >= 950 && after < 5000, `expired after ${after} ms`);
      // Well past its TTL, the kept-alive lease's key is still there.
      await new Promise((resolve) => setTimeout(resolve, Math.max(2500 - after, 0)));
      assert.equal(await client.get('smoke/kept').string(), 'k');
    } finally {
      await watcher.cancel();
      await kept.revoke();
    }
    assert.equal(await client.get('smoke/kept').string(), null, 'revoking deletes the key at once');
  });

  test('killing and restarting the leader keeps the cluster usable', { timeout: 60_000 }, async () => {
    const leader = await leaderIndex(cluster);
    assert.notEqual(leader, -1, 'no member says it is the leader');
    await client.put('smoke/before').value('1');
    await cluster.kill(leader);
    // Writes and compare-revision transactions go on with two members (through a new leader).
    for (let i = 0; i < 10; i++) {
      const rev = (await client.get('smoke/counter').exec()).kvs[0]?.mod_revision ?? '0';
      const r = await client
        .if('smoke/counter', 'Mod', '==', rev)
        .then(client.put('smoke/counter').value(String(i)))
        .commit();
      assert.equal(r.succeeded, true, `transaction ${i} while ${cluster.members[leader]!.name} is down`);
    }
    const newLeader = await leaderIndex(cluster);
    assert.notEqual(newLeader, leader);
    await cluster.restart(leader);
    // The restarted member caught up: a serializable read answered by it alone sees the writes.
    const one = connectMember(cluster, leader);
    try {
      let seen: string | null = null;
      for (let tries = 0; tries < 50 && seen !== '9'; tries++) {
        seen = await one.get('smoke/counter').serializable(true).string();
        if (seen !== '9') await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.equal(seen, '9');
    } finally {
      one.close();
    }
    await client.put('smoke/after').value('2');
    assert.equal(await client.get('smoke/after').string(), '2');
  });
});

describe('etcd cluster fixture', { skip, timeout: 60_000 }, () => {
  test('members die with the test process; the next start removes its directory', {
    timeout: 45_000,
  }, async () => {
    const fixture = fileURLToPath(new URL('../fixtures/etcd-cluster.js', import.meta.url));
    const script = `
      const { EtcdCluster } = await import(${JSON.stringify(fixture)});
      const c = await EtcdCluster.start({ members: 1 });
      console.log(JSON.stringify({ dir: c.dir, pids: c.members.map((m) => m.process.pid) }));
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error('the child did not start a cluster in 30 s')), 30_000);
      child.stdout.on('data', (chunk) => {
        out += chunk;
        if (out.includes('\n')) {
          clearTimeout(timer);
          resolve(out.slice(0, out.indexOf('\n')));
        }
      });
      child.on('exit', (code) => reject(new Error(`the child exited (${code}) before starting a cluster`)));
    });
    const { dir, pids } = JSON.parse(line) as { dir: string; pids: number[] };
    const startTimes = pids.map(
      (pid) => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[19],
    );
    assert.ok(existsSync(dir));
    child.kill('SIGKILL'); // no exit handler runs: only the kernel's parent-death signal
    await new Promise((resolve) => child.once('exit', resolve));
    // Gone (or a zombie waiting to be reaped) within 5 s, and not the same process any more.
    const alive = (pid: number, i: number) => {
      try {
        const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
        return fields[0] !== 'Z' && fields[19] === startTimes[i];
      } catch {
        return false;
      }
    };
    for (let t = 0; t < 50 && pids.some(alive); t++) await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(pids.filter(alive), [], 'etcd members outlived the SIGKILLed test process');
    assert.ok(existsSync(dir), 'the directory of a SIGKILLed run stays until the next start');
    removeStaleRuns();
    assert.equal(existsSync(dir), false, 'removeStaleRuns removed the dead run');
  });
});
