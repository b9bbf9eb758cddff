import { lstatSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { SpawnError } from '../errors/index.js';
import type { IdMap } from '../idmap/idmap.js';
import { readIdMapSync, readSetgroupsSync } from '../system/proc.js';
import {
  type Accessor,
  findUnreachable,
  firstUnreachable,
  type Need,
  namespaceAccessor,
  type Unreachable,
  unreachableData,
} from '../system/reachability.js';

/**
 * Explains an EACCES of the helper's exec or chdir inside a namespace: the kernel said
 * "Permission denied", and the usual cause is not the file but a directory on the way that the
 * namespace's IDs cannot search (a command under /root, mode 0700, run with a map that does not
 * map host uid 0). Walks the path as that ID (src/system/reachability.ts) and, when a component
 * blocks, returns a SpawnError with the same code whose message names it, its mode and owner,
 * and the ID inside and outside (`data.unreachable`). Any other error is returned unchanged.
 */
export interface ExecContext {
  command: readonly string[];
  /** The directory the helper changed to inside (default: ours). */
  cwd?: string;
  /** The command's environment (its PATH is what execvp searched). */
  env?: NodeJS.ProcessEnv;
  uidMap: IdMap;
  gidMap: IdMap;
  /** The IDs the command ran as inside. */
  user: { uid: number; gid: number };
  setgroups: 'allow' | 'deny';
}

const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** What execvp tried: the path itself, or every PATH candidate that exists (first blocked one). */
function commandBlock(context: ExecContext, accessor: Accessor, cwd: string): Unreachable | undefined {
  const name = context.command[0] ?? '';
  if (name.includes('/'))
    return findUnreachable(isAbsolute(name) ? name : resolve(cwd, name), accessor, 'execute');
  const path = (context.env ?? process.env).PATH ?? DEFAULT_PATH;
  for (const dir of path.split(':')) {
    const candidate = resolve(cwd, join(dir === '' ? '.' : dir, name));
    if (!exists(candidate)) continue;
    const u = findUnreachable(candidate, accessor, 'execute');
    if (u !== undefined) return u;
  }
  return undefined;
}

export function explainUnreachable(error: unknown, context: ExecContext): unknown {
  if (!(error instanceof SpawnError) || error.errno !== 'EACCES') return error;
  const isExec = error.code === 'COMMAND_NOT_EXECUTABLE';
  const isCwd = error.code === 'CWD_FAILED';
  if (!isExec && !isCwd) return error;
  // setgroups(0, NULL) succeeded unless setgroups is denied; then the creator's groups stay.
  const groups = context.setgroups === 'allow' ? [] : (process.getgroups?.() ?? []);
  const accessor = namespaceAccessor(context, context.user, groups);
  if (accessor === undefined) return error;
  const cwd = context.cwd ?? process.cwd();
  let blocked: Unreachable | undefined;
  try {
    blocked = isExec ? commandBlock(context, accessor, cwd) : findUnreachable(cwd, accessor, 'search');
  } catch {
    return error; // the walk itself failed (a path we cannot see): keep the kernel's word
  }
  if (blocked === undefined || blocked.errno !== 'EACCES') return error;
  const what = isExec ? `cannot execute ${context.command[0]}` : `cannot change to directory ${cwd}`;
  const owner = blocked.owner;
  return new SpawnError(error.code, `${what}: ${blocked.reason}`, {
    ...(error.step === undefined ? {} : { step: error.step }),
    errno: 'EACCES',
    hint:
      owner !== null && blocked.need === 'search'
        ? `put it where uid ${accessor.uid} can reach it (e.g. under /usr/local or /opt), or map uid ${owner.uid} and gid ${owner.gid} into the namespace`
        : `make ${blocked.path} ${blocked.need === 'read' ? 'readable' : 'executable'} by uid ${accessor.uid}, or run as an ID that may ${blocked.need} it`,
    data: { ...error.data, unreachable: unreachableData(blocked, accessor, context.user) },
    cause: error,
  });
}

/** explainUnreachable() for a command that joined the namespaces of process `pid` (its maps). */
export function explainUnreachableIn(
  error: unknown,
  pid: number,
  context: Omit<ExecContext, 'uidMap' | 'gidMap' | 'setgroups'>,
): unknown {
  if (!(error instanceof SpawnError) || error.errno !== 'EACCES') return error;
  try {
    return explainUnreachable(error, {
      ...context,
      uidMap: readIdMapSync(pid, 'uid'),
      gidMap: readIdMapSync(pid, 'gid'),
      setgroups: readSetgroupsSync(pid),
    });
  } catch {
    return error; // the namespace is gone already: keep the kernel's word
  }
}

/** A path the command will need inside, and for what. */
export interface Reach {
  path: string;
  need: Need;
}

/**
 * Checks paths the command needs inside (e.g. reexec: node, the script, the working directory)
 * as the namespace's IDs would reach them. Returns a SpawnError PATH_UNREACHABLE naming the first
 * blocking component, its mode and owner, and the IDs inside and outside; undefined when all
 * pass. A model of the kernel's checks without ACLs (src/system/reachability.ts).
 */
export function unreachableError(
  needs: readonly Reach[],
  context: Pick<ExecContext, 'uidMap' | 'gidMap' | 'user' | 'setgroups'>,
): SpawnError | undefined {
  const groups = context.setgroups === 'allow' ? [] : (process.getgroups?.() ?? []);
  const accessor = namespaceAccessor(context, context.user, groups);
  if (accessor === undefined) return undefined;
  const blocked = firstUnreachable(needs, accessor);
  if (blocked !== undefined) {
    const path = blocked.target;
    const need = blocked.need;
    return new SpawnError(
      'PATH_UNREACHABLE',
      `${path} cannot be reached inside the namespace: ${blocked.reason}`,
      {
        errno: blocked.errno,
        hint:
          blocked.owner !== null && blocked.path !== path
            ? `install or copy it where uid ${accessor.uid} can reach it (not under a private directory), or map uid ${blocked.owner.uid} and gid ${blocked.owner.gid} into the namespace`
            : `make ${blocked.path} ${need === 'read' ? 'readable' : need === 'search' ? 'searchable' : 'executable'} by uid ${accessor.uid}, or map its owner into the namespace`,
        data: { unreachable: unreachableData(blocked, accessor, context.user) },
      },
    );
  }
  return undefined;
}
