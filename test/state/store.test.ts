import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { writeFileAtomic } from '../../src/state/atomic.js';
import { validateName } from '../../src/state/names.js';

const dir = mkdtempSync(join(tmpdir(), 'userns-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('names', () => {
  test('valid names pass, everything that could escape the root is refused', () => {
    for (const ok of ['a', 'web-1', 'A_b+c.d', 'x'.repeat(128), '...']) assert.equal(validateName(ok), ok);
    for (const bad of ['', '.', '..', 'a/b', '../x', 'x'.repeat(129), 'a\0b', 'é', ' a', '/abs']) {
      assert.throws(() => validateName(bad), { code: 'INVALID_NAME' }, JSON.stringify(bad));
    }
  });
});

describe('atomic write', () => {
  test('replaces content and leaves no temp files', () => {
    const path = join(dir, 'state.json');
    writeFileAtomic(path, 'one');
    writeFileAtomic(path, 'two');
    assert.equal(readFileSync(path, 'utf8'), 'two');
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.startsWith('state.json.tmp')),
      [],
    );
  });

  test('a directory where the file goes is a typed error naming the path (never an internal error)', () => {
    const path = join(dir, 'taken');
    mkdirSync(path);
    assert.throws(
      () => writeFileAtomic(path, 'x'),
      (error: Error & { code: string; data: { path: string } }) => {
        assert.equal(error.code, 'STATE_FILE_NOT_A_FILE');
        assert.equal(error.data.path, path);
        return true;
      },
    );
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.startsWith('taken.tmp')),
      [],
    );
  });
});
