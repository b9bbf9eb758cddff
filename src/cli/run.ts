/** `userns run`: run a command in new user (and other) namespaces. */
import type { AutoUserns } from '../alloc/auto.js';
import { UsageError, UsernsError } from '../errors/index.js';
import { planSpawn, spawn } from '../spawn/spawn.js';
import { forwardSignals } from '../system/signals.js';
import {
  type CliIo,
  type Command,
  exitStatus,
  failureStatus,
  parseCommandLine,
  reportError,
  writeJson,
} from './common.js';
import { MAPPING_OPTIONS, type MappingOptions, parseMappingOptions } from './mapping-options.js';

export const HELP = `Usage: userns run [options] [--] COMMAND [ARGS...]

Runs COMMAND in a new user namespace (and other namespaces on request) with the ID maps you ask
for, written exactly as the kernel wants them: cut at the current namespace's extents, validated,
each map in one write, through newuidmap/newgidmap when you are not root.

Options:
  --userns MODE          how to map IDs when no --uidmap/--gidmap is given (default: auto)
                           auto      root: every ID (0 0 4294967295); others: 0 = you,
                                     1… = your /etc/subuid ranges (like 'podman unshare')
                           self      only you, as 0 (like 'unshare -r')
                           keep-id   your uid stays your uid inside; subordinate IDs around it
                           identity  inside = outside for every ID you can map
                           auto:size=N[,uidmapping=M][,gidmapping=M][,policy=P]
                                     a fresh range of N IDs from the allocation registry
                                     (see 'userns alloc'), released when the command ends
  --uidmap MAP           uid map in podman syntax, [+][u|g]INSIDE:[@]OUTSIDE[:COUNT][,...];
                         repeatable (OUTSIDE = IDs of the namespace userns runs in, @OUTSIDE =
                         host IDs); a leading + entry fills the rest from the IDs you may
                         map, as rootless podman does
  --gidmap MAP           gid map (default: the same as --uidmap when only that is given)
  --unshare LIST         more namespaces: mount,pid,uts,ipc,net,cgroup or all
                         (pid mounts a fresh /proc; the command is PID 1)
  --setgroups allow|deny what /proc/PID/setgroups should say (default: leave it)
  --user UID[:GID]       IDs to run as inside (default 0:0)
  --mount SRC:DST[:OPTIONS]
                         bind SRC on DST in a new mount namespace before COMMAND starts
                         (adds mount to --unshare); repeatable. OPTIONS, comma-separated:
                           ro            read-only (the command cannot make it writable)
                           rbind         with the mounts below SRC
                           idmap         idmapped with the namespace's maps: a file owned
                                         by N on disk appears inside as owned by N
                           idmap=MAP     MAP = [u|g]INSIDE:ONDISK[:COUNT],… : on-disk ONDISK
                                         appears as INSIDE (idmap=0:1000 shows 1000's files
                                         as root's); u/g: uids or gids only
                         Relative paths are taken from the current directory; DST must exist.
  --no-split             write the maps as given, without cutting lines at the current
                         namespace's extents (the kernel then refuses lines that span two)
  --fallback single      if mapping your subordinate ranges fails, map only your own IDs
                         (with a warning) instead of failing
  --newuidmap PATH       newuidmap to use (default: from PATH); --newgidmap PATH likewise
  --dry-run              print the maps and the newuidmap/newgidmap command lines, run nothing
  --json                 machine-readable output (with --dry-run, and for errors)
  -h, --help             this text

Exit status: the command's, or 128+N when it was killed by signal N; 125 when userns itself
failed, 126 when the command cannot be executed, 127 when it is not found, 2 for usage errors.
SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH are forwarded to the command.

Examples:
  userns run -- id                                 # root inside, your subordinate IDs mapped
  userns run --userns self -- sh                   # like 'unshare -r'
  userns run --uidmap 0:100000:65536 -- cat /proc/self/uid_map
  userns run --uidmap 0:1000:1 --uidmap 1:100000:65536 --dry-run -- true
  userns run --unshare pid,uts,net -- sh -c 'echo $$; hostname inside'
  userns run --userns keep-id -- id -u            # your own uid inside
  userns run --uidmap 0:100000:65536 --mount /srv/data:/mnt:idmap -- ls -ln /mnt
  userns run --mount ~/src:/mnt:ro,idmap=0:1000 -- id    # 1000's files as root's, read-only

When something cannot be mapped, the error says which IDs and why; 'userns doctor' checks the
whole setup (newuidmap, /etc/subuid, kernel settings).
`;

const VALUE_OPTIONS = new Set([
  '--userns',
  '--uidmap',
  '--gidmap',
  '--unshare',
  '--setgroups',
  '--user',
  '--fallback',
  '--newuidmap',
  '--newgidmap',
  '--mount',
]);

/** Splits the arguments at `--` or at the first one that is not an option (the command). */
export function splitCommand(argv: string[]): { options: string[]; command: string[] } {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return { options: argv.slice(0, i), command: argv.slice(i + 1) };
    if (!a.startsWith('-') || a === '-') return { options: argv.slice(0, i), command: argv.slice(i) };
    if (VALUE_OPTIONS.has(a)) i++;
  }
  return { options: argv, command: [] };
}

const OPTIONS = { ...MAPPING_OPTIONS, 'dry-run': { type: 'boolean' } } as const;

export const main: Command = async (argv: string[], io: CliIo): Promise<number> => {
  const split = splitCommand(argv);
  const { values } = parseCommandLine(split.options, OPTIONS, 'run');
  if (values.help) {
    io.stdout.write(HELP);
    return 0;
  }
  const json = values.json === true;
  if (split.command.length === 0) {
    throw new UsageError('no command given', {
      hint: "usage: userns run [options] -- COMMAND [ARGS...]; see 'userns run --help'",
    });
  }
  const warnings: string[] = [];
  const options = parseMappingOptions(values, { command: 'run', json, io, warnings });
  const [command, ...args] = split.command as [string, ...string[]];

  if (values['dry-run']) {
    // `auto:…`: the range a run would get now, previewed (the registry is not written).
    const auto = await allocated(options, true);
    const plan = await planSpawn(split.command, auto.options);
    if (json) {
      writeJson(io, {
        ok: true,
        command: plan.command,
        namespaces: plan.namespaces,
        user: plan.user,
        group: plan.group,
        privileged: plan.privileged,
        requested: { uidMap: plan.requested.uid.toJSON(), gidMap: plan.requested.gid.toJSON() },
        uidMap: plan.uidMap.toJSON(),
        gidMap: plan.gidMap.toJSON(),
        uidMethod: plan.uidMethod,
        gidMethod: plan.gidMethod,
        setgroupsWrite: plan.setgroupsWrite,
        newuidmap: plan.newuidmapArgv,
        newgidmap: plan.newgidmapArgv,
        mountProc: plan.mountProc,
        mounts: plan.mounts.map((m) => ({
          source: m.source,
          target: m.target,
          readOnly: m.readOnly,
          recursive: m.recursive,
          userns:
            m.userns === null ? null : { uidMap: m.userns.uidMap.toJSON(), gidMap: m.userns.gidMap.toJSON() },
        })),
        helper: plan.helperArgv,
      });
      return 0;
    }
    const lines = (map: { extents: readonly { inside: number; outside: number; count: number }[] }) =>
      map.extents.map((e) => `  ${e.inside} ${e.outside} ${e.count}`).join('\n');
    const how = (kind: string, argv: string[] | null) =>
      argv === null
        ? `written directly to /proc/PID/${kind}_map`
        : `written by: ${argv.map(shellQuote).join(' ')}`;
    io.stdout.write(
      `uid map (inside outside count; outside = IDs of this namespace):\n${lines(plan.uidMap)}\n` +
        `  ${how('uid', plan.newuidmapArgv)}\n` +
        `gid map:\n${lines(plan.gidMap)}\n` +
        `  ${how('gid', plan.newgidmapArgv)}\n` +
        `setgroups: ${plan.setgroupsWrite === null ? 'left as it is' : `${plan.setgroupsWrite} (written before gid_map)`}\n` +
        `namespaces: ${plan.namespaces.join(',')}${plan.mountProc ? ' (fresh /proc)' : ''}\n` +
        plan.mounts
          .map(
            (m) =>
              `mount: ${m.source} on ${m.target}${m.recursive ? ' (rbind)' : ''}${m.readOnly ? ' read-only' : ''}` +
              (m.userns === null
                ? '\n'
                : `, idmapped (its user namespace: inside = on disk, outside = IDs here)\n` +
                  `  uid map:\n${lines(m.userns.uidMap)}\n  gid map:\n${lines(m.userns.gidMap)}\n`),
          )
          .join('') +
        `runs as: ${plan.user}:${plan.group}\n` +
        `command: ${plan.command.map(shellQuote).join(' ')}\n` +
        '(PID is the helper process, known once it runs)\n',
    );
    return 0;
  }

  let stopForwarding = () => {};
  // `auto:…`: a range held by this process, released once the command has ended.
  let release = async () => {};
  try {
    const auto = await allocated(options, false);
    release = auto.release;
    const child = spawn(command, args, { ...auto.options, stdio: 'inherit' });
    stopForwarding = forwardSignals(child);
    return exitStatus(await child);
  } catch (error) {
    if (!(error instanceof UsernsError) || error instanceof UsageError) throw error;
    reportError(error, io, json);
    return failureStatus(error);
  } finally {
    stopForwarding();
    await release().catch(() => {});
  }
};

/**
 * The options with an `auto:…` mode turned into an allocated (or previewed) range. The allocator
 * (12 modules) is imported only for such a mode: start-up measured interleaved, 30 rounds each,
 * `userns run -- true` takes 250 ms of CPU (463 ms wall, a loaded 2-core machine) without it and
 * 279 ms (510 ms) with it loaded at start.
 */
async function allocated(options: MappingOptions, preview: boolean): Promise<AutoUserns<MappingOptions>> {
  if (options.userns === undefined || !options.userns.startsWith('auto:'))
    return {
      options: options as AutoUserns<MappingOptions>['options'],
      allocation: null,
      release: async () => {},
    };
  const { withAutoUserns } = await import('../alloc/auto.js');
  return withAutoUserns(options, { preview });
}

function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`;
}
