/**
 * Named namespaces as a real unprivileged user (throwaway user with subordinate ranges, real
 * newuidmap/newgidmap), through the CLI, with the default state root $XDG_RUNTIME_DIR/userns.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { readableBin } from '../fixtures/readable-repo.js';
import {
  runAs,
  shadowTool,
  throwawayUserUnavailable,
  withThrowawayUser,
} from '../fixtures/throwaway-user.js';

const skip = throwawayUserUnavailable();

function gone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return /^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
  } catch {
    return true;
  }
}

describe('named namespaces (rootless)', { skip: skip ?? false }, () => {
  test('create, exec twice, inspect (subordinate-ID change), stale after a killed keeper, rm', () =>
    withThrowawayUser(async (user) => {
      const runtime = join(user.home, 'run');
      const env = {
        ...process.env,
        HOME: user.home,
        USER: user.name,
        LOGNAME: user.name,
        XDG_RUNTIME_DIR: runtime,
        NO_COLOR: '1',
      };
      const as = (argv: string[]) => runAs(user, argv, { env });
      const userns = (args: string[]) => as([process.execPath, readableBin(), ...args]);
      assert.equal((await as(['sh', '-c', `mkdir -m 700 ${runtime}`])).code, 0);

      const made = await userns(['create', '--unshare', 'pid,mount,uts', '--json', 'r1']);
      assert.equal(made.code, 0, made.stderr);
      const { state } = JSON.parse(made.stdout);
      assert.deepEqual(state.uidMap, [
        [0, user.uid, 1],
        [1, user.subuid.start, user.subuid.count],
      ]);
      assert.deepEqual(state.gidMap, [
        [0, user.gid, 1],
        [1, user.subgid.start, user.subgid.count],
      ]);
      assert.deepEqual(state.subids.uid, [{ start: user.subuid.start, count: user.subuid.count }]);
      const statePath = join(runtime, 'userns', 'ns', 'r1', 'state.json');
      assert.equal(statSync(statePath).uid, user.uid, 'the state lives under $XDG_RUNTIME_DIR/userns');
      assert.equal(statSync(join(runtime, 'userns')).mode & 0o777, 0o700);

      const probe = ['sh', '-c', 'stat -L -c %i /proc/self/ns/user; id -u; echo $$'];
      const a = await userns(['exec', 'r1', '--', ...probe]);
      const b = await userns(['exec', 'r1', '--', ...probe]);
      assert.equal(a.code, 0, a.stderr);
      assert.equal(b.code, 0, b.stderr);
      const [inoA, idA, pidA] = a.stdout.split('\n');
      const [inoB, idB, pidB] = b.stdout.split('\n');
      assert.equal(inoA, inoB, 'both execs are in the same user namespace');
      assert.equal(Number(inoA), state.namespaces[0].inode);
      assert.equal(idA, '0');
      assert.equal(idB, '0');
      assert.notEqual(pidA, '1', 'the keeper is PID 1, the command another process of its PID namespace');
      assert.notEqual(pidA, pidB);
      assert.equal((await userns(['exec', 'r1', '--', 'sh', '-c', 'exit 3'])).code, 3);

      const list = await userns(['list', '--json']);
      assert.equal(JSON.parse(list.stdout).namespaces[0].status, 'running');

      // The administrator gives the user more IDs: the running namespace does not change.
      const extra = user.subuid.start + user.subuid.count;
      const mod = shadowTool('usermod', ['--add-subuids', `${extra}-${extra + 999}`, user.name]);
      assert.equal(mod.code, 0, mod.stderr);
      const inspected = await userns(['inspect', '--json', 'r1']);
      assert.equal(inspected.code, 0, inspected.stderr);
      const info = JSON.parse(inspected.stdout);
      assert.equal(info.status, 'running');
      assert.deepEqual(info.subidChanges, [
        { kind: 'uid', added: [{ start: extra, count: 1000 }], removed: [] },
      ]);
      assert.match(info.warnings.join('\n'), /subordinate uids changed since r1 was created/);
      const text = await userns(['inspect', 'r1']);
      assert.match(text.stdout, /subuid changed: added \d+:1000 \(not mapped\)/);

      // Killing the keeper: exec refuses with NS_STALE, rm cleans.
      process.kill(state.keeperPid, 'SIGKILL');
      for (let i = 0; i < 300 && !gone(state.keeperPid); i++) await new Promise((r) => setTimeout(r, 10));
      const refused = await userns(['exec', '--json', 'r1', '--', 'true']);
      assert.equal(refused.code, 125);
      assert.equal(JSON.parse(refused.stdout).code, 'NS_STALE');
      const rm = await userns(['rm', 'r1']);
      assert.equal(rm.code, 0, rm.stderr);
      assert.ok(!existsSync(join(runtime, 'userns', 'ns', 'r1')));

      // Created again, removed with its keeper.
      const again = await userns(['create', '--json', 'r1']);
      assert.equal(again.code, 0, again.stderr);
      const keeper = JSON.parse(again.stdout).state.keeperPid;
      assert.equal((await userns(['rm', 'r1'])).code, 0);
      assert.ok(gone(keeper));
    }));
});
