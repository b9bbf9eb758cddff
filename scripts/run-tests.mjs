// Runs every compiled test file with Node's own test runner (node:test), and makes the run safe
// to repeat on a shared machine:
//
// - every test and hook has a timeout (scripts/test-timeouts.mjs: 45 s, USERNS_TEST_TIMEOUT_MS;
//   a longer one only where a test names its own and says why), so a hang fails as that test, by
//   name; failures are printed as they happen; --test-force-exit ends a file whose tests are done
//   even when something it started still holds the event loop;
//   and the whole run has a deadline (USERNS_TEST_DEADLINE_S, default 1200 s) after which it is
//   killed and the tests still running are named;
// - the run gets its own TMPDIR (a fresh directory under the temporary directory, searchable by
//   the throwaway users); files the tests leave there fail the run, and it is removed;
// - as root, the account files the rootless tests change (/etc/passwd, group, shadow, gshadow,
//   subuid, subgid) are locked for the run and restored byte for byte afterwards, also after a
//   run that was killed (scripts/test-etc-guard.mjs);
// - skips are counted and printed with their reasons; with CI=true a skip fails the run unless
//   its reason starts with "kernel:" (a kernel feature this machine lacks) or "machine:" (a
//   restriction of the machine no package lifts, e.g. a capability its sandbox dropped):
//   everything else a test can need (root, cc, newuidmap, runc, setpriv, useradd… the things
//   scripts/install-test-deps installs) the CI machine must have.
//
// Usage: node scripts/run-tests.mjs [SUBSTRING…]   (only test files whose path contains one)
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { acquireLock, backup, restoreAndClear } from './test-etc-guard.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const testDir = join(root, 'dist/test');
const filter = process.argv.slice(2);
const CI = process.env.CI === 'true';
const DEADLINE_MS = Number(process.env.USERNS_TEST_DEADLINE_S || 1200) * 1000;
const isRoot = process.geteuid?.() === 0;

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return walk(path);
    return entry.name.endsWith('.test.js') ? [path] : [];
  });
}

const files = walk(testDir)
  .filter((file) => filter.length === 0 || filter.some((f) => file.includes(f)))
  .sort();
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}

/** Whether every directory from / to `dir` is searchable by others (mode bits). */
function othersCanSearch(dir) {
  for (let path = dir; ; path = dirname(path)) {
    try {
      if ((statSync(path).mode & 0o001) === 0) return false;
    } catch {
      return false;
    }
    if (path === '/') return true;
  }
}

// The run's own temporary directory: <base>/userns-test-XXXXXX/tmp is the tests' TMPDIR.
const base = othersCanSearch(tmpdir()) ? tmpdir() : '/tmp';
const runDir = mkdtempSync(join(base, 'userns-test-'));
chmodSync(runDir, 0o711);
const testTmp = join(runDir, 'tmp');
mkdirSync(testTmp, { mode: 0o711 });
chmodSync(testTmp, 0o711); // throwaway users need to reach their homes in it (umask aside)
const eventsFile = join(runDir, 'events.jsonl');

let lockFd;
let guarding = false;
let child;
let finishing = false;

function cleanup() {
  const problems = [];
  if (guarding) {
    try {
      const changed = restoreAndClear();
      if (changed.length > 0)
        console.error(`run-tests: restored ${changed.join(', ')} as they were before the run`);
      guarding = false;
    } catch (error) {
      problems.push(
        `restoring the account files failed: ${error.message} (the backup stays in place; the next run restores it)`,
      );
    }
  }
  if (lockFd !== undefined) {
    closeSync(lockFd);
    lockFd = undefined;
  }
  return problems;
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    if (finishing) return;
    finishing = true;
    console.error(`run-tests: ${signal}: stopping the tests`);
    stopChild().then(() => {
      for (const p of cleanup()) console.error(`run-tests: ${p}`);
      rmSync(runDir, { recursive: true, force: true });
      process.exit(128 + ({ SIGINT: 2, SIGTERM: 15, SIGHUP: 1 }[signal] ?? 0));
    });
  });
}

function stopChild() {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', resolve);
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      resolve();
    }
    setTimeout(() => {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }, 5000).unref();
  });
}

if (isRoot) {
  try {
    lockFd = acquireLock();
    const { recovered, staleRunDir } = backup(runDir);
    guarding = true;
    if (recovered.length > 0)
      console.error(
        `run-tests: a test run that died left ${recovered.join(', ')} changed: restored them from its backup`,
      );
    if (
      typeof staleRunDir === 'string' &&
      /\/userns-test-[^/]+$/.test(staleRunDir) &&
      existsSync(staleRunDir)
    ) {
      rmSync(staleRunDir, { recursive: true, force: true });
      console.error(`run-tests: removed ${staleRunDir}, left by a test run that died`);
    }
  } catch (error) {
    for (const p of cleanup()) console.error(`run-tests: ${p}`);
    rmSync(runDir, { recursive: true, force: true });
    console.error(`run-tests: ${error.message}`);
    process.exit(1);
  }
}

// Throwaway users are created only under the lock above, so a new /tmp entry owned by a UID
// that no longer has a passwd entry afterwards was left by one of this run's users.
const tmpBefore = isRoot ? new Set(readdirSync('/tmp')) : new Set();

// --test-force-exit (Node ≥ 20.14): a file whose tests are done ends even if a leftover holds it.
const forceExit = spawnSync(process.execPath, ['--test-force-exit', '-e', '0']).status === 0;

// Timeouts are sized for a machine that runs this suite alone; say so when it does not.
const [load] = loadavg();
if (load > 2 * availableParallelism())
  console.error(
    `run-tests: load average ${load.toFixed(1)} on ${availableParallelism()} CPUs: tests may hit their timeouts (USERNS_TEST_TIMEOUT_MS raises the default of 45000)`,
  );

const started = Date.now();
let timedOut = false;
const exit = await new Promise((resolve) => {
  child = spawn(
    process.execPath,
    [
      '--test',
      '--test-concurrency=2',
      ...(forceExit ? ['--test-force-exit'] : []),
      `--import=${pathToFileURL(join(root, 'scripts/test-timeouts.mjs')).href}`,
      '--test-reporter=spec',
      '--test-reporter-destination=stdout',
      `--test-reporter=${join(root, 'scripts/test-reporter.mjs')}`,
      '--test-reporter-destination=/dev/null', // it appends to USERNS_TEST_EVENTS itself
      ...files,
    ],
    {
      // The lock's fd goes to node --test too (as fd 3): if this runner is killed, the lock stays
      // held until the tests it started are gone, and only then can the next run restore.
      stdio: lockFd === undefined ? 'inherit' : ['inherit', 'inherit', 'inherit', lockFd],
      detached: true,
      // Hermetic: a fleet registry configured in the caller's environment must not change what
      // the tests' allocations talk to (the fleet tests give theirs explicitly).
      env: (({ USERNS_REGISTRY: _r, USERNS_NODE: _n, ...env }) => ({
        ...env,
        TMPDIR: testTmp,
        USERNS_TEST_EVENTS: eventsFile,
      }))(process.env),
    },
  );
  const deadline = setTimeout(() => {
    timedOut = true;
    console.error(`run-tests: the run exceeded its deadline of ${DEADLINE_MS / 1000} s: killing it`);
    stopChild();
  }, DEADLINE_MS);
  child.on('exit', (code, signal) => {
    clearTimeout(deadline);
    resolve({ code, signal });
  });
});
const seconds = ((Date.now() - started) / 1000).toFixed(1);

// --- summary ---------------------------------------------------------------------------------
const records = existsSync(eventsFile)
  ? readFileSync(eventsFile, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l))
  : [];
const where = (r) => `${r.file ? relative(root, r.file) : '?'} › ${r.name}`;
const done = records.filter((r) => r.type !== 'test:start');
const tests = done.filter((r) => r.kind !== 'suite');
const failed = tests.filter((r) => r.type === 'test:fail');
const fileFailures = done.filter(
  (r) =>
    r.kind === 'suite' &&
    r.type === 'test:fail' &&
    !done.some((t) => t.kind !== 'suite' && t.file === r.file && t.type === 'test:fail'),
);
const skipped = done.filter((r) => r.skip !== undefined);
const passed = tests.filter((r) => r.type === 'test:pass' && r.skip === undefined && r.todo === undefined);
const problems = [];

console.log(`\nrun-tests: ${seconds} s, ${tests.length} tests`);
console.log(`skipped: ${skipped.length}`);
for (const s of skipped)
  console.log(
    `  - ${where(s)}${s.kind === 'suite' ? ' (whole suite)' : ''}: ${s.skip || '(no reason given)'}`,
  );
if (CI) {
  for (const s of skipped) {
    if (!/^(kernel|machine):/.test(s.skip ?? ''))
      problems.push(
        `CI=true: ${where(s)} was skipped for a reason the CI machine must satisfy: ${s.skip || '(no reason given)'}`,
      );
  }
}
for (const f of [...failed, ...fileFailures]) problems.push(`failed: ${where(f)}: ${f.error}`);
if (timedOut) {
  const finished = new Set(done.map((r) => `${r.file}\0${r.name}\0${r.nesting}`));
  const running = records.filter(
    (r) => r.type === 'test:start' && !finished.has(`${r.file}\0${r.name}\0${r.nesting}`),
  );
  problems.push(
    `the run was killed at its deadline; still running: ${running.map(where).join('; ') || '(unknown)'}`,
  );
}
if (exit.code !== 0 && failed.length === 0 && fileFailures.length === 0 && !timedOut)
  problems.push(
    `node --test exited ${exit.code ?? exit.signal} without a failed test (a test file crashed?)`,
  );

// Whatever the tests left in their TMPDIR is a leak (the throwaway users' homes, staged copies…).
const leftovers = existsSync(testTmp) ? readdirSync(testTmp) : [];
if (leftovers.length > 0)
  problems.push(`tests left files in their TMPDIR ${testTmp}: ${leftovers.join(', ')}`);
if (isRoot) {
  for (const name of readdirSync('/tmp')) {
    if (tmpBefore.has(name)) continue;
    let uid;
    try {
      uid = statSync(join('/tmp', name)).uid;
    } catch {
      continue;
    }
    if (uid === 0 || spawnSync('getent', ['passwd', String(uid)]).status !== 2) continue;
    problems.push(`a throwaway user of this run (uid ${uid}, removed since) left /tmp/${name}: removed it`);
    rmSync(join('/tmp', name), { recursive: true, force: true });
  }
}
problems.push(...cleanup());
rmSync(runDir, { recursive: true, force: true });

for (const p of problems) console.error(`run-tests: ${p}`);
console.log(`${passed.length} passed, ${failed.length} failed, ${skipped.length} skipped`);
process.exit(problems.length > 0 ? 1 : 0);
