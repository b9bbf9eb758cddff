/**
 * The pure parts of the fleet registry: registry URLs, key layout, configuration checks and the
 * backoff (no etcd needed).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkFleetConfig, FleetKeys, prefixEnd } from '../../src/alloc/fleet/layout.js';
import { backoffMs } from '../../src/alloc/fleet/registry.js';
import { isFleetRegistry, parseRegistryUrl, redact } from '../../src/alloc/fleet/url.js';

describe('registry URLs', () => {
  test('hosts, default port, prefix, options', () => {
    const u = parseRegistryUrl(
      'etcd://10.0.0.2:2379,10.0.0.1,[::1]:4001/userns//prod/?timeout=3000&try-timeout=500',
    );
    assert.deepEqual(u.endpoints, ['http://10.0.0.2:2379', 'http://10.0.0.1:2379', 'http://[::1]:4001']);
    assert.equal(u.prefix, '/userns/prod');
    assert.equal(u.display, 'etcd://10.0.0.2:2379,10.0.0.1:2379,[::1]:4001/userns/prod');
    assert.equal(
      u.key,
      'etcd://10.0.0.1:2379,10.0.0.2:2379,[::1]:4001/userns/prod',
      'hosts sorted: the cache key',
    );
    assert.equal(u.timeoutMs, 3000);
    assert.equal(u.tryTimeoutMs, 500);
    assert.equal(u.tls, false);
  });

  test('TLS and credentials', () => {
    const u = parseRegistryUrl(
      'etcds://alice:s%40cret@etcd.example:2379/p?cacert=/ca.pem&cert=/c.pem&key=/k.pem',
    );
    assert.deepEqual(u.endpoints, ['https://etcd.example:2379']);
    assert.equal(u.username, 'alice');
    assert.equal(u.password, 's@cret');
    assert.deepEqual([u.cacert, u.cert, u.certKey], ['/ca.pem', '/c.pem', '/k.pem']);
    assert.equal(
      u.display.includes('s%40cret') || u.display.includes('alice'),
      false,
      'no credentials in messages',
    );
    assert.equal(redact('etcd://alice:pw@h:1/p'), 'etcd://alice:***@h:1/p');
  });

  test('malformed URLs are usage errors that say what is wrong', () => {
    const cases: [string, RegExp][] = [
      ['etcd://h:2379', /no PREFIX/],
      ['etcd:///p', /no host/],
      ['etcd://h:99999/p', /out of range/],
      ['etcd://h/a b', /segment/],
      ['etcd://h/a/../b', /segment/],
      ['etcd://h/p?cacert=/x', /needs TLS/],
      ['etcd://h/p?timeout=soon', /milliseconds/],
      ['etcd://h/p?color=red', /unknown option/],
      ['etcds://h/p?cert=/c', /go together/],
      ['http://h/p', /not an etcd/],
      ['etcd://ho_st/p', /not a host name/],
    ];
    for (const [text, why] of cases) {
      assert.throws(
        () => parseRegistryUrl(text),
        (e: Error & { code?: string }) => e.code === 'USAGE' && why.test(e.message),
        text,
      );
    }
    assert.equal(isFleetRegistry('local'), false);
    assert.equal(isFleetRegistry('etcd://h/p'), true);
    assert.throws(
      () => parseRegistryUrl('etcd://u:secret@h:1'),
      (e: Error) => !e.message.includes('secret'),
    );
  });
});

describe('key layout', () => {
  test('index keys sort numerically; prefix ends', () => {
    const k = new FleetKeys('/u');
    const starts = [5, 524288, 4294901760, 100000, 0];
    const sorted = starts.map((s) => k.index('uid', s)).sort();
    assert.deepEqual(
      sorted,
      [...starts].sort((a, b) => a - b).map((s) => k.index('uid', s)),
    );
    assert.equal(k.index('gid', 65536), '/u/index/gid/0000065536');
    assert.equal(prefixEnd('/u/alloc/').toString(), '/u/alloc0');
    assert.deepEqual([...prefixEnd('a\xff')], [0x61, 0xc3, 0xc0]);
  });

  test('configurations are checked and normalized', () => {
    const c = checkFleetConfig(
      {
        version: 1,
        uidPool: ['100000:65536', { start: 165536, count: 10 }],
        gidPool: ['0x80000:0x10000'],
        policy: 'slot',
        leaseTtl: 5,
      },
      'test',
    );
    assert.deepEqual(c.uidPool, [{ start: 100000, count: 65546 }]);
    assert.deepEqual(c.gidPool, [{ start: 524288, count: 65536 }]);
    for (const bad of [
      { version: 2, uidPool: [], gidPool: [] },
      { version: 1, uidPool: ['1:1'] },
      { version: 1, uidPool: ['1:1'], gidPool: [] },
      { version: 1, uidPool: ['1:1'], gidPool: ['1:1'], policy: 'best' },
      { version: 1, uidPool: ['1:1'], gidPool: ['1:1'], leaseTtl: 1 },
      { version: 1, uidPool: ['4294967295:1'], gidPool: ['1:1'] },
      [],
    ]) {
      assert.throws(
        () => checkFleetConfig(bad, 'test'),
        (e: Error & { code?: string }) => e.code === 'ALLOC_CONFIG',
        JSON.stringify(bad),
      );
    }
  });
});

describe('backoff', () => {
  test('full jitter, growing, bounded', () => {
    assert.equal(
      backoffMs(0, () => 0.999),
      9,
    );
    assert.equal(
      backoffMs(3, () => 0.5),
      40,
    );
    assert.equal(
      backoffMs(30, () => 0.999),
      999,
    );
    assert.equal(
      backoffMs(30, () => 0),
      0,
    );
  });
});
