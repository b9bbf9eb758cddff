import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { UsernsError } from '../../src/errors/index.js';
import {
  getSubordinateRanges,
  listAllSubordinateRanges,
  parseGetsubidsOutput,
  parseNsswitchSubid,
} from '../../src/system/subordinate.js';
import { throwawayUserUnavailable, withThrowawayUser } from '../fixtures/throwaway-user.js';

let dir: string;
const alice = { name: 'alice', uid: 1001 };

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'userns-subordinate-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function files(subuid: string, subgid = '', nsswitch = 'passwd: files\n') {
  const sub = await mkdtemp(join(dir, 'case-'));
  const paths = {
    subuidPath: join(sub, 'subuid'),
    subgidPath: join(sub, 'subgid'),
    nsswitchPath: join(sub, 'nsswitch.conf'),
    // No getsubids unless a test provides one.
    getsubidsPath: join(sub, 'no-getsubids'),
  };
  await writeFile(paths.subuidPath, subuid);
  await writeFile(paths.subgidPath, subgid);
  await writeFile(paths.nsswitchPath, nsswitch);
  return paths;
}

/** A fake getsubids that logs its arguments and prints canned output per kind. */
async function fakeGetsubids(options: { uid?: string; gid?: string; fail?: boolean }) {
  const sub = await mkdtemp(join(dir, 'fake-'));
  const path = join(sub, 'getsubids');
  const log = join(sub, 'log');
  const script = `#!/bin/sh
echo "$@" >> '${log}'
if [ "$1" = "-g" ]; then out='${options.gid ?? ''}'; else out='${options.uid ?? ''}'; fi
if [ -z "$out" ] || [ '${options.fail ? 1 : 0}' = 1 ]; then echo "Error fetching ranges" >&2; exit 1; fi
printf '%s\\n' "$out"
`;
  await writeFile(path, script);
  await chmod(path, 0o755);
  return { path, log };
}

describe('getSubordinateRanges from files', () => {
  test('by login name, several ranges in file order (not merged), with line numbers', async () => {
    const opts = await files('# c\nbob:1:1\nalice:200000:10\nalice:100000:65536\nalice:100010:5\n');
    const r = await getSubordinateRanges(alice, 'uid', opts);
    assert.equal(r.source, 'files');
    assert.equal(r.file, opts.subuidPath);
    assert.equal(r.module, 'files');
    assert.deepEqual(r.ranges, [
      { start: 200000, count: 10 },
      { start: 100000, count: 65536 },
      { start: 100010, count: 5 },
    ]);
    assert.deepEqual(
      r.entries.map((e) => e.line),
      [3, 4, 5],
    );
    assert.deepEqual(r.problems, []);
  });

  test('by numeric UID, and both forms together', async () => {
    const byUid = await getSubordinateRanges(alice, 'uid', await files('1001:300000:65536\n'));
    assert.equal(byUid.source, 'files');
    assert.deepEqual(byUid.ranges, [{ start: 300000, count: 65536 }]);

    const both = await getSubordinateRanges(
      alice,
      'uid',
      await files('alice:100000:65536\n1002:5:5\n1001:300000:65536\n'),
    );
    assert.deepEqual(
      both.entries.map((e) => [e.owner, e.line]),
      [
        ['alice', 1],
        ['1001', 3],
      ],
    );
  });

  test('/etc/subgid is keyed by the USER (name or UID), not a group', async () => {
    const opts = await files('alice:100000:65536\n', 'alice:500000:65536\n1001:700000:10\n');
    const r = await getSubordinateRanges(alice, 'gid', opts);
    assert.equal(r.file, opts.subgidPath);
    assert.deepEqual(r.ranges, [
      { start: 500000, count: 65536 },
      { start: 700000, count: 10 },
    ]);
  });

  test('none: no matching line, an empty file, a missing file', async () => {
    const noMatch = await getSubordinateRanges(alice, 'uid', await files('bob:1:1\n10010:5:5\n'));
    assert.equal(noMatch.source, 'none');
    assert.deepEqual(noMatch.ranges, []);
    assert.deepEqual(noMatch.entries, []);

    const empty = await getSubordinateRanges(alice, 'uid', await files(''));
    assert.equal(empty.source, 'none');

    const missing = await getSubordinateRanges(alice, 'uid', {
      ...(await files('')),
      subuidPath: join(dir, 'nope'),
    });
    assert.equal(missing.source, 'none');
    assert.equal(missing.file, join(dir, 'nope'));
  });

  test("another user's malformed line does not hide ours; problems are reported", async () => {
    const r = await getSubordinateRanges(
      alice,
      'uid',
      await files('bob:x:1\nalice:100000:65536\nalice:0x10:1\n'),
    );
    assert.deepEqual(r.ranges, [{ start: 100000, count: 65536 }]);
    assert.deepEqual(
      r.problems.map((p) => [p.code, p.line]),
      [
        ['SUBID_SYNTAX', 1],
        ['SUBID_AMBIGUOUS_NUMBER', 3],
      ],
    );
  });

  test('an unreadable file is an error with a hint (not "none")', async () => {
    // (mode 000 would not stop root: a directory in place of the file gives EISDIR for anyone)
    const opts = { ...(await files('')), subuidPath: dir };
    await assert.rejects(getSubordinateRanges(alice, 'uid', opts), (error: UsernsError) => {
      assert.equal(error.code, 'SUBID_UNREADABLE');
      assert.match(error.hint ?? '', /chmod 644/);
      return true;
    });
  });

  test('listAllSubordinateRanges returns every entry of the file', async () => {
    const opts = await files('alice:100000:65536\nbob:165536:65536\nbad\n1003:1:1\n', 'carol:1:2\n');
    const all = await listAllSubordinateRanges('uid', opts);
    assert.equal(all.exists, true);
    assert.equal(all.file, opts.subuidPath);
    assert.deepEqual(
      all.entries.map((e) => e.owner),
      ['alice', 'bob', '1003'],
    );
    assert.equal(all.problems.length, 1);
    const gid = await listAllSubordinateRanges('gid', opts);
    assert.deepEqual(gid.entries, [{ owner: 'carol', start: 1, count: 2, line: 1 }]);
    const missing = await listAllSubordinateRanges('uid', { subuidPath: join(dir, 'missing') });
    assert.deepEqual(missing, { file: join(dir, 'missing'), exists: false, entries: [], problems: [] });
  });
});

describe('getSubordinateRanges through libsubid (getsubids)', () => {
  test('nsswitch `subid: sss` asks getsubids and ignores the files', async () => {
    const fake = await fakeGetsubids({
      uid: '0: alice 400000 65536\n1: alice 600000 100',
      gid: '0: alice 800000 65536',
    });
    const opts = {
      ...(await files(
        'alice:100000:65536\n',
        'alice:100000:65536\n',
        '# sssd\nsubid:   sss   # ranges from FreeIPA\n',
      )),
      getsubidsPath: fake.path,
    };
    const uid = await getSubordinateRanges(alice, 'uid', opts);
    assert.equal(uid.source, 'libsubid');
    assert.equal(uid.module, 'sss');
    assert.equal(uid.file, undefined);
    assert.equal(uid.getsubids, fake.path);
    assert.deepEqual(uid.ranges, [
      { start: 400000, count: 65536 },
      { start: 600000, count: 100 },
    ]);
    const gid = await getSubordinateRanges(alice, 'gid', opts);
    assert.deepEqual(gid.ranges, [{ start: 800000, count: 65536 }]);
    const { readFile } = await import('node:fs/promises');
    assert.equal(await readFile(fake.log, 'utf8'), 'alice\n-g alice\n');
  });

  test('nsswitch module but getsubids says "Error fetching ranges" or is not installed: none', async () => {
    const fake = await fakeGetsubids({ fail: true });
    const base = await files('alice:100000:65536\n', '', 'subid: sss\n');
    const failing = await getSubordinateRanges(alice, 'uid', { ...base, getsubidsPath: fake.path });
    assert.equal(failing.source, 'none');
    assert.deepEqual(failing.ranges, []);
    const absent = await getSubordinateRanges(alice, 'uid', base);
    assert.equal(absent.source, 'none');
    assert.equal(absent.getsubids, undefined);
  });

  test('files without an entry for the user fall back to getsubids', async () => {
    const fake = await fakeGetsubids({ uid: '0: alice 900000 65536' });
    const r = await getSubordinateRanges(alice, 'uid', {
      ...(await files('bob:1:1\n')),
      getsubidsPath: fake.path,
    });
    assert.equal(r.source, 'libsubid');
    assert.equal(r.module, 'files');
    assert.deepEqual(r.ranges, [{ start: 900000, count: 65536 }]);
    assert.deepEqual(r.entries, [{ owner: 'alice', start: 900000, count: 65536, line: 1 }]);
  });

  test('a substituted file without a substituted getsubids does not ask the real one', async () => {
    const opts = await files('bob:1:1\n');
    const { getsubidsPath: _, ...withoutGetsubids } = opts;
    const r = await getSubordinateRanges({ name: 'root', uid: 0 }, 'uid', withoutGetsubids);
    assert.equal(r.source, 'none');
    assert.equal(r.getsubids, undefined);
  });

  test('parseGetsubidsOutput', () => {
    assert.deepEqual(parseGetsubidsOutput('0: alice 100000 65536\n1: alice 200000 10\n'), {
      entries: [
        { owner: 'alice', start: 100000, count: 65536, line: 1 },
        { owner: 'alice', start: 200000, count: 10, line: 2 },
      ],
      problems: [],
    });
    const bad = parseGetsubidsOutput('garbage\n0: alice 1 0\n0: alice 4294967295 2\n');
    assert.deepEqual(bad.entries, []);
    assert.deepEqual(
      bad.problems.map((p) => [p.code, p.line]),
      [
        ['GETSUBIDS_OUTPUT', 1],
        ['GETSUBIDS_OUTPUT', 2],
        ['GETSUBIDS_OUTPUT', 3],
      ],
    );
  });

  test('parseNsswitchSubid', () => {
    assert.equal(parseNsswitchSubid('passwd: files\n'), undefined);
    assert.equal(parseNsswitchSubid('subid: files\n'), 'files');
    assert.equal(parseNsswitchSubid('subid:sss\n'), 'sss');
    assert.equal(parseNsswitchSubid('# subid: sss\npasswd: files\n'), undefined);
    assert.equal(parseNsswitchSubid('  subid :  ldap [NOTFOUND=return] files\n'), 'ldap');
  });

  const realGetsubids = existsSync('/usr/bin/getsubids');
  test(
    'the real getsubids finds a throwaway user\'s ranges ("libsubid" when the files are ruled out)',
    {
      skip:
        throwawayUserUnavailable() ??
        (realGetsubids ? undefined : '/usr/bin/getsubids is not installed (apt-get install uidmap)'),
    },
    () =>
      withThrowawayUser(async (user) => {
        // Through the files (default paths).
        const fromFiles = await getSubordinateRanges(user, 'uid');
        assert.equal(fromFiles.source, 'files');
        assert.deepEqual(fromFiles.ranges, [user.subuid]);
        const fromFilesGid = await getSubordinateRanges(user, 'gid');
        assert.deepEqual(fromFilesGid.ranges, [user.subgid]);
        // Through getsubids: an nsswitch naming a module sends us there; getsubids itself reads the
        // real /etc/nsswitch.conf (files), so it finds the user's lines.
        const nss = await files('', '', 'subid: sss\n');
        const viaTool = await getSubordinateRanges(user, 'uid', {
          nsswitchPath: nss.nsswitchPath,
          getsubidsPath: '/usr/bin/getsubids',
        });
        assert.equal(viaTool.source, 'libsubid');
        assert.deepEqual(viaTool.ranges, [user.subuid]);
        assert.equal(viaTool.entries[0]!.owner, user.name);
        const viaToolGid = await getSubordinateRanges(user, 'gid', {
          nsswitchPath: nss.nsswitchPath,
          getsubidsPath: '/usr/bin/getsubids',
        });
        assert.deepEqual(viaToolGid.ranges, [user.subgid]);
      }),
  );

  test(
    'the real getsubids for a user without ranges: none',
    {
      skip: throwawayUserUnavailable() ?? (realGetsubids ? undefined : '/usr/bin/getsubids is not installed'),
    },
    () =>
      withThrowawayUser(
        async (user) => {
          const r = await getSubordinateRanges(user, 'uid');
          assert.equal(r.source, 'none');
          assert.equal(r.getsubids, '/usr/bin/getsubids');
        },
        { noSubids: true },
      ),
  );
});
