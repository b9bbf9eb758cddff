import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { parsePassthrough } from '../../src/alloc/index.js';
import type { Pools } from '../../src/alloc/pool.js';
import { clipPool, SYSTEMD_CONTAINER_RANGE } from '../../src/alloc/pool.js';
import { Registry } from '../../src/alloc/registry.js';
import { formatKernelMap, parseKernelMap } from '../../src/idmap/formats/kernel.js';
import { launchHelper } from '../../src/native/helper.js';

const isRoot = process.geteuid?.() === 0;
const base = mkdtempSync(join(tmpdir(), 'userns-alloc-kernel-'));
after(() => rmSync(base, { recursive: true, force: true }));

describe('every allocation is a map the kernel accepts', {
  skip: !isRoot && 'needs root to write arbitrary maps',
}, () => {
  test('first fit, slots, a fixed base, passthrough holes, the top of the ID space', async () => {
    const r = new Registry(join(base, 'alloc'), { systemTaken: null });
    const systemd: Pools = {
      uid: { ranges: [SYSTEMD_CONTAINER_RANGE], source: 'systemd' },
      gid: { ranges: [SYSTEMD_CONTAINER_RANGE], source: 'systemd' },
    };
    const top = clipPool([{ start: 4294967295 - 70000, count: 70000 }]);
    const high: Pools = { uid: { ranges: top, source: 'top' }, gid: { ranges: top, source: 'top' } };
    // containers/storage's case of free blocks none of which holds 65536 IDs.
    const gaps = [
      { start: 11000, count: 9000 },
      { start: 25000, count: 5000 },
      { start: 35000, count: 65000 },
    ];
    const allocations = [
      await r.allocate({ size: 65536, policy: { kind: 'slot', slotSize: 65536 }, pools: systemd }),
      await r.allocate({ size: 1024, policy: { kind: 'first-fit' }, pools: systemd }),
      await r.allocate({ size: 200_000, policy: { kind: 'slot', slotSize: 131072 }, pools: systemd }),
      await r.allocate({ size: 65536, policy: { kind: 'base', base: 0x6fff0000 }, pools: systemd }),
      await r.allocate({
        size: 65536,
        policy: { kind: 'first-fit' },
        pools: systemd,
        uidPassthrough: parsePassthrough('1000:1000:1,2000:1610612736:5'),
        gidPassthrough: parsePassthrough('5:5:3'),
      }),
      // Several free blocks (issue 14 item 3): one map of three lines, plus a passthrough hole.
      await r.allocate({
        size: 65536,
        policy: { kind: 'first-fit' },
        pools: { uid: { ranges: gaps, source: 'blocks' }, gid: { ranges: gaps, source: 'blocks' } },
        uidPassthrough: parsePassthrough('8990:1000:20'),
      }),
      // Ends exactly at 4294967294, the last mappable ID.
      await r.allocate({ size: 70000, policy: { kind: 'first-fit' }, pools: high }),
    ];
    assert.equal(allocations.at(-1)!.uids[0]!.start + 70000, 4294967295);
    for (const a of allocations) {
      const h = await launchHelper({ namespaces: ['user'], command: ['/bin/true'], stdio: 'ignore' });
      try {
        const uid = formatKernelMap(a.uidMap);
        const gid = formatKernelMap(a.gidMap);
        writeFileSync(`/proc/${h.pid}/uid_map`, uid);
        writeFileSync(`/proc/${h.pid}/gid_map`, gid);
        const sorted = (text: string) => parseKernelMap(text).sort((x, y) => x.inside - y.inside);
        assert.deepEqual(
          sorted(readFileSync(`/proc/${h.pid}/uid_map`, 'utf8')),
          sorted(uid),
          `${a.policy} uid`,
        );
        assert.deepEqual(
          sorted(readFileSync(`/proc/${h.pid}/gid_map`, 'utf8')),
          sorted(gid),
          `${a.policy} gid`,
        );
      } finally {
        await h.abort();
      }
    }
  });
});
