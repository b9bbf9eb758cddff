/**
 * The helper's hold and join modes at the protocol level (as root: maps written directly).
 */
import assert from 'node:assert/strict';
import { readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { launchHelper } from '../../src/native/helper.js';

const isRoot = process.geteuid?.() === 0;
const MAP = '0 100000 65536\n';

function gone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return /^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
  } catch {
    return true;
  }
}

async function until(cond: () => boolean): Promise<boolean> {
  for (let i = 0; i < 300; i++) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return false;
}

async function hold(namespaces: ('pid' | 'mount')[] = [], stdio: 'ignore' | 'pipe' = 'ignore') {
  const h = await launchHelper({
    namespaces,
    command: [],
    mode: 'hold',
    reportNamespaces: true,
    mountProc: namespaces.includes('pid'),
    user: null,
    setgroupsCall: false,
    stdio,
  });
  writeFileSync(`/proc/${h.pid}/uid_map`, MAP);
  writeFileSync(`/proc/${h.pid}/gid_map`, MAP);
  await h.go();
  const keeper = Number(h.reports.find((l) => l.startsWith('keeper '))!.slice(7));
  return { h, keeper };
}

describe('helper modes hold and join', { skip: isRoot ? false : 'needs root' }, () => {
  test('usage errors: a command in hold mode, join mode without the user namespace', async () => {
    await assert.rejects(launchHelper({ namespaces: [], command: [], stdio: 'ignore' }), {
      code: 'SETUP_FAILED',
      message: /usage/,
    });
    await assert.rejects(
      launchHelper({ namespaces: [], command: ['true'], join: { pid: 1, namespaces: [] }, stdio: 'ignore' }),
      { message: /usage/ },
    );
  });

  test('the keeper reports every namespace (the PID namespace after its fork) and exits if never committed', async () => {
    const { h, keeper } = await hold(['pid', 'mount']);
    assert.deepEqual(h.namespaceIds.map((n) => n.type).sort(), ['mount', 'pid', 'user']);
    for (const ns of h.namespaceIds) {
      const proc = ns.type === 'mount' ? 'mnt' : ns.type;
      assert.equal(statSync(`/proc/${keeper}/ns/${proc}`).ino, ns.inode, ns.type);
    }
    assert.ok(h.reports.includes('held'));
    // The creator goes away before commit: the keeper must not outlive it.
    await h.abort('creator gone');
    assert.ok(await until(() => gone(keeper)), 'an uncommitted keeper exits by itself');
  });

  test('a committed keeper detaches (own session, stdio on /dev/null), ignores SIGHUP/SIGINT, exits on SIGTERM', async () => {
    // The helper's stdio are pipes: the keeper itself must put /dev/null on fds 0-2.
    const { h, keeper } = await hold([], 'pipe');
    await h.commit();
    const stat = readFileSync(`/proc/${keeper}/stat`, 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    assert.equal(fields[3], String(keeper), 'session leader (setsid)');
    assert.equal(readFileSync(`/proc/${keeper}/cmdline`, 'latin1').includes('--mode=hold'), true);
    for (const fd of ['0', '1', '2'])
      assert.equal(readlinkSync(`/proc/${keeper}/fd/${fd}`), '/dev/null', `fd ${fd}`);
    process.kill(keeper, 'SIGHUP');
    process.kill(keeper, 'SIGINT');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(gone(keeper), false);
    process.kill(keeper, 'SIGTERM');
    assert.ok(await until(() => gone(keeper)));
  });
});
