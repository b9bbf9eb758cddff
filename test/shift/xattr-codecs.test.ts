import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { IdMap } from '../../src/idmap/idmap.js';
import { ACL_UNDEFINED_ID, AclTag, decodeAcl, encodeAcl, shiftAcl } from './oracle/acl-xattr.js';
import { decodeCapability, encodeCapability, shiftCapability } from './oracle/capability-xattr.js';

const u32 = fc.integer({ min: 0, max: 4294967295 });

describe('POSIX ACL xattr', () => {
  test('decode(encode(x)) = x', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            tag: fc.constantFrom(1, 2, 4, 8, 16, 32),
            perm: fc.integer({ min: 0, max: 7 }),
            id: u32,
          }),
        ),
        (entries) => {
          // fast-check records have a null prototype: compare as plain objects.
          assert.deepEqual(
            decodeAcl(encodeAcl(entries)),
            entries.map((e) => ({ ...e })),
          );
        },
      ),
    );
  });

  test('known bytes: user::rw-, user:1000:r--, group::r--, mask::r--, other::---', () => {
    const bytes = Buffer.from(
      '02000000' +
        '01000600ffffffff' +
        '02000400e8030000' +
        '04000400ffffffff' +
        '10000400ffffffff' +
        '20000000ffffffff',
      'hex',
    );
    const acl = decodeAcl(bytes);
    assert.deepEqual(acl[1], { tag: AclTag.USER, perm: 4, id: 1000 });
    assert.equal(acl[0]!.id, ACL_UNDEFINED_ID);
    assert.deepEqual(encodeAcl(acl), bytes);
  });

  test('bad sizes and versions are typed errors', () => {
    assert.throws(() => decodeAcl(Buffer.alloc(3)), { code: 'ACL_XATTR_SIZE' });
    assert.throws(() => decodeAcl(Buffer.from('0100000001000600ffffffff', 'hex')), {
      code: 'ACL_XATTR_VERSION',
    });
  });

  test('named entries shift through the maps; others stay; unmapped IDs are reported', () => {
    const from = IdMap.identity(0, 65536);
    const to = new IdMap([{ inside: 0, outside: 100000, count: 65536 }]);
    const { entries, unmapped, changed } = shiftAcl(
      [
        { tag: AclTag.USER_OBJ, perm: 6, id: ACL_UNDEFINED_ID },
        { tag: AclTag.USER, perm: 4, id: 1000 },
        { tag: AclTag.GROUP, perm: 4, id: 70000 },
      ],
      { fromUid: from, toUid: to, fromGid: from, toGid: to },
    );
    assert.equal(changed, true);
    assert.deepEqual(
      entries.map((e) => e.id),
      [ACL_UNDEFINED_ID, 101000, 70000],
    );
    assert.deepEqual(unmapped, [{ kind: 'gid', id: 70000 }]);
  });
});

describe('security.capability xattr', () => {
  const cap = fc
    .record({
      revision: fc.constantFrom(1 as const, 2 as const, 3 as const),
      effective: fc.boolean(),
      permitted: fc.tuple(u32, u32),
      inheritable: fc.tuple(u32, u32),
      rootid: u32,
    })
    .map((c) => ({
      ...c,
      permitted: [c.permitted[0], c.revision === 1 ? 0 : c.permitted[1]] as [number, number],
      inheritable: [c.inheritable[0], c.revision === 1 ? 0 : c.inheritable[1]] as [number, number],
      rootid: c.revision === 3 ? c.rootid : 0,
    }));

  test('decode(encode(x)) = x for revisions 1, 2 and 3', () => {
    fc.assert(fc.property(cap, (c) => assert.deepEqual(decodeCapability(encodeCapability(c)), { ...c })));
  });

  test('known bytes: cap_net_raw=ep (revision 2) as setcap writes it', () => {
    // magic 0x02000001, permitted low word = 1 << 13 (CAP_NET_RAW)
    const bytes = Buffer.from('01000002' + '00200000' + '00000000' + '00000000' + '00000000', 'hex');
    const c = decodeCapability(bytes);
    assert.equal(c.revision, 2);
    assert.equal(c.effective, true);
    assert.equal(c.permitted[0], 1 << 13);
    assert.deepEqual(encodeCapability(c), bytes);
  });

  test('shifting into a container rewrites the root ID as revision 3, and back to revision 2', () => {
    const host = IdMap.identity(0, 65536);
    const container = new IdMap([{ inside: 0, outside: 100000, count: 65536 }]);
    const v2 = decodeCapability(Buffer.from('01000002002000000000000000000000' + '00000000', 'hex'));
    const shifted = shiftCapability(v2, host, container)!;
    assert.equal(shifted.revision, 3);
    assert.equal(shifted.rootid, 100000);
    const back = shiftCapability(decodeCapability(encodeCapability(shifted)), container, host)!;
    assert.equal(back.revision, 2);
    assert.deepEqual(back, v2);
    assert.equal(shiftCapability({ ...shifted, rootid: 5 }, container, host), undefined);
  });

  test('malformed xattrs are typed errors', () => {
    assert.throws(() => decodeCapability(Buffer.alloc(2)), { code: 'CAP_XATTR_SIZE' });
    assert.throws(() => decodeCapability(Buffer.from('00000005', 'hex')), { code: 'CAP_XATTR_REVISION' });
    assert.throws(() => decodeCapability(Buffer.from('0100000200000000', 'hex')), { code: 'CAP_XATTR_SIZE' });
  });
});
