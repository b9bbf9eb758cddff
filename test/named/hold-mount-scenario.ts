/**
 * The `--hold mount` scenario of hold.test.ts, run by it inside a private mount namespace with
 * the CPU pinned (`taskset -c 0 unshare -m --propagation private node THIS ROOT`): the binds then
 * die with that mount namespace whatever happens, and the kernel's mount-namespace id check
 * cannot misfire (docs/nsfs-handles.md section 7.3). Prints one JSON object of observations.
 */
import { spawnSync } from 'node:child_process';
import { lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { probeNsfs } from '../../src/native/nsfs.js';
import { cli, membersOf } from './hold-fixtures.js';

const root = process.argv[2]!;

const made = cli([
  'create',
  '--root',
  root,
  '--hold',
  'mount',
  '--uidmap',
  '0:200000:65536',
  '--unshare',
  'mount,uts,net',
  '--json',
  'm1',
]);
const state = made.code === 0 ? JSON.parse(made.stdout).state : null;
const user = state?.namespaces.find((n: { type: string }) => n.type === 'user');
const probe = 'cat /proc/self/uid_map; stat -L -c %i /proc/self/ns/user /proc/self/ns/net; hostname';
const members = user ? membersOf(user.inode, '0 200000 65536') : null;
const a = cli(['exec', '--root', root, 'm1', '--', 'sh', '-c', `hostname held; ${probe}`]);
const b = cli(['exec', '--root', root, 'm1', '--', 'sh', '-c', probe]);
// Through the bind files, as on a kernel without nsfs handles.
const byFile = cli(['exec', '--root', root, 'm1', '--', 'sh', '-c', probe], { USERNS_NSFS_HANDLES: '0' });
const holdDir = join(root, 'ns', 'm1', 'hold');
const holdFiles = readdirSync(holdDir).sort();
const holdInodes = Object.fromEntries(holdFiles.map((f) => [f, lstatSync(join(holdDir, f)).ino]));
const listed = JSON.parse(cli(['list', '--root', root, '--json']).stdout);
const inspected = cli(['inspect', '--root', root, 'm1']);
const pidRefused = cli(['create', '--root', root, '--hold', 'mount', '--unshare', 'pid', '--json', 'm2']);
const removed = cli(['rm', '--root', root, '--json', 'm1']);
// Gone for good: the user namespace no longer reopens (polled: deferred work in the kernel).
let afterRm: string | null = null;
for (let i = 0; i < 100 && user; i++) {
  afterRm = probeNsfs([user.handle]).handles[0]?.errno ?? null;
  if (afterRm !== null) break;
  spawnSync('sleep', ['0.02']);
}
const entryLeft = lstatSync(join(root, 'ns', 'm1'), { throwIfNoEntry: false }) !== undefined;

console.log(
  JSON.stringify({
    made,
    state,
    members,
    a,
    b,
    byFile,
    holdFiles,
    holdInodes,
    listed,
    inspected,
    pidRefused,
    removed,
    afterRm,
    entryLeft,
  }),
);
