import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  currentUser,
  lookupGroup,
  lookupUser,
  parseGroupLine,
  parsePasswdLine,
} from '../../src/system/users.js';
import { throwawayUserUnavailable, withThrowawayUser } from '../fixtures/throwaway-user.js';

describe('users and groups', () => {
  test('root through getent, by name, by number and by numeric string', async () => {
    for (const key of ['root', 0, '0']) {
      const root = await lookupUser(key);
      assert.ok(root, `lookupUser(${JSON.stringify(key)})`);
      assert.equal(root.name, 'root');
      assert.equal(root.uid, 0);
      assert.equal(root.gid, 0);
      assert.equal(typeof root.home, 'string');
      assert.equal(typeof root.shell, 'string');
    }
    const group = await lookupGroup('root');
    assert.equal(group?.gid, 0);
    assert.equal((await lookupGroup(0))?.name, 'root');
  });

  test('nonexistent users and groups, and keys that cannot be names', async () => {
    assert.equal(await lookupUser('userns-no-such-user-x'), undefined);
    assert.equal(await lookupUser(4294967290), undefined);
    assert.equal(await lookupGroup('userns-no-such-group-x'), undefined);
    for (const bad of ['', '-h', 'a:b', 'a\nroot', -1, 1.5, 4294967296, '99999999999']) {
      assert.equal(await lookupUser(bad), undefined, JSON.stringify(bad));
    }
  });

  test('falls back to the files when getent is missing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'userns-users-'));
    try {
      const passwdPath = join(dir, 'passwd');
      const groupPath = join(dir, 'group');
      await writeFile(
        passwdPath,
        'root:x:0:0:root:/root:/bin/bash\nbroken line\nalice:x:1001:1001:Alice,,,:/home/alice:/bin/sh\n',
      );
      await writeFile(groupPath, 'root:x:0:\nwheel:x:10:alice,bob\n');
      const opts = { getentPath: join(dir, 'no-getent'), passwdPath, groupPath };
      assert.deepEqual(await lookupUser('alice', opts), {
        name: 'alice',
        uid: 1001,
        gid: 1001,
        home: '/home/alice',
        shell: '/bin/sh',
      });
      assert.equal((await lookupUser(1001, opts))?.name, 'alice');
      assert.equal(await lookupUser('bob', opts), undefined);
      assert.deepEqual(await lookupGroup('wheel', opts), {
        name: 'wheel',
        gid: 10,
        members: ['alice', 'bob'],
      });
      assert.deepEqual(await lookupGroup('0', opts), { name: 'root', gid: 0, members: [] });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('currentUser is the effective UID', async () => {
    const me = await currentUser();
    assert.equal(me.uid, process.geteuid!());
    if (me.uid === 0) assert.equal(me.name, 'root');
  });

  test('currentUser without a passwd entry: name is the UID', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'userns-users-'));
    try {
      const passwdPath = join(dir, 'passwd');
      await writeFile(passwdPath, '');
      const me = await currentUser({ getentPath: join(dir, 'no-getent'), passwdPath });
      assert.equal(me.name, String(process.geteuid!()));
      assert.equal(me.gid, process.getegid!());
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('line parsers', () => {
    assert.deepEqual(parsePasswdLine('a:x:1:2:g:/h:/s'), {
      name: 'a',
      uid: 1,
      gid: 2,
      home: '/h',
      shell: '/s',
    });
    assert.equal(parsePasswdLine('a:x:1:2:g:/h'), undefined);
    assert.equal(parsePasswdLine('a:x:-1:2:g:/h:/s'), undefined);
    assert.equal(parsePasswdLine(':x:1:2:g:/h:/s'), undefined);
    assert.deepEqual(parseGroupLine('g:x:5:'), { name: 'g', gid: 5, members: [] });
    assert.equal(parseGroupLine('g:x:five:'), undefined);
  });

  test('a throwaway user is found through NSS by name and UID', { skip: throwawayUserUnavailable() }, () =>
    withThrowawayUser(async (user) => {
      const byName = await lookupUser(user.name);
      assert.equal(byName?.uid, user.uid);
      assert.equal(byName?.gid, user.gid);
      assert.equal(byName?.shell, '/bin/sh');
      assert.equal((await lookupUser(user.uid))?.name, user.name);
      assert.equal((await lookupGroup(user.gid))?.name, user.name);
    }),
  );
});
