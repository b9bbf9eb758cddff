/** `userns create NAME`: named namespaces held by a keeper, bind mounts or their command, with their state on disk. */
import { UsageError } from '../errors/index.js';
import {
  createNamespace,
  createNamespaceWithCommand,
  HOLD_MODES,
  type HoldMode,
} from '../namespaces/index.js';
import { type CliIo, type Command, foreground, parseCommandLine, writeJson } from './common.js';
import { MAPPING_OPTIONS, parseMappingOptions } from './mapping-options.js';

const HELP_HEAD = `Usage: userns create [options] NAME
       userns create --hold none [options] NAME -- COMMAND [ARGS...]

Creates a user namespace (and other namespaces on request) named NAME, records it in
ROOT/ns/NAME/state.json (the maps as the kernel applied them, how it is held, the identity of
each namespace: inode and nsfs handle), and keeps it alive as --hold says:

  keeper  a small keeper process holds it (PID 1 of the new PID namespace, if there is one).
          The default; works for everyone.
  mount   each namespace file is bind-mounted under ROOT/ns/NAME/hold/; no process remains.
          Root only (CAP_SYS_ADMIN over userns's mount namespace); not with a PID namespace.
  none    nothing holds it: COMMAND (after --) is its first process, and it lives as long as
          some process in it does; 'userns exec' joins it by nsfs handle (Linux 6.18+) while it
          lives, and fails with NS_GONE after. This command runs COMMAND in the foreground and
          exits with its status, like 'userns run'.

Run commands in it with 'userns exec NAME -- COMMAND'; remove it with 'userns rm NAME'.
`;
const HELP_OPTIONS = `
NAME: 1 to 128 characters of [A-Za-z0-9_+.-], not "." or "..".

Options (the mapping and namespace options of 'userns run'):
  --userns MODE          auto (default), self, keep-id, identity (see 'userns run --help')
  --uidmap MAP           uid map in podman syntax, INSIDE:OUTSIDE[:COUNT][,...]; repeatable
  --gidmap MAP           gid map (default: the same as --uidmap when only that is given)
  --unshare LIST         more namespaces: mount,pid,uts,ipc,net,cgroup or all
                         (pid: the keeper is PID 1 and mounts a fresh /proc)
  --setgroups allow|deny what /proc/PID/setgroups should say (default: leave it)
  --user UID[:GID]       IDs that 'userns exec' runs as by default (default 0:0)
  --mount SRC:DST[:OPTIONS]
                         bind SRC on DST in the new mount namespace (ro, rbind, idmap,
                         idmap=INSIDE:ONDISK[:COUNT]; see 'userns run --help'); 'userns exec'
                         sees it; repeatable
  --no-split             write the maps as given (see 'userns run --help')
  --fallback single      map only your own IDs (with a warning) if your subordinate ranges fail
  --newuidmap PATH       newuidmap to use (default: from PATH); --newgidmap PATH likewise
  --hold keeper|mount|none
                         how it is kept alive (see above; default keeper)
  --root DIR             state root (default: /run/userns for root; else $XDG_RUNTIME_DIR/userns or ~/.local/state/userns)
  --json                 print the state as JSON (with --hold none: errors only; COMMAND owns stdout)
  -h, --help             this text

Exit status: 0 when created (with --hold none: COMMAND's status, 125 when userns failed, 126/127
when COMMAND cannot be executed / is not found); 1 when it cannot be created; 2 for usage errors.

Examples:
  userns create dev                                   # your subordinate IDs, user namespace only
  userns create --unshare pid,mount,uts box
  userns exec box -- sh -c 'hostname box; hostname'
  userns create --uidmap 0:100000:65536 --mount /srv/data:/mnt:idmap data
  userns create --hold mount --unshare net vpn         # as root: no process holds it
  userns create --hold none --unshare pid,mount job -- sleep 600 &
  userns exec job -- ps -e                            # joined by nsfs handle
  userns rm box
`;

export const HELP = HELP_HEAD + HELP_OPTIONS;

const OPTIONS = { ...MAPPING_OPTIONS, root: { type: 'string' }, hold: { type: 'string' } } as const;

export const main: Command = async (argv: string[], io: CliIo): Promise<number> => {
  const dashes = argv.indexOf('--');
  const own = dashes < 0 ? argv : argv.slice(0, dashes);
  const command = dashes < 0 ? [] : argv.slice(dashes + 1);
  const { values, positionals } = parseCommandLine(own, OPTIONS, 'create');
  if (values.help) {
    io.stdout.write(HELP);
    return 0;
  }
  const json = values.json === true;
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0 ? 'no NAME given' : 'create takes one NAME (a command goes after --)',
      {
        hint: "usage: userns create [options] NAME; see 'userns create --help'",
      },
    );
  }
  const hold = (values.hold ?? 'keeper') as HoldMode;
  if (!HOLD_MODES.includes(hold)) {
    throw new UsageError(`--hold must be keeper, mount or none, not '${values.hold}'`, {
      hint: "see 'userns create --help'",
    });
  }
  if ((hold === 'none') !== command.length > 0) {
    throw new UsageError(
      hold === 'none'
        ? '--hold none needs a command after --: the namespace lives as long as its processes'
        : `a command after -- needs --hold none (with --hold ${hold} nothing runs in it)`,
      { hint: "usage: userns create --hold none [options] NAME -- COMMAND; see 'userns create --help'" },
    );
  }
  const name = positionals[0]!;
  const warnings: string[] = [];
  const mapping = parseMappingOptions(values, { command: 'create', json, io, warnings });
  const where = values.root === undefined ? {} : { root: values.root };
  if (hold === 'none') {
    return foreground(
      () => createNamespaceWithCommand(name, command, { ...mapping, ...where, stdio: 'inherit' }),
      io,
      json,
    );
  }
  const state = await createNamespace(name, { ...mapping, ...where, hold });
  if (json) {
    writeJson(io, { ok: true, ...state });
    return 0;
  }
  const triples = (m: [number, number, number][]) => m.map((t) => t.join(':')).join(',');
  const holder =
    state.hold === 'keeper' ? `keeper PID ${state.keeperPid}` : 'held by bind mounts (no process)';
  io.stdout.write(
    `created ${name}: ${holder}, namespaces ${state.namespaces.map((n) => n.type).join(',')}\n` +
      `  uid map ${triples(state.uidMap)}\n  gid map ${triples(state.gidMap)}\n  setgroups ${state.setgroups}\n`,
  );
  return 0;
};
