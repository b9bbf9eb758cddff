import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { detectFormat } from '../../src/idmap/formats/detect.js';
import { expandKinds } from '../../src/idmap/formats/kinds.js';
import { formatKubernetesUserns, parseKubernetesUserns } from '../../src/idmap/formats/kubernetes.js';
import { assertU32Extents, kindedExtents, onlyTypedErrors, throwsParse } from './fuzz.js';

const RECORD =
  '{"uidMappings":[{"hostId":1966080,"containerId":0,"length":65536}],"gidMappings":[{"hostId":1966080,"containerId":0,"length":65536}]}';

describe('Kubernetes pod userns record', () => {
  test('the kubelet file', () => {
    assert.deepEqual(parseKubernetesUserns(RECORD), [
      { inside: 0, outside: 1966080, count: 65536, kind: 'uid' },
      { inside: 0, outside: 1966080, count: 65536, kind: 'gid' },
    ]);
    assert.equal(formatKubernetesUserns(parseKubernetesUserns(RECORD)), RECORD);
    assert.deepEqual(parseKubernetesUserns('{"uidMappings":[],"gidMappings":null}'), []);
  });

  test('errors', () => {
    throwsParse(() => parseKubernetesUserns('[]'), 'WRONG_TYPE', 1, 1);
    throwsParse(() => parseKubernetesUserns('{}'), 'MISSING_FIELD', 1, 1);
    throwsParse(
      () => parseKubernetesUserns('{"uidMappings":[{"hostId":1,"containerId":0}]}'),
      'MISSING_FIELD',
      1,
      17,
    );
    throwsParse(
      () => parseKubernetesUserns('{"uidMappings":[{"hostId":4294967296,"containerId":0,"length":1}]}'),
      'NUMBER_TOO_LARGE',
      1,
      27,
    );
    throwsParse(() => parseKubernetesUserns('{"uidMappings":{"hostId":1}}'), 'WRONG_TYPE');
    throwsParse(() => parseKubernetesUserns('{"uidMappings":[1]}'), 'WRONG_TYPE');
    throwsParse(
      () => parseKubernetesUserns('{"uidMappings":[{"hostId":-5,"containerId":0,"length":1}]}'),
      'BAD_NUMBER',
    );
    const oci = throwsParse(
      () => parseKubernetesUserns('{"uidMappings":[{"hostID":1,"containerID":0,"size":1}]}'),
      'MISSING_FIELD',
    );
    assert.match(oci.hint ?? '', /oci/);
  });

  test('parse(format(x)) is x (both entries go to both lists)', () => {
    fc.assert(
      fc.property(kindedExtents(['uid', 'gid']), (x) => {
        assert.deepEqual(parseKubernetesUserns(formatKubernetesUserns(x)), expandKinds(x));
      }),
    );
    fc.assert(
      fc.property(kindedExtents(), (x) => {
        assert.deepEqual(parseKubernetesUserns(formatKubernetesUserns(x)), expandKinds(x));
      }),
    );
  });

  test('detectFormat recognises the output', () => {
    assert.equal(detectFormat(RECORD), 'kubernetes');
    fc.assert(
      fc.property(
        kindedExtents().filter((x) => x.length > 0),
        (x) => {
          assert.equal(detectFormat(formatKubernetesUserns(x)), 'kubernetes');
        },
      ),
    );
  });

  test('random input never throws anything but typed errors', () => {
    onlyTypedErrors([RECORD], (t) => parseKubernetesUserns(t), assertU32Extents);
  });
});
