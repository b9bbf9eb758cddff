/** `userns create NAME`: named namespaces kept alive by a keeper process, with their state on disk. */
import { UsageError } from '../errors.js';
import { type CliIo, type Command, parseCommandLine, writeJson } from './common.js';
import { namespaceText } from './inspect.js';
import { MAPPING_OPTIONS, parseMappingOptions } from './run.js';

export const HELP = `Usage: userns create [options] NAME

Creates a user namespace (and other namespaces on request) named NAME that outlives this
command: a small keeper process holds it (PID 1 of the new PID namespace, if there is one), and
its state (the maps as the kernel applied them, the keeper, the namespace identities) is kept
in ROOT/ns/NAME/state.json. Run commands in it with 'userns exec NAME -- COMMAND'; remove it
with 'userns rm NAME'.

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
  --root DIR             state root (default: /run/userns for root; else $XDG_RUNTIME_DIR/userns or ~/.local/state/userns)
  --json                 print the state as JSON
  -h, --help             this text

Examples:
  userns create dev                                   # your subordinate IDs, user namespace only
  userns create --unshare pid,mount,uts box
  userns exec box -- sh -c 'hostname box; hostname'
  userns create --uidmap 0:100000:65536 --mount /srv/data:/mnt:idmap data
  userns rm box
`;

const OPTIONS = { ...MAPPING_OPTIONS, root: { type: 'string' } } as const;

export const main: Command = async (argv: string[], io: CliIo): Promise<number> => {
  const { values, positionals } = parseCommandLine(argv, OPTIONS, 'create');
  if (values.help) {
    io.stdout.write(HELP);
    return 0;
  }
  const json = values.json === true;
  if (positionals.length !== 1) {
    throw new UsageError(positionals.length === 0 ? 'no NAME given' : 'create takes one NAME', {
      hint: "usage: userns create [options] NAME; see 'userns create --help'",
    });
  }
  const name = positionals[0]!;
  const warnings: string[] = [];
  const mapping = parseMappingOptions(values, { command: 'create', json, io, warnings });
  const { createNamespace, inspectNamespace } = await import('../store/namespaces.js');
  const root = values.root === undefined ? {} : { root: values.root };
  await createNamespace(name, { ...mapping, ...root });
  // The same layout as 'userns inspect NAME' (JSON and text): one shape to script against.
  const made = await inspectNamespace(name, root);
  if (json) {
    writeJson(io, { ok: true, ...made, warnings: [...warnings, ...made.warnings] });
    return 0;
  }
  io.stdout.write(`created ${name}\n${namespaceText(made)}`);
  for (const w of made.warnings) io.stderr.write(`userns: warning: ${w}\n`);
  return 0;
};
