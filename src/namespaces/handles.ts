/**
 * nsfs file handles of named namespaces (Linux 6.18+; the kernel's rules as measured in
 * docs/nsfs-handles.md): whether to use them, how a join picks its source (handle first, then
 * the holder: a keeper's pidfd or the bind-mounted files), and what a handle that no longer
 * reopens means for the asker.
 */
import { statSync } from 'node:fs';
import type { JoinNamespace, JoinSource } from '../native/helper.js';
import { probeNsfs } from '../native/nsfs.js';
import { holdFile } from './liveness.js';
import type { Paths } from './paths.js';
import type { Examined, NamespaceState } from './state.js';

/**
 * The switch that makes userns act as on a kernel without nsfs handles: USERNS_NSFS_HANDLES=0
 * (no handles recorded at create, joins through the keeper or the bind files, `--hold none`
 * refused). For tests of the fallbacks, and for a seccomp filter that refuses open_by_handle_at.
 */
export function handlesDisabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.USERNS_NSFS_HANDLES === '0';
}

/** The initial user namespace's inode (fixed: PROC_USER_INIT_INO). */
const INITIAL_USER_NAMESPACE = 0xeffffffd;

let ownUserNamespace: number | undefined;
function userNamespaceHere(): number {
  ownUserNamespace ??= statSync('/proc/self/ns/user').ino;
  return ownUserNamespace;
}

/**
 * Whether a handle of `state` that does not reopen (ESTALE) means "gone" when asked from here.
 * On 6.18 ESTALE also means "not permitted" (docs/nsfs-handles.md section 4): it is proof of
 * death only for an asker the kernel would have let in, i.e. root in the initial user namespace
 * or a process of the user namespace the creator ran in.
 */
export function staleMeansGone(state: Pick<NamespaceState, 'creatorUserNamespace'>): boolean {
  const here = userNamespaceHere();
  if (here === INITIAL_USER_NAMESPACE && process.geteuid?.() === 0) return true;
  return state.creatorUserNamespace !== undefined && state.creatorUserNamespace === here;
}

/** Every namespace of the state has a handle (and they may be used). */
export function hasHandles(state: Pick<NamespaceState, 'namespaces'>, env?: NodeJS.ProcessEnv): boolean {
  return !handlesDisabled(env) && state.namespaces.every((n) => typeof n.handle === 'string');
}

/**
 * How `exec` joins `state`: by nsfs handle when every namespace has one (never falling back to
 * a PID when one turns out stale), else by its holder: the keeper's pidfd (checked by start time
 * and inodes) or the bind-mounted files. undefined: no way (hold none without handles).
 */
export function joinSource(
  state: NamespaceState,
  paths: Paths,
  prefer?: 'handle' | 'holder',
): { source: JoinSource; namespaces: JoinNamespace[] } | undefined {
  const byHandle = hasHandles(state) && prefer !== 'holder';
  if (byHandle) {
    return {
      source: { via: 'handle' },
      namespaces: state.namespaces.map((n) => ({ type: n.type, inode: n.inode, handle: n.handle! })),
    };
  }
  if (state.hold === 'keeper' && state.keeperPid !== undefined) {
    return {
      source: {
        via: 'pid',
        pid: state.keeperPid,
        ...(state.keeperStartTime === undefined ? {} : { startTime: state.keeperStartTime }),
      },
      namespaces: state.namespaces.map((n) => ({ type: n.type, inode: n.inode })),
    };
  }
  if (state.hold === 'mount') {
    return {
      source: { via: 'file' },
      namespaces: state.namespaces.map((n) => ({
        type: n.type,
        inode: n.inode,
        file: holdFile(paths, n.type),
      })),
    };
  }
  return undefined;
}

/**
 * Settles, by asking the kernel with the recorded handles (one helper process for all), the
 * entries examine() could not judge from /proc and the state root: `none` holds (running →
 * running or gone) and keepers in a PID namespace /proc does not show (unknown → running, stale
 * or still unknown). Entries without usable handles stay as they are (none → unknown).
 */
export function settleByHandles(infos: Examined[], options: { helperPath?: string } = {}): Examined[] {
  const asks: { index: number; state: NamespaceState }[] = [];
  const out = [...infos];
  infos.forEach((info, index) => {
    const state = info.state;
    if (state === null) return;
    const pending = (state.hold === 'none' && info.status === 'running') || info.status === 'unknown';
    if (!pending) return;
    if (!hasHandles(state)) {
      if (state.hold === 'none')
        out[index] = {
          ...info,
          status: 'unknown',
          reason: handlesDisabled()
            ? 'it has no holder and nsfs handles are switched off (USERNS_NSFS_HANDLES=0): cannot check'
            : 'it has no holder and no nsfs handles: cannot check',
        };
      return;
    }
    asks.push({ index, state });
  });
  if (asks.length === 0) return out;
  const handles = asks.flatMap((a) => a.state.namespaces.map((n) => n.handle!));
  let answers: { errno: string | null; inode: number }[];
  try {
    answers = probeNsfs(handles, options).handles;
  } catch (error) {
    for (const a of asks)
      out[a.index] = {
        ...out[a.index]!,
        status: 'unknown',
        reason: `cannot ask the kernel: ${(error as Error).message}`,
      };
    return out;
  }
  let at = 0;
  for (const a of asks) {
    const info = out[a.index]!;
    const mine = a.state.namespaces.map((n) => ({ ns: n, answer: answers[at++] }));
    const missing = mine.find(
      (m) => m.answer === undefined || (m.answer.errno === null && m.answer.inode !== m.ns.inode),
    );
    const stale = mine.find((m) => m.answer?.errno === 'ESTALE' || m.answer?.errno === 'ENOENT');
    const other = mine.find((m) => m.answer !== undefined && m.answer.errno !== null && m !== stale);
    if (missing === undefined && stale === undefined && other === undefined) {
      out[a.index] =
        info.status === 'unknown'
          ? { ...info, status: 'running', reason: `${info.reason}; its namespaces answer by nsfs handle` }
          : { ...info, status: 'running' };
    } else if (stale !== undefined && staleMeansGone(a.state)) {
      const what = `its ${stale.ns.type} namespace no longer exists (nsfs handle: ESTALE)`;
      out[a.index] =
        a.state.hold === 'none'
          ? { ...info, status: 'gone', reason: `${what}: all its processes exited` }
          : { ...info, status: 'stale', reason: `${what}, so neither does its keeper` };
    } else {
      const why =
        missing !== undefined
          ? `its ${missing.ns.type} handle reopens another namespace`
          : stale !== undefined
            ? `its ${stale.ns.type} handle does not reopen (ESTALE), which from here may mean gone or not permitted`
            : `its ${other!.ns.type} handle cannot be reopened (${other!.answer!.errno})`;
      out[a.index] = {
        ...info,
        status: 'unknown',
        reason: info.status === 'unknown' ? `${info.reason}; ${why}` : why,
      };
    }
  }
  return out;
}
