/**
 * Helpers for the doctor tests: edits of the real /etc/subuid and /etc/subgid under shadow's
 * lock protocol (`FILE.lock` created with link(2), holding the locker's PID: the same protocol
 * useradd/usermod and the throwaway-user fixture use), always undone by the caller.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  closeSync,
  fsyncSync,
  linkSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import type { Check, DoctorReport } from '../../src/doctor/types.js';
import { parseSubid } from '../../src/idmap/formats/subid.js';

export const SUBUID = '/etc/subuid';
export const SUBGID = '/etc/subgid';

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function withLock<T>(path: string, fn: () => T): T {
  const lock = `${path}.lock`;
  const mine = `${path}.${process.pid}`;
  const fd = openSync(mine, 'w', 0o600);
  writeSync(fd, String(process.pid));
  closeSync(fd);
  const deadline = Date.now() + 30_000;
  try {
    for (;;) {
      try {
        linkSync(mine, lock);
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      let holder = Number.NaN;
      try {
        holder = Number(readFileSync(lock, 'utf8').trim());
      } catch {
        continue;
      }
      if (Number.isInteger(holder) && holder > 0 && !alive(holder)) {
        rmSync(lock, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`cannot lock ${path}`);
      sleep(20);
    }
  } finally {
    unlinkSync(mine);
  }
  try {
    return fn();
  } finally {
    unlinkSync(lock);
  }
}

/** Rewrites a file atomically (temp + rename, owner and mode kept), under its shadow lock. */
function rewrite(path: string, edit: (text: string) => string): void {
  withLock(path, () => {
    const text = readFileSync(path, 'utf8');
    const st = statSync(path);
    const updated = edit(text);
    if (updated === text) return;
    const temp = `${path}.doctor-tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    const fd = openSync(temp, 'wx', st.mode & 0o7777);
    try {
      writeSync(fd, updated);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(temp, st.mode & 0o7777);
    chownSync(temp, st.uid, st.gid);
    renameSync(temp, path);
  });
}

/**
 * Appends `lines` (full `owner:start:count` texts) to a subid file; returns a function that
 * removes exactly those lines again (call it in finally).
 */
export function addSubidLines(path: string, lines: string[]): () => void {
  rewrite(
    path,
    (t) => `${t}${t === '' || t.endsWith('\n') ? '' : '\n'}${lines.map((l) => `${l}\n`).join('')}`,
  );
  return () =>
    rewrite(path, (t) => {
      const out = t.split('\n');
      for (const line of lines) {
        const i = out.indexOf(line);
        if (i >= 0) out.splice(i, 1);
      }
      return out.join('\n');
    });
}

/** A random 65536-aligned start in [3.2e9, 4e9) that no line of either file touches. */
export function freeStart(count = 65536): number {
  const taken = [SUBUID, SUBGID].flatMap((p) => {
    try {
      return parseSubid(readFileSync(p, 'utf8')).entries;
    } catch {
      return [];
    }
  });
  const lo = Math.ceil(3_200_000_000 / 65536);
  const hi = Math.floor((4_000_000_000 - count) / 65536);
  for (let i = 0; i < 1000; i++) {
    const start = randomInt(lo, hi + 1) * 65536;
    if (taken.every((r) => start + count <= r.start || r.start + r.count <= start)) return start;
  }
  throw new Error('no free range');
}

export function find(report: { checks: readonly Check[] } | DoctorReport, id: string): Check {
  const c = report.checks.find((x) => x.id === id);
  assert.ok(c, `no check ${id} in ${report.checks.map((x) => x.id).join(', ')}`);
  return c;
}

export function errors(report: { checks: readonly Check[] }): Check[] {
  return report.checks.filter((c) => c.status === 'error');
}

/** For assertion messages: the non-ok checks. */
export function summary(report: { checks: readonly Check[] }): string {
  return report.checks
    .filter((c) => c.status !== 'ok' && c.status !== 'skipped')
    .map((c) => `${c.id} ${c.status}: ${c.message}`)
    .join('\n');
}

/** The JSON of `userns doctor --json`. */
export interface DoctorJson {
  ok: boolean;
  user: { name: string; uid: number; gid: number };
  checks: {
    id: string;
    status: string;
    message: string;
    evidence: Record<string, unknown>;
    fix: string | null;
  }[];
}
