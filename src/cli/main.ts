import { UsageError } from '../errors/index.js';
import { type CliIo, type Command, processIo, reportError } from './common.js';

/**
 * Command table. Each command lives in its own module and is imported only when it runs (the
 * only dynamic imports of userns, see docs/architecture.md): start-up measured interleaved, 30
 * rounds each, on the 2-core development machine, `userns map split --parent self 0:0:100` takes
 * 208 ms of CPU (426 ms wall, a loaded machine) and 356 ms (631 ms) with every command module
 * loaded at start. `cli_run_true_ms` in the benchmarks follows it.
 */
const commands: Record<string, { summary: string; load: () => Promise<Command> }> = {
  map: {
    summary: 'parse, validate, split, convert, compose and show ID maps',
    load: async () => (await import('./map.js')).main,
  },
  run: {
    summary: 'run a command in new user (and other) namespaces',
    // The spawn modules are fetched beside run.js, not after it: one round of file reads less.
    load: async () => (await Promise.all([import('./run.js'), import('../spawn/spawn.js')]))[0].main,
  },
  create: {
    summary: 'create named namespaces that outlive a command',
    load: async () => (await import('./create.js')).main,
  },
  exec: {
    summary: 'run a command inside a named namespace',
    load: async () => (await import('./exec.js')).main,
  },
  list: { summary: 'list named namespaces', load: async () => (await import('./list.js')).main },
  inspect: {
    summary: 'show the state of a named namespace',
    load: async () => (await import('./inspect.js')).main,
  },
  rm: { summary: 'remove a named namespace', load: async () => (await import('./rm.js')).main },
  alloc: {
    summary: 'allocate non-overlapping ID ranges for containers',
    load: async () => (await import('./alloc.js')).main,
  },
  shift: {
    summary: "rewrite a directory tree's owners from one ID map to another",
    load: async () => (await import('./shift.js')).main,
  },
  fit: {
    summary: 'list the IDs of a directory tree that a map cannot represent',
    load: async () => (await import('./fit.js')).main,
  },
  oci: {
    summary: 'fill an OCI bundle config.json with validated ID maps',
    load: async () => (await import('./oci.js')).main,
  },
  doctor: {
    summary: 'find and explain what blocks user namespaces here',
    load: async () => (await import('./doctor.js')).main,
  },
};

export const USAGE = `Usage: userns <command> [options]

Linux user namespaces and their ID maps.

Commands:
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`)
  .join('\n')}

Run 'userns <command> --help' for the options of a command.
Every command takes --json for machine-readable output and exits non-zero on failure
(2 for usage errors).

Environment:
  USERNS_SUBUID_FILE, USERNS_SUBGID_FILE
                 the subordinate ID files userns reads (default /etc/subuid, /etc/subgid);
                 newuidmap, newgidmap and getsubids still read the real ones
  USERNS_ALLOC_CONFIG
                 the allocation pool configuration (default /etc/userns/alloc.json)
  USERNS_HELPER  the native helper binary (default: the package's build/userns-helper)
  USERNS_NSFS_HANDLES=0
                 act as on a kernel without nsfs file handles: named namespaces are joined
                 through their keeper or bind mounts, and '--hold none' is refused
  TMPDIR         where 'doctor --user NAME' stages a copy of userns that NAME can read, when
                 the install itself is private (falls back to /tmp)
`;

export async function main(argv: string[], io: CliIo = processIo()): Promise<number> {
  const [name, ...rest] = argv;
  const json = argv.includes('--json');
  try {
    if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
      io.stdout.write(USAGE);
      return name === undefined ? 2 : 0;
    }
    if (name === '--version') {
      io.stdout.write('userns 0.1.0\n');
      return 0;
    }
    const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
    if (command === undefined) {
      throw new UsageError(`unknown command '${name}'`, {
        hint: "run 'userns --help' for the list of commands",
      });
    }
    return await (await command.load())(rest, io);
  } catch (error) {
    return reportError(error, io, json);
  }
}
