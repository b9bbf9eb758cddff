/**
 * Hold modes as a real unprivileged user (throwaway user with subordinate ranges, the real
 * newuidmap/newgidmap), through the CLI: keeper joined by nsfs handle and by pidfd, `--hold mount`
 * refused (and the kernel's EPERM behind that, measured), `--hold none` living exactly as long
 * as its command. The root side is in hold.test.ts.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { arch } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { probeNsfs } from '../../src/native/nsfs.js';
import { readableBin, readablePath } from '../fixtures/readable-repo.js';
import { runAs, throwawayUserUnavailable, withThrowawayUser } from '../fixtures/throwaway-user.js';
import { membersOf, until } from './hold-fixtures.js';

function skipReason(): string | false {
  const unavailable = throwawayUserUnavailable();
  if (unavailable !== undefined) return unavailable;
  try {
    const p = probeNsfs();
    if (p.encode !== null || p.decode !== null) return `kernel: no nsfs file handles here (Linux 6.18+)`;
  } catch (error) {
    return `the helper cannot probe: ${(error as Error).message}`;
  }
  return false;
}

describe('hold modes (rootless)', { skip: skipReason() }, () => {
  test(
    'keeper by handle and by pidfd, mount refused (EPERM measured), none lives as long as its command',
    { timeout: 150_000 },
    () =>
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
        const as = (argv: string[], extra: NodeJS.ProcessEnv = {}) =>
          runAs(user, argv, { env: { ...env, ...extra } });
        const userns = (args: string[], extra: NodeJS.ProcessEnv = {}) =>
          as([process.execPath, readableBin(), ...args], extra);
        assert.equal((await as(['sh', '-c', `mkdir -m 700 ${runtime}`])).code, 0);
        const uidMapText = (m: number[][]) => m.map((t) => t.join(' ')).join(' ');

        // keeper: handles recorded; joined by handle, then through the keeper's pidfd.
        const made = await userns(['create', '--unshare', 'mount,uts', '--json', 'k']);
        assert.equal(made.code, 0, made.stderr);
        const k = JSON.parse(made.stdout).state;
        assert.equal(k.hold, 'keeper');
        assert.ok(k.namespaces.every((n: { handle: string | null }) => typeof n.handle === 'string'));
        const expected = `0 ${user.uid} 1 1 ${user.subuid.start} ${user.subuid.count}`;
        assert.equal(uidMapText(k.uidMap), expected);
        for (const extra of [{}, { USERNS_NSFS_HANDLES: '0' }]) {
          const r = await userns(['exec', 'k', '--', 'sh', '-c', 'cat /proc/self/uid_map; id -u'], extra);
          assert.equal(r.code, 0, r.stderr);
          const lines = r.stdout.trim().split('\n');
          assert.equal(lines.slice(0, 2).join(' ').trim().split(/\s+/).join(' '), expected);
          assert.equal(lines[2], '0');
        }

        // mount: refused before anything is made, naming why.
        const refused = await userns(['create', '--hold', 'mount', '--json', 'm']);
        assert.equal(refused.code, 1, refused.stdout + refused.stderr);
        const err = JSON.parse(refused.stdout);
        assert.equal(err.code, 'NS_HOLD_UNSUPPORTED');
        assert.match(err.message, /CAP_SYS_ADMIN/);
        assert.equal((await userns(['list', '--json'])).stdout.includes('"m"'), false);
        // The kernel's rule behind the refusal: the owner of a namespace made through newuidmap
        // may not bind its namespace files in the mount namespace it runs in.
        const helper = readablePath(`build/linux-${arch()}/userns-helper`);
        const file = join(user.home, 'bindtarget');
        const bind = await as([
          'sh',
          '-c',
          `: > ${file} && ${helper} --mode=bind --bind-from=${k.keeperPid} --bind=user:${file} 3>&1`,
        ]);
        assert.match(bind.stdout, /^error bind 1 /m, bind.stdout + bind.stderr);

        assert.equal((await userns(['rm', 'k'])).code, 0);

        // none: the command is its only process; joined by handle while it runs; gone after.
        const creating = userns(['create', '--hold', 'none', '--unshare', 'uts', 'n', '--', 'sleep', '60']);
        const statePath = join(runtime, 'userns', 'ns', 'n', 'state.json');
        const n = await until(
          () => {
            try {
              if (statSync(join(runtime, 'userns', 'ns', 'n', 'creating'), { throwIfNoEntry: false }))
                return undefined;
              return JSON.parse(readFileSync(statePath, 'utf8'));
            } catch {
              return undefined;
            }
          },
          30_000,
          'the none namespace to be recorded',
        );
        assert.equal(n.hold, 'none');
        const userNs = n.namespaces.find((x: { type: string }) => x.type === 'user');
        for (let i = 0; i < 2; i++) {
          const r = await userns([
            'exec',
            'n',
            '--',
            'sh',
            '-c',
            'cat /proc/self/uid_map; stat -L -c %i /proc/self/ns/user',
          ]);
          assert.equal(r.code, 0, r.stderr);
          const lines = r.stdout.trim().split('\n');
          assert.equal(lines.slice(0, 2).join(' ').trim().split(/\s+/).join(' '), expected);
          assert.equal(Number(lines[2]), userNs.inode);
        }
        const members = membersOf(userNs.inode, expected);
        assert.equal(members.length, 1, `only the command lives in it: ${members}`);
        process.kill(members[0]!, 'SIGTERM');
        const ended = await creating;
        assert.equal(ended.code, 143, `create exits like its command (SIGTERM): ${ended.stderr}`);
        const gone = await until(
          async () => {
            const r = await userns(['exec', '--json', 'n', '--', 'true']);
            return r.code === 125 && JSON.parse(r.stdout).code === 'NS_GONE' ? r : undefined;
          },
          20_000,
          'NS_GONE',
        );
        assert.match(JSON.parse(gone.stdout).message, /namespace n is gone/);
        assert.deepEqual(membersOf(userNs.inode, expected), []);
        assert.equal((await userns(['rm', 'n'])).code, 0);
      }),
  );
});
