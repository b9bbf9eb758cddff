/**
 * `userns alloc`: allocate non-overlapping uid/gid ranges for containers, list, release, gc.
 */

import { openRegistry, poolFiles } from '../alloc/allocate.js';
import * as alloc from '../alloc/index.js';
import { formatExclusion } from '../alloc/system-taken.js';
import { UsageError } from '../errors/index.js';
import { formatRange, formatTriple, INVALID_ID } from '../idmap/extent.js';
import type { IdRange } from '../idmap/ranges.js';
import { collectAllocationGarbage } from '../namespaces/index.js';
import { COMMANDS } from './commands.js';
import {
  type CliIo,
  type Command,
  mapJson,
  parseCommandLine,
  reportError,
  writeHelp,
  writeJson,
} from './common.js';
import { parseUserOption } from './mapping-options.js';
import { didYouMean } from './suggest.js';

/** --root and the substituted files, as a RegistryLocation. */
function location(values: {
  root?: string | undefined;
  'subuid-file'?: string | undefined;
  'subgid-file'?: string | undefined;
  'passwd-file'?: string | undefined;
  'group-file'?: string | undefined;
}) {
  return {
    ...(values.root === undefined ? {} : { root: values.root }),
    ...(values['subuid-file'] === undefined ? {} : { subuidPath: values['subuid-file'] }),
    ...(values['subgid-file'] === undefined ? {} : { subgidPath: values['subgid-file'] }),
    ...(values['passwd-file'] === undefined ? {} : { passwdPath: values['passwd-file'] }),
    ...(values['group-file'] === undefined ? {} : { groupPath: values['group-file'] }),
  };
}

function warn(io: CliIo, warnings: readonly string[] | undefined): void {
  for (const w of warnings ?? []) io.stderr.write(`userns: warning: ${w}\n`);
}

function ranges(rs: readonly IdRange[]): string {
  return rs.map((r) => formatRange(r.start, r.count)).join(',');
}

function allocationJson(a: alloc.Allocation & { estimate?: unknown; warnings?: unknown }) {
  const { seq: _seq, warnings: _warnings, ...rest } = a;
  return {
    ...rest,
    uidMap: mapJson(a.uidMap),
    gidMap: mapJson(a.gidMap),
  };
}

function parseSize(text: string): number {
  if (!/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(text) || Number(text) < 1 || Number(text) > INVALID_ID) {
    throw new UsageError(`--size ${JSON.stringify(text)}: expected a number of IDs from 1 to 4294967295`);
  }
  return Number(text);
}

async function doAllocate(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, COMMANDS.alloc.options, 'alloc');
  if (values.help) return writeHelp(io, 'alloc');
  if (positionals.length > 0) {
    throw new UsageError(
      `unexpected argument ${JSON.stringify(positionals[0])}${didYouMean(positionals[0]!, COMMANDS.alloc.subcommands)}`,
      {
        hint: "subcommands are list, release, gc and recover; see 'userns alloc --help'",
      },
    );
  }
  if (values.size !== undefined && values['for-rootfs'] !== undefined) {
    throw new UsageError('--size and --for-rootfs cannot be combined', { hint: 'give one or the other' });
  }
  const poolArg = (list: string[] | undefined, option: string) =>
    list?.map((t) => alloc.parsePoolArgument(t, option));
  const pool = poolArg(values.pool, '--pool');
  const uidPool = poolArg(values['uid-pool'], '--uid-pool');
  const gidPool = poolArg(values['gid-pool'], '--gid-pool');
  const ids = values.user === undefined ? undefined : parseUserOption(values.user, 'alloc');
  const result = await alloc.allocate({
    ...location(values),
    ...(ids === undefined ? {} : { minSize: Math.max(ids.user, ids.group) + 1 }),
    ...(values.size === undefined ? {} : { size: parseSize(values.size) }),
    ...(values['for-rootfs'] === undefined ? {} : { forRootfs: values['for-rootfs'] }),
    ...(values.policy === undefined ? {} : { policy: values.policy }),
    ...(pool === undefined ? {} : { pool }),
    ...(uidPool === undefined ? {} : { uidPool }),
    ...(gidPool === undefined ? {} : { gidPool }),
    ...(values.name === undefined ? {} : { name: values.name }),
    ...(values.namespace === undefined ? {} : { namespace: values.namespace }),
    ...(values.uidmapping === undefined ? {} : { uidMapping: values.uidmapping.join(',') }),
    ...(values.gidmapping === undefined ? {} : { gidMapping: values.gidmapping.join(',') }),
    ...(values.config === undefined ? {} : { configPath: values.config }),
  });
  warn(io, result.warnings);
  if (values.json) {
    writeJson(io, { ok: true, allocation: allocationJson(result), warnings: result.warnings ?? [] });
    return 0;
  }
  io.stdout.write(
    `allocated ${result.name} (id ${result.id}): uids ${ranges(result.uids)}, gids ${ranges(result.gids)} (${result.size} each, policy ${result.policy})\n`,
  );
  if (result.estimate !== undefined) {
    const e = result.estimate;
    io.stdout.write(
      `  size from ${values['for-rootfs']}: highest uid ${e.uid.highest} (${e.uid.where ?? 'none'}), highest gid ${e.gid.highest} (${e.gid.where ?? 'none'})\n`,
    );
  }
  io.stdout.write(`  uid map: ${result.uidMap.map(formatTriple).join(',')}\n`);
  io.stdout.write(`  gid map: ${result.gidMap.map(formatTriple).join(',')}\n`);
  return 0;
}

async function doList(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, COMMANDS['alloc list'].options, 'alloc list');
  if (values.help) return writeHelp(io, 'alloc list');
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const where = location(values);
  const registry = openRegistry(where);
  const list = await registry.list();
  const migrated = await registry.migrated();
  let usage: Awaited<ReturnType<typeof alloc.allocationUsage>> | undefined;
  let usageError: string | undefined;
  const warnings: string[] = [...(migrated?.warnings ?? [])];
  try {
    const poolArg = (list: string[] | undefined, option: string) =>
      list?.map((t) => alloc.parsePoolArgument(t, option));
    const pool = poolArg(values.pool, '--pool');
    const uidPool = poolArg(values['uid-pool'], '--uid-pool');
    const gidPool = poolArg(values['gid-pool'], '--gid-pool');
    const pools = await alloc.resolvePools({
      ...(pool === undefined ? {} : { pool }),
      ...(uidPool === undefined ? {} : { uidPool }),
      ...(gidPool === undefined ? {} : { gidPool }),
      ...(values.config === undefined ? {} : { configPath: values.config }),
      ...poolFiles(where),
    });
    warnings.push(...(pools.warnings ?? []));
    usage = await alloc.allocationUsage({ ...where, pools });
  } catch (error) {
    usageError = (error as Error).message;
  }
  warn(io, warnings);
  if (values.json) {
    writeJson(io, {
      ok: true,
      allocations: list.map(allocationJson),
      ...(usage === undefined ? { usageError } : { usage }),
      ...(migrated === undefined ? {} : { migrated }),
      warnings,
    });
    return 0;
  }
  if (list.length === 0) io.stdout.write('no allocations\n');
  else {
    const rows = list.map((a) => [
      a.id,
      a.name,
      String(a.owner),
      ranges(a.uids),
      ranges(a.gids),
      a.policy,
      a.created,
    ]);
    const head = ['ID', 'NAME', 'OWNER', 'UIDS', 'GIDS', 'POLICY', 'CREATED'];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    for (const row of [head, ...rows]) {
      io.stdout.write(`${row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')}\n`);
    }
  }
  if (usage !== undefined) {
    for (const kind of ['uid', 'gid'] as const) {
      const u = usage[kind];
      io.stdout.write(
        `${kind} pool ${ranges(u.pool) || '(empty)'} (${u.source}): ${u.free} of ${u.poolSize} free, largest free block ${u.largestFree}\n`,
      );
      const shown = u.excluded.slice(0, 20);
      if (shown.length > 0) io.stdout.write(`  excluded from it (not free, held by no allocation):\n`);
      for (const x of shown) io.stdout.write(`    ${formatExclusion(x)}\n`);
      if (u.excluded.length > shown.length)
        io.stdout.write(
          `    … and ${u.excluded.length - shown.length} more ('userns alloc list --json' lists them all)\n`,
        );
    }
  } else if (usageError !== undefined) io.stdout.write(`pools: ${usageError}\n`);
  if (migrated !== undefined)
    io.stdout.write(
      `(migrated from ${migrated.from.join(' and ')} on ${migrated.at}: ${migrated.allocations} allocations)\n`,
    );
  return 0;
}

async function doRelease(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, COMMANDS['alloc release'].options, 'alloc release');
  if (values.help) return writeHelp(io, 'alloc release');
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0 ? 'alloc release needs an ID or NAME' : 'alloc release takes one ID or NAME',
      {
        hint: "'userns alloc list' shows them",
      },
    );
  }
  const released = await alloc.release(
    positionals[0]!,
    values.root === undefined ? {} : { root: values.root },
  );
  if (values.json) writeJson(io, { ok: true, released: allocationJson(released) });
  else
    io.stdout.write(
      `released ${released.name} (id ${released.id}): uids ${ranges(released.uids)}, gids ${ranges(released.gids)}\n`,
    );
  return 0;
}

async function doGc(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, COMMANDS['alloc gc'].options, 'alloc gc');
  if (values.help) return writeHelp(io, 'alloc gc');
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const { released, kept } = await collectAllocationGarbage(
    values.root === undefined ? {} : { root: values.root },
  );
  if (values.json) {
    writeJson(io, {
      ok: true,
      released: released.map(allocationJson),
      kept: kept.map((k) => ({ allocation: allocationJson(k.allocation), reason: k.reason })),
    });
    return 0;
  }
  if (released.length === 0) io.stdout.write('nothing to release\n');
  for (const a of released) {
    const why =
      a.holder !== undefined ? `process ${a.holder.pid} has exited` : `namespace ${a.namespace} is gone`;
    io.stdout.write(`released ${a.name} (id ${a.id}): ${why}\n`);
  }
  for (const k of kept) io.stdout.write(`kept ${k.allocation.name} (id ${k.allocation.id}): ${k.reason}\n`);
  return 0;
}

async function doRecover(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, COMMANDS['alloc recover'].options, 'alloc recover');
  if (values.help) return writeHelp(io, 'alloc recover');
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const result = await alloc.recoverAllocations(values.root === undefined ? {} : { root: values.root });
  warn(io, result.warnings);
  if (values.json) {
    writeJson(io, { ok: true, ...result, salvaged: result.salvaged.map(allocationJson) });
    return 0;
  }
  if (!result.damaged) {
    io.stdout.write('the allocation registry is not damaged: nothing to do\n');
    return 0;
  }
  io.stdout.write(`the damaged registry was moved to ${result.movedTo}\n`);
  for (const p of result.problems) io.stdout.write(`  ${p}\n`);
  io.stdout.write(
    `new registry: ${result.salvaged.length} allocations read back${result.lost === null ? '; the list of allocations was unreadable, so others may be lost' : result.lost > 0 ? `, ${result.lost} unreadable (lost)` : ''}\n`,
  );
  if (result.lost !== 0)
    io.stdout.write(
      "  IDs of lost allocations may still be in use: check running containers, and register them again with 'userns alloc --policy base:N --size N'\n",
    );
  return 0;
}

export const main: Command = async (argv, io) => {
  const json = argv.includes('--json');
  try {
    const [first, ...rest] = argv;
    if (first === 'list') return await doList(rest, io);
    if (first === 'release') return await doRelease(rest, io);
    if (first === 'gc') return await doGc(rest, io);
    if (first === 'recover') return await doRecover(rest, io);
    if (first === 'help') return await writeHelp(io, 'alloc');
    return await doAllocate(argv, io);
  } catch (error) {
    return reportError(error, io, json);
  }
};
