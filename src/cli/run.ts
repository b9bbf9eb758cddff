/** `userns run`: run a command in new user (and other) namespaces. */
import type { AutoUserns } from '../alloc/auto.js';
import { UsageError } from '../errors/index.js';
import { dryRunSpawn, spawn } from '../spawn/spawn.js';
import { COMMANDS } from './commands.js';
import {
  type CliIo,
  type Command,
  forwardAndWait,
  parseCommandLine,
  passThroughStatus,
  valueOptions,
  writeHelp,
  writeJson,
} from './common.js';
import { type MappingOptions, parseMappingOptions } from './mapping-options.js';

/** The options that take a value: the word after one of them is not the command. */
const VALUE_OPTIONS = valueOptions(COMMANDS.run.options);

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

const OPTIONS = COMMANDS.run.options;

export const main: Command = passThroughStatus(
  async (argv: string[], io: CliIo): Promise<number> => {
    const split = splitCommand(argv);
    const { values } = parseCommandLine(split.options, OPTIONS, 'run');
    if (values.help) return writeHelp(io, 'run');
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
      // Every check that needs no process, failing as the run would (exit 125, the same error).
      // `auto:…`: the range a run would get now, previewed (the registry is not written).
      const auto = await allocated(options, true);
      const plan = await dryRunSpawn(command, args, auto.options);
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
              m.userns === null
                ? null
                : { uidMap: m.userns.uidMap.toJSON(), gidMap: m.userns.gidMap.toJSON() },
          })),
          helper: plan.helperArgv,
          warnings: [...warnings, ...plan.warnings],
        });
        return 0;
      }
      for (const message of plan.warnings) io.stderr.write(`userns: warning: ${message}\n`);
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

    // `auto:…`: a range held by this process, released once the command has ended.
    const auto = await allocated(options, false);
    try {
      const child = spawn(command, args, { ...auto.options, stdio: 'inherit' });
      return await forwardAndWait(child);
    } finally {
      await auto.release().catch(() => {});
    }
  },
  (argv) => splitCommand(argv).options,
);

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
