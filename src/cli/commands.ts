/**
 * The command table of the CLI: every command, its synopsis, its options and their help. It is
 * the one source of the option configurations the commands hand to `util.parseArgs`, of
 * `--help` and `userns help CMD` (src/cli/help.ts), of `userns completion bash|zsh|fish`
 * (src/cli/completion.ts) and of the man page `userns(1)` (src/cli/man.ts, written at build
 * time by scripts/build-man.mjs), so none of them can leave an option out.
 *
 * Pure data: no imports, so loading it costs one small module at start-up.
 *
 * Text conventions (help.ts and man.ts rely on them): paragraphs are separated by blank lines;
 * a line that starts with a space is kept as it is (tables, examples); other lines of a
 * paragraph are prose, which the man page refills. `{formats}` stands for the list of map
 * formats with their descriptions, `{format-names}` for their names (filled from
 * src/idmap/formats/, which only the commands that need it load).
 */

/** One option of a command, as parseArgs takes it plus what help and completion need. */
export interface OptionSpec {
  readonly type: 'string' | 'boolean';
  readonly short?: string;
  readonly multiple?: boolean;
  /**
   * The value's name in help and the man page (string options): `MAP`, `N`, `DIR`. One that
   * starts with `[` is optional and given with `=` (`--allocate[=OPTIONS]`): a shell's
   * completion does not take the next word for it.
   */
  readonly value?: string;
  /** What the option does: the first line stands beside it in help, further lines under it. */
  readonly help: string;
  /**
   * What a shell offers for the value: these words, or files, directories, map formats, user
   * names, or the names of named namespaces.
   */
  readonly complete?: readonly string[] | 'file' | 'directory' | 'format' | 'user' | 'namespace';
}

/** What a command's operands (the arguments that are not options) are, for completion. */
export type OperandKind =
  | 'none'
  | 'file'
  | 'directory'
  | 'command'
  | 'namespace'
  | 'namespace-command'
  | 'shell'
  | 'topic';

export interface CommandSpec {
  /** One line for `userns --help` and the man page's list of commands. */
  readonly summary: string;
  /** Synopsis lines, each after `userns `. */
  readonly usage: readonly string[];
  /** What it does: the text between the synopsis and the options. */
  readonly description: string;
  /** Its options (`--json` among them; `-h, --help` is added to every command). */
  readonly options: Readonly<Record<string, OptionSpec>>;
  /** Text after the options: exit status, examples, notes. */
  readonly after?: string;
  /** The words that select a subcommand (`split` of `map split`), each `<command> <word>` here. */
  readonly subcommands?: readonly string[];
  /** What the operands are (default 'none'). */
  readonly operands?: OperandKind;
}

const USERNS_MODES = ['auto', 'self', 'keep-id', 'keep-id:', 'identity', 'auto:size='] as const;
const NAMESPACE_NAMES = ['mount', 'pid', 'uts', 'ipc', 'net', 'cgroup', 'all'] as const;
const ROOT_HELP = `state root (default: /run/userns for root; else $XDG_RUNTIME_DIR/userns
or ~/.local/state/userns)`;

/** The mapping and namespace options that `run` and `create` share (src/cli/run.ts parses them). */
export const MAPPING = {
  userns: {
    type: 'string',
    value: 'MODE',
    complete: USERNS_MODES,
    help: `how to map IDs when no --uidmap/--gidmap is given (default: auto)
  auto      root: every ID (0 0 4294967295); others: 0 = you,
            1… = your /etc/subuid ranges (like 'podman unshare')
  self      only you, as 0 (like 'unshare -r')
  keep-id   your uid stays your uid inside; subordinate IDs around it
  keep-id:uid=N,gid=N,size=N
            podman's options: you become N inside (and run as N), size=
            IDs in all at most
  identity  inside = outside for every ID you can map
  auto:size=N[,uidmapping=M][,gidmapping=M][,policy=P]
            a fresh range of N IDs from the allocation registry
            (see 'userns alloc'), released when the command ends; without
            size=, 65536 or enough to cover --user; @HOST in M = a host ID`,
  },
  uidmap: {
    type: 'string',
    multiple: true,
    value: 'MAP',
    help: `uid map in podman syntax, [+][u|g]INSIDE:[@]OUTSIDE[:COUNT][,...];
repeatable (OUTSIDE = IDs of the namespace userns runs in, @OUTSIDE =
host IDs); a leading + entry fills the rest from the IDs you may
map, as rootless podman does`,
  },
  gidmap: {
    type: 'string',
    multiple: true,
    value: 'MAP',
    help: 'gid map (default: the same as --uidmap when only that is given)',
  },
  unshare: {
    type: 'string',
    value: 'LIST',
    complete: NAMESPACE_NAMES,
    help: `more namespaces: mount,pid,uts,ipc,net,cgroup or all
(pid mounts a fresh /proc; the command is PID 1)`,
  },
  setgroups: {
    type: 'string',
    value: 'allow|deny',
    complete: ['allow', 'deny'],
    help: 'what /proc/PID/setgroups should say (default: leave it)',
  },
  user: { type: 'string', value: 'UID[:GID]', help: 'IDs to run as inside (default 0:0)' },
  mount: {
    type: 'string',
    multiple: true,
    value: 'SRC:DST[:OPTIONS]',
    complete: 'file',
    help: `bind SRC on DST in a new mount namespace before COMMAND starts
(adds mount to --unshare); repeatable. OPTIONS, comma-separated:
  ro            read-only (the command cannot make it writable)
  rbind         with the mounts below SRC
  idmap         idmapped with the namespace's maps: a file owned
                by N on disk appears inside as owned by N
  idmap=MAP     MAP = [u|g]INSIDE:ONDISK[:COUNT],… : on-disk ONDISK
                appears as INSIDE (idmap=0:1000 shows 1000's files
                as root's); u/g: uids or gids only
Relative paths are taken from the current directory; DST must exist.`,
  },
  'no-split': {
    type: 'boolean',
    help: `write the maps as given, without cutting lines at the current
namespace's extents (the kernel then refuses lines that span two)`,
  },
  fallback: {
    type: 'string',
    value: 'single',
    complete: ['single', 'none'],
    help: `if mapping your subordinate ranges fails, map only your own IDs
(with a warning) instead of failing`,
  },
  newuidmap: {
    type: 'string',
    value: 'PATH',
    complete: 'file',
    help: 'newuidmap to use (default: from PATH)',
  },
  newgidmap: {
    type: 'string',
    value: 'PATH',
    complete: 'file',
    help: 'newgidmap to use (default: from PATH)',
  },
} as const satisfies Record<string, OptionSpec>;

const root = { type: 'string', value: 'DIR', complete: 'directory', help: ROOT_HELP } as const;

const MAP_ARGUMENT = `A MAP is one of:
  inside:outside:count[,…]   inline triples, e.g. 0:100000:65536
  FILE                       a file in any format (auto-detected, or --from FORMAT)
  -                          standard input
  self | pid:N               a process's /proc/PID/uid_map (gid_map with --kind gid)
  TEXT                       the map itself in any format, e.g. --from podman +1:100:1
                             or 'u 0 100000 65536' (auto-detected without --from)
Formats: {format-names} (proc = kernel)`;

/** Options every `map` subcommand takes. */
const MAP_COMMON = {
  kind: {
    type: 'string',
    value: 'uid|gid',
    complete: ['uid', 'gid'],
    help: 'read uid maps (default) or gid maps (self, pid:N, files with both)',
  },
  from: {
    type: 'string',
    value: 'FORMAT',
    complete: 'format',
    help: 'the format of MAP arguments (default: recognised)',
  },
} as const satisfies Record<string, OptionSpec>;

const EXIT_RUN = `Exit status: the command's, or 128+N when it was killed by signal N; 125 when userns itself
failed (usage errors included, as with env and podman), 126 when the command cannot be
executed, 127 when it is not found.
SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH are forwarded to the command.`;

const ALLOC_POOLS = {
  pool: {
    type: 'string',
    multiple: true,
    value: 'START:COUNT',
    help: 'the pool for uids and gids (repeatable; decimal or 0x hex)',
  },
  'uid-pool': {
    type: 'string',
    multiple: true,
    value: 'START:COUNT',
    help: 'the uid pool only (repeatable)',
  },
  'gid-pool': {
    type: 'string',
    multiple: true,
    value: 'START:COUNT',
    help: 'the gid pool only (repeatable)',
  },
} as const satisfies Record<string, OptionSpec>;

const ALLOC_USAGE = [
  'alloc [--size N | --for-rootfs DIR] [--policy POLICY] [--name NAME] [options]',
  'alloc list [--pool START:COUNT]... [--root DIR] [--registry URL] [--json]',
  'alloc release ID|NAME [--root DIR] [--registry URL [--force]] [--json]',
  'alloc gc [--root DIR] [--registry URL] [--json]',
  'alloc recover [--root DIR] [--json]',
  'alloc config --registry URL [--pool START:COUNT]... [--policy POLICY] [--lease-ttl S]',
  'alloc agent --registry URL [--node NAME] [--ttl S] [--revoke-on-exit]',
] as const;

/** Where `alloc` and `alloc list` read the pools and the IDs taken by the system. */
const ALLOC_FILES = {
  config: {
    type: 'string',
    value: 'PATH',
    complete: 'file',
    help: "root's pool configuration (default /etc/userns/alloc.json)",
  },
  'subuid-file': {
    type: 'string',
    value: 'PATH',
    complete: 'file',
    help: `read this instead of /etc/subuid (pools and excluded IDs; getsubids is
then not asked); likewise the next three`,
  },
  'subgid-file': { type: 'string', value: 'PATH', complete: 'file', help: 'instead of /etc/subgid' },
  'passwd-file': {
    type: 'string',
    value: 'PATH',
    complete: 'file',
    help: 'instead of /etc/passwd (getent is then not asked)',
  },
  'group-file': { type: 'string', value: 'PATH', complete: 'file', help: 'instead of /etc/group' },
} as const satisfies Record<string, OptionSpec>;

const ALLOC_ROOT = {
  ...root,
  help: "state root (default /run/userns for root; see 'State root' in the README)",
} as const;

/** Which registry: the local one, or a fleet registry on etcd (and this machine's name in it). */
const ALLOC_REGISTRY = {
  registry: {
    type: 'string',
    value: 'URL',
    help: `the registry: local (the default: the SQLite file under the state root) or a
fleet registry on etcd v3, etcd://HOST:PORT[,HOST:PORT…]/PREFIX (etcds:// for
TLS; ?timeout=MS bounds a call, default 10000); default $USERNS_REGISTRY`,
  },
  node: {
    type: 'string',
    value: 'NAME',
    help: "this machine's name in a fleet registry (default $USERNS_NODE, else the host name)",
  },
} as const satisfies Record<string, OptionSpec>;

/** `--registry` is required: a command only a fleet registry has. */
const FLEET_REGISTRY = {
  ...ALLOC_REGISTRY,
  registry: {
    ...ALLOC_REGISTRY.registry,
    help: 'the fleet registry, etcd://HOST:PORT[,HOST:PORT…]/PREFIX (required)',
  },
} as const satisfies Record<string, OptionSpec>;

/**
 * Every command, by the words that name it (`map split`). The order is the order of
 * `userns --help` and the man page.
 */
export const COMMANDS = {
  map: {
    summary: 'parse, validate, split, convert, compose and show ID maps',
    usage: ['map <subcommand> [options]'],
    description: `Subcommands:
  validate [--parent MAP] MAP        would the kernel accept MAP? (exit 0 yes, 1 no)
  split --parent MAP MAP             cut MAP at the parent's extent boundaries so the kernel accepts it
  convert [--from F] --to F INPUT…   convert between map formats
  lookup [--reverse] MAP ID…         translate IDs inside→outside (--reverse: outside→inside)
  compose MAP PARENT [ANCESTOR…]     express a nested map in the IDs of its outermost ancestor
  show MAP                           draw a map in the terminal

${MAP_ARGUMENT}`,
    options: {},
    after: `Options for every subcommand: --kind uid|gid, --from FORMAT, --json, --help.
Run 'userns map <subcommand> --help' for each one's options.`,
    subcommands: ['validate', 'split', 'convert', 'lookup', 'compose', 'show'],
  },
  'map validate': {
    summary: 'would the kernel accept MAP? (exit 0 yes, 1 no)',
    usage: [
      'map validate [--parent MAP] [--kind uid|gid] [--page-size N] [--allowed MAP]',
      '    [--unprivileged [--euid N] [--egid N] [--setgroups allow|deny]] MAP',
    ],
    description: `Says whether the kernel would accept MAP written in one write() to /proc/PID/{uid,gid}_map,
and if not, the errno (EINVAL or EPERM) and the reason, naming the line. The kernel's checks are
applied in the kernel's order: size < PAGE_SIZE, syntax, (u32)-1, count and wrap, overlaps on
either side, the 340-line limit, then permission and containment in the parent map.`,
    options: {
      parent: {
        type: 'string',
        value: 'MAP',
        complete: 'file',
        help: "the writer's current namespace map (outside IDs must lie in ONE of its lines)",
      },
      ...MAP_COMMON,
      'page-size': {
        type: 'string',
        value: 'N',
        help: "the limit of one write (default: this kernel's page size)",
      },
      unprivileged: {
        type: 'boolean',
        help: `predict for a writer without CAP_SETUID/CAP_SETGID/CAP_SETFCAP that owns the
namespace (euid/egid default to this process's)`,
      },
      euid: { type: 'string', value: 'N', help: "the writer's effective uid (with --unprivileged)" },
      egid: { type: 'string', value: 'N', help: "the writer's effective gid (with --unprivileged)" },
      setgroups: {
        type: 'string',
        value: 'allow|deny',
        complete: ['allow', 'deny'],
        help: "the target's setgroups at write time (default allow)",
      },
      allowed: {
        type: 'string',
        value: 'MAP',
        complete: 'file',
        help: `also require every host ID of MAP to lie in this allow-list's host IDs of
the same kind (any format: subid lines, raw.idmap, triples…); exit 1 naming
the first host ID outside it (Incus HostIDsCoveredBy)`,
      },
      json: {
        type: 'boolean',
        help: '{"ok": bool, "errno": "EINVAL"|"EPERM"|null, "reason": str|null, "line": n|null}',
      },
    },
    after: `Exit status: 0 accepted, 1 rejected, 2 usage error.

${MAP_ARGUMENT}`,
    operands: 'file',
  },
  'map split': {
    summary: "cut MAP at the parent's extent boundaries so the kernel accepts it",
    usage: ['map split --parent MAP [--kind uid|gid] MAP'],
    description: `Cuts every line of MAP at the boundaries of the parent's lines, so that each piece lies inside
one parent line as the kernel requires (it never splits a line itself). Pieces keep their order
and are never merged. Fails, naming the first missing range, if the parent does not map an ID.
Prints the result in kernel format.`,
    options: {
      parent: {
        type: 'string',
        value: 'MAP',
        complete: 'file',
        help: "the parent's map (required), e.g. self",
      },
      ...MAP_COMMON,
      'page-size': {
        type: 'string',
        value: 'N',
        help: "the limit of one write the result must fit (default: this kernel's page size)",
      },
      json: { type: 'boolean', help: '{"ok": true, "map": [[inside, outside, count], …]}' },
    },
    after: `Example: inside a namespace mapped 0 1000 1 + 1 100000 65536,
  userns map split --parent self 0:0:100     →  0 0 1 / 1 1 99

${MAP_ARGUMENT}`,
    operands: 'file',
  },
  'map convert': {
    summary: 'convert between map formats',
    usage: ['map convert [--from FORMAT] --to FORMAT [--kind uid|gid] [--parent MAP] [--owner USER] INPUT…'],
    description: `Reads each INPUT (a MAP) and prints the concatenated extents in FORMAT. Both kinds are kept:
uid and gid entries of formats that hold both (lxc, incus, json, kubernetes, oci, podman,
unshare; 'self'/'pid:N' as its uid_map and gid_map) are written to formats that hold both. A
format that holds one map (kernel, triples, newuidmap, subid) given both kinds needs --kind
(usage error otherwise); --kind uid|gid keeps only that kind. Every map is validated as the
kernel would first.
--parent is needed by podman's '@' and '+' forms; --owner names the user of subuid/subgid lines.
Formats:
{formats}`,
    options: {
      to: { type: 'string', value: 'FORMAT', complete: 'format', help: 'the format to write (required)' },
      ...MAP_COMMON,
      kind: {
        ...MAP_COMMON.kind,
        help: 'keep only the uid or the gid entries (default: both, where the format holds both)',
      },
      parent: {
        type: 'string',
        value: 'MAP',
        complete: 'file',
        help: "the parent's map, for podman's '@' and '+' forms",
      },
      owner: { type: 'string', value: 'USER', complete: 'user', help: 'the user of subuid/subgid lines' },
      json: {
        type: 'boolean',
        help: '{"ok", "format", "text", "uidMap": [[inside, outside, count], …], "gidMap": […]}',
      },
    },
    operands: 'file',
  },
  'map lookup': {
    summary: 'translate IDs inside→outside (--reverse: outside→inside)',
    usage: ['map lookup [--reverse] [--kind uid|gid] MAP ID…'],
    description: `Translates each inside ID to its outside ID (with --reverse: outside to inside) through MAP.
Unmapped IDs print "unmapped" (the kernel shows them as the overflow ID, usually 65534).`,
    options: {
      reverse: { type: 'boolean', short: 'r', help: 'translate outside IDs to inside IDs' },
      ...MAP_COMMON,
      json: { type: 'boolean', help: '{"ok": true, "direction", "results": [{"id", "result"}, …]}' },
    },
    after: `Exit status: 0 when every ID is mapped, 1 when one is not, 2 for usage errors.

${MAP_ARGUMENT}`,
    operands: 'file',
  },
  'map compose': {
    summary: 'express a nested map in the IDs of its outermost ancestor',
    usage: ['map compose [--kind uid|gid] MAP PARENT [ANCESTOR…]'],
    description: `MAP's outside IDs are PARENT's inside IDs; prints MAP expressed in PARENT's outside IDs (then the
next ancestor's, and so on). IDs an ancestor does not map are dropped.`,
    options: {
      ...MAP_COMMON,
      json: { type: 'boolean', help: '{"ok": true, "map": [[inside, outside, count], …]}' },
    },
    after: `Example: userns map compose 0:0:100 0:100000:65536    →  0 100000 100

${MAP_ARGUMENT}`,
    operands: 'file',
  },
  'map show': {
    summary: 'draw a map in the terminal',
    usage: ['map show [--kind uid|gid] MAP'],
    description: `Draws MAP: one row per extent, inside and outside ranges with bars scaled to each side.
Colour on a terminal unless NO_COLOR is set.`,
    options: {
      ...MAP_COMMON,
      json: { type: 'boolean', help: '{"ok": true, "kind", "size", "map": [[inside, outside, count], …]}' },
    },
    after: MAP_ARGUMENT,
    operands: 'file',
  },
  run: {
    summary: 'run a command in new user (and other) namespaces',
    usage: ['run [options] [--] COMMAND [ARGS...]'],
    description: `Runs COMMAND in a new user namespace (and other namespaces on request) with the ID maps you ask
for, written exactly as the kernel wants them: cut at the current namespace's extents, validated,
each map in one write, through newuidmap/newgidmap when you are not root.`,
    options: {
      ...MAPPING,
      'dry-run': {
        type: 'boolean',
        help: `print the maps and the newuidmap/newgidmap command lines, run nothing;
every check that needs no process is made, and fails as the run would`,
      },
      json: { type: 'boolean', help: 'machine-readable output (with --dry-run, and for errors)' },
    },
    after: `${EXIT_RUN}

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
whole setup (newuidmap, /etc/subuid, kernel settings).`,
    operands: 'command',
  },
  create: {
    summary: 'create named namespaces that outlive a command',
    usage: ['create [options] NAME', 'create --hold none [options] NAME -- COMMAND [ARGS...]'],
    description: `Creates a user namespace (and other namespaces on request) named NAME, records it in
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

NAME: 1 to 128 characters of [A-Za-z0-9_+.-], not "." or "..".

The mapping and namespace options are those of 'userns run'.`,
    options: {
      ...MAPPING,
      userns: {
        ...MAPPING.userns,
        help: "auto (default), self, keep-id, identity, auto:size=N,… (see 'userns run --help')",
      },
      unshare: {
        ...MAPPING.unshare,
        help: `more namespaces: mount,pid,uts,ipc,net,cgroup or all
(pid: the keeper is PID 1 and mounts a fresh /proc)`,
      },
      user: { ...MAPPING.user, help: "IDs that 'userns exec' runs as by default (default 0:0)" },
      mount: {
        ...MAPPING.mount,
        help: `bind SRC on DST in the new mount namespace (ro, rbind, idmap,
idmap=INSIDE:ONDISK[:COUNT]; see 'userns run --help'); 'userns exec'
sees it; repeatable`,
      },
      'no-split': { ...MAPPING['no-split'], help: "write the maps as given (see 'userns run --help')" },
      fallback: {
        ...MAPPING.fallback,
        help: 'map only your own IDs (with a warning) if your subordinate ranges fail',
      },
      hold: {
        type: 'string',
        value: 'keeper|mount|none',
        help: 'how it is kept alive (see above; default keeper)',
      },
      root,
      json: {
        type: 'boolean',
        help: 'print the state as JSON (with --hold none: errors only; COMMAND owns stdout)',
      },
    },
    after: `Exit status: 0 when created (with --hold none: COMMAND's status, and 125 when userns
failed, 126/127 when COMMAND cannot be executed / is not found); 1 when it cannot be created;
2 for usage errors.

Examples:
  userns create dev                                   # your subordinate IDs, user namespace only
  userns create --unshare pid,mount,uts box
  userns exec box -- sh -c 'hostname box; hostname'
  userns create --uidmap 0:100000:65536 --mount /srv/data:/mnt:idmap data
  userns create --hold mount --unshare net vpn         # as root: no process holds it
  userns create --hold none --unshare pid,mount job -- sleep 600 &
  userns exec job -- ps -e                            # joined by nsfs handle
  userns rm box`,
  },
  exec: {
    summary: 'run a command inside a named namespace',
    usage: ['exec [options] NAME [--] COMMAND [ARGS...]'],
    description: `Runs COMMAND inside the namespaces of NAME (made by 'userns create'): the helper reopens them
by their nsfs handles (Linux 6.18+; else through the keeper's pidfd or the bind-mounted files),
checks that each is the recorded one, and enters the user namespace first, then the others. A
stale NAME (its keeper gone, its PID reused, a bind mount gone) is refused with NS_STALE, one
whose namespaces no longer exist (--hold none after its processes exited) with NS_GONE; remove
it with 'userns rm NAME'.`,
    options: {
      user: {
        type: 'string',
        value: 'UID[:GID]',
        help: 'IDs to run as inside (default: those given to create, else 0:0)',
      },
      cwd: {
        type: 'string',
        value: 'DIR',
        complete: 'directory',
        help: `working directory inside (default: the current one; with a mount
namespace, / when the current one cannot be entered inside)`,
      },
      root,
      json: { type: 'boolean', help: 'errors as JSON' },
    },
    after: EXIT_RUN,
    operands: 'namespace-command',
  },
  list: {
    summary: 'list named namespaces',
    usage: ['list [--root DIR] [--json]'],
    description: `Lists the named namespaces (made by 'userns create') with how they are held (keeper, mount,
none) and their status:
  running    its keeper or bind mounts hold the recorded namespaces (--hold none: they still
             exist, asked by nsfs handle)
  stale      the keeper is gone, its PID was reused, a bind mount is gone, or a namespace
             changed ('userns rm NAME')
  gone       --hold none: all its processes exited ('userns rm NAME')
  unknown    it cannot be checked from here (its keeper runs in a PID namespace this /proc does
             not show, and no nsfs handle answers); never removed from here
  creating   a 'userns create' is making it right now
  broken     its state file is unreadable ('userns rm --force NAME')
  unsafe     its entry is not a real directory (a link); never followed ('userns rm --force NAME')
Entries whose creator died before finishing are removed on the way.`,
    options: { root, json: { type: 'boolean', help: 'machine-readable output' } },
  },
  inspect: {
    summary: 'show the state of a named namespace',
    usage: ['inspect [--root DIR] [--json] NAME'],
    description: `Shows a named namespace: its status, how it is held (keeper PID, bind-mount files, or nothing),
its namespaces (inode numbers and nsfs handles), the maps (as the kernel applied them), and whether your subordinate IDs changed since it
was created (the namespace keeps the map it was created with: a map is written only once).`,
    options: { root, json: { type: 'boolean', help: 'machine-readable output' } },
    operands: 'namespace',
  },
  rm: {
    summary: 'remove a named namespace',
    usage: ['rm [--force] [--root DIR] [--json] NAME...'],
    description: `Removes named namespaces: stops the keeper (SIGTERM, then SIGKILL; with a PID namespace every
process in it dies too) or removes the bind mounts (--hold mount), and deletes the state. Stale
and gone entries are removed as well. A --hold none namespace whose processes still run keeps
running (only its record goes; a warning says so). A namespace whose keeper runs in a PID
namespace this /proc does not show is never removed from here (NS_UNCHECKABLE), even with
--force: its keeper could not be stopped.`,
    options: {
      force: {
        type: 'boolean',
        short: 'f',
        help: `also remove broken entries and entries that are not real directories (a link is
removed itself, never followed); a NAME that does not exist is not an error`,
      },
      root,
      json: { type: 'boolean', help: 'machine-readable output' },
    },
    operands: 'namespace',
  },
  alloc: {
    summary: 'allocate non-overlapping ID ranges for containers',
    usage: ALLOC_USAGE,
    description: `Gives each container its own range of host uids and gids, never overlapping any other live
allocation, any ID owned by a passwd or group entry, any user's subordinate range (other than
the pool's own owner's) or any range registered by systemd-nsresourced. The registry is a SQLite
database under the state root (<root>/alloc/registry.db), safe for any number of concurrent
processes, from any PID or mount namespace, and against crashes.

Pools (uid and gid separately):
  root     the subordinate ranges of the user "containers" if it has some, else the systemd
           container range 0x80000-0x6FFFFFFF; or "pool"/"uidPool"/"gidPool" in
           /etc/userns/alloc.json; or --pool
  others   your own /etc/subuid and /etc/subgid ranges (--pool must lie inside them)`,
    options: {
      size: { type: 'string', value: 'N', help: 'IDs to map from 0 (default 65536, or the slot size)' },
      'for-rootfs': {
        type: 'string',
        value: 'DIR',
        complete: 'directory',
        help: `estimate the size from an unpacked image: highest uid/gid owning a
file or named in its /etc/passwd and /etc/group (65534, nobody and
nogroup ignored), plus one; at least 1024`,
      },
      user: {
        type: 'string',
        value: 'UID[:GID]',
        help: `without --size, grow the size to cover these IDs (podman sizes
--userns=auto for --user so: --user 2000:3000 → at least 3001)`,
      },
      policy: {
        type: 'string',
        value: 'POLICY',
        complete: ['first-fit', 'contiguous', 'slot', 'slot:', 'base:'],
        help: `first-fit   lowest free block; when none is large enough, the
            lowest free IDs of several blocks (podman
            --userns=auto, containers/storage; the default)
contiguous  lowest free block, or fail (one line per map)
slot[:SIZE] blocks aligned to SIZE, a multiple of 65536 (default
            65536: systemd-nspawn pick, nsresourced, kubelet)
base:N      exactly at host ID N, or fail`,
      },
      ...ALLOC_POOLS,
      name: {
        type: 'string',
        value: 'NAME',
        help: 'a unique name ([A-Za-z0-9_+.-], at most 128; default: the id)',
      },
      namespace: {
        type: 'string',
        value: 'NAME',
        complete: 'namespace',
        help: `the named namespace it belongs to: 'alloc gc' releases it once the
namespace is gone`,
      },
      uidmapping: {
        type: 'string',
        multiple: true,
        value: 'MAP',
        help: `extra INSIDE:HOST[:SIZE] uid mapping punched into the map (podman's
uidmapping=), repeatable; host IDs from the pool are reserved too;
@HOST is a host ID translated through this namespace's map`,
      },
      gidmapping: { type: 'string', multiple: true, value: 'MAP', help: 'the same for gids' },
      root: ALLOC_ROOT,
      ...ALLOC_FILES,
      ...ALLOC_REGISTRY,
      lease: {
        type: 'boolean',
        help: `fleet: tie the allocation to this node's lease (needs 'alloc agent'):
released fleet-wide when the node is gone for longer than the lease TTL;
without it an allocation is persistent`,
      },
      json: { type: 'boolean', help: 'machine-readable output' },
    },
    after: `Fleet registry (etcd): every node allocates from one pool (set with 'alloc config'), in one
etcd transaction per allocate or release, so no two nodes ever get overlapping ranges. The
same --name gives the same range on every node: the first allocates, later ones read it
('reused'). When etcd is unreachable, a node still gets the named ranges it already holds, from
its cache under the state root (said on stderr and as "offline" in --json); it never allocates
a new range offline. See "Fleet" in the README.

Subcommands:
  list                   live allocations, how much of each pool is free, and which IDs of
                         it are excluded and why
  release ID|NAME        releases one allocation (works on a full disk too)
  gc                     releases allocations whose named namespace is gone, or whose
                         'userns run' process has exited; an owner that cannot be checked
                         from here (another PID namespace) is kept and listed
  recover                after REGISTRY_CORRUPT: moves the damaged database aside and makes a
                         new one with every allocation that can still be read from it
  config                 a fleet registry's configuration: shows it, or sets the pools
                         (--pool, --uid-pool, --gid-pool), the default --policy and the node
                         --lease-ttl (seconds, default 60); --force keeps allocations a smaller
                         pool leaves outside
  agent                  keeps this node's lease alive until SIGINT or SIGTERM (adopting the
                         lease of its previous run when that is still alive); --lease
                         allocations of the node live on it. --ttl S overrides the configured
                         TTL; --revoke-on-exit releases the node's leased allocations on exit

Examples:
  userns alloc --name web                       # 65536 uids and gids, first fit
  userns alloc --for-rootfs ./rootfs --name db  # sized for an image
  userns alloc --policy slot --pool 0x80000:0x6FF80000 --json
  userns alloc --size 65536 --uidmapping 1000:1000:1 --name dev
  userns alloc list
  userns alloc release web
  userns alloc config --registry etcd://10.0.0.1:2379,10.0.0.2:2379/userns/prod --pool 0x80000:0x6FF80000 --policy slot
  userns alloc agent --registry etcd://10.0.0.1:2379/userns/prod --node worker-1 &
  userns alloc --registry etcd://10.0.0.1:2379/userns/prod --name tenant-a --lease`,
    subcommands: ['list', 'release', 'gc', 'recover', 'config', 'agent'],
  },
  'alloc list': {
    summary: 'live allocations, how much of each pool is free, and which IDs are excluded',
    usage: ['alloc list [--pool START:COUNT]... [--root DIR] [--registry URL] [--json]'],
    description: `Lists the live allocations, and for each kind the pool, how much of it is free, the largest
free block, and which IDs of it are excluded (not free, held by no allocation) and why. The
pool is the one 'userns alloc' would use (see 'userns alloc --help'), or --pool. With a fleet
registry: which node holds each allocation (its lease, the nodes that use it), the live nodes,
and the fleet's pools.`,
    options: {
      ...ALLOC_POOLS,
      root: ALLOC_ROOT,
      ...ALLOC_FILES,
      ...ALLOC_REGISTRY,
      json: { type: 'boolean', help: 'machine-readable output' },
    },
  },
  'alloc release': {
    summary: 'release one allocation (works on a full disk too)',
    usage: ['alloc release ID|NAME [--root DIR] [--registry URL [--force]] [--json]'],
    description: `Releases one allocation, by its id or name ('userns alloc list' shows them). In a fleet
registry, a persistent allocation that other nodes' agents say they use is released only with
--force.`,
    options: {
      root: ALLOC_ROOT,
      ...ALLOC_REGISTRY,
      force: { type: 'boolean', help: 'fleet: release it even though other nodes use it' },
      json: { type: 'boolean', help: 'machine-readable output' },
    },
  },
  'alloc gc': {
    summary: 'release allocations whose namespace or process is gone',
    usage: ['alloc gc [--root DIR] [--registry URL] [--json]'],
    description: `Releases the allocations whose named namespace is gone, or whose 'userns run' process has
exited. An owner that cannot be checked from here (another PID namespace) is kept and listed.
In a fleet registry, only this node's allocations are judged (owners live on the node that
made them).`,
    options: {
      root: ALLOC_ROOT,
      ...ALLOC_REGISTRY,
      json: { type: 'boolean', help: 'machine-readable output' },
    },
  },
  'alloc recover': {
    summary: 'rebuild a damaged allocation registry from what can still be read',
    usage: ['alloc recover [--root DIR] [--json]'],
    description: `After REGISTRY_CORRUPT: moves the damaged database aside and makes a new one with every
allocation that can still be read from it, and says which could not (their IDs may still be in
use).`,
    options: { root: ALLOC_ROOT, json: { type: 'boolean', help: 'machine-readable output' } },
  },
  'alloc config': {
    summary: "show or set a fleet registry's pools, default policy and lease TTL",
    usage: [
      'alloc config --registry URL [--pool START:COUNT]... [--policy POLICY] [--lease-ttl S] [--force]',
    ],
    description: `Shows the configuration of a fleet registry (PREFIX/config in etcd), or sets it: the pools every
node allocates from (--pool, --uid-pool, --gid-pool), the policy used when a request names
none (--policy), and the TTL of the nodes' leases (--lease-ttl, seconds, default 60, at least
2). Setting it is one transaction that compares the configuration read; a pool that leaves
live allocations outside is refused unless --force (they keep their ranges, and doctor reports
them).`,
    options: {
      ...ALLOC_POOLS,
      policy: {
        type: 'string',
        value: 'POLICY',
        complete: ['first-fit', 'contiguous', 'slot', 'slot:', 'base:'],
        help: 'the default policy: first-fit, contiguous, slot[:SIZE] (base:N is per request)',
      },
      'lease-ttl': { type: 'string', value: 'S', help: "the nodes' lease TTL in seconds (default 60)" },
      force: { type: 'boolean', help: 'set pools that leave live allocations outside' },
      root: ALLOC_ROOT,
      ...FLEET_REGISTRY,
      json: { type: 'boolean', help: 'machine-readable output' },
    },
  },
  'alloc agent': {
    summary: "keep this node's lease in a fleet registry alive",
    usage: ['alloc agent --registry URL [--node NAME] [--ttl S] [--revoke-on-exit]'],
    description: `Keeps this node's lease in a fleet registry alive until SIGINT or SIGTERM, and publishes the
IDs this machine uses locally (passwd/group entries, subordinate ranges) so that no node
allocates them. Allocations made with --lease on this node live on the lease: when the node is
gone for longer than the TTL, etcd releases them. A restarted agent adopts the lease of its
previous run while it is alive. One agent per node name and state root.`,
    options: {
      ttl: { type: 'string', value: 'S', help: "the lease TTL in seconds (default: the configuration's)" },
      'revoke-on-exit': {
        type: 'boolean',
        help: "revoke the lease on exit: the node's leased allocations go at once",
      },
      root: ALLOC_ROOT,
      ...FLEET_REGISTRY,
      json: { type: 'boolean', help: 'events as JSON lines' },
    },
  },
  shift: {
    summary: "rewrite a directory tree's owners from one ID map to another",
    usage: ['shift --from MAP --to MAP [options] DIR'],
    description: `Rewrites the owner and group of every entry of DIR: each ID is looked up in --from
(outside → inside) and written as --to's outside ID for the same inside ID. POSIX ACL entries
(system.posix_acl_access/default) and file-capability root IDs (security.capability v3) are
shifted too; set-user-ID/set-group-ID bits are kept (chown clears them); hard links are handled
once; symbolic links are never followed (the link itself is changed).

By default the walk runs in a protective user namespace that maps only the IDs of the two
ranges: whatever a process racing the walk does (renames, planted links), the kernel refuses to
change any file owned by another ID. Mounts under DIR (other filesystems, bind
mounts) are skipped and listed.

Interrupted (killed, crashed): run the same command again; it finishes the job. A record under
the state root (<root>/shift/, written before the first change) says which
shift of which tree is unfinished; another shift of that tree is refused until it is finished.
When the --from and --to ranges overlap, IDs go through an intermediate range that overlaps
neither (two walks), so that a rerun always knows which entries are done; once such a shift
completed, its record is kept, marked completed, and the same shift run again is refused
(it would shift every entry a second time). Other shifts of the tree are not blocked by it.

MAP: inline triples inside:outside:count[,…], a file in any format userns reads (kernel,
OCI/Kubernetes JSON, podman, LXC, subuid…), 'self' or 'pid:N'. The gid map is the MAP's gid
entries (or the same triples) unless --from-gid/--to-gid give one.`,
    options: {
      from: {
        type: 'string',
        value: 'MAP',
        complete: 'file',
        help: 'the map the tree is owned in now (required)',
      },
      to: { type: 'string', value: 'MAP', complete: 'file', help: 'the map it must be owned in (required)' },
      'from-gid': {
        type: 'string',
        value: 'MAP',
        complete: 'file',
        help: 'gid map for --from (default: from --from)',
      },
      'to-gid': {
        type: 'string',
        value: 'MAP',
        complete: 'file',
        help: 'gid map for --to (default: from --to)',
      },
      reverse: { type: 'boolean', help: 'shift from --to back to --from' },
      'dry-run': { type: 'boolean', help: 'report what would change, change nothing' },
      unmapped: {
        type: 'string',
        value: 'MODE',
        complete: ['error', 'skip', 'overflow'],
        help: `an ID --from does not translate: error (default: nothing is changed
at all), skip (that ID is kept), overflow (it becomes the overflow ID)`,
      },
      'no-userns': { type: 'boolean', help: 'walk without the protective namespace (root only)' },
      'cross-filesystems': { type: 'boolean', help: 'also shift what is mounted under DIR' },
      'forget-interrupted': {
        type: 'boolean',
        help: `forget the record of an interrupted, or completed overlapping, shift of DIR
first (only after restoring DIR from a backup, or to shift it again: the record is
what makes a rerun finish the job, or refuse to shift the tree twice)`,
      },
      root: {
        ...root,
        help: "state root, where the records of interrupted shifts are (see 'State root' in the README)",
      },
      verbose: { type: 'boolean', short: 'v', help: 'list every entry that changes (or would)' },
      quiet: { type: 'boolean', short: 'q', help: 'no progress line' },
      newuidmap: {
        type: 'string',
        value: 'PATH',
        complete: 'file',
        help: 'newuidmap to use (rootless; default from PATH)',
      },
      newgidmap: {
        type: 'string',
        value: 'PATH',
        complete: 'file',
        help: 'newgidmap to use (rootless; default from PATH)',
      },
      json: { type: 'boolean', help: 'the summary (and errors) as JSON' },
    },
    after: `Exit status: 0 when every entry was shifted, 1 when something could not be (nothing is changed
when an ID cannot be translated with --unmapped error), 2 for usage errors.

Examples:
  userns shift --from 0:0:65536 --to 0:100000:65536 ./rootfs        # root-owned image → range
  userns shift --from 0:0:65536 --to 0:100000:65536 --reverse ./rootfs
  userns shift --from 0:100000:65536 --to 0:200000:65536 --dry-run -v ./rootfs`,
    operands: 'directory',
  },
  fit: {
    summary: 'list the IDs of a directory tree that a map cannot represent',
    usage: ['fit [options] MAP DIR'],
    description: `Lists every UID and GID used in DIR that a user namespace with MAP cannot represent: file owners,
POSIX ACL entries, file-capability root IDs, and the users and groups of DIR's own /etc/passwd
and /etc/group (resolved inside DIR). IDs are the IDs the namespace would see (inside IDs of
MAP), as in an image unpacked by root. Each comes with a few example paths; the report ends with
the smallest map from 0 that would fit the tree. This is the check to run when an image fails to
unpack with "potentially insufficient UIDs or GIDs available in user namespace".

nobody/nogroup entries of /etc/passwd and /etc/group (or ID 65534) that no file uses are listed
as ignorable: an unmapped ID is shown as the overflow ID anyway.

A tree that has already been shifted (owned by a range, e.g. 100000-165535) is read through
--from: every on-disk ID is translated by it (outside → inside) before it is checked; on-disk
IDs --from does not map are listed apart.

MAP: inline triples inside:outside:count[,…], a file in any format userns reads, 'self' (this
process's own maps) or 'pid:N'. The gid map is MAP's gid entries unless --gidmap gives one.
Every map is validated as the kernel would; so is every map fit suggests.`,
    options: {
      gidmap: { type: 'string', value: 'MAP', complete: 'file', help: 'the gid map (default: from MAP)' },
      from: {
        type: 'string',
        value: 'MAP',
        complete: 'file',
        help: "the map the tree's on-disk IDs are in (default: they are inside IDs)",
      },
      'from-gid': {
        type: 'string',
        value: 'MAP',
        complete: 'file',
        help: 'the gid map for --from (default: from --from)',
      },
      examples: { type: 'string', value: 'N', help: 'example paths per ID (default 3)' },
      'cross-filesystems': { type: 'boolean', help: 'also walk filesystems mounted under DIR' },
      json: { type: 'boolean', help: 'the report as JSON' },
    },
    after: `Exit status: 0 when MAP fits the tree, 1 when it does not (or part of the tree was unreadable),
2 for usage errors.

Examples:
  userns fit 0:100000:65536 ./rootfs
  userns fit self ./rootfs          # does the current namespace fit this image?
  userns fit --from 0:100000:65536 0:200000:1000 ./rootfs   # a tree already shifted to 100000`,
    operands: 'directory',
  },
  oci: {
    summary: 'fill an OCI bundle config.json with validated ID maps',
    usage: [
      'oci [--userns MODE] [--uidmap MAP]... [--gidmap MAP]...',
      '    [--allocate[=size=N,...]] [--name NAME] [--idmap-mount DEST]...',
      '    [--check] [--format oci|kubernetes] [--json] BUNDLE/config.json',
    ],
    description: `Fills the ID maps of an OCI runtime bundle (runc, crun, podman): linux.uidMappings and
linux.gidMappings, a {"type": "user"} entry in linux.namespaces, and for idmapped mounts the
mount's uidMappings, gidMappings and "idmap" option. The maps are chosen as 'userns run' chooses
them, cut at this namespace's own extents when you run nested, and checked as the kernel, the
runtime and newuidmap would check them. The file is replaced atomically; every other field, its
order, the indentation (tabs as 'runc spec' writes, or spaces) and every number stay as they were.
On any error nothing is written.

A Kubernetes per-pod userns record ({"uidMappings": [{"hostId", "containerId", "length"}], …},
kubelet <root>/pods/<podUID>/userns) is recognised too, and written compact as the kubelet does.`,
    options: {
      userns: {
        type: 'string',
        value: 'MODE',
        complete: USERNS_MODES,
        help: `the maps when no --uidmap/--gidmap is given (default: auto)
  auto      root: every ID; others: 0 = you, 1… = your subordinate IDs
  self, keep-id, identity   as in 'userns run'
  auto:size=N[,...]         the same as --allocate=size=N,...`,
      },
      uidmap: {
        type: 'string',
        multiple: true,
        value: 'MAP',
        help: `uid map in podman syntax, INSIDE:OUTSIDE[:COUNT][,...]; repeatable
(OUTSIDE = IDs of the namespace the runtime runs in)`,
      },
      gidmap: {
        type: 'string',
        multiple: true,
        value: 'MAP',
        help: 'gid map (default: the same as --uidmap)',
      },
      'from-kubernetes': {
        type: 'string',
        value: 'FILE',
        complete: 'file',
        help: 'the maps of a Kubernetes userns record',
      },
      allocate: {
        type: 'string',
        value: '[=OPTIONS]',
        help: `a range from the allocation registry ('userns alloc'), named after the
bundle (its directory's name and a hash of its path, so each bundle
has its own; --name to choose); OPTIONS as podman's auto:
size=N, policy=first-fit|contiguous|slot[:SIZE]|base:N,
uidmapping=M, gidmapping=M.
An allocation of that name is reused, so filling again keeps the IDs;
'userns alloc release NAME' frees it`,
      },
      name: { type: 'string', value: 'NAME', help: "the allocation's name" },
      root: { ...root, help: 'state root of the registry' },
      'idmap-mount': {
        type: 'string',
        multiple: true,
        value: 'DEST',
        help: `give the mount at DEST the container's maps (an idmapped mount: files
owned by N on disk appear as N inside); repeatable`,
      },
      'no-split': {
        type: 'boolean',
        help: "write the maps as given, without cutting them at this namespace's extents",
      },
      fallback: {
        type: 'string',
        value: 'single',
        complete: ['single', 'none'],
        help: 'without subordinate IDs, map only your own IDs (with a warning)',
      },
      check: {
        type: 'boolean',
        help: `validate only: the file as it is, or as the options would fill it;
write nothing, allocate nothing (exit 1 when something would be refused)`,
      },
      format: {
        type: 'string',
        value: 'FORMAT',
        complete: ['oci', 'kubernetes'],
        help: 'oci or kubernetes (default: recognised; kubernetes creates a missing file)',
      },
      json: { type: 'boolean', help: 'machine-readable output' },
    },
    after: `Checks: every map as the kernel would take it (overlaps, limits, IDs this namespace has, lines
inside one line of its map), maps and a user namespace together, no maps with a user namespace
joined by path, both kinds for idmapped mounts, your subordinate ranges when you are not root,
and the kubelet's rules for Kubernetes records (one mapping per kind, the same for both, from 0).
The runtime's rules on this machine too: an idmapped mount must be a bind mount (runc); only
root of the initial user namespace may idmap a host filesystem (the kernel; runc refuses idmapped
mounts when rootless); the container's root must be able to search every directory from / to
root.path, which must not go through a symbolic link (else runc fails: permission denied).
Errors name the file, the JSON path, and its line and column, or the directory that blocks.

Examples:
  runc spec --rootless && userns oci --uidmap 0:100000:65536 config.json
  userns oci --allocate=size=65536 --idmap-mount /data mybundle
  userns oci --userns auto config.json            # rootless: you + your subordinate IDs
  userns oci --check --json mybundle/config.json
  userns oci --format kubernetes --allocate=size=65536,policy=slot --name pod1 pods/pod1/userns`,
    operands: 'file',
  },
  doctor: {
    summary: 'find and explain what blocks user namespaces here',
    usage: [
      'doctor [--user NAME] [--newuidmap PATH] [--newgidmap PATH] [--registry URL] [--no-probe] [--root DIR] [--json]',
    ],
    description: `Checks everything that can stand in the way of user namespaces for a user (default: you), says
for each finding what is wrong, what it read (value, file and line) and the exact fix, and ends
with a live probe that really creates a user namespace with the maps 'userns run' would use.

Checks:
  kernel       user namespaces compiled in; user.max_user_namespaces (0 blocks everyone);
               kernel.unprivileged_userns_clone (Debian/Ubuntu); kernel.apparmor_restrict_
               unprivileged_userns (Ubuntu >= 23.10) and AppArmor profiles for the helper;
               nesting (running in a container) and how many IDs this namespace has;
               kernel.overflowuid/overflowgid; seccomp
  subids       the user's /etc/subuid and /etc/subgid entries (by name or numeric UID),
               libsubid ('subid:' in nsswitch.conf, getsubids), ranges under 65536 IDs,
               ranges overlapping another user's, the user's own ID inside its range,
               subgid missing while subuid exists, malformed lines
  newidmap     newuidmap/newgidmap present, setuid root or file capabilities
               (security.capability), owner, mode, version, nosuid mounts
  environment  XDG_RUNTIME_DIR, whether / is a shared mount, no_new_privs
  namespaces   nsfs file handles (Linux 6.18+: joins by handle, --hold none), pidfds,
               whether --hold mount is available to you, and each of your named namespaces:
               how it is held (keeper, mount, none) and whether it is alive
  registry     with a fleet allocation registry (--registry or $USERNS_REGISTRY): every etcd
               member answers; the pool configuration exists and what is stored is consistent
               (index, names, leases, no overlap, allocations inside the pools); this node has
               a live agent; none of this machine's users' IDs lie in the fleet pool
  probe        creates a namespace through the real 'userns run' path, reads the maps back
               inside and reports the exact step that failed (helper launch, unshare,
               newuidmap, newgidmap, write, setup, exec, read back)

For root, the rootless checks (subordinate IDs, newuidmap) are informational: root writes its
maps directly. Run as root with --user NAME to diagnose another user; the probe then runs as
that user.`,
    options: {
      user: {
        type: 'string',
        value: 'NAME',
        complete: 'user',
        help: 'diagnose this user (login name or UID) instead of yourself',
      },
      newuidmap: {
        type: 'string',
        value: 'PATH',
        complete: 'file',
        help: 'inspect and use this newuidmap (default: from PATH)',
      },
      newgidmap: {
        type: 'string',
        value: 'PATH',
        complete: 'file',
        help: 'inspect and use this newgidmap (default: from PATH)',
      },
      registry: {
        type: 'string',
        value: 'URL',
        help: 'check this fleet allocation registry (default $USERNS_REGISTRY)',
      },
      node: {
        type: 'string',
        value: 'NAME',
        help: "this machine's node name in it (default $USERNS_NODE, else the host name)",
      },
      root: {
        ...root,
        help: "state root whose named namespaces are reported, and this node's cache of the fleet registry (default: yours)",
      },
      'no-probe': {
        type: 'boolean',
        help: 'skip the live probe (and the named-namespace checks, which start the helper)',
      },
      json: {
        type: 'boolean',
        help: 'one object: { ok, user, checks: [{ id, status, title, message, evidence, fix }] }',
      },
    },
    after: `Output is coloured on a terminal (NO_COLOR=1 turns it off).

Exit status: 0 when nothing blocks (warnings allowed), 1 when a check found an error,
2 for usage errors.

Examples:
  userns doctor
  sudo userns doctor --user alice
  userns doctor --json | jq '.checks[] | select(.status != "ok")'`,
  },
  completion: {
    summary: 'print a shell completion script (bash, zsh or fish)',
    usage: ['completion bash|zsh|fish'],
    description: `Prints a script that makes the shell complete userns's commands, subcommands, options and their
values (map formats, modes, files, the names of named namespaces). It is generated from the same
table as --help, so it always knows every option of this version.`,
    options: {
      json: { type: 'boolean', help: '{"ok": true, "shell", "script"}' },
    },
    after: `Install:
  bash   userns completion bash > /etc/bash_completion.d/userns     (or in ~/.bashrc:
         source <(userns completion bash))
  zsh    userns completion zsh > "\${fpath[1]}/_userns"   (then start a new shell)
  fish   userns completion fish > ~/.config/fish/completions/userns.fish`,
    operands: 'shell',
  },
  help: {
    summary: 'show the help of userns or of a command',
    usage: ['help [COMMAND [SUBCOMMAND]]'],
    description: `Prints the same text as 'userns COMMAND [SUBCOMMAND] --help' (without a COMMAND, the list of
commands). The manual page userns(1) has every command's help in one place.`,
    options: {},
    operands: 'topic',
  },
  version: {
    summary: 'print the version of userns',
    usage: ['version [--json]', '--version | -V'],
    description: 'Prints the version of this userns (from its package.json).',
    options: {
      json: { type: 'boolean', help: '{"ok": true, "version", "node", "platform"}' },
    },
  },
} as const satisfies Record<string, CommandSpec>;

export type CommandName = keyof typeof COMMANDS;

/** A command `userns` itself dispatches (`map`, not `map split`). */
export type TopCommand = Exclude<CommandName, `${string} ${string}`>;

/** The commands `userns` itself dispatches, in help order. */
export const TOP_COMMANDS = (Object.keys(COMMANDS) as CommandName[]).filter(
  (name): name is TopCommand => !name.includes(' '),
);

/** What `userns --help` and the man page say about userns as a whole. */
export const PROGRAM = {
  summary: 'Linux user namespaces and their ID maps',
  description: `userns runs commands in new user namespaces with ID maps written exactly as the kernel wants
them, keeps named namespaces alive, allocates non-overlapping ID ranges for containers, shifts
the ownership of directory trees, fills OCI bundles, and explains what blocks user namespaces
on a machine ('userns doctor'). Its 'map' commands parse, validate, split, convert and compose
ID maps in every format people use.`,
  conventions: `Every command takes --help and --json (errors as JSON too), prints errors as one line with a
hint, and exits 0 on success, 1 on failure, 2 on a usage error, 70 on an internal error; 'run'
and 'exec' exit with the command's status, 125 when userns failed (usage included), 126 when it
is not executable, 127 when it is not found (see their help).`,
  exitStatus: `0 on success, 1 on failure, 2 on a usage error, 70 on an internal error (a bug in
userns: the message keeps the stack trace for the report). 'run' and 'exec' exit with the
command's status, 128+N when it was killed by signal N, 125 when userns itself failed (usage
errors included), 126 when
the command cannot be executed and 127 when it is not found. 'map validate' exits 1 for a map
the kernel would refuse, 'map lookup' for an unmapped ID, 'fit' for a tree the map does not fit.`,
  environment: [
    [
      'USERNS_SUBUID_FILE, USERNS_SUBGID_FILE',
      'the subordinate ID files userns reads (default /etc/subuid, /etc/subgid); newuidmap, newgidmap and getsubids still read the real ones',
    ],
    ['USERNS_ALLOC_CONFIG', 'the allocation pool configuration (default /etc/userns/alloc.json)'],
    ['USERNS_HELPER', 'the native helper binary (default: the one the package ships for this machine)'],
    [
      'USERNS_NSFS_HANDLES=0',
      "act as on a kernel without nsfs file handles: named namespaces are joined through their keeper or bind mounts, and '--hold none' is refused",
    ],
    [
      'TMPDIR',
      "where 'doctor --user NAME' stages a copy of userns that NAME can read, when the install itself is private (falls back to /tmp)",
    ],
    ['XDG_RUNTIME_DIR', 'the state root of unprivileged users is $XDG_RUNTIME_DIR/userns when it is private'],
    ['NO_COLOR', 'when set and not empty, no colour in any output'],
    ['FORCE_COLOR', 'when set to anything but 0, colour even when output is not a terminal'],
    ['PATH', 'where commands, newuidmap and newgidmap are found'],
  ],
  files: [
    ['/run/userns', "root's state root: named namespaces (ns/NAME/) and the allocation registry (alloc/)"],
    ['/etc/subuid, /etc/subgid', 'the subordinate ID ranges of unprivileged users'],
    ['/etc/userns/alloc.json', "root's allocation pools ('userns alloc')"],
  ],
  seeAlso: [
    'unshare(1)',
    'nsenter(1)',
    'newuidmap(1)',
    'newgidmap(1)',
    'subuid(5)',
    'subgid(5)',
    'user_namespaces(7)',
  ],
} as const;
