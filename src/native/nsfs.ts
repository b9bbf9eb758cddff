/**
 * The helper's bind and probe modes (protocol.md "Bind mode", "Probe mode"): bind-mount a
 * process's namespace files onto files and unmount them again, and ask the kernel whether nsfs
 * file handles and pidfds work and whether given handles still reopen, and read files' POSIX
 * access ACLs (Node has no getxattr). Plain facts only: what they mean (gone, not permitted,
 * kernel too old, who an ACL lets in) is decided by the callers (src/namespaces/, src/doctor/,
 * src/oci/), from the rules measured in docs/nsfs-handles.md and docs/oci-runtime-rules.md.
 */
import { spawnSync } from 'node:child_process';
import { errnoName, type HelperFailure, helperPath, type Namespace, parseFailure } from './helper.js';

/** Results of the probe: errno names, or null where the call worked. */
export interface NsfsProbe {
  /** name_to_handle_at on /proc/self/ns/user (EOPNOTSUPP: kernel before 6.18). */
  encode: string | null;
  /** open_by_handle_at(FD_NSFS_ROOT) of that handle, checked by inode (EBADF: kernel before 6.18). */
  decode: string | null;
  /** pidfd_open on the helper itself (ENOSYS: kernel before 5.3). */
  pidfd: string | null;
  /** Per handle asked about, in order: null and the inode it reopened, or the errno name and 0. */
  handles: { errno: string | null; inode: number }[];
}

export interface NsfsOptions {
  helperPath?: string;
  /** Act as a kernel without nsfs handles (the tests' switch, USERNS_NSFS_HANDLES=0). */
  noHandles?: boolean;
}

/** Runs the helper in a report-only mode; its report lines, or the failure it reported. */
function runReporting(args: string[], options: NsfsOptions): { lines: string[]; failure?: HelperFailure } {
  const r = spawnSync(helperPath(options.helperPath), args, {
    stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
    timeout: 10_000,
  });
  if (r.error !== undefined) throw r.error;
  const lines = String(r.output[3] ?? '')
    .split('\n')
    .filter((l) => l !== '');
  const error = lines.find((l) => l.startsWith('error '));
  const failure = error === undefined ? undefined : parseFailure(error);
  if (failure === undefined && r.status !== 0) {
    return {
      lines,
      failure: {
        step: 'helper',
        errno: 'EIO',
        detail: `the helper exited with ${r.status ?? r.signal}: ${String(r.stderr ?? '').trim()}`,
        report: '',
      },
    };
  }
  return failure === undefined ? { lines } : { lines, failure };
}

/**
 * Asks the kernel, from a fresh helper process, whether nsfs handles and pidfds work, and
 * whether each of `handles` ("<type hex>:<payload hex>") still reopens (and to which inode).
 */
export function probeNsfs(handles: readonly string[] = [], options: NsfsOptions = {}): NsfsProbe {
  const args = ['--mode=probe', `--ppid=${process.pid}`, ...handles.map((h) => `--handle=${h}`)];
  if (options.noHandles) args.push('--no-handles');
  const { lines, failure } = runReporting(args, options);
  if (failure !== undefined)
    throw Object.assign(new Error(`nsfs probe failed: ${failure.detail}`), { failure });
  // 95 is both ENOTSUP and EOPNOTSUPP on Linux; the kernel's name for what it means here is EOPNOTSUPP.
  const name = (n: string) => (n === '0' ? null : n === '95' ? 'EOPNOTSUPP' : errnoName(Number(n)));
  const out: NsfsProbe = { encode: 'EIO', decode: 'EIO', pidfd: 'EIO', handles: [] };
  for (const line of lines) {
    let m = /^nsfs (\d+) (\d+)$/.exec(line);
    if (m !== null) {
      out.encode = name(m[1]!);
      out.decode = name(m[2]!);
      continue;
    }
    m = /^pidfd (\d+)$/.exec(line);
    if (m !== null) {
      out.pidfd = name(m[1]!);
      continue;
    }
    m = /^handle (\d+) (\d+) (\d+)$/.exec(line);
    if (m !== null) out.handles[Number(m[1])] = { errno: name(m[2]!), inode: Number(m[3]) };
  }
  return out;
}

/**
 * Bind-mounts /proc/<pid>/ns/<type> onto each `file` (an existing regular file, never reached
 * through a symbolic link). Returns the types bound, in order, and the failure that stopped it
 * (the caller unbinds what was bound).
 */
export function bindNamespaceFiles(
  pid: number,
  binds: readonly { type: Namespace; file: string }[],
  options: NsfsOptions = {},
): { bound: Namespace[]; failure?: HelperFailure } {
  const args = [
    '--mode=bind',
    `--ppid=${process.pid}`,
    `--bind-from=${pid}`,
    ...binds.map((b) => `--bind=${b.type}:${b.file}`),
  ];
  const { lines, failure } = runReporting(args, options);
  const bound = lines.filter((l) => l.startsWith('bound ')).map((l) => l.slice(6) as Namespace);
  return failure === undefined ? { bound } : { bound, failure };
}

/**
 * Detaches the mount on each file (umount2 MNT_DETACH, not following a final symlink). Per file:
 * null when unmounted, 'EINVAL' when nothing was mounted there, else the errno name.
 */
export function unbindFiles(files: readonly string[], options: NsfsOptions = {}): (string | null)[] {
  if (files.length === 0) return [];
  const { lines, failure } = runReporting(
    ['--mode=bind', `--ppid=${process.pid}`, ...files.map((f) => `--unbind=${f}`)],
    options,
  );
  if (failure !== undefined) return files.map(() => failure.errno);
  const results = lines.filter((l) => l.startsWith('unbound ')).map((l) => Number(l.slice(8)));
  return files.map((_, i) => {
    const n = results[i];
    if (n === undefined) return 'EIO';
    return n === 0 ? null : errnoName(n);
  });
}

/** One file's access ACL as the probe read it (protocol.md "Probe mode", `--acl`). */
export type AccessAclRead =
  | { bytes: Buffer }
  /** The getxattr errno: ENODATA (no ACL beyond the mode bits), EOPNOTSUPP (no ACLs here), … */
  | { errno: string };

/**
 * Reads the `system.posix_acl_access` xattr of each path (absolute; the last link is followed,
 * so name a descriptor this process holds as `/proc/<pid>/fd/<n>`), from a fresh helper process
 * (Node has no getxattr). Plain bytes or the errno, in order; what they mean is decided by the
 * caller (src/system/posix-acl.ts decodes and evaluates them). Throws when the helper fails.
 */
export function readAccessAcls(paths: readonly string[], options: NsfsOptions = {}): AccessAclRead[] {
  if (paths.length === 0) return [];
  const out: AccessAclRead[] = [];
  // The helper takes at most 64 options of a kind: ask in batches.
  for (let start = 0; start < paths.length; start += 64) {
    const batch = paths.slice(start, start + 64);
    const { lines, failure } = runReporting(
      ['--mode=probe', `--ppid=${process.pid}`, ...batch.map((p) => `--acl=${p}`)],
      options,
    );
    if (failure !== undefined)
      throw Object.assign(new Error(`ACL probe failed: ${failure.detail}`), { failure });
    const found: AccessAclRead[] = [];
    for (const line of lines) {
      const m = /^acl (\d+) (\d+) (-|[0-9a-f]+)$/.exec(line);
      if (m === null) continue;
      const n = Number(m[2]);
      found[Number(m[1])] =
        n === 0
          ? { bytes: Buffer.from(m[3] === '-' ? '' : m[3]!, 'hex') }
          : { errno: n === 95 ? 'EOPNOTSUPP' : errnoName(n) };
    }
    for (let i = 0; i < batch.length; i++) out.push(found[i] ?? { errno: 'EIO' });
  }
  return out;
}
