import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { Extent } from '../../src/idmap/extent.js';
import { PRIVILEGED_WRITER, type WriterSituation } from '../../src/idmap/permission.js';
import { validateMap, validateMapText } from '../../src/idmap/validate.js';
import { validExtents } from '../arbitraries.js';

type Row = [text: string, errno: 'EINVAL' | 'EPERM' | null];

function check(rows: Row[], options: Parameters<typeof validateMapText>[1] = {}) {
  for (const [text, errno] of rows) {
    const verdict = validateMapText(text, options);
    assert.equal(verdict.errno, errno, `${JSON.stringify(text)}: ${verdict.reason}`);
    assert.equal(verdict.ok, errno === null);
    if (errno !== null) assert.ok(verdict.reason && verdict.reason.length > 10);
  }
}

const lines = (n: number, f: (i: number) => string = (i) => `${i} ${i} 1`) =>
  Array.from({ length: n }, (_, i) => `${f(i)}\n`).join('');

describe('the line grammar (docs/kernel-rules.md)', () => {
  test('accepted forms', () =>
    check([
      ['0 1000 1\n', null],
      ['0 1000 1', null],
      ['0\t1000\t1\n', null],
      ['   0 1000 1\n', null],
      ['0 1000 1\r\n', null],
      ['0 1000 1   \n', null],
      ['0\v1000\f1\n', null],
      ['0 1000 1 \n 5 2000 1\n', null],
      ['007 01000 01', null],
      ['0 1000 1\n\0 5 6 7\n', null],
    ]));
  test('rejected forms (EINVAL)', () =>
    check([
      ['0 1000 1\n\n', 'EINVAL'],
      ['\n0 1000 1\n', 'EINVAL'],
      ['0 1000 1\n\n5 2000 1\n', 'EINVAL'],
      ['', 'EINVAL'],
      ['\n', 'EINVAL'],
      ['+0 1000 1\n', 'EINVAL'],
      ['0 -1000 1\n', 'EINVAL'],
      ['0x10 1000 1\n', 'EINVAL'],
      ['# comment\n0 1000 1\n', 'EINVAL'],
      ['0 1000\n', 'EINVAL'],
      ['0 1000 1 1\n', 'EINVAL'],
    ]));
  test('numbers above u32 are refused (the kernel would truncate them)', () => {
    const verdict = validateMapText('4294967296 1000 1\n');
    assert.equal(verdict.errno, 'EINVAL');
    assert.match(verdict.reason!, /truncate it to 0/);
  });
});

describe('numbers of a line, overlaps and limits (docs/kernel-rules.md)', () => {
  test('u32 edges', () =>
    check([
      ['0 0 4294967295\n', null],
      ['1 0 4294967295\n', 'EINVAL'],
      ['4294967294 0 1\n', null],
      ['0 4294967294 1\n', null],
      ['4294967295 0 1\n', 'EINVAL'],
      ['0 4294967295 1\n', 'EINVAL'],
      ['0 0 0\n', 'EINVAL'],
      ['4294967294 0 2\n', 'EINVAL'],
    ]));
  test('overlaps are inclusive on both sides; adjacency is fine', () =>
    check([
      ['0 1000 10\n10 1010 10\n', null],
      ['0 1000 10\n9 2000 10\n', 'EINVAL'],
      ['0 1000 10\n20 1009 10\n', 'EINVAL'],
      ['0 1000 1\n0 1000 1\n', 'EINVAL'],
    ]));
  test('340 lines accepted, 341 rejected; 4095 bytes accepted, 4096 rejected', () => {
    check([
      [lines(339), null],
      [lines(340), null],
      [lines(341), 'EINVAL'],
    ]);
    const line = '0 1000 1\n';
    const pad = (n: number) => `${' '.repeat(n - line.length)}${line}`;
    check([
      [pad(4095), null],
      [pad(4096), 'EINVAL'],
    ]);
    assert.equal(validateMapText(pad(4096), { pageSize: 65536 }).ok, true);
  });
  test('the first failing line is reported in the kernel order (overlap before a later syntax error)', () => {
    const verdict = validateMapText('0 1000 10\n5 5000 1\nbogus\n');
    assert.equal(verdict.line, 2);
    assert.match(verdict.reason!, /overlaps line 1/);
    assert.equal(validateMapText(lines(340) + 'bogus\n').line, 340);
  });
});

describe('who may write a map (as alice, uid/gid 1001, owner, no capabilities)', () => {
  const alice: WriterSituation = {
    capSetid: false,
    capSetfcap: false,
    euid: 1001,
    egid: 1001,
    isOwner: true,
    setgroups: 'allow',
  };
  test('uid_map', () =>
    check(
      [
        ['0 1001 1', null],
        ['5000 1001 1', null],
        ['0 1001 2', 'EPERM'],
        ['0 1000 1', 'EPERM'],
        ['0 1001 1\n1 100000 1', 'EPERM'],
      ],
      { kind: 'uid', writer: alice },
    ));
  test('gid_map needs setgroups deny', () => {
    check([['0 1001 1', 'EPERM']], { kind: 'gid', writer: alice });
    check(
      [
        ['0 1001 1', null],
        ['0 1002 1', 'EPERM'],
      ],
      { kind: 'gid', writer: { ...alice, setgroups: 'deny' } },
    );
  });
  test('mapping the parent uid 0 needs CAP_SETFCAP', () => {
    const noSetfcap = { ...PRIVILEGED_WRITER, capSetfcap: false };
    check(
      [
        ['0 0 1', 'EPERM'],
        ['5 0 1', 'EPERM'],
        ['0 1 10', null],
        ['0 1000 1\n1 0 1', 'EPERM'],
      ],
      { kind: 'uid', writer: noSetfcap },
    );
    check([['0 0 1', null]], { kind: 'gid', writer: noSetfcap });
  });
  test('syntax errors (EINVAL) win over permission (EPERM)', () => {
    assert.equal(validateMapText('0 1000 1\n1 2', { writer: alice }).errno, 'EINVAL');
  });
});

describe("lines inside the parent's lines (the kernel's answers in docs/kernel-rules.md)", () => {
  const ex = (inside: number, outside: number, count: number): Extent => ({ inside, outside, count });
  test('parent 0 1000 1 + 1 100000 65536', () =>
    check(
      [
        ['0 0 100', 'EPERM'],
        ['0 0 1\n1 1 99', null],
      ],
      { parent: [ex(0, 1000, 1), ex(1, 100000, 65536)] },
    ));
  test('contiguous parent extents are never merged', () =>
    check(
      [
        ['0 0 20', 'EPERM'],
        ['0 0 10\n10 10 10', null],
      ],
      { parent: [ex(0, 100000, 10), ex(10, 100010, 10)] },
    ));
  test('parent 0 100000 65536', () =>
    check(
      [
        ['0 65536 1', 'EPERM'],
        ['0 65535 1', null],
        ['0 0 65537', 'EPERM'],
      ],
      { parent: [ex(0, 100000, 65536)] },
    ));
  test('seven single-ID parent extents', () =>
    check(
      [
        ['0 0 2', 'EPERM'],
        ['3 3 1\n1 1 1', null],
      ],
      { parent: [0, 1, 2, 3, 4, 5, 6].map((i) => ex(i, 1000 + i * 7, 1)) },
    ));
  test('the reason says whether an ID is missing or a line spans extents', () => {
    const parent = [ex(0, 1000, 1), ex(1, 100000, 65536)];
    assert.match(validateMapText('0 0 100', { parent }).reason!, /spans 2 extents/);
    assert.match(validateMapText('0 70000 1', { parent }).reason!, /70000 is not mapped/);
  });
});

describe('properties', () => {
  test('every valid generated map is accepted; any map with an overlapping copy of a line is EINVAL', () => {
    fc.assert(
      fc.property(validExtents({ maxLength: 20 }), fc.nat(), (extents, pick) => {
        assert.equal(validateMap(extents).ok, true);
        const dup = extents[pick % extents.length]!;
        const verdict = validateMap([...extents, dup]);
        assert.equal(verdict.errno, 'EINVAL');
        assert.equal(verdict.line, extents.length + 1);
      }),
    );
  });
});
