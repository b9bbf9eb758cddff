/**
 * The measurements behind docs/etcd-notes.md, against throwaway clusters of the test fixture.
 * Not a test (no assertions, about two minutes): run it by hand after a build,
 *
 *   node dist/test/fleet/measure-etcd.js            # everything
 *   node dist/test/fleet/measure-etcd.js failover   # one section: start latency txn lease failover down
 *
 * and read the figures beside the machine's load (printed first): these 2-core machines are shared.
 */
import { loadavg } from 'node:os';
import { Etcd3 } from 'etcd3';
import { connectEtcd as connect, leaderIndex } from '../fixtures/etcd-client.js';
import {
  EtcdCluster,
  type EtcdClusterOptions,
  etcdUnavailable,
  etcdVersion,
} from '../fixtures/etcd-cluster.js';

const now = () => performance.now();
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const ms = (x: number) => `${x.toFixed(x < 10 ? 1 : 0)} ms`;
function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN;
}

const TIMINGS: Record<string, EtcdClusterOptions> = {
  'fixture (heartbeat 50 ms, election 500 ms)': { heartbeatMs: 50, electionMs: 500 },
  "etcd's defaults (heartbeat 100 ms, election 1000 ms)": { heartbeatMs: 100, electionMs: 1000 },
};

async function start(): Promise<void> {
  for (const [label, options] of Object.entries(TIMINGS)) {
    const xs: number[] = [];
    for (let i = 0; i < 6; i++) {
      const t = now();
      const c = await EtcdCluster.start(options);
      xs.push(now() - t);
      await c.stop();
    }
    console.log(
      `start, 3 members healthy, ${label}: min ${ms(Math.min(...xs))}, median ${ms(quantile(xs, 0.5))}, max ${ms(Math.max(...xs))}`,
    );
  }
}

async function latency(): Promise<void> {
  const c = await EtcdCluster.start();
  const client = connect(c.endpoints);
  try {
    for (let i = 0; i < 20; i++) await client.put('warm').value(String(i));
    const run = async (label: string, op: (i: number) => Promise<unknown>) => {
      const xs: number[] = [];
      for (let i = 0; i < 300; i++) {
        const t = now();
        await op(i);
        xs.push(now() - t);
      }
      console.log(`${label}: p50 ${ms(quantile(xs, 0.5))}, p99 ${ms(quantile(xs, 0.99))} (300 sequential)`);
    };
    await run('put', (i) => client.put(`p/${i}`).value('x').exec());
    await run('get (linearizable)', (i) => client.get(`p/${i}`).string());
    await run('get (serializable)', (i) => client.get(`p/${i}`).serializable(true).string());
    await client.put('head').value('0');
    await run('get head + txn (2 compares, 4 puts)', async (i) => {
      const rev = (await client.get('head').exec()).kvs[0]!.mod_revision;
      await client
        .if('head', 'Mod', '==', rev)
        .and(`name/${i}`, 'Create', '==', 0)
        .then(
          client.put('head').value(String(i)),
          client.put(`alloc/${i}`).value('{}'),
          client.put(`name/${i}`).value(String(i)),
          client.put(`index/${i}`).value(String(i)),
        )
        .commit();
    });
    const t = now();
    let n = 0;
    await Promise.all(
      Array.from({ length: 16 }, async (_, w) => {
        for (let i = 0; i < 40; i++) {
          await client
            .if(`x/${w}/${i}`, 'Create', '==', 0)
            .then(client.put(`x/${w}/${i}`).value('1'))
            .commit();
          n++;
        }
      }),
    );
    console.log(
      `independent create-if-absent txns, 16 in flight: ${(n / ((now() - t) / 1000)).toFixed(0)}/s`,
    );
  } finally {
    client.close();
    await c.stop();
  }
}

/** Writers that all compare one head key (the serial protocol of docs/etcd-notes.md). */
async function txn(): Promise<void> {
  const c = await EtcdCluster.start();
  try {
    for (const writers of [1, 4, 8]) {
      const clients = Array.from({ length: Math.min(writers, 4) }, () => connect(c.endpoints));
      const head = Buffer.from(`w${writers}/head`);
      await clients[0]!.kv.put({ key: head, value: Buffer.from('0') });
      let commits = 0;
      let conflicts = 0;
      const each = Math.floor(400 / writers);
      const t = now();
      await Promise.all(
        Array.from({ length: writers }, async (_, w) => {
          const client = clients[w % clients.length]!;
          let rev = (await client.kv.range({ key: head })).kvs[0]!.mod_revision;
          for (let i = 0; i < each; i++) {
            for (let attempt = 0; ; attempt++) {
              const key = (suffix: string) => Buffer.from(`w${writers}/${suffix}/${w}-${i}`);
              const r = await client.kv.txn({
                compare: [{ key: head, target: 'Mod', result: 'Equal', mod_revision: rev }],
                success: [
                  { request_put: { key: head, value: Buffer.from(`${w}-${i}`) } },
                  { request_put: { key: key('alloc'), value: Buffer.from('{}') } },
                  { request_put: { key: key('uid'), value: Buffer.from('1') } },
                  { request_put: { key: key('gid'), value: Buffer.from('1') } },
                ],
                failure: [{ request_range: { key: head } }],
              });
              if (r.succeeded) {
                rev = r.header.revision;
                commits++;
                break;
              }
              conflicts++;
              rev = r.responses[0]!.response_range!.kvs[0]!.mod_revision;
              await sleep(Math.random() * Math.min(50, 2 ** attempt));
            }
          }
        }),
      );
      const s = (now() - t) / 1000;
      console.log(
        `head-compare txns, ${writers} writer(s), jittered backoff on conflict: ${(commits / s).toFixed(0)} commits/s, ${conflicts} conflicts for ${commits} commits`,
      );
      for (const client of clients) client.close();
    }
  } finally {
    await c.stop();
  }
}

async function lease(): Promise<void> {
  for (const [label, options] of Object.entries(TIMINGS)) {
    const c = await EtcdCluster.start(options);
    const client = connect(c.endpoints);
    try {
      for (const ttl of [1, 2, 3]) {
        const l = client.lease(ttl, { autoKeepAlive: false });
        const id = await l.grant();
        const t = now();
        await l.put(`l/${ttl}`).value('x');
        const info = await client.leaseClient.leaseTimeToLive({ ID: id });
        const watcher = await client.watch().key(`l/${ttl}`).create();
        const gone = await new Promise<number>((resolve) => watcher.on('delete', () => resolve(now() - t)));
        await watcher.cancel();
        console.log(
          `lease, ${label}: TTL ${ttl} s asked, ${info.grantedTTL} s granted, key deleted ${ms(gone)} after the grant`,
        );
      }
      const l = client.lease(3, { autoKeepAlive: false });
      await l.grant();
      const t = now();
      await l.put('lz').value('x');
      const watcher = await client.watch().key('lz').create();
      const gone = new Promise<number>((resolve) => watcher.on('delete', () => resolve(now() - t)));
      await sleep(1500);
      await c.kill(await leaderIndex(c));
      console.log(
        `lease, ${label}: TTL 3 s, leader killed at 1.5 s: key deleted ${ms(await gone)} after the grant`,
      );
      await watcher.cancel();
    } finally {
      client.close();
      await c.stop();
    }
  }
}

async function failover(): Promise<void> {
  for (const [label, options] of Object.entries(TIMINGS)) {
    const c = await EtcdCluster.start(options);
    try {
      for (const [clientLabel, make] of [
        ["etcd3's default fault handling, no deadline", () => new Etcd3({ hosts: c.endpoints })],
        ['recommended client (2 s a try, 10 s in all)', () => connect(c.endpoints)],
      ] as const) {
        for (let trial = 0; trial < 2; trial++) {
          const client = make();
          await client.put('w').value('0');
          const leader = await leaderIndex(c);
          const records: { start: number; end: number; ok: boolean }[] = [];
          let stop = false;
          const writers = Array.from({ length: 4 }, async (_, w) => {
            let i = 0;
            while (!stop) {
              const start = now();
              let ok = true;
              try {
                await client.put(`w/${w}`).value(String(i++));
              } catch {
                ok = false;
                await sleep(10);
              }
              records.push({ start, end: now(), ok });
            }
          });
          await sleep(300);
          const killed = now();
          await c.kill(leader);
          await sleep(7500);
          stop = true;
          await Promise.all(writers);
          const firstOk = records
            .filter((r) => r.ok && r.start >= killed)
            .reduce((m, r) => Math.min(m, r.end - killed), Number.POSITIVE_INFINITY);
          const slowest = records.reduce((m, r) => Math.max(m, r.end - r.start), 0);
          const failed = records.filter((r) => !r.ok).length;
          console.log(
            `failover, ${label}, ${clientLabel}: leader killed; first put begun after the kill done ${ms(firstOk)} after it; slowest put ${ms(slowest)}; ${failed} failed`,
          );
          client.close();
          await c.restart(leader);
        }
      }
    } finally {
      await c.stop();
    }
  }
}

async function down(): Promise<void> {
  const c = await EtcdCluster.start();
  try {
    for (const how of ['killed', 'paused (SIGSTOP)'] as const) {
      for (const [clientLabel, make] of [
        ["etcd3's defaults", () => new Etcd3({ hosts: c.endpoints })],
        ['recommended client', () => connect(c.endpoints)],
      ] as const) {
        const client = make();
        await client.put('pre').value('1');
        for (let i = 0; i < 3; i++) {
          if (how === 'killed') await c.kill(i);
          else c.pause(i);
        }
        const t = now();
        const outcome = await Promise.race([
          client
            .put('x')
            .value('1')
            .then(
              () => 'succeeded',
              (e: Error) => e.constructor.name,
            ),
          sleep(20_000).then(() => 'no answer in 20 s'),
        ]);
        console.log(`all 3 members ${how}, ${clientLabel}: put → ${outcome} after ${ms(now() - t)}`);
        client.close();
        if (how === 'killed') await Promise.all([0, 1, 2].map((i) => c.restart(i)));
        else for (let i = 0; i < 3; i++) c.resume(i);
        await c.waitHealthy([0, 1, 2]);
      }
    }
    const client = connect(c.endpoints);
    await c.kill(0);
    await c.kill(1);
    let t = now();
    const put = await client
      .put('x')
      .value('2')
      .then(
        () => 'succeeded',
        (e: Error) => e.constructor.name,
      );
    const putMs = now() - t;
    t = now();
    const read = await client
      .get('pre')
      .serializable(true)
      .string()
      .then(
        (v) => `read ${v}`,
        (e: Error) => e.constructor.name,
      );
    console.log(
      `2 of 3 members killed (no quorum), recommended client: put → ${put} after ${ms(putMs)}; serializable get → ${read} after ${ms(now() - t)}`,
    );
    client.close();
  } finally {
    await c.stop();
  }
}

const sections: Record<string, () => Promise<void>> = { start, latency, txn, lease, failover, down };
const reason = etcdUnavailable();
if (reason) {
  console.error(`cannot measure: ${reason}`);
  process.exit(1);
}
const wanted = process.argv.slice(2);
console.log(
  `etcd ${etcdVersion()}, Node ${process.version}, load average ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}`,
);
for (const [name, run] of Object.entries(sections)) {
  if (wanted.length > 0 && !wanted.includes(name)) continue;
  await run();
}
console.log(
  `load average at the end ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}`,
);
