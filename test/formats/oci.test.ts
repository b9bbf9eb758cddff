import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { detectFormat } from '../../src/idmap/formats/detect.js';
import { expandKinds } from '../../src/idmap/formats/kinds.js';
import { formatOciLinux, formatOciMappings, parseOciMappings } from '../../src/idmap/formats/oci.js';
import { assertU32Extents, kindedExtents, onlyTypedErrors, throwsParse, u32Extents } from './fuzz.js';

const both = (inside: number, outside: number, count: number) => ({
  inside,
  outside,
  count,
  kind: 'both' as const,
});

describe('OCI runtime-spec mappings', () => {
  test('a bare array is kind both, in written order', () => {
    assert.deepEqual(
      parseOciMappings(
        '[{"containerID":0,"hostID":1000,"size":1},{"containerID":1,"hostID":100000,"size":65536}]',
      ),
      [both(0, 1000, 1), both(1, 100000, 65536)],
    );
    assert.deepEqual(parseOciMappings('[]'), []);
  });

  test('the linux section and a whole config.json give uid and gid entries', () => {
    const linux =
      '{"uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],"gidMappings":[{"hostID":200000,"size":10,"containerID":5}]}';
    const expected = [
      { inside: 0, outside: 100000, count: 65536, kind: 'uid' },
      { inside: 5, outside: 200000, count: 10, kind: 'gid' },
    ];
    assert.deepEqual(parseOciMappings(linux), expected);
    const config = `{"ociVersion":"1.1.0","process":{"args":["sh"]},"linux":${linux.replace('}', ',"namespaces":[{"type":"user"}]}')}}`;
    assert.deepEqual(parseOciMappings(config), expected);
    assert.deepEqual(parseOciMappings('{"linux":{"uidMappings":null}}'), []);
    // unknown members are ignored, as Go's encoding/json does
    assert.deepEqual(parseOciMappings('[{"containerID":0,"hostID":1,"size":1,"comment":"x"}]'), [
      both(0, 1, 1),
    ]);
  });

  test('errors are positioned at the offending value', () => {
    const e = throwsParse(
      () =>
        parseOciMappings('[\n  {"containerID": 0, "hostID": -1, "size": 1}\n]', { source: 'config.json' }),
      'BAD_NUMBER',
      2,
      32,
    );
    assert.match(e.message, /^config\.json:2:32: mapping\[0\] hostID must not be negative/);
    throwsParse(
      () => parseOciMappings('[{"containerID":0,"hostID":4294967296,"size":1}]'),
      'NUMBER_TOO_LARGE',
      1,
      28,
    );
    throwsParse(() => parseOciMappings('[{"containerID":0,"hostID":1.5,"size":1}]'), 'BAD_NUMBER');
    throwsParse(() => parseOciMappings('[{"containerID":0,"hostID":1e3,"size":1}]'), 'BAD_NUMBER');
    throwsParse(() => parseOciMappings('[{"containerID":0,"hostID":"1","size":1}]'), 'WRONG_TYPE');
    throwsParse(() => parseOciMappings('[{"containerID":0,"hostID":1}]'), 'MISSING_FIELD', 1, 2);
    throwsParse(() => parseOciMappings('[null]'), 'WRONG_TYPE', 1, 2);
    throwsParse(() => parseOciMappings('{"uidMappings": 5}'), 'WRONG_TYPE', 1, 17);
    throwsParse(() => parseOciMappings('{"linux": []}'), 'WRONG_TYPE');
    throwsParse(() => parseOciMappings('{"other": 1}'), 'MISSING_FIELD');
    throwsParse(() => parseOciMappings('5'), 'WRONG_TYPE');
    throwsParse(() => parseOciMappings('[{"containerID":0,}]'), 'BAD_JSON', 1, 19);
    throwsParse(() => parseOciMappings('[{"containerID":0'), 'BAD_JSON');
    throwsParse(() => parseOciMappings(''), 'BAD_JSON');
    throwsParse(() => parseOciMappings(`${'['.repeat(100000)}`), 'BAD_JSON');
    const k8s = throwsParse(
      () => parseOciMappings('[{"hostId":1,"containerId":0,"length":1}]'),
      'MISSING_FIELD',
    );
    assert.match(k8s.hint ?? '', /kubernetes/);
  });

  test('parse(format(x)) is x', () => {
    fc.assert(
      fc.property(u32Extents(0), (x) => {
        assert.deepEqual(
          parseOciMappings(formatOciMappings(x)),
          x.map((e) => ({ ...e, kind: 'both' })),
        );
      }),
    );
    fc.assert(
      fc.property(kindedExtents(), (x) => {
        assert.deepEqual(parseOciMappings(formatOciLinux(x)), expandKinds(x));
      }),
    );
  });

  test('format writes exactly the OCI shapes', () => {
    assert.deepEqual(JSON.parse(formatOciMappings([{ inside: 0, outside: 1000, count: 1 }])), [
      { containerID: 0, hostID: 1000, size: 1 },
    ]);
    assert.deepEqual(JSON.parse(formatOciLinux([both(0, 1000, 1)])), {
      uidMappings: [{ containerID: 0, hostID: 1000, size: 1 }],
      gidMappings: [{ containerID: 0, hostID: 1000, size: 1 }],
    });
  });

  test('detectFormat recognises the output', () => {
    fc.assert(
      fc.property(kindedExtents(), (x) => {
        assert.equal(detectFormat(formatOciLinux(x)), 'oci');
        if (x.length > 0) assert.equal(detectFormat(formatOciMappings(x)), 'oci');
      }),
    );
  });

  test('random input never throws anything but typed errors', () => {
    onlyTypedErrors(
      [
        '[{"containerID":0,"hostID":1000,"size":1}]',
        '{"linux":{"uidMappings":[{"containerID":0,"hostID":1,"size":2}],"gidMappings":[]}}',
      ],
      (t) => parseOciMappings(t),
      assertU32Extents,
    );
  });
});
