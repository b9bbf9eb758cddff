/**
 * The CLI's conventions, all made from one command table (src/cli/commands.ts): --help and
 * `userns help CMD`, --version, "did you mean", shell completion in bash, zsh and fish, and the
 * man page.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { COMMANDS, type CommandName, TOP_COMMANDS } from '../../src/cli/commands.js';
import { main } from '../../src/cli/main.js';
import { closest, editDistance } from '../../src/cli/suggest.js';
import { FORMAT_NAMES } from '../../src/idmap/formats/index.js';
import { BIN, runCli } from './run-cli.js';

/** The CLI in this process (for the many help texts): exit status and what it wrote. */
async function inProcess(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const sink = (write: (text: string) => void) => ({
    write: (chunk: string) => {
      write(String(chunk));
      return true;
    },
  });
  const io = {
    stdout: sink((t) => {
      stdout += t;
    }),
    stderr: sink((t) => {
      stderr += t;
    }),
    stdin: process.stdin,
    env: { NO_COLOR: '1' },
  } as unknown as Parameters<typeof main>[1];
  const code = await main(args, io);
  return { code, stdout, stderr };
}

const ROOT = join(dirname(BIN), '..');
const CI = process.env.CI === 'true';
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** Every command path with its words: ['map', 'split']. */
const PATHS = (Object.keys(COMMANDS) as CommandName[]).map((name) => name.split(' '));

/** The option words a command takes: its table entry plus --json, --help and -h. */
function optionWords(name: CommandName): string[] {
  const words = new Set(['--json', '--help', '-h']);
  for (const [long, option] of Object.entries(COMMANDS[name].options as Record<string, { short?: string }>)) {
    words.add(`--${long}`);
    if (option.short !== undefined) words.add(`-${option.short}`);
  }
  return [...words].sort();
}

function missing(tool: string): string | false {
  if (spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0) return false;
  const reason = `${tool} is not installed (scripts/install-test-deps installs it)`;
  if (CI) throw new Error(reason);
  return reason;
}

describe('help, version and usage errors', { timeout: 120_000 }, () => {
  test('the same through the real bin/userns', async () => {
    const [viaHelp, viaFlag] = await Promise.all([
      runCli(['help', 'map', 'split']),
      runCli(['map', 'split', '--help']),
    ]);
    assert.equal(viaHelp.code, 0);
    assert.equal(viaHelp.stdout, viaFlag.stdout);
  });

  test("'userns help CMD [SUB]' prints exactly 'userns CMD [SUB] --help', for every command", {
    timeout: 120_000,
  }, async () => {
    for (const words of PATHS) {
      if (words[0] === 'help') continue;
      const viaHelp = await inProcess(['help', ...words]);
      const viaFlag = await inProcess([...words, '--help']);
      assert.equal(viaHelp.code, 0, `help ${words.join(' ')}: ${viaHelp.stderr}`);
      assert.equal(viaFlag.code, 0, `${words.join(' ')} --help: ${viaFlag.stderr}`);
      assert.equal(viaHelp.stdout, viaFlag.stdout, words.join(' '));
      assert.match(viaFlag.stdout, new RegExp(`^Usage: userns ${words.join(' ')}`));
    }
  });

  test('a synopsis continued on another line is not printed as another command', async () => {
    // 'userns oci' and 'userns map validate' wrap their synopsis: the continuation lines are
    // indented under the command, never a bare 'userns' followed by options.
    const { manPage } = await import('../../src/cli/man.js');
    const man = await manPage('0.0.0');
    for (const words of PATHS) {
      const help = (await inProcess([...words, '--help'])).stdout;
      const synopsis = help.slice(0, help.indexOf('\n\n')).split('\n');
      for (const line of synopsis) {
        assert.match(line, /^(Usage: | {7})(userns [^ ]| {7}\s*\S)/, `${words.join(' ')} --help: ${line}`);
      }
    }
    assert.doesNotMatch(man, /^\.B userns\s{2,}/m);
  });

  test('every option of the table is in its --help, and its parser takes it', async () => {
    for (const words of PATHS) {
      const name = words.join(' ') as CommandName;
      const help = (await inProcess([...words, '--help'])).stdout;
      for (const [long, option] of Object.entries(
        COMMANDS[name].options as Record<string, { short?: string }>,
      )) {
        assert.match(help, new RegExp(`(^|[ ,])--${long}\\b`, 'm'), `${name} --help lists --${long}`);
        if (option.short !== undefined) assert.match(help, new RegExp(`-${option.short}, --${long}`));
      }
    }
    // The parsers are the table's: an option only the table knows would be refused as unknown.
    const r = await runCli(['map', 'lookup', '-r', '--kind', 'gid', '0:5:10', '5', '--json']);
    assert.equal(r.code, 0, r.stderr);
  });

  test('userns --help lists every command with its summary', async () => {
    const r = await runCli(['--help']);
    assert.equal(r.code, 0);
    for (const name of TOP_COMMANDS)
      assert.match(
        r.stdout,
        new RegExp(`^  ${name} +${COMMANDS[name].summary.slice(0, 20).replace(/[()]/g, '\\$&')}`, 'm'),
      );
    assert.equal((await runCli(['help'])).stdout, r.stdout);
    const none = await runCli([]);
    assert.equal(none.code, 2);
    assert.equal(none.stdout, r.stdout);
  });

  test('--version, -V, -v and userns version print the version of package.json', async () => {
    for (const args of [['--version'], ['-V'], ['-v'], ['version']]) {
      const r = await runCli(args);
      assert.equal(r.code, 0, args.join(' '));
      assert.equal(r.stdout, `userns ${VERSION}\n`);
    }
    const json = JSON.parse((await runCli(['version', '--json'])).stdout);
    assert.equal(json.version, VERSION);
    assert.equal(json.node, process.version);
    const source = readFileSync(join(ROOT, 'src/cli/main.ts'), 'utf8');
    assert.doesNotMatch(source, /\d+\.\d+\.\d+/, 'no version written into main.ts');
  });

  // About fifteen CLI processes, one after another.
  test('did you mean: commands, subcommands, options; one line, exit 2, the suggestion in --json', {
    timeout: 120_000,
  }, async () => {
    const cases: [string[], RegExp][] = [
      [['rn'], /^userns: unknown command 'rn'; did you mean 'run'\?$/],
      [['--verison'], /^userns: unknown option '--verison'; did you mean '--version'\?$/],
      [['map', 'splt'], /^userns: unknown subcommand 'map splt'; did you mean 'split'\?$/],
      [
        ['create', '--uidmpa', '0:0:1', 'box'],
        /^userns: unknown option '--uidmpa' for 'userns create'; did you mean '--uidmap'\?$/,
      ],
      [
        ['rm', '--froce', 'x'],
        /^userns: unknown option '--froce' for 'userns rm'; did you mean '--force'\?$/,
      ],
      [['map', 'split', '--parnet', 'self', '0:0:1'], /did you mean '--parent'\?$/],
      [['alloc', 'lst'], /^userns: unexpected argument "lst"; did you mean 'list'\?$/],
      [['help', 'mpa'], /did you mean 'map'\?$/],
      [['shift', '--xyzzy', 'dir'], /^userns: unknown option '--xyzzy' for 'userns shift'$/],
      [['list', '--root'], /^userns: option '--root' needs a value$/],
      [['rm', '--force=yes', 'x'], /^userns: option '--force' takes no value$/],
      [['completion', 'tcsh'], /^userns: no completion for the shell 'tcsh'/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(args);
      // (run and exec are left out: their exit status is the command's, see their --help.)
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      const [first, second, ...rest] = r.stderr.split('\n');
      assert.match(first!, message, args.join(' '));
      assert.match(second!, /^ {2}hint: /);
      assert.deepEqual(rest, ['']);
      assert.equal(r.stdout, '');
    }
    const json = await runCli(['create', '--uidmpa', '0:0:1', '--json', 'box']);
    const run = await runCli(['run', '--uidmpa', '0:0:1', '--', 'true']);
    assert.match(
      run.stderr,
      /^userns: unknown option '--uidmpa' for 'userns run'; did you mean '--uidmap'\?\n/,
    );
    const body = JSON.parse(json.stdout);
    assert.equal(body.code, 'USAGE');
    assert.deepEqual(body.data, { option: '--uidmpa', suggestion: '--uidmap' });
    // An option that takes a value swallows no following option silently.
    const swallowed = await runCli(['list', '--root', '--no-such']);
    assert.match(
      swallowed.stderr,
      /option '--root' needs a value \(to give one that starts with '-', write --root=--no-such\)/,
    );
  });

  test('the suggestion: closest within one edit per three letters, or the only prefix', () => {
    assert.equal(editDistance('--uidmpa', '--uidmap'), 1);
    assert.equal(editDistance('kitten', 'sitting'), 3);
    assert.equal(closest('rn', ['run', 'rm']), 'run');
    assert.equal(closest('--dry', ['--dry-run', '--json']), '--dry-run');
    assert.equal(closest('--d', ['--dry-run', '--debug']), undefined);
    assert.equal(closest('frobnicate', ['map', 'run']), undefined);
    assert.equal(closest('x', []), undefined);
  });
});

describe('shell completion', { timeout: 180_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'userns-completion-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const env = { ...process.env, PATH: `${dirname(BIN)}:${process.env.PATH}` };
  const script = async (shell: string) => {
    const r = await runCli(['completion', shell]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  };

  /** The cases every shell must answer: command line (cursor at the end) → candidates. */
  const cases: [string, string[]][] = [
    ['userns ru', ['run']],
    ['userns r', ['rm', 'run']],
    ['userns map s', ['show', 'split']],
    ['userns alloc ', [...COMMANDS.alloc.subcommands].sort()],
    ['userns run --userns ', ['auto', 'auto:size=', 'identity', 'keep-id', 'keep-id:', 'self']],
    ['userns run --uns', ['--unshare']],
    ['userns map convert --to ', [...FORMAT_NAMES].sort()],
    ['userns shift --unmapped ', ['error', 'overflow', 'skip']],
    ['userns completion ', ['bash', 'fish', 'zsh']],
    ['userns help map s', ['show', 'split']],
    ['userns rm --f', ['--force']],
    ['userns map split --', optionWords('map split').filter((w) => w.startsWith('--'))],
  ];

  test('bash: every command path offers exactly its table options; values, subcommands, commands', {
    timeout: 120_000,
    skip: missing('bash'),
  }, async () => {
    const file = join(dir, 'userns.bash');
    writeFileSync(file, await script('bash'));
    const lines = [
      ...cases.map(([line]) => line),
      ...PATHS.map((w) => `userns ${w.join(' ')} -`),
      'userns run -- tru',
      'userns run --uidmap 0:0:1 tru',
      'userns map convert --to=k',
      'userns map convert --to = k',
    ];
    const driver = `source ${file}
complete_line() {
  read -r -a COMP_WORDS <<< "$1"
  [[ $1 == *' ' ]] && COMP_WORDS+=('')
  COMP_CWORD=$((\${#COMP_WORDS[@]} - 1))
  COMPREPLY=()
  _userns
  printf '%s\\n' "\${COMPREPLY[@]}" | sort -u | tr '\\n' ' '
  echo
}
${lines.map((l) => `complete_line ${JSON.stringify(l)}`).join('\n')}
`;
    const r = spawnSync('bash', ['-c', driver], { encoding: 'utf8', env });
    assert.equal(r.status, 0, r.stderr);
    const answers = r.stdout.split('\n');
    const got = (i: number) =>
      answers[i]!.trim()
        .split(' ')
        .filter((w) => w !== '');
    for (const [i, [line, expected]] of cases.entries()) assert.deepEqual(got(i), expected, line);
    PATHS.forEach((words, j) => {
      const name = words.join(' ') as CommandName;
      const offered = got(cases.length + j).map((w) => w.replace(/=$/, ''));
      assert.deepEqual(offered, optionWords(name), `options of ${name}`);
    });
    const k = cases.length + PATHS.length;
    assert.ok(got(k).includes('true'), 'run -- COMMAND');
    assert.ok(got(k + 1).includes('true'), 'run COMMAND');
    assert.deepEqual(got(k + 2), ['kernel', 'kubernetes']);
    assert.deepEqual(got(k + 3), ['kernel', 'kubernetes']);
  });

  test('fish: complete -C answers the same', { timeout: 120_000, skip: missing('fish') }, async () => {
    const file = join(dir, 'userns.fish');
    writeFileSync(file, await script('fish'));
    const lines = [...cases.map(([line]) => line), 'userns run --uidmap 0:0:1 tru'];
    // One line per case: the candidates, sorted, separated by spaces (an empty line for none).
    const driver = `source ${file}\n${lines.map((l) => `set -l r (complete -C ${JSON.stringify(l)} | cut -f1 | sort -u); echo "$r"`).join('\n')}\n`;
    const r = spawnSync('fish', ['--no-config', '-c', driver], { encoding: 'utf8', env });
    assert.equal(r.status, 0, r.stderr);
    const answers = r.stdout.split('\n');
    const words = (i: number) => (answers[i] ?? '').split(' ').filter((w) => w !== '');
    for (const [i, [line, expected]] of cases.entries()) assert.deepEqual(words(i), expected, line);
    assert.ok(words(cases.length).includes('true'), 'run COMMAND');
  });

  test('zsh: the completion system offers the same (a real zsh under a pseudo-terminal)', {
    timeout: 120_000,
    skip: missing('zsh'),
  }, async () => {
    const fpath = join(dir, 'zsh');
    mkdirSync(fpath);
    writeFileSync(join(fpath, '_userns'), await script('zsh'));
    const out = join(dir, 'zsh-candidates');
    // One interactive zsh (zpty) answers every case. A widget (on ^T) puts the case's line in
    // the buffer and runs complete-word; compadd is wrapped to record what the completion
    // functions add. Each step waits for the next prompt, so nothing is typed ahead of zle.
    const typed = cases
      .map(
        ([line], i) => `zpty -w z "CASE_ID=${i} CASE='${line}'; print SE\\"\\"T${i}"
zpty -r z all '*SET${i}*PROMPT *'
zpty -n -w z $'\\x14'
zpty -r z all '*DONE${i}*PROMPT *'`,
      )
      .join('\n');
    const setup = [
      "PS1='%% PR''OMPT '",
      `fpath=(${fpath} \\$fpath)`,
      'autoload -Uz compinit',
      'compinit -u -D',
      `compadd() { local -a __m; builtin compadd -O __m \\"\\$@\\"; print -rl -- \\$__m >> ${out}; builtin compadd \\"\\$@\\" }`,
      `_t() { print -r -- \\"=== \\$CASE_ID\\" >> ${out}; BUFFER=\\$CASE; CURSOR=\\$#BUFFER; zle complete-word; BUFFER=\\"print DO''NE\\$CASE_ID\\"; zle accept-line }`,
      'zle -N _t',
      "bindkey '^T' _t",
      'print RE\\"\\"ADY',
    ].join('; ');
    const driver = `zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "${setup}"
zpty -r z all '*READY*PROMPT *'
${typed}
zpty -d z
`;
    const r = spawnSync('zsh', ['-f', '-c', driver], { encoding: 'utf8', env, timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    const blocks = readFileSync(out, 'utf8')
      .split(/^=== \d+\n/m)
      .slice(1);
    cases.forEach(([line, expected], i) => {
      const offered = [...new Set(blocks[i]!.split('\n').filter((w) => w !== ''))].sort();
      assert.deepEqual(offered, expected, `${line}\n${readFileSync(out, 'utf8')}`);
    });
  });

  test('an unknown shell is a usage error; --json wraps the script', async () => {
    assert.equal((await runCli(['completion'])).code, 2);
    const json = JSON.parse((await runCli(['completion', 'fish', '--json'])).stdout);
    assert.equal(json.shell, 'fish');
    assert.match(json.script, /^# fish completion for userns/);
  });
});

describe('the man page userns(1)', () => {
  const page = join(ROOT, 'dist/man/userns.1');

  test('built from the table: every command and option is in it', () => {
    const text = readFileSync(page, 'utf8');
    assert.match(text, new RegExp(`^\\.TH USERNS 1 "" "userns ${VERSION.replace(/\./g, '\\.')}"`, 'm'));
    for (const words of PATHS) {
      const name = words.join(' ') as CommandName;
      assert.match(text, new RegExp(`^\\.SS userns ${name}$`, 'm'));
      for (const long of Object.keys(COMMANDS[name].options)) {
        assert.ok(text.includes(`\\-\\-${long.replace(/-/g, '\\-')}`), `${name}: --${long}`);
      }
    }
  });

  test('groff reads it without a warning', { skip: missing('groff') }, () => {
    const r = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z', page], { encoding: 'utf8' });
    assert.equal(r.status, 0);
    assert.equal(r.stderr, '');
  });
});
