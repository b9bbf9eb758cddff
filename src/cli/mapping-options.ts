/** The mapping and namespace options of `userns run` and `userns create`, and `--user`. */
import { UsageError, UsernsError } from '../errors/index.js';
import { MAX_MAPPABLE_ID } from '../idmap/extent.js';
import { parseModeSpec } from '../maps/modes.js';
import { type MountSpec, parseMountSpec } from '../mount/spec.js';
import { MAPPING } from './commands.js';
import type { CliIo } from './common.js';

const ALL_EXTRA = ['mount', 'pid', 'uts', 'ipc', 'net', 'cgroup'] as const;

/** The mapping and namespace options shared by `run` and `create` (the command table's MAPPING). */
export const MAPPING_OPTIONS = MAPPING;

function parseId(text: string, what: string, command: string): number {
  if (!/^\d+$/.test(text) || Number(text) > MAX_MAPPABLE_ID) {
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
/**
 * Refuses an unknown --userns MODE or malformed keep-id options (`auto:OPTIONS` is checked by
 * the allocator itself).
 */
export function checkUsernsMode(mode: string | undefined, hint: string): void {
  if (mode !== undefined && !mode.startsWith('auto:') && parseModeSpec(mode) === undefined) {
    throw new UsageError(
      `unknown --userns mode '${mode}' (auto, auto:size=N,…, self, keep-id, keep-id:uid=N,gid=N,size=N, identity)`,
      { hint },
    );
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
