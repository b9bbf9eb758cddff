/**
 * `userns run`: run a command in new user (and other) namespaces.
 * Imports only what running needs; the spawn modules load when a command actually runs.
 */
import { UsageError, UsernsError } from '../errors.js';
import type { MountSpec } from '../mount/spec.js';
import { parseMountSpec } from '../mount/spec.js';
import { COMMANDS, MAPPING } from './commands.js';
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

/** The mapping and namespace options shared by `run` and `create` (parsed by parseMappingOptions). */
export const MAPPING_OPTIONS = MAPPING;

const OPTIONS = COMMANDS.run.options;

const ALL_EXTRA = ['mount', 'pid', 'uts', 'ipc', 'net', 'cgroup'] as const;

function parseId(text: string, what: string, command: string): number {
  if (!/^\d+$/.test(text) || Number(text) > 4294967294) {
    throw new UsageError(`${what} must be a number from 0 to 4294967294, not '${text}'`, {
      hint: `see 'userns ${command} --help'`,
    });
  }
  return Number(text);
}

/** `--user UID[:GID]` (GID defaults to UID). */
export function parseUserOption(text: string, command = 'run'): { user: number; group: number } {
  const [u, g] = text.split(':');
  const user = parseId(u!, '--user UID', command);
  return { user, group: g === undefined || g === '' ? user : parseId(g, '--user GID', command) };
}

type MappingValues = {
  [K in keyof typeof MAPPING_OPTIONS]?: (typeof MAPPING_OPTIONS)[K] extends { multiple: true }
    ? string[]
    : (typeof MAPPING_OPTIONS)[K] extends { type: 'boolean' }
      ? boolean
      : string;
};

/** The spawn options that MAPPING_OPTIONS give (what `run` and `create` share). */
export interface MappingOptions {
  userns?: 'auto' | 'self' | 'keep-id' | 'identity' | `auto:${string}`;
  uidMap?: string;
  gidMap?: string;
  namespaces: (typeof ALL_EXTRA)[number][];
  setgroups?: 'allow' | 'deny';
  user?: number;
  group?: number;
  noSplit: boolean;
  fallback: 'single' | 'none';
  newuidmap?: string;
  newgidmap?: string;
  /** --mount SRC:DST[:OPTIONS] (src/mount/spec.ts). */
  mounts?: MountSpec[];
  onWarning: (message: string) => void;
}

/**
 * Checks and converts the MAPPING_OPTIONS values (UsageError on bad ones). Warnings go to
 * `warnings` and, unless `json`, to stderr.
 */
/** Refuses an unknown --userns MODE (`auto:OPTIONS` is checked by the allocator itself). */
export function checkUsernsMode(mode: string | undefined, hint: string): void {
  if (
    mode !== undefined &&
    !['auto', 'self', 'keep-id', 'identity'].includes(mode) &&
    !mode.startsWith('auto:')
  ) {
    throw new UsageError(`unknown --userns mode '${mode}' (auto, auto:size=N,…, self, keep-id, identity)`, {
      hint,
    });
  }
}

export function parseMappingOptions(
  values: MappingValues,
  context: { command: string; json: boolean; io: CliIo; warnings: string[] },
): MappingOptions {
  const { command, json, io, warnings } = context;
  const help = `see 'userns ${command} --help'`;
  const mode = values.userns;
  checkUsernsMode(mode, help);
  const namespaces: (typeof ALL_EXTRA)[number][] = [];
  for (const name of (values.unshare ?? '').split(',').filter((n) => n !== '')) {
    if (name === 'all') namespaces.push(...ALL_EXTRA);
    else if ((ALL_EXTRA as readonly string[]).includes(name))
      namespaces.push(name as (typeof ALL_EXTRA)[number]);
    else if (name !== 'user') {
      throw new UsageError(
        `unknown namespace '${name}' in --unshare (mount, pid, uts, ipc, net, cgroup, all)`,
        {
          hint: help,
        },
      );
    }
  }
  if (values.setgroups !== undefined && values.setgroups !== 'allow' && values.setgroups !== 'deny') {
    throw new UsageError(`--setgroups must be allow or deny, not '${values.setgroups}'`);
  }
  if (values.fallback !== undefined && values.fallback !== 'single' && values.fallback !== 'none') {
    throw new UsageError(`--fallback must be single (or none), not '${values.fallback}'`);
  }
  const ids = values.user === undefined ? undefined : parseUserOption(values.user, command);
  const mounts = values.mount?.map((text) => {
    try {
      return parseMountSpec(text);
    } catch (error) {
      if (!(error instanceof UsernsError)) throw error;
      throw new UsageError(error.message, {
        hint: error.hint ?? help,
        ...(error.data ? { data: error.data } : {}),
      });
    }
  });
  return {
    ...(mode === undefined ? {} : { userns: mode as NonNullable<MappingOptions['userns']> }),
    ...(values.uidmap === undefined ? {} : { uidMap: values.uidmap.join(',') }),
    ...(values.gidmap === undefined ? {} : { gidMap: values.gidmap.join(',') }),
    namespaces,
    ...(values.setgroups === undefined ? {} : { setgroups: values.setgroups as 'allow' | 'deny' }),
    ...(ids === undefined ? {} : ids),
    noSplit: values['no-split'] === true,
    fallback: (values.fallback ?? 'none') as 'single' | 'none',
    ...(values.newuidmap === undefined ? {} : { newuidmap: values.newuidmap }),
    ...(values.newgidmap === undefined ? {} : { newgidmap: values.newgidmap }),
    ...(mounts === undefined ? {} : { mounts }),
    onWarning: (message: string) => {
      warnings.push(message);
      if (!json) io.stderr.write(`userns: warning: ${message}\n`);
    },
  };
}

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
      const { dryRunSpawn } = await import('../spawn/spawn.js');
      const plan = await dryRunSpawn(command, args, options);
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

    const { spawn } = await import('../spawn/spawn.js');
    const child = spawn(command, args, { ...options, stdio: 'inherit' });
    return forwardAndWait(child);
  },
  (argv) => splitCommand(argv).options,
);

function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`;
}
