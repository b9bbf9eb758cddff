/**
 * The fleet registry through the command line, as an administrator and a node use it, against a
 * real 3-member etcd cluster: `alloc config`, `alloc --registry` and $USERNS_REGISTRY on two
 * nodes (the same name, the same range), `alloc list` showing which node holds what, `alloc
 * agent` with `--lease` allocations that go when it stops, `doctor` with every member up (and,
 * through the library, with one member killed and with none answering), and a node whose registry does not answer: the ranges it
 * holds from its cache (said on stderr and in --json), never a new one. Each test has its own
 * key prefix and state root. Skipped, with the reason, where etcd is not installed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FleetRegistry } from '../../src/alloc/fleet/registry.js';
import { parseRegistryUrl } from '../../src/alloc/fleet/url.js';
import { runDoctor } from '../../src/doctor/doctor.js';
import { BIN, runCli } from '../cli/run-cli.js';
import { EtcdCluster, etcdUnavailable } from '../fixtures/etcd-cluster.js';

const skip = etcdUnavailable();
const POOL = {
  uidPool: [{ start: 100_000, count: 10_000_000 }],
  gidPool: [{ start: 100_000, count: 10_000_000 }],
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Json {
  ok: boolean;
  code?: string;
  message?: string;
  [key: string]: unknown;
}

describe('fleet registry: the command line', { skip, timeout: 120_000 }, () => {
  let cluster: EtcdCluster;
  let base: string;
  let n = 0;
  const hosts = () => cluster.endpoints.map((e) => e.replace('http://', '')).join(',');
  // No USERNS_REGISTRY or USERNS_NODE from outside: each call says what it uses.
  const { USERNS_REGISTRY: _r, USERNS_NODE: _n, ...cleanEnv } = process.env;

  /** `userns ARGS` on node `node` with its own state root; --json output parsed. */
  async function cli(node: string, args: string[], env: NodeJS.ProcessEnv = {}) {
    const r = await runCli([...args, '--root', join(base, node)], {
      env: { ...cleanEnv, USERNS_NODE: node, ...env },
    });
    let json: Json | undefined;
    if (args.includes('--json')) json = JSON.parse(r.stdout) as Json;
    return { ...r, json };
  }

  const open: FleetRegistry[] = [];
  /** The registry in this process (to set it up and to watch it without a command's start-up). */
  function registry(text: string): FleetRegistry {
    const r = new FleetRegistry(parseRegistryUrl(text), {
      dir: join(base, 'admin'),
      node: 'admin',
      systemTaken: null,
      idleCloseMs: 0,
    });
    open.push(r);
    return r;
  }

  before(async () => {
    cluster = await EtcdCluster.start();
    base = mkdtempSync(join(tmpdir(), 'userns-fleet-cli-'));
  });

  after(async () => {
    for (const r of open) r.close();
    await cluster?.stop();
    if (base !== undefined) rmSync(base, { recursive: true, force: true });
  });

  test('config, then the same name on two nodes; list shows the node; release', {
    timeout: 60_000,
  }, async () => {
    const url = `etcd://${hosts()}/cli/p${n++}`;
    const [first, bad] = await Promise.all([
      cli('a', ['alloc', '--registry', url, '--name', 'web', '--json']),
      cli('a', ['alloc', 'list', '--registry', 'etcd://h1:2379', '--json']),
    ]);
    assert.equal(first.code, 1);
    assert.equal(first.json!.code, 'REGISTRY_NOT_CONFIGURED');
    assert.match(first.json!.hint as string, /alloc config --registry/);
    assert.equal(bad.code, 2, 'a URL without PREFIX is a usage error');
    assert.match(bad.json!.message!, /no PREFIX/);

    const set = await cli('admin', [
      'alloc',
      'config',
      '--registry',
      url,
      '--pool',
      '131072:1048576',
      '--policy',
      'slot',
      '--lease-ttl',
      '2',
      '--json',
    ]);
    assert.equal(set.code, 0, set.stderr);
    assert.deepEqual((set.json!.config as { uidPool: unknown }).uidPool, [{ start: 131072, count: 1048576 }]);

    const a = await cli('a', ['alloc', '--name', 'web', '--json'], { USERNS_REGISTRY: url });
    assert.equal(a.code, 0, a.stderr);
    const aa = a.json!.allocation as {
      id: string;
      uids: unknown;
      node: string;
      size: number;
      uidMap: unknown;
    };
    assert.equal(aa.node, 'a');
    assert.equal(aa.size, 65536, 'the configured slot policy and its size');
    assert.deepEqual(aa.uidMap, [[0, 131072, 65536]], '--json maps are [inside, outside, count] triples');
    const [b, other] = await Promise.all([
      cli('b', ['alloc', '--registry', url, '--name', 'web']),
      cli('b', ['alloc', '--registry', url, '--name', 'db', '--json']),
    ]);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stdout, /^existing web \(id [0-9a-f]{12}\): uids 131072-196607/);
    assert.equal(other.code, 0, other.stderr);
    const [list, text] = await Promise.all([
      cli('b', ['alloc', 'list', '--registry', url, '--json']),
      cli('b', ['alloc', 'list', '--registry', url]),
    ]);
    assert.equal(list.code, 0, list.stderr);
    const rows = list.json!.allocations as { name: string; node: string }[];
    assert.deepEqual(
      rows.map((r) => [r.name, r.node]),
      [
        ['web', 'a'],
        ['db', 'b'],
      ],
    );
    assert.match(text.stdout, /NODE/);
    assert.match(text.stdout, /web +a +persistent/);
    const released = await cli('a', ['alloc', 'release', '--registry', url, 'web', '--json']);
    assert.equal(released.code, 0, released.stderr);
    const [again, after] = await Promise.all([
      cli('a', ['alloc', 'release', '--registry', url, 'web', '--json']),
      cli('a', ['alloc', 'list', '--registry', url, '--json']),
    ]);
    assert.equal(again.code, 1);
    assert.equal(again.json!.code, 'ALLOC_NOT_FOUND');
    assert.deepEqual(
      (after.json!.allocations as { name: string }[]).map((x) => x.name),
      ['db'],
    );
  });

  test('an agent: --lease allocations live on it; doctor sees it; gone after its TTL once it stops', {
    timeout: 60_000,
  }, async () => {
    const url = `etcd://${hosts()}/cli/p${n++}`;
    const admin = registry(url);
    await admin.setConfig({ ...POOL, leaseTtl: 2 });
    const noAgent = await cli('a', ['alloc', '--registry', url, '--lease', '--json']);
    assert.equal(noAgent.json!.code, 'NODE_NOT_REGISTERED');
    const agent = spawn(
      process.execPath,
      [BIN, 'alloc', 'agent', '--registry', url, '--root', join(base, 'a')],
      {
        env: { ...cleanEnv, USERNS_NODE: 'a' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    agent.stdout!.on('data', (d) => {
      out += d;
    });
    agent.stderr!.on('data', (d) => {
      out += d;
    });
    const exited = new Promise<number | null>((resolve) => agent.on('exit', (code) => resolve(code)));
    try {
      for (let i = 0; !/lease [0-9]+/.test(out); i++) {
        assert.ok(i < 200, `the agent did not register: ${out}`);
        await sleep(50);
      }
      const [leased, persistent] = await Promise.all([
        cli('a', ['alloc', '--registry', url, '--lease', '--name', 'job', '--json']),
        cli('a', ['alloc', '--registry', url, '--name', 'keep', '--json']),
      ]);
      assert.equal(leased.code, 0, leased.stderr);
      assert.match(String((leased.json!.allocation as { lease?: string }).lease), /^[0-9]+$/);
      const doctor = await cli('a', ['doctor', '--registry', url, '--no-probe', '--json']);
      const checks = (doctor.json!.checks as { id: string; status: string; message: string }[]).filter((c) =>
        c.id.startsWith('registry'),
      );
      assert.ok(checks.length >= 3, JSON.stringify(checks));
      assert.deepEqual(
        checks.filter((c) => c.status !== 'ok'),
        [],
        'members, configuration, agent, local IDs',
      );
      assert.ok(checks.some((c) => /agent keeps lease/.test(c.message)));
      agent.kill('SIGTERM');
      assert.equal(await exited, 0);
      assert.match(out, /left to expire/);
      let names: string[] = [];
      for (let i = 0; i < 100; i++) {
        names = (await admin.list()).map((a) => a.name);
        if (!names.includes('job')) break;
        await sleep(100);
      }
      assert.deepEqual(names, ['keep'], 'the leased one went with the node, the persistent one stays');
      assert.ok(persistent.json!.ok);
    } finally {
      agent.kill('SIGKILL');
    }
  });

  test('doctor: one member down is a warning; none answering is an error', { timeout: 60_000 }, async () => {
    const url = `etcd://${hosts()}/cli/p${n++}`;
    await registry(url).setConfig(POOL);
    // The library's doctor (the command's output for it is checked above): no start-up per call.
    const reachable = async () => {
      const report = await runDoctor({
        registry: url,
        node: 'a',
        stateRoot: join(base, 'a'),
        probe: false,
        env: cleanEnv,
      });
      return { blocking: report.blocking, check: report.checks.find((c) => c.id === 'registry.reachable') };
    };
    await cluster.kill(2);
    try {
      const [d, a] = await Promise.all([
        reachable(),
        cli('a', ['alloc', '--registry', url, '--name', 'x', '--json']),
      ]);
      const reach = d.check;
      assert.equal(reach?.status, 'warning', JSON.stringify(reach));
      assert.match(reach!.message, /2 of 3 members answer/);
      assert.equal(a.code, 0, `a majority still allocates: ${a.stderr}`);
    } finally {
      await cluster.restart(2);
    }
    for (let i = 0; i < 3; i++) cluster.pause(i);
    try {
      const d = await reachable();
      assert.equal(d.check?.status, 'error', JSON.stringify(d.check));
      assert.equal(d.blocking, true);
    } finally {
      for (let i = 0; i < 3; i++) cluster.resume(i);
    }
  });

  test('unreachable: a node keeps its named ranges from its cache (and says so), never gets a new one', {
    timeout: 60_000,
  }, async () => {
    const url = `etcd://${hosts()}/cli/p${n++}?timeout=800&try-timeout=300`;
    const admin = registry(url);
    await admin.setConfig(POOL);
    const held = await cli('a', ['alloc', '--registry', url, '--name', 'web', '--json']);
    const heldAlloc = held.json!.allocation as { id: string; uidMap: unknown };
    for (let i = 0; i < 3; i++) cluster.pause(i);
    try {
      // (What else is refused offline, release and names this node never held, the registry's
      // own tests check: test/fleet/registry.test.ts.)
      const [again, human, fresh] = await Promise.all([
        cli('a', ['alloc', '--registry', url, '--name', 'web', '--json']),
        cli('a', ['alloc', '--registry', url, '--name', 'web']),
        cli('a', ['alloc', '--registry', url, '--name', 'new', '--json']),
      ]);
      assert.equal(again.code, 0, again.stdout);
      const a = again.json!.allocation as { id: string; uidMap: unknown };
      assert.deepEqual([a.id, a.uidMap], [heldAlloc.id, heldAlloc.uidMap]);
      assert.equal(again.json!.offline, true);
      assert.match((again.json!.warnings as string[]).join('\n'), /unreachable.*cache/);
      assert.equal(human.code, 0);
      assert.match(human.stderr, /unreachable/);
      assert.equal(fresh.code, 1);
      assert.equal(fresh.json!.code, 'REGISTRY_UNREACHABLE');
      assert.match(fresh.json!.message!, /never allocated offline/);
    } finally {
      for (let i = 0; i < 3; i++) cluster.resume(i);
    }
    assert.deepEqual(
      (await admin.list()).map((x) => x.name),
      ['web'],
      'nothing changed meanwhile',
    );
  });
});
