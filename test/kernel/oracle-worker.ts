/**
 * Runs INSIDE a user namespace P (as its root, with all capabilities in P) for the kernel
 * differential test. Reads cases from stdin (JSON lines: {id, kind, text}), creates a fresh child
 * namespace C for each through the native helper, writes `text` to C's map in ONE write(), and
 * prints what the kernel answered: {id, errno: null | 'EINVAL' | 'EPERM' | ..., readBack}.
 */
import { closeSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { launchHelper } from '../../src/native/helper.js';

interface Case {
  id: number;
  kind: 'uid' | 'gid';
  text: string;
  /** Write "deny" to the child's setgroups before its map (needed for unprivileged gid maps). */
  setgroupsDeny?: boolean;
}

async function runCase(c: Case): Promise<{ id: number; errno: string | null; readBack: string | null }> {
  const helper = await launchHelper({ namespaces: ['user'], command: ['/bin/true'] });
  try {
    if (c.setgroupsDeny) writeFileSync(`/proc/${helper.pid}/setgroups`, 'deny');
    const path = `/proc/${helper.pid}/${c.kind}_map`;
    const fd = openSync(path, 'w');
    let errno: string | null = null;
    try {
      const bytes = Buffer.from(c.text, 'latin1');
      // One write() of the whole buffer, as the kernel demands (a second write would fail).
      const written = writeSync(fd, bytes, 0, bytes.length);
      if (written !== bytes.length) errno = `SHORT_WRITE_${written}`;
    } catch (error) {
      errno = (error as NodeJS.ErrnoException).code ?? String(error);
    } finally {
      closeSync(fd);
    }
    const readBack = errno === null ? readFileSync(path, 'latin1') : null;
    return { id: c.id, errno, readBack };
  } finally {
    await helper.abort();
  }
}

const cases: Case[] = [];
for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() !== '') cases.push(JSON.parse(line) as Case);
}
// A few cases at a time: each is a process of its own, so this mostly waits on fork/exec.
const concurrency = 6;
let next = 0;
async function lane() {
  while (next < cases.length) {
    const c = cases[next++]!;
    process.stdout.write(`${JSON.stringify(await runCase(c))}\n`);
  }
}
await Promise.all(Array.from({ length: concurrency }, lane));
