/**
 * A user without subordinate IDs: `auto` must not silently map only the user (the road to
 * "potentially insufficient UIDs" later); it fails with a typed error, or falls back to the
 * single-ID map with a warning when asked to.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { readableRepo } from '../fixtures/readable-repo.js';
import { runAs, throwawayUserUnavailable, withThrowawayUser } from '../fixtures/throwaway-user.js';

describe('rootless user without subordinate IDs', { skip: throwawayUserUnavailable() ?? false }, () => {
  test('auto fails with NO_SUBORDINATE_IDS; --fallback single maps only the user, with a warning', async () => {
    const bin = join(readableRepo(), 'bin/userns');
    await withThrowawayUser(
      async (user) => {
        const failed = await runAs(user, [process.execPath, bin, 'run', '--json', '--', 'true'], {
          cwd: '/',
        });
        assert.equal(failed.code, 125, failed.stdout + failed.stderr);
        const error = JSON.parse(failed.stdout);
        assert.equal(error.code, 'NO_SUBORDINATE_IDS');
        assert.match(error.message, /has no subordinate uids/);
        assert.match(error.hint, /userns doctor/);

        const single = await runAs(
          user,
          [
            process.execPath,
            bin,
            'run',
            '--fallback',
            'single',
            '--',
            'cat',
            '/proc/self/uid_map',
            '/proc/self/gid_map',
          ],
          { cwd: '/' },
        );
        assert.equal(single.code, 0, single.stderr);
        assert.deepEqual(
          single.stdout
            .trim()
            .split('\n')
            .map((l) => l.trim().split(/\s+/).join(':')),
          [`0:${user.uid}:1`, `0:${user.gid}:1`],
        );
        assert.match(single.stderr, /warning: .*no subordinate uids.*--fallback single/);
      },
      { noSubids: true },
    );
  });
});
