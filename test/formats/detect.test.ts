import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ParseError } from '../../src/errors/index.js';
import { detectFormat } from '../../src/idmap/formats/detect.js';
import { FORMAT_NAMES } from '../../src/idmap/formats/index.js';
import { anyText, throwsParse } from './fuzz.js';

describe('detectFormat', () => {
  test('table of examples', () => {
    const cases: [string, string][] = [
      ['', 'kernel'],
      ['\n', 'kernel'],
      ['0 1000 1\n1 100000 65536\n', 'kernel'],
      ['         0       1000          1\n', 'kernel'],
      ['0 1000 1\n\n', 'kernel'], // invalid kernel text, routed to the kernel parser for a precise error
      ['0 1000 1x\n', 'kernel'], // loose rule
      ['[{"containerID":0,"hostID":1000,"size":1}]', 'oci'],
      ['{"linux":{"uidMappings":[]}}', 'oci'],
      ['{"uidMappings":[],"gidMappings":[]}', 'oci'],
      ['{"uidMappings":[{"hostId":1,"containerId":0,"length":1}]}', 'kubernetes'],
      ['[[0,1000,1]]', 'json'],
      ['{"uid":[[0,1,1]]}', 'json'],
      ['{"ok":true,"map":[]}', 'json'],
      ['[]', 'json'],
      ['[{"hostID":1,', 'oci'], // broken JSON, routed by its spelling
      ['{"uid": [', 'json'],
      ['lxc.idmap = u 0 100000 65536\n', 'lxc'],
      ['# c\nu 0 100000 65536\ng 0 100000 65536\n', 'lxc'],
      ['lxc.rootfs.path = dir:/x\nlxc.idmap = u 0 1 1\n', 'lxc'],
      ['both 1000 1000\nuid 1000-1999 0-999\n', 'incus'],
      ['newuidmap 1234 0 1000 1', 'newuidmap'],
      ['/usr/bin/newgidmap fd:3 0 0x3e9 1', 'newuidmap'],
      ['1234 0 1000 1 1 100000 65536', 'newuidmap'],
      ['--map-users=0:1000:1', 'unshare'],
      ['100000,0,65536', 'unshare'],
      ['auto', 'unshare'],
      ['alice:100000:65536\n', 'subid'],
      ['1000:100000:65536\n1001:200000:65536\n', 'subid'],
      ['# x\n1000:100000:65536\n', 'subid'],
      ['0:100000:65536', 'triples'],
      ['0:1000:1,1:100000:65536\n', 'triples'],
      ['0:1000', 'podman'],
      ['u0:1000:1', 'podman'],
      ['+1000:@1000', 'podman'],
      ['0:1000:1 1:100000:65536', 'podman'],
      ['0:1000:1,', 'podman'],
      ['0:1000:x', 'triples'], // loose: routed to the triples parser for its error
      ['0:@1000:x', 'podman'],
    ];
    for (const [text, format] of cases) assert.equal(detectFormat(text), format, JSON.stringify(text));
  });

  test('text in no format is a ParseError that says to use --from', () => {
    const e = throwsParse(
      () => detectFormat('\n  hello world\n', { source: 'map.txt' }),
      'UNKNOWN_FORMAT',
      2,
      3,
    );
    assert.match(e.hint ?? '', /--from/);
  });

  test('random input gives a format name or a ParseError, nothing else', () => {
    fc.assert(
      fc.property(
        anyText([
          '0 1000 1\n',
          '[[0,1,1]]',
          'lxc.idmap = u 0 1 1',
          'both 1 1',
          'alice:1:1',
          '0:1:1',
          '+0:@1',
        ]),
        (text) => {
          try {
            assert.ok(FORMAT_NAMES.includes(detectFormat(text)));
          } catch (error) {
            assert.ok(error instanceof ParseError, String(error));
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});
