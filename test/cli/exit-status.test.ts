/**
 * The README's exit-status table, for every command: a usage error is 2 (text and --json), except
 * in run and exec, which pass the command's status through and so report every failure of their
 * own, usage included, as 125. Usage errors are found before anything is read or run, so these
 * need no root and touch nothing.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { runInProcess } from './run-cli.js';

const COMMANDS = [
  ['map', 'validate'],
  ['map', 'split'],
  ['map', 'convert'],
  ['map', 'lookup'],
  ['map', 'compose'],
  ['map', 'show'],
  ['create'],
  ['list'],
  ['inspect'],
  ['rm'],
  ['alloc'],
  ['alloc', 'list'],
  ['alloc', 'release'],
  ['shift'],
  ['fit'],
  ['oci'],
  ['doctor'],
];
const PASS_THROUGH = [['run'], ['exec']];

describe('one exit-status table', () => {
  test('an unknown option is a usage error: 2 everywhere, 125 in run and exec', {
    timeout: 60_000,
  }, async () => {
    for (const [command, status] of [
      ...COMMANDS.map((c) => [c, 2] as const),
      ...PASS_THROUGH.map((c) => [c, 125] as const),
    ]) {
      const text = await runInProcess([...command, '--no-such-option', 'x', '--', 'true']);
      assert.equal(text.code, status, `${command.join(' ')}: ${text.stderr}`);
      assert.match(
        text.stderr,
        new RegExp(`^userns: unknown option '--no-such-option' for 'userns ${command.join(' ')}'`),
        command.join(' '),
      );
      assert.doesNotMatch(text.stderr, /\n +at /, 'no stack trace');
      const json = await runInProcess([...command, '--json', '--no-such-option', 'x', '--', 'true']);
      assert.equal(json.code, status, `${command.join(' ')} --json`);
      const body = JSON.parse(json.stdout);
      assert.deepEqual([body.ok, body.code], [false, 'USAGE'], command.join(' '));
    }
  });

  test('an unknown command, and no command, are usage errors (2)', async () => {
    for (const args of [['no-such-command'], [], ['map'], ['map', 'no-such-verb']]) {
      const r = await runInProcess(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    }
  });
});
