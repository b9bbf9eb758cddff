/**
 * One JSON shape for maps across commands: every map in any command's --json output is a list
 * of [inside, outside, count] triples, under `map` (one map, with `kind`) or `uidMap`/`gidMap`;
 * never objects, never another key. Every error is {ok: false, error, code, message, hint?, data?}.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { hostless, runCli } from './run-cli.js';

const MAP_KEY = /^(map|uidMap|gidMap)$/;
const LOOKS_LIKE_MAP = /(map|mappings)$/i;

/** Every value under a map-like key, with its path; fails on a map in another shape. */
function checkMaps(value: unknown, path: string, found: string[]): void {
  if (Array.isArray(value)) {
    for (const [i, v] of value.entries()) checkMaps(v, `${path}[${i}]`, found);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  for (const [key, v] of Object.entries(value)) {
    const at = `${path}.${key}`;
    // A named namespace's `options` are the request as given ("0:100000:65536", "keep-id"): specs.
    if (MAP_KEY.test(key) && path.endsWith('.options') && typeof v === 'string') continue;
    if (MAP_KEY.test(key) && v !== null) {
      assert.ok(Array.isArray(v), `${at} is a list`);
      for (const t of v as unknown[])
        assert.ok(
          Array.isArray(t) && t.length === 3 && t.every((n) => Number.isInteger(n)),
          `${at}: ${JSON.stringify(t)} is an [inside, outside, count] triple`,
        );
      found.push(at);
    } else {
      assert.ok(
        !LOOKS_LIKE_MAP.test(key) || v === null || typeof v !== 'object',
        `${at}: a map under another key`,
      );
      checkMaps(v, at, found);
    }
  }
}

const rootOnly = process.geteuid?.() === 0 ? false : 'needs root';

describe('--json: one shape for maps, one for errors', { skip: rootOnly }, () => {
  let work: string;
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'userns-json-'));
  });
  after(async () => {
    await runCli(['rm', '--root', join(work, 'state'), '--force', 'shape']);
    rmSync(work, { recursive: true, force: true });
  });

  test('every command that prints maps prints triples under map/uidMap/gidMap', {
    timeout: 120_000,
  }, async () => {
    const state = join(work, 'state');
    const bundle = join(work, 'bundle');
    mkdirSync(bundle);
    writeFileSync(
      join(bundle, 'config.json'),
      '{"ociVersion": "1.0.2", "mounts": [{"destination": "/data", "type": "bind", "source": "/srv"}], "linux": {}}\n',
    );
    const pool = ['--root', state, '--pool', '3000000000:1000000', ...hostless(work)];
    const commands = [
      ['map', 'split', '--parent', '0:0:4294967295', '0:100000:65536'],
      ['map', 'compose', '0:0:10', '0:100000:65536'],
      ['map', 'show', '0:100000:65536'],
      ['map', 'convert', '--to', 'kubernetes', '0:100000:65536'],
      ['run', '--uidmap', '0:100000:65536', '--dry-run', '--', 'true'],
      ['alloc', '--size', '65536', '--name', 'shape', ...pool],
      ['alloc', 'list', '--root', state, ...hostless(work)],
      ['oci', '--uidmap', '0:100000:65536', '--idmap-mount', '/data', bundle],
      ['oci', '--check', bundle],
      ['create', '--root', state, '--uidmap', '0:100000:65536', 'shape'],
      ['inspect', '--root', state, 'shape'],
      ['list', '--root', state],
    ];
    for (const args of commands) {
      const r = await runCli([
        ...args.slice(0, args.indexOf('--') < 0 ? args.length : args.indexOf('--')),
        '--json',
        ...(args.includes('--') ? args.slice(args.indexOf('--')) : []),
      ]);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      const found: string[] = [];
      checkMaps(JSON.parse(r.stdout), args.slice(0, 2).join(' '), found);
      assert.ok(found.length > 0, `${args.join(' ')} printed no map: ${r.stdout}`);
    }
  });

  test('every error is one shape, whatever the command', { timeout: 60_000 }, async () => {
    for (const args of [
      ['map', 'split', '--parent', '0:0:10', '0:0:20'],
      ['map', 'show', '0:4294967295:1'],
      ['map', 'convert', '--to', 'kernel', '-'],
      ['shift', '--from', '0:0:1', '--to', '0:1:1', join(work, 'missing')],
      ['run', '--bogus', '--', 'true'],
      ['alloc', 'release', '--root', join(work, 'state'), 'no-such'],
    ]) {
      const r = await runCli(
        [
          ...args.slice(0, args.includes('--') ? args.indexOf('--') : args.length),
          '--json',
          ...(args.includes('--') ? args.slice(args.indexOf('--')) : []),
        ],
        { input: 'garbage' },
      );
      assert.notEqual(r.code, 0, args.join(' '));
      const body = JSON.parse(r.stdout);
      assert.equal(body.ok, false, args.join(' '));
      for (const key of ['error', 'code', 'message'])
        assert.equal(typeof body[key], 'string', `${args.join(' ')}: ${key}`);
      assert.deepEqual(
        Object.keys(body).filter((k) => !['ok', 'error', 'code', 'message', 'hint', 'data'].includes(k)),
        [],
        args.join(' '),
      );
    }
  });
});
