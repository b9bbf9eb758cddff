// The test suite's guard of the machine's account files (used by scripts/run-tests.mjs, as root).
//
// Rootless tests create throwaway users (useradd/userdel) and add lines to /etc/subuid and
// /etc/subgid, because the real newuidmap reads only the real files. A run that changes them:
// 1. takes ONE machine-wide lock for the whole run: flock(2) on LOCK, held by the runner's own
//    open file description (util-linux `flock` locks the fd we pass it and exits; the lock lives
//    as long as the runner's fd: it is released by the kernel when the runner dies, even by
//    SIGKILL, and never by a stale PID file);
// 2. under the lock, restores the files from BACKUP_DIR if a previous holder died before it could
//    (its backup is still marked complete), then backs the files up (bytes, mode, owner);
// 3. after the run (also on SIGINT/SIGTERM/SIGHUP and on errors) puts every file back byte for
//    byte, removes the shadow lock files that dead processes left, and deletes the backup.
// LOCK is not /run/lock/userns-fullsuite.lock (developers hold that one around whole runs).
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  closeSync,
  constants,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';

export const LOCK = process.env.USERNS_TEST_ETC_LOCK || '/run/lock/userns-test-etc.lock';
export const BACKUP_DIR = process.env.USERNS_TEST_ETC_BACKUP || '/var/lib/userns-test/etc-backup';
const ETC = process.env.USERNS_TEST_ETC_DIR || '/etc';
const NAMES = ['passwd', 'group', 'shadow', 'gshadow', 'subuid', 'subgid'];
/** The files and the backups shadow's tools keep of them (`passwd-`, …). */
export const FILES = NAMES.flatMap((n) => [join(ETC, n), join(ETC, `${n}-`)]);

function sha(bytes) {
  return createHash('sha256').update(bytes).digest('hex');
}

function writeDurably(path, bytes, mode) {
  const fd = openSync(path, 'w', mode);
  try {
    writeSync(fd, bytes);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Takes the lock (waiting up to `waitSeconds`, saying so when it has to wait). Returns the fd that
 * holds it: keep it open for the whole run; closing it (or dying) releases the lock.
 */
export function acquireLock(waitSeconds = 1800) {
  mkdirSync(dirname(LOCK), { recursive: true });
  const fd = openSync(
    LOCK,
    constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_CLOEXEC,
    0o644,
  );
  const flock = (args) =>
    spawnSync('flock', [...args, '-x', '3'], { stdio: ['ignore', 'inherit', 'inherit', fd] });
  let r = flock(['-n']);
  if (r.error?.code === 'ENOENT') {
    closeSync(fd);
    throw new Error('flock (util-linux) is not installed: it locks the account files for the run');
  }
  if (r.status !== 0) {
    console.error(`run-tests: waiting for ${LOCK} (another userns test run is changing the account files)`);
    r = flock(['-w', String(waitSeconds)]);
  }
  if (r.status !== 0) {
    closeSync(fd);
    throw new Error(`cannot take ${LOCK} within ${waitSeconds} s (flock exited ${r.status})`);
  }
  return fd;
}

function manifestPath() {
  return join(BACKUP_DIR, 'manifest.json');
}

/** Restores the files from the backup (caller holds the lock). Returns the files it rewrote. */
export function restore() {
  const manifest = JSON.parse(readFileSync(manifestPath(), 'utf8'));
  const changed = [];
  for (const entry of manifest.files) {
    let current;
    try {
      current = readFileSync(entry.path);
    } catch {
      current = undefined;
    }
    if (!entry.exists) {
      if (current !== undefined) {
        unlinkSync(entry.path);
        changed.push(entry.path);
      }
      continue;
    }
    const saved = readFileSync(join(BACKUP_DIR, entry.copy));
    if (sha(saved) !== entry.sha256)
      throw new Error(`the backup of ${entry.path} in ${BACKUP_DIR} is damaged`);
    let same = current !== undefined && Buffer.compare(current, saved) === 0;
    if (same) {
      const st = statSync(entry.path);
      same = (st.mode & 0o7777) === entry.mode && st.uid === entry.uid && st.gid === entry.gid;
    }
    if (same) continue;
    const temp = join(
      dirname(entry.path),
      `.${basename(entry.path)}.userns-restore-${randomBytes(4).toString('hex')}`,
    );
    writeDurably(temp, saved, entry.mode);
    chmodSync(temp, entry.mode);
    chownSync(temp, entry.uid, entry.gid);
    renameSync(temp, entry.path);
    changed.push(entry.path);
  }
  // Shadow's lock files (`passwd.lock`, holding the locker's PID) left by a killed useradd.
  for (const name of NAMES) {
    const lock = join(ETC, `${name}.lock`);
    if (!existsSync(lock) || manifest.locks.includes(lock)) continue;
    const pid = Number(readFileSync(lock, 'latin1').trim());
    if (!(Number.isInteger(pid) && pid > 0 && existsSync(`/proc/${pid}`))) {
      rmSync(lock, { force: true });
      changed.push(lock);
    }
  }
  const dir = openSync(ETC, 'r');
  fsyncSync(dir);
  closeSync(dir);
  return changed;
}

/**
 * Under the lock: restores what a dead previous holder left changed, then backs the files up.
 * `runDir` (the run's temporary directory) is recorded, so that the next run can remove it if
 * this one dies. Returns the files restored for a dead holder and that holder's run directory.
 */
export function backup(runDir = null) {
  let recovered = [];
  let staleRunDir = null;
  if (existsSync(join(BACKUP_DIR, 'complete'))) {
    recovered = restore();
    try {
      staleRunDir = JSON.parse(readFileSync(manifestPath(), 'utf8')).runDir ?? null;
    } catch {
      // no record of it
    }
  }
  // A backup without its marker was cut short before any file changed: start afresh.
  rmSync(BACKUP_DIR, { recursive: true, force: true });
  mkdirSync(BACKUP_DIR, { recursive: true, mode: 0o700 });
  const files = [];
  for (const [i, path] of FILES.entries()) {
    let bytes;
    try {
      bytes = readFileSync(path);
    } catch (error) {
      if (error.code !== 'ENOENT') throw error;
      files.push({ path, exists: false });
      continue;
    }
    const st = statSync(path);
    const copy = `${i}-${basename(path)}`;
    writeDurably(join(BACKUP_DIR, copy), bytes, 0o600);
    files.push({
      path,
      exists: true,
      copy,
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      sha256: sha(bytes),
    });
  }
  const locks = NAMES.map((n) => join(ETC, `${n}.lock`)).filter((p) => existsSync(p));
  writeDurably(
    manifestPath(),
    JSON.stringify({ pid: process.pid, started: new Date().toISOString(), runDir, files, locks }),
    0o600,
  );
  writeDurably(join(BACKUP_DIR, 'complete'), '', 0o600);
  return { recovered, staleRunDir };
}

/** After the run: everything back, backup removed. Returns the files that had to be rewritten. */
export function restoreAndClear() {
  const changed = restore();
  rmSync(BACKUP_DIR, { recursive: true, force: true });
  return changed;
}
