import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lchownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { IdMap } from '../../src/idmap/idmap.js';
import { validateMap, validateMapText } from '../../src/idmap/validate.js';
import { fitTree, smallestFit } from '../../src/shift/fit.js';
import { shiftTree } from '../../src/shift/shift.js';
import { runCli } from '../cli/run-cli.js';

const rootOnly = process.geteuid?.() === 0 ? false : 'needs root';
const map = (count: number) => new IdMap([{ inside: 0, outside: 100000, count }]);

describe('fitTree', { skip: rootOnly }, () => {
  let work: string;
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'userns-fit-'));
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  function image(name: string): string {
    const dir = join(work, name);
    mkdirSync(join(dir, 'etc'), { recursive: true });
    mkdirSync(join(dir, 'home/app'), { recursive: true });
    writeFileSync(
      join(dir, 'etc/passwd'),
      'root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n',
    );
    writeFileSync(join(dir, 'etc/group'), 'root:x:0:\nshadow:x:42:\napp:x:1000:\nnogroup:x:65534:\n');
    writeFileSync(join(dir, 'etc/shadow'), '');
    lchownSync(join(dir, 'etc/shadow'), 0, 42);
    writeFileSync(join(dir, 'home/app/data'), '');
    lchownSync(join(dir, 'home/app'), 1000, 1000);
    lchownSync(join(dir, 'home/app/data'), 1000, 1000);
    execFileSync('setfacl', ['-m', 'u:2000:r', join(dir, 'home/app/data')]);
    return dir;
  }

  test('lists owners, ACL entries and passwd/group IDs the map cannot represent, with examples', async () => {
    const dir = image('img');
    const result = await fitTree(dir, map(1000));
    assert.equal(result.fits, false);
    const summary = result.missing.map((u) => [u.kind, u.id, u.sources.sort().join('+'), u.count]);
    assert.deepEqual(summary, [
      ['uid', 1000, 'owner+passwd', 2],
      ['uid', 2000, 'acl', 1],
      ['gid', 1000, 'group+owner', 2],
    ]);
    assert.deepEqual(result.missing[0]!.examples, ['etc/passwd:2 (app)', 'home/app', 'home/app/data']);
    // nobody/nogroup are only listed, and do not make the map unfit
    assert.deepEqual(
      result.ignored.map((u) => [u.kind, u.id]),
      [
        ['uid', 65534],
        ['gid', 65534],
      ],
    );
    assert.equal(result.smallestSize, 2001);
    assert.deepEqual(result.highest, { uid: 2000, gid: 1000 });

    const fits = await fitTree(dir, map(2001));
    assert.equal(fits.fits, true);
    assert.deepEqual(fits.missing, []);
  });

  test('/etc/passwd is read inside the tree even through an absolute link', async () => {
    const dir = image('linked');
    rmSync(join(dir, 'etc/passwd'));
    mkdirSync(join(dir, 'usr/lib'), { recursive: true });
    writeFileSync(join(dir, 'usr/lib/passwd'), 'svc:x:3000:3000::/:/bin/false\n');
    symlinkSync('/usr/lib/passwd', join(dir, 'etc/passwd'));
    const result = await fitTree(dir, map(2001));
    assert.deepEqual(
      result.missing.map((u) => [u.kind, u.id, u.examples]),
      [['uid', 3000, ['etc/passwd:1 (svc)']]],
    );
  });

  test('a file capability root ID counts as a uid', async () => {
    const dir = join(work, 'cap');
    mkdirSync(dir);
    writeFileSync(join(dir, 'ping'), '');
    execFileSync('setcap', ['-n', '5000', 'cap_net_raw+ep', join(dir, 'ping')]);
    const result = await fitTree(dir, map(1000));
    assert.deepEqual(
      result.missing.map((u) => [u.kind, u.id, u.sources]),
      [['uid', 5000, ['capability']]],
    );
  });

  test('the answer matches a model on random owners (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 3000 }), fc.integer({ min: 0, max: 3000 })), {
          minLength: 1,
          maxLength: 20,
        }),
        fc.integer({ min: 1, max: 3001 }),
        async (owners, size) => {
          const dir = mkdtempSync(join(work, 'prop-'));
          owners.forEach(([uid, gid], i) => {
            writeFileSync(join(dir, `f${i}`), '');
            lchownSync(join(dir, `f${i}`), uid, gid);
          });
          const result = await fitTree(dir, map(size));
          const expected = new Set<string>();
          for (const [uid, gid] of [...owners, [0, 0] as [number, number]]) {
            if (uid >= size) expected.add(`uid:${uid}`);
            if (gid >= size) expected.add(`gid:${gid}`);
          }
          assert.deepEqual(new Set(result.missing.map((u) => `${u.kind}:${u.id}`)), expected);
          const top = Math.max(0, ...owners.flat());
          assert.equal(result.smallestSize, top + 1);
          rmSync(dir, { recursive: true, force: true });
        },
      ),
      { numRuns: 20 },
    );
  });

  test('every suggested map passes validation; none when an ID is (u32)-1, which is named', {
    timeout: 30_000,
  }, async () => {
    const dir = join(work, 'huge');
    mkdirSync(join(dir, 'etc'), { recursive: true });
    writeFileSync(join(dir, 'top'), '');
    lchownSync(join(dir, 'top'), 4294967294, 7);
    const result = await fitTree(dir, map(1000));
    assert.equal(result.smallestSize, 4294967295);
    assert.equal(result.suggestion, '0:0:4294967295');
    assert.equal(validateMapText(`${result.suggestion!.replaceAll(':', ' ')}\n`).ok, true);
    // The same through the CLI: the suggestion printed is one 'map validate' accepts.
    const cli = await runCli(['fit', '0:100000:1000', dir]);
    const suggested = /e\.g\. (\d+:\d+:\d+)/.exec(cli.stdout)?.[1];
    assert.ok(suggested, cli.stdout);
    assert.equal((await runCli(['map', 'validate', suggested])).code, 0);

    writeFileSync(join(dir, 'etc/passwd'), 'ghost:x:4294967295:0::/:/bin/false\n');
    const none = await fitTree(dir, map(1000));
    assert.equal(none.fits, false);
    assert.equal(none.suggestion, null);
    assert.equal(none.smallestSize, null);
    assert.deepEqual(
      none.unrepresentable.map((u) => [u.kind, u.id, u.examples]),
      [['uid', 4294967295, ['etc/passwd:1 (ghost)']]],
    );
    const text = await runCli(['fit', '0:100000:1000', dir]);
    assert.match(
      text.stdout,
      /no map can fit this tree: uid 4294967295 \(etc\/passwd:1 \(ghost\)\) is \(u32\)-1/,
    );
  });

  test('the suggestion is the smallest valid map for any highest ID (property)', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.integer({ min: 0, max: 4294967294 }),
          fc.constantFrom(0, 4294867295, 4294967293, 4294967294),
        ),
        (top) => {
          const fit = smallestFit(top);
          assert.ok(fit);
          assert.equal(fit.size, top + 1);
          const [inside, outside, count] = fit.suggestion.split(':').map(Number) as [number, number, number];
          assert.equal(inside, 0);
          assert.equal(count, top + 1);
          assert.ok(validateMap([{ inside, outside, count }]).ok, fit.suggestion);
        },
      ),
    );
    assert.equal(smallestFit(4294967295), null);
  });

  test("the highest ID names where it comes from (the tree's passwd, or the files)", async () => {
    const dir = image('sources');
    writeFileSync(join(dir, 'etc/passwd'), 'root:x:0:0::/:/bin/sh\nsvc:x:70000:70000::/:/bin/sh\n');
    const result = await fitTree(dir, map(1000));
    assert.equal(result.smallestSize, 70001);
    assert.deepEqual(result.highest, { uid: 70000, gid: 1000 });
    assert.deepEqual(result.highestFrom, { uid: 'etc/passwd:2 (svc)', gid: 'files' });
    const cli = await runCli(['fit', '0:100000:1000', dir]);
    assert.match(
      cli.stdout,
      /count 70001 \(e\.g\. 0:100000:70001\); highest uid 70000 \(etc\/passwd:2 \(svc\)\), gid 1000 \(files\)/,
    );
  });

  test('--from: a tree already shifted is read through its map, and answers as before the shift', {
    timeout: 60_000,
  }, async () => {
    const dir = image('shifted');
    writeFileSync(join(dir, 'stray'), '');
    lchownSync(join(dir, 'stray'), 0, 0);
    const before = await fitTree(dir, map(1000));
    const range = (base: number, count = 65536) => new IdMap([{ inside: 0, outside: base, count }]);
    await shiftTree(dir, {
      stateRoot: join(work, 'state'),
      from: { uid: range(0), gid: range(0) },
      to: { uid: range(100000), gid: range(100000) },
    });
    // Without --from the on-disk IDs are taken as inside IDs: nothing fits.
    const naive = await fitTree(dir, map(1000));
    assert.ok(naive.missing.some((u) => u.id === 100000));
    const through = await fitTree(dir, map(1000), { from: { uid: range(100000), gid: range(100000) } });
    assert.deepEqual(through.missing, before.missing);
    assert.deepEqual(through.highest, before.highest);
    assert.deepEqual(through.outsideFrom, []);
    // An on-disk ID --from does not map is listed apart, and the map does not fit.
    lchownSync(join(dir, 'stray'), 5, 5);
    const stray = await fitTree(dir, map(65536), { from: { uid: range(100000), gid: range(100000) } });
    assert.equal(stray.fits, false);
    assert.deepEqual(
      stray.outsideFrom.map((u) => [u.kind, u.id, u.examples]),
      [
        ['uid', 5, ['stray']],
        ['gid', 5, ['stray']],
      ],
    );
    const cli = await runCli(['fit', '--from', '0:100000:65536', '0:200000:65536', dir]);
    assert.equal(cli.code, 1);
    assert.match(cli.stdout, /on-disk IDs --from does not map/);
    assert.match(cli.stdout, /uid 5 +owner \(1 entry\): stray/);
  });

  test('not a directory', async () => {
    writeFileSync(join(work, 'file'), '');
    await assert.rejects(fitTree(join(work, 'file'), map(1)), { code: 'FIT_NOT_A_DIRECTORY' });
  });
});
