/**
 * `userns oci` and src/oci: filling and checking OCI config.json files and Kubernetes userns
 * records. Pure tests of the JSON editing (every other byte kept, in every layout), checks with
 * their codes and JSON paths, and the CLI (--json, --check, errors, exit statuses, nesting).
 */
import assert from 'node:assert/strict';
import {
  chmodSync,
  chownSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { OciError, UsernsError } from '../../src/errors/index.js';
import { parseJsonTree } from '../../src/idmap/formats/json-tree.js';
import { IdMap } from '../../src/idmap/idmap.js';
import { checkConfigText, fillConfigText, readConfigView } from '../../src/oci/config.js';
import { applyEdits, detectStyle } from '../../src/oci/json-edit.js';
import { run } from '../../src/spawn/spawn.js';
import { BIN, runCli } from '../cli/run-cli.js';
import { isolateHostFiles } from '../fixtures/host-files.js';
import { readableBin } from '../fixtures/readable-repo.js';
import { runAs, throwawayUserUnavailable, withThrowawayUser } from '../fixtures/throwaway-user.js';

// Root's allocation pool must not depend on the host's /etc/subuid (a `containers` line).
isolateHostFiles();

const base = mkdtempSync(join(tmpdir(), 'userns-oci-'));
chmodSync(base, 0o755);
after(() => rmSync(base, { recursive: true, force: true }));

/** What `runc spec --rootless` writes (runc 1.1), tab-indented, no final newline. */
const RUNC_SPEC = JSON.stringify(
  {
    ociVersion: '1.0.2-dev',
    process: { terminal: true, user: { uid: 0, gid: 0 }, args: ['sh'], cwd: '/', noNewPrivileges: true },
    root: { path: 'rootfs', readonly: true },
    hostname: 'runc',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      {
        destination: '/dev/shm',
        type: 'tmpfs',
        source: 'shm',
        options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
      },
      { destination: '/data', type: 'bind', source: '/srv/data' },
    ],
    linux: {
      uidMappings: [{ containerID: 0, hostID: 0, size: 1 }],
      gidMappings: [{ containerID: 0, hostID: 0, size: 1 }],
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'user' }],
      maskedPaths: ['/proc/kcore'],
    },
  },
  null,
  '\t',
);

const MAP = [{ inside: 0, outside: 100000, count: 65536 }];

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof UsernsError, String(error));
    return error.code;
  }
  assert.fail('expected an error');
}

describe('fillConfigText: only the mapping fields change', () => {
  test('runc spec --rootless: tabs kept, no final newline added, values replaced in place', () => {
    const { text, changes } = fillConfigText(RUNC_SPEC, { uid: MAP, gid: MAP });
    assert.deepEqual(changes, ['linux.uidMappings', 'linux.gidMappings']);
    const expected = JSON.parse(RUNC_SPEC);
    expected.linux.uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
    expected.linux.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
    assert.equal(text, JSON.stringify(expected, null, '\t'));
  });

  test('no linux section, no namespaces, no user namespace: added at the end, in the file style', () => {
    const doc = { ociVersion: '1.0.2', process: { args: ['sh'] } };
    for (const indent of ['  ', '    ', '\t']) {
      const original = `${JSON.stringify(doc, null, indent)}\n`;
      const r = fillConfigText(original, { uid: MAP, gid: MAP });
      const expected = {
        ...doc,
        linux: {
          uidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }],
          gidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }],
          namespaces: [{ type: 'user' }],
        },
      };
      assert.equal(r.text, `${JSON.stringify(expected, null, indent)}\n`);
      assert.ok(r.changes.includes('user namespace added'));
    }
    const linuxNoNs = { ociVersion: '1', linux: { namespaces: [{ type: 'pid' }] } };
    const r = fillConfigText(JSON.stringify(linuxNoNs, null, 2), { uid: MAP, gid: MAP });
    assert.deepEqual(Object.keys(JSON.parse(r.text).linux), ['namespaces', 'uidMappings', 'gidMappings']);
    assert.deepEqual(JSON.parse(r.text).linux.namespaces, [{ type: 'pid' }, { type: 'user' }]);
    assert.equal(
      r.text,
      JSON.stringify(
        {
          ociVersion: '1',
          linux: {
            namespaces: [{ type: 'pid' }, { type: 'user' }],
            uidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }],
            gidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }],
          },
        },
        null,
        2,
      ),
    );
  });

  test('compact (Go json.Marshal) stays compact; empty objects and arrays', () => {
    const compact = '{"ociVersion":"1.1.0","linux":{},"mounts":[{"destination":"/data","options":[]}]}';
    const r = fillConfigText(compact, { uid: MAP, gid: MAP, idmapMounts: ['/data/'] });
    assert.equal(
      r.text,
      '{"ociVersion":"1.1.0","linux":{"uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],' +
        '"gidMappings":[{"containerID":0,"hostID":100000,"size":65536}],"namespaces":[{"type":"user"}]},' +
        '"mounts":[{"destination":"/data","options":["idmap"],' +
        '"uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],' +
        '"gidMappings":[{"containerID":0,"hostID":100000,"size":65536}]}]}',
    );
  });

  test('numbers JSON.parse would change, CRLF, duplicate keys and unknown fields are kept byte for byte', () => {
    const original =
      '{\r\n  "ociVersion": "1.0.2",\r\n  "linux": {\r\n    "resources": {"memory": {"limit": 9223372036854775807, "swap": 1.0e3}},\r\n' +
      '    "uidMappings": [],\r\n    "x-extra": {"a": [1, 2, {"b": "\\"}"}]}\r\n  }\r\n}\r\n';
    const r = fillConfigText(original, { uid: MAP, gid: MAP });
    assert.ok(r.text.includes('"limit": 9223372036854775807, "swap": 1.0e3'));
    assert.ok(r.text.includes('"x-extra": {"a": [1, 2, {"b": "\\"}"}]}'));
    assert.ok(!r.text.replaceAll('\r\n', '').includes('\n'), 'only CRLF line ends');
    const parsed = JSON.parse(r.text);
    assert.deepEqual(Object.keys(parsed.linux), [
      'resources',
      'uidMappings',
      'x-extra',
      'gidMappings',
      'namespaces',
    ]);
    assert.deepEqual(parsed.linux.uidMappings, [{ containerID: 0, hostID: 100000, size: 65536 }]);
  });

  test('idmapped mounts: the maps and the idmap option, to every mount with that destination', () => {
    const r = fillConfigText(RUNC_SPEC, { uid: MAP, gid: MAP, idmapMounts: ['/dev/shm', '/data', '/data'] });
    const parsed = JSON.parse(r.text);
    const shm = parsed.mounts[1];
    assert.deepEqual(shm.options, ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k', 'idmap']);
    assert.deepEqual(shm.uidMappings, [{ containerID: 0, hostID: 100000, size: 65536 }]);
    assert.deepEqual(Object.keys(parsed.mounts[2]), [
      'destination',
      'type',
      'source',
      'uidMappings',
      'gidMappings',
      'options',
    ]);
    assert.deepEqual(parsed.mounts[2].options, ['idmap']);
    assert.equal(
      code(() => fillConfigText(RUNC_SPEC, { uid: MAP, gid: MAP, idmapMounts: ['/nope'] })),
      'OCI_MOUNT_NOT_FOUND',
    );
    // Filling again changes nothing more (idempotent).
    const again = fillConfigText(r.text, { uid: MAP, gid: MAP, idmapMounts: ['/dev/shm', '/data'] });
    assert.equal(again.text, r.text);
  });

  test('idmapped mounts: one mount named twice (/data and /data/) is edited once', () => {
    const count = (s: string, sub: string) => s.split(sub).length - 1;
    // A mount with no mappings yet: the members and the option are added once.
    const r = fillConfigText(RUNC_SPEC, { uid: MAP, gid: MAP, idmapMounts: ['/data', '/data/'] });
    const parsed = JSON.parse(r.text);
    assert.deepEqual(parsed.mounts[2].options, ['idmap']);
    assert.deepEqual(parsed.mounts[2].uidMappings, [{ containerID: 0, hostID: 100000, size: 65536 }]);
    const mountText = (t: string) => t.slice(t.indexOf('"/data"'), t.indexOf('"linux"'));
    assert.equal(count(mountText(r.text), '"uidMappings"'), 1, mountText(r.text));
    assert.equal(count(mountText(r.text), '"gidMappings"'), 1, mountText(r.text));
    assert.equal(count(r.text, '"idmap"'), 1);
    assert.deepEqual(
      r.changes.filter((c) => c.startsWith('idmapped mount')),
      ['idmapped mount /data'],
    );
  });

  test('idmapped mounts: a mount that has its maps already, named twice, is replaced once', () => {
    const count = (s: string, sub: string) => s.split(sub).length - 1;
    const mountText = (t: string) => t.slice(t.indexOf('"/data"'), t.indexOf('"linux"'));
    const filled = fillConfigText(RUNC_SPEC, { uid: MAP, gid: MAP, idmapMounts: ['/data'] }).text;
    const other = [{ inside: 0, outside: 200000, count: 65536 }];
    let again: ReturnType<typeof fillConfigText>;
    try {
      again = fillConfigText(filled, { uid: other, gid: other, idmapMounts: ['/data/', '/data'] });
    } catch (error) {
      assert.ok(error instanceof OciError, `not an OciError: ${String(error)}`);
      throw error;
    }
    const p2 = JSON.parse(again.text);
    assert.deepEqual(p2.mounts[2].uidMappings, [{ containerID: 0, hostID: 200000, size: 65536 }]);
    assert.deepEqual(p2.mounts[2].gidMappings, [{ containerID: 0, hostID: 200000, size: 65536 }]);
    assert.deepEqual(p2.mounts[2].options, ['idmap']);
    assert.equal(count(mountText(again.text), '"uidMappings"'), 1, mountText(again.text));
    assert.equal(count(again.text, '"idmap"'), 1);
  });

  test('a user namespace joined by path is refused', () => {
    const doc = { ociVersion: '1', linux: { namespaces: [{ type: 'user', path: '/proc/1/ns/user' }] } };
    assert.equal(
      code(() => fillConfigText(JSON.stringify(doc), { uid: MAP, gid: MAP })),
      'OCI_USERNS_PATH',
    );
  });

  test('Kubernetes record: written as the kubelet writes it', () => {
    const k8s =
      '{"uidMappings":[{"hostId":65536,"containerId":0,"length":65536}],"gidMappings":[{"hostId":65536,"containerId":0,"length":65536}]}';
    const r = fillConfigText(k8s, {
      uid: [{ inside: 0, outside: 131072, count: 65536 }],
      gid: [{ inside: 0, outside: 131072, count: 65536 }],
    });
    assert.equal(r.format, 'kubernetes');
    assert.equal(r.text, k8s.replaceAll('65536,"containerId"', '131072,"containerId"'));
  });

  test('property: any layout, any other fields: the result parses to the original with the maps set, key order kept', () => {
    const key = fc
      .string({ minLength: 1, maxLength: 6 })
      .filter(
        (k) => !['linux', 'mounts', 'uidMappings', 'gidMappings', 'namespaces', '__proto__'].includes(k),
      );
    const leaf = fc.oneof(fc.integer(), fc.string(), fc.boolean(), fc.constant(null));
    const value = fc.letrec((tie) => ({
      v: fc.oneof(
        { depthSize: 'small' },
        leaf,
        fc.array(tie('v'), { maxLength: 3 }),
        fc.dictionary(key, tie('v'), { maxKeys: 3 }),
      ),
    })).v;
    const extent = fc.record({
      inside: fc.nat(1000),
      outside: fc.nat(1000000),
      count: fc.integer({ min: 1, max: 1000 }),
    });
    fc.assert(
      fc.property(
        fc.dictionary(key, value, { maxKeys: 5 }),
        fc.dictionary(key, value, { maxKeys: 4 }),
        fc.boolean(),
        fc.constantFrom(0, '  ', '    ', '\t'),
        fc.array(extent, { minLength: 1, maxLength: 4 }),
        (top, linuxExtra, hasLinux, indent, uid) => {
          const doc: Record<string, unknown> = { ociVersion: '1.0.2', ...top };
          if (hasLinux) doc.linux = { ...linuxExtra };
          const original = indent === 0 ? JSON.stringify(doc) : JSON.stringify(doc, null, indent);
          const { text } = fillConfigText(original, { uid, gid: uid });
          const expected = structuredClone(doc) as Record<string, Record<string, unknown>>;
          expected.linux ??= {};
          const linux = expected.linux;
          const list = uid.map((e) => ({ containerID: e.inside, hostID: e.outside, size: e.count }));
          linux.uidMappings = list;
          linux.gidMappings = list;
          const ns = linux.namespaces;
          if (!Array.isArray(ns)) linux.namespaces = [{ type: 'user' }];
          // JSON.stringify compares values and key order at once.
          assert.equal(JSON.stringify(JSON.parse(text)), JSON.stringify(expected));
          // The layout is the file's: a pretty document is exactly what JSON.stringify writes.
          assert.equal(
            text,
            indent === 0 ? JSON.stringify(expected) : JSON.stringify(expected, null, indent),
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  test('detectStyle and applyEdits basics', () => {
    const s = detectStyle('{\n\t"a": 1\n}', parseJsonTree('{\n\t"a": 1\n}'));
    assert.deepEqual(s, { pretty: true, unit: '\t', colon: ': ', eol: '\n' });
    assert.equal(
      applyEdits('abcdef', [
        { start: 1, end: 2, text: 'X' },
        { start: 4, end: 4, text: 'Y' },
      ]),
      'aXcdYef',
    );
  });
});

describe('checkConfigText: what the runtime and the kernel would refuse', () => {
  const withLinux = (linux: unknown, extra: Record<string, unknown> = {}) =>
    JSON.stringify({ ociVersion: '1.0.2', ...extra, linux }, null, 2);
  const userNs = [{ type: 'user' }];
  const m = (containerID: number, hostID: number, size: number) => ({ containerID, hostID, size });

  test('a valid config', () => {
    const r = checkConfigText(RUNC_SPEC, 'config.json');
    assert.equal(r.userNamespace, 'new');
    assert.deepEqual(r.uidMappings, [{ inside: 0, outside: 0, count: 1 }]);
  });

  test('bad values: file, JSON path, line and column', () => {
    const text = withLinux({
      uidMappings: [m(0, 0, 1), { containerID: 0, hostID: -5, size: 1 }],
      namespaces: userNs,
    });
    try {
      checkConfigText(text, 'b/config.json');
      assert.fail('accepted');
    } catch (error) {
      assert.ok(error instanceof OciError);
      assert.equal(error.code, 'OCI_INVALID');
      assert.equal(error.data?.path, 'linux.uidMappings[1].hostID');
      assert.match(
        error.message,
        /^b\/config\.json: linux\.uidMappings\[1\]\.hostID: the value must not be negative \(line \d+, column \d+\)$/,
      );
    }
    const cases: [unknown, string][] = [
      [{ uidMappings: [{ containerID: 0, hostID: 0 }], namespaces: userNs }, 'OCI_INVALID'],
      [{ uidMappings: [{ hostId: 0, containerId: 0, length: 1 }], namespaces: userNs }, 'OCI_INVALID'],
      [{ uidMappings: [m(0, 0, 4294967296)], namespaces: userNs }, 'OCI_INVALID'],
      [{ uidMappings: [m(0, 0, 1.5)], namespaces: userNs }, 'OCI_INVALID'],
      [{ uidMappings: 'x', namespaces: userNs }, 'OCI_INVALID'],
      [{ namespaces: [{ type: 7 }] }, 'OCI_INVALID'],
      [
        { uidMappings: [m(0, 0, 10), m(5, 100, 10)], gidMappings: [m(0, 0, 1)], namespaces: userNs },
        'OCI_MAP_REJECTED',
      ],
      [
        { uidMappings: [m(0, 4294967295, 1)], gidMappings: [m(0, 0, 1)], namespaces: userNs },
        'OCI_MAP_REJECTED',
      ],
      [{ uidMappings: [m(0, 0, 1)], gidMappings: [], namespaces: userNs }, 'OCI_MISSING_MAPS'],
      [{ namespaces: userNs }, 'OCI_MISSING_MAPS'],
      [
        { uidMappings: [m(0, 0, 1)], gidMappings: [m(0, 0, 1)], namespaces: [{ type: 'pid' }] },
        'OCI_NO_USER_NAMESPACE',
      ],
      [
        {
          uidMappings: [m(0, 0, 1)],
          gidMappings: [m(0, 0, 1)],
          namespaces: [{ type: 'user', path: '/proc/1/ns/user' }],
        },
        'OCI_USERNS_PATH',
      ],
    ];
    for (const [linux, expected] of cases)
      assert.equal(
        code(() => checkConfigText(withLinux(linux))),
        expected,
        JSON.stringify(linux),
      );
    assert.equal(
      code(() => checkConfigText('{"ociVersion": "1",\n "linux": [}')),
      'BAD_JSON',
    );
    assert.equal(
      code(() => checkConfigText('{"something": 1}')),
      'OCI_UNKNOWN_FORMAT',
    );
  });

  test('the map error names the entry; a nested parent rejects lines that span its extents', () => {
    const parent = new IdMap([
      { inside: 0, outside: 1000, count: 1 },
      { inside: 1, outside: 100000, count: 65536 },
    ]);
    const text = withLinux({ uidMappings: [m(0, 0, 100)], gidMappings: [m(0, 0, 1)], namespaces: userNs });
    try {
      checkConfigText(text, 'c.json', { parent: { uid: parent, gid: parent } });
      assert.fail('accepted');
    } catch (error) {
      assert.ok(error instanceof OciError);
      assert.equal(error.code, 'OCI_MAP_REJECTED');
      assert.equal(error.data?.path, 'linux.uidMappings[0]');
      assert.equal(error.data?.errno, 'EPERM');
      assert.match(error.message, /spans 2 extents/);
    }
  });

  test('mounts: both kinds needed; a missing idmap option is a warning', () => {
    const one = JSON.stringify({
      ociVersion: '1',
      mounts: [{ destination: '/d', uidMappings: [m(0, 1, 1)] }],
    });
    assert.equal(
      code(() => checkConfigText(one)),
      'OCI_MOUNT_MAPS',
    );
    const both = JSON.stringify({
      ociVersion: '1',
      mounts: [
        { destination: '/d', options: ['rbind'], uidMappings: [m(0, 1, 1)], gidMappings: [m(0, 1, 1)] },
      ],
    });
    const r = checkConfigText(both);
    assert.equal(r.idmappedMounts.length, 1);
    assert.match(r.warnings[0]!, /no "idmap" option/);
  });

  test('unprivileged: only the caller and its subordinate ranges', () => {
    const env = {
      privileged: false,
      uid: 1001,
      gid: 1001,
      subuid: [{ start: 100000, count: 65536 }],
      subgid: [{ start: 100000, count: 65536 }],
    };
    const ok = withLinux({
      uidMappings: [m(0, 1001, 1), m(1, 100000, 65536)],
      gidMappings: [m(0, 1001, 1)],
      namespaces: userNs,
    });
    checkConfigText(ok, 'x', env);
    const bad = withLinux({
      uidMappings: [m(0, 1001, 1), m(1, 200000, 10)],
      gidMappings: [m(0, 1001, 1)],
      namespaces: userNs,
    });
    assert.equal(
      code(() => checkConfigText(bad, 'x', env)),
      'RANGE_NOT_ALLOWED',
    );
  });

  test('Kubernetes records: the kubelet rules', () => {
    const rec = (u: unknown[], g: unknown[]) => JSON.stringify({ uidMappings: u, gidMappings: g });
    const k = (hostId: number, containerId: number, length: number) => ({ hostId, containerId, length });
    assert.equal(checkConfigText(rec([k(65536, 0, 65536)], [k(65536, 0, 65536)])).format, 'kubernetes');
    assert.equal(
      code(() => checkConfigText(rec([k(65536, 0, 65536)], [k(131072, 0, 65536)]))),
      'KUBERNETES_RULES',
    );
    assert.equal(
      code(() => checkConfigText(rec([k(65536, 1, 65536)], [k(65536, 1, 65536)]))),
      'KUBERNETES_RULES',
    );
    assert.equal(
      code(() => checkConfigText(rec([], [k(65536, 0, 65536)]))),
      'KUBERNETES_RULES',
    );
    assert.equal(
      code(() => checkConfigText(rec([{ containerID: 0, hostID: 1, size: 1 }], []))),
      'OCI_INVALID',
    );
    assert.match(
      checkConfigText(rec([k(1000, 0, 1000)], [k(1000, 0, 1000)])).warnings[0]!,
      /multiples of 65536/,
    );
    assert.deepEqual(readConfigView(rec([k(65536, 0, 65536)], [])).uid?.extents, [
      { inside: 0, outside: 65536, count: 65536 },
    ]);
  });
});

describe('userns oci (CLI)', () => {
  let n = 0;
  const bundle = (text = RUNC_SPEC) => {
    const dir = join(base, `b${n++}`);
    mkdirSync(dir, { mode: 0o755 });
    writeFileSync(join(dir, 'config.json'), text, { mode: 0o640 });
    return dir;
  };

  test('--help, usage errors (exit 2)', async () => {
    const help = await runCli(['oci', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: userns oci/);
    for (const args of [
      [],
      ['a', 'b'],
      ['--userns', 'weird', 'x'],
      ['--allocate', '--uidmap', '0:1:1', 'x'],
      ['--format', 'yaml', 'x'],
      ['--name', 'n', 'x'],
    ]) {
      const r = await runCli(['oci', ...args, '--json']);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.equal(JSON.parse(r.stdout).code, 'USAGE');
    }
    const main = await runCli(['--help']);
    assert.match(main.stdout, /oci +fill an OCI bundle config\.json with validated ID maps/);
  });

  test('fill a bundle directory: written atomically, mode kept, --json result', async () => {
    const dir = bundle();
    const r = await runCli(['oci', '--uidmap', '0:100000:65536', '--idmap-mount', '/data', dir, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.ok, true);
    assert.equal(out.written, true);
    assert.deepEqual(out.uidMap, [[0, 100000, 65536]]);
    assert.deepEqual(out.gidMap, [[0, 100000, 65536]]);
    assert.deepEqual(out.idmappedMounts, [
      { destination: '/data', uidMap: [[0, 100000, 65536]], gidMap: [[0, 100000, 65536]] },
    ]);
    const file = join(dir, 'config.json');
    assert.equal(statSync(file).mode & 0o777, 0o640);
    assert.equal(JSON.parse(readFileSync(file, 'utf8')).linux.uidMappings[0].hostID, 100000);
    assert.ok(readFileSync(file, 'utf8').startsWith('{\n\t"ociVersion"'));
    // Again: nothing to change.
    const again = await runCli([
      'oci',
      '--uidmap',
      '0:100000:65536',
      '--idmap-mount',
      '/data',
      join(dir, 'config.json'),
    ]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^unchanged: /);
    const check = await runCli(['oci', '--check', dir]);
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stdout, /^ok: .*config\.json \(oci; user namespace: new\)/);
  });

  test('errors: nothing is written, typed codes, no stack', async () => {
    const dir = bundle();
    const file = join(dir, 'config.json');
    const before = readFileSync(file, 'utf8');
    const cases: [string[], string][] = [
      [['--uidmap', '0:100000:10,5:200000:10'], 'MAP_WRITE_FAILED'],
      [['--uidmap', '0:100000:65536', '--idmap-mount', '/nope'], 'OCI_MOUNT_NOT_FOUND'],
      [['--check', '--allocate'], 'OCI_CHECK_ALLOCATE'],
    ];
    for (const [args, expected] of cases) {
      const r = await runCli(['oci', ...args, dir, '--json']);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(JSON.parse(r.stdout).code, expected);
      const human = await runCli(['oci', ...args, dir]);
      assert.equal(human.code, 1);
      assert.match(human.stderr, /^userns: /);
      assert.doesNotMatch(human.stderr, /\n\s+at /);
    }
    assert.equal(readFileSync(file, 'utf8'), before);
    const missing = await runCli(['oci', join(base, 'nope', 'config.json'), '--json']);
    assert.equal(missing.code, 1);
    assert.equal(JSON.parse(missing.stdout).code, 'OCI_READ_FAILED');
    const badDir = bundle(RUNC_SPEC.replace('"size": 1', '"size": "1"'));
    const bad = await runCli(['oci', '--check', badDir, '--json']);
    assert.equal(bad.code, 1);
    const err = JSON.parse(bad.stdout);
    assert.equal(err.code, 'OCI_INVALID');
    assert.equal(err.data.path, 'linux.uidMappings[0].size');
    assert.equal(typeof err.data.line, 'number');
  });

  test('--allocate: named after the bundle, reused when filled again, released on failure', async () => {
    const root = join(base, 'state');
    const dir = join(base, 'web1');
    mkdirSync(dir);
    writeFileSync(join(dir, 'config.json'), RUNC_SPEC);
    const a = await runCli(['oci', '--allocate=size=65536', '--root', root, dir, '--json']);
    assert.equal(a.code, 0, a.stdout + a.stderr);
    const first = JSON.parse(a.stdout);
    assert.match(first.allocation.name, /^web1-[0-9a-f]{12}$/);
    assert.equal(first.allocation.reused, false);
    const b = await runCli(['oci', '--allocate', '--root', root, dir, '--json']);
    assert.equal(b.code, 0, b.stderr);
    const second = JSON.parse(b.stdout);
    assert.equal(second.allocation.reused, true);
    assert.deepEqual(second.uidMap, first.uidMap);
    const list = JSON.parse((await runCli(['alloc', 'list', '--root', root, '--json'])).stdout);
    assert.equal(
      list.allocations.filter((x: { name: string }) => x.name === first.allocation.name).length,
      1,
    );
    // A failure after allocating (no such mount) releases the new allocation.
    const failed = await runCli([
      'oci',
      '--allocate',
      '--name',
      'other',
      '--idmap-mount',
      '/nope',
      '--root',
      root,
      dir,
      '--json',
    ]);
    assert.equal(failed.code, 1);
    const after = JSON.parse((await runCli(['alloc', 'list', '--root', root, '--json'])).stdout);
    assert.equal(
      after.allocations.some((x: { name: string }) => x.name === 'other'),
      false,
    );
    const mismatch = await runCli(['oci', '--allocate=size=1024', '--root', root, dir, '--json']);
    assert.equal(JSON.parse(mismatch.stdout).code, 'OCI_ALLOCATION_MISMATCH');
  });

  test('--allocate: bundles with the same directory name get their own IDs; each keeps its own', async () => {
    const root = join(base, 'state-same-name');
    const dirs = ['a', 'b'].map((x) => {
      const d = join(base, 'same-name', x, 'userdata'); // podman: …/<id>/userdata/config.json
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, 'config.json'), RUNC_SPEC);
      return d;
    });
    const fill = async (target: string) => {
      const r = await runCli(['oci', '--allocate=size=65536', '--root', root, target, '--json']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      return JSON.parse(r.stdout) as {
        allocation: { name: string; reused: boolean };
        uidMap: [number, number, number][];
        gidMap: [number, number, number][];
      };
    };
    const a = await fill(dirs[0]!);
    const b = await fill(dirs[1]!);
    for (const r of [a, b]) {
      assert.match(r.allocation.name, /^userdata-[0-9a-f]{12}$/);
      assert.equal(r.allocation.reused, false);
    }
    assert.notEqual(a.allocation.name, b.allocation.name);
    const overlaps = (x: [number, number, number][], y: [number, number, number][]) =>
      x.some(([, xo, xn]) => y.some(([, yo, yn]) => xo < yo + yn && yo < xo + xn));
    assert.equal(overlaps(a.uidMap, b.uidMap), false, JSON.stringify([a, b]));
    assert.equal(overlaps(a.gidMap, b.gidMap), false, JSON.stringify([a, b]));
    // The same bundle again (through another path to it: a link above the bundle that only root
    // could have placed): its own allocation, reused.
    const linked = join(base, 'link-to-same-name');
    symlinkSync(join(base, 'same-name'), linked);
    const again = await fill(join(linked, 'a', 'userdata', 'config.json'));
    assert.equal(again.allocation.name, a.allocation.name);
    assert.equal(again.allocation.reused, true);
    assert.deepEqual(again.uidMap, a.uidMap);
  });

  test('a symlinked config.json is refused; the file it points to is untouched', async () => {
    const dir = join(base, `b${n++}`);
    mkdirSync(dir, { mode: 0o755 });
    const target = join(base, `link-target-${n}`);
    writeFileSync(target, RUNC_SPEC, { mode: 0o600 });
    const link = join(dir, 'config.json');
    symlinkSync(target, link);
    const before = statSync(target);
    for (const path of [dir, link]) {
      const r = await runCli(['oci', '--uidmap', '0:100000:65536', path, '--json']);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      const err = JSON.parse(r.stdout);
      assert.equal(err.code, 'OCI_CONFIG_SYMLINK');
      assert.ok(err.message.includes(link), err.message);
    }
    const human = await runCli(['oci', '--uidmap', '0:100000:65536', dir]);
    assert.match(human.stderr, /symbolic link/);
    assert.doesNotMatch(human.stderr, /\n\s+at /);
    assert.equal(readFileSync(target, 'utf8'), RUNC_SPEC);
    const after = statSync(target);
    assert.equal(after.mode, before.mode);
    assert.equal(after.uid, before.uid);
    assert.equal(after.gid, before.gid);
    assert.equal(after.ino, before.ino);
    assert.ok(lstatSync(link).isSymbolicLink());
  });

  test('a symlinked bundle directory is refused (fill, --check, --from-kubernetes), and so is a link others could place above it', {
    skip: process.geteuid?.() === 0 ? false : 'needs root (a directory owned by another user)',
    timeout: 60_000,
  }, async () => {
    const victim = bundle(); // as root's /root/vb
    const file = join(victim, 'config.json');
    const before = statSync(file);
    // alice's home: a directory another user owns, where she can place links.
    const home = join(base, 'alice-home');
    mkdirSync(home, { mode: 0o755 });
    chownSync(home, 4321, 4321);
    symlinkSync(victim, join(home, 'bundle'));
    symlinkSync(base, join(home, 'up'));
    const through = join(home, 'up', basename(victim));
    for (const args of [
      ['--uidmap', '0:100000:65536', join(home, 'bundle')],
      ['--uidmap', '0:100000:65536', join(home, 'bundle', 'config.json')],
      ['--check', join(home, 'bundle')],
      ['--uidmap', '0:100000:65536', through],
      ['--check', through],
    ]) {
      const r = await runCli(['oci', ...args, '--json']);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.equal(JSON.parse(r.stdout).code, 'OCI_BUNDLE_SYMLINK', args.join(' '));
    }
    // --from-kubernetes: a linked record, and a record in a linked directory, are never read.
    const rec = join(base, 'k8s-record');
    writeFileSync(
      rec,
      '{"uidMappings":[{"hostId":131072,"containerId":0,"length":65536}],"gidMappings":[{"hostId":131072,"containerId":0,"length":65536}]}',
    );
    symlinkSync(rec, join(home, 'record'));
    mkdirSync(join(base, 'k8s-dir'));
    writeFileSync(join(base, 'k8s-dir', 'userns'), readFileSync(rec));
    symlinkSync(join(base, 'k8s-dir'), join(home, 'pod'));
    for (const [source, code] of [
      [join(home, 'record'), 'OCI_CONFIG_SYMLINK'],
      [join(home, 'pod', 'userns'), 'OCI_BUNDLE_SYMLINK'],
    ] as const) {
      const r = await runCli(['oci', '--from-kubernetes', source, bundle(), '--json']);
      assert.equal(r.code, 1, r.stdout);
      assert.equal(JSON.parse(r.stdout).code, code);
    }
    const after = statSync(file);
    assert.deepEqual(
      [after.ino, after.mtimeMs, readFileSync(file, 'utf8')],
      [before.ino, before.mtimeMs, RUNC_SPEC],
    );
    // A link only root could have placed (in a directory of root's, mode 0700) is followed.
    const trusted = join(base, 'trusted-link');
    symlinkSync(base, trusted);
    const ok = await runCli([
      'oci',
      '--check',
      '--uidmap',
      '0:100000:65536',
      join(trusted, basename(victim)),
      '--json',
    ]);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  });

  test('a config larger than any real one is a typed error (INPUT_TOO_LARGE), read no further', async () => {
    const dir = bundle(`{"ociVersion": "1.0.2", "pad": "${'x'.repeat(5 << 20)}"}`);
    for (const args of [
      ['--uidmap', '0:100000:65536', dir],
      ['--check', dir],
    ]) {
      const r = await runCli(['oci', ...args, '--json']);
      assert.equal(r.code, 1);
      assert.equal(JSON.parse(r.stdout).code, 'INPUT_TOO_LARGE');
    }
  });

  test('owner and permission bits are kept; setuid, setgid and sticky are not', {
    skip: process.geteuid?.() === 0 ? false : 'needs root (chown)',
  }, async () => {
    const dir = bundle();
    const file = join(dir, 'config.json');
    chownSync(file, 1234, 1234);
    chmodSync(file, 0o640);
    const r = await runCli(['oci', '--uidmap', '0:100000:65536', dir, '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(JSON.parse(r.stdout).written, true);
    const st = statSync(file);
    assert.equal(st.uid, 1234);
    assert.equal(st.gid, 1234);
    assert.equal(st.mode & 0o7777, 0o640);
    // Special bits of the original are never carried to the new file.
    const dir2 = bundle();
    const file2 = join(dir2, 'config.json');
    chmodSync(file2, 0o7755);
    const r2 = await runCli(['oci', '--uidmap', '0:100000:65536', dir2, '--json']);
    assert.equal(r2.code, 0, r2.stdout + r2.stderr);
    assert.equal(statSync(file2).mode & 0o7777, 0o755);
    assert.equal(statSync(file2).uid, 0);
  });

  test('Kubernetes: create a record, read one as the source of a bundle', async () => {
    const rec = join(base, 'pod-userns');
    const c = await runCli(['oci', '--format', 'kubernetes', '--uidmap', '0:131072:65536', rec]);
    assert.equal(c.code, 0, c.stderr);
    assert.equal(
      readFileSync(rec, 'utf8'),
      '{"uidMappings":[{"hostId":131072,"containerId":0,"length":65536}],"gidMappings":[{"hostId":131072,"containerId":0,"length":65536}]}',
    );
    const refused = await runCli(['oci', '--uidmap', '0:131072:1,1:300000:10', rec, '--json']);
    assert.equal(JSON.parse(refused.stdout).code, 'KUBERNETES_RULES');
    const dir = bundle();
    const r = await runCli(['oci', '--from-kubernetes', rec, dir, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).uidMap, [[0, 131072, 65536]]);
  });

  test('--check with map options validates the would-be result and writes nothing', async () => {
    const dir = bundle();
    const before = readFileSync(join(dir, 'config.json'), 'utf8');
    const r = await runCli(['oci', '--check', '--uidmap', '0:100000:65536', dir, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.changed, true);
    assert.equal(out.written, false);
    assert.equal(readFileSync(join(dir, 'config.json'), 'utf8'), before);
  });

  test('nested caller: maps are cut at the namespace’s own extents', {
    skip: process.geteuid?.() === 0 ? false : 'needs root (creates a user namespace)',
  }, async () => {
    const dir = bundle();
    // Inside: uid 0 = host 0 (so the bundle stays writable), 1… = host 100000….
    const r = await run(process.execPath, [BIN, 'oci', '--uidmap', '0:0:100', dir, '--json'], {
      uidMap: '0:0:1,1:100000:65536',
      gidMap: '0:0:1,1:100000:65536',
    });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).uidMap, [
      [0, 0, 1],
      [1, 1, 99],
    ]);
    // The same file checked from the host is fine too (its own map is the identity).
    const plain = await run(
      process.execPath,
      [BIN, 'oci', '--no-split', '--uidmap', '0:0:100', dir, '--json'],
      {
        uidMap: '0:0:1,1:100000:65536',
        gidMap: '0:0:1,1:100000:65536',
      },
    );
    assert.equal(plain.exitCode, 1);
    const err = JSON.parse(plain.stdout);
    assert.equal(err.code, 'OCI_MAP_REJECTED');
    assert.equal(err.data.path, 'linux.uidMappings[0]');
  });
});

describe('userns oci as an unprivileged user', { skip: throwawayUserUnavailable() ?? false }, () => {
  test('auto: you and your subordinate IDs; IDs that are not yours are refused', async () => {
    await withThrowawayUser(async (user) => {
      const dir = join(base, 'rootless');
      mkdirSync(dir, { mode: 0o755 });
      writeFileSync(join(dir, 'config.json'), RUNC_SPEC);
      chownSync(dir, user.uid, user.gid);
      chownSync(join(dir, 'config.json'), user.uid, user.gid);
      const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: user.home, NO_COLOR: '1' };
      const r = await runAs(user, [process.execPath, readableBin(), 'oci', dir, '--json'], { env });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const out = JSON.parse(r.stdout);
      assert.deepEqual(out.uidMap, [
        [0, user.uid, 1],
        [1, user.subuid.start, user.subuid.count],
      ]);
      assert.equal(statSync(join(dir, 'config.json')).uid, user.uid);
      const bad = await runAs(
        user,
        [process.execPath, readableBin(), 'oci', '--check', '--uidmap', '0:1:100', dir, '--json'],
        {
          env,
        },
      );
      assert.equal(bad.code, 1);
      assert.equal(JSON.parse(bad.stdout).code, 'RANGE_NOT_ALLOWED');
    });
  });
});
