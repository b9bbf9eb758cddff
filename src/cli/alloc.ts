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

/** --root, --registry, --node and the substituted files, as a RegistryLocation. */
function location(values: {
  root?: string | undefined;
  registry?: string | undefined;
  node?: string | undefined;
  'subuid-file'?: string | undefined;
  'subgid-file'?: string | undefined;
  'passwd-file'?: string | undefined;
  'group-file'?: string | undefined;
}) {
  return {
    ...(values.root === undefined ? {} : { root: values.root }),
    ...(values.registry === undefined ? {} : { registryUrl: values.registry }),
    ...(values.node === undefined ? {} : { node: values.node }),
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

type AllocModule = typeof alloc;

/** " (node N, leased)", " (reused)", …: what a fleet allocation adds to its line. */
function fleetNote(a: import('../alloc/registry.js').Allocation): string {
  const notes: string[] = [];
  if (a.node !== undefined) notes.push(`node ${a.node}`);
  if (a.registry !== undefined) notes.push(a.lease === undefined ? 'persistent' : `on lease ${a.lease}`);
  if (a.reused) notes.push('existing allocation of this name');
  if (a.offline !== undefined) notes.push(`OFFLINE: from this node's cache, read at ${a.offline.readAt}`);
  return notes.length === 0 ? '' : `\n  ${notes.join(', ')}`;
}

async function doAllocate(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, COMMANDS.alloc.options, 'alloc');
  if (values.help) return writeHelp(io, 'alloc');
  if (positionals.length > 0) {
    throw new UsageError(
      `unexpected argument ${JSON.stringify(positionals[0])}${didYouMean(positionals[0]!, COMMANDS.alloc.subcommands)}`,
      {
        hint: "subcommands are list, release, gc, recover, config and agent; see 'userns alloc --help'",
      },
    );
  }
  if (values.size !== undefined && values['for-rootfs'] !== undefined) {
    throw new UsageError('--size and --for-rootfs cannot be combined', { hint: 'give one or the other' });
  }
  const where = location(values);
  const fleet = alloc.fleetRegistryText(where) !== undefined;
  if (values.lease && !fleet) {
    throw new UsageError('--lease needs a fleet registry', {
      hint: 'give --registry etcd://HOST:PORT/PREFIX (or set USERNS_REGISTRY)',
    });
  }
  const poolArg = (list: string[] | undefined, option: string) =>
    list?.map((t) => alloc.parsePoolArgument(t, option));
  const pool = poolArg(values.pool, '--pool');
  const uidPool = poolArg(values['uid-pool'], '--uid-pool');
  const gidPool = poolArg(values['gid-pool'], '--gid-pool');
  const ids = values.user === undefined ? undefined : parseUserOption(values.user, 'alloc');
  const result = await alloc.allocate({
    ...where,
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
    ...(values.lease ? { lease: 'node' as const } : {}),
  });
  warn(io, result.warnings);
  if (values.json) {
    writeJson(io, {
      ok: true,
      allocation: allocationJson(result),
      offline: result.offline !== undefined,
      warnings: result.warnings ?? [],
    });
    return 0;
  }
  io.stdout.write(
    `${result.reused ? 'existing' : 'allocated'} ${result.name} (id ${result.id}): uids ${ranges(result.uids)}, gids ${ranges(result.gids)} (${result.size} each, policy ${result.policy})${fleetNote(result)}\n`,
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

function table(io: CliIo, head: string[], rows: string[][]): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [head, ...rows]) {
    io.stdout.write(`${row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')}\n`);
  }
}

async function doList(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, COMMANDS['alloc list'].options, 'alloc list');
  if (values.help) return writeHelp(io, 'alloc list');
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const where = location(values);
  const fleetText = alloc.fleetRegistryText(where);
  if (fleetText !== undefined) {
    const given = (['pool', 'uid-pool', 'gid-pool', 'config'] as const).filter(
      (o) => values[o] !== undefined,
    );
    if (given.length > 0)
      throw new UsageError(`--${given[0]}: the pools of a fleet registry come from its configuration`, {
        hint: `'userns alloc config --registry ${fleetText}' shows them`,
      });
    return listFleet(where, io, values.json === true);
  }
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
    table(
      io,
      ['ID', 'NAME', 'OWNER', 'UIDS', 'GIDS', 'POLICY', 'CREATED'],
      list.map((a) => [a.id, a.name, String(a.owner), ranges(a.uids), ranges(a.gids), a.policy, a.created]),
    );
  }
  if (usage !== undefined) writeUsage(io, usage);
  else if (usageError !== undefined) io.stdout.write(`pools: ${usageError}\n`);
  if (migrated !== undefined)
    io.stdout.write(
      `(migrated from ${migrated.from.join(' and ')} on ${migrated.at}: ${migrated.allocations} allocations)\n`,
    );
  return 0;
}

function writeUsage(io: CliIo, usage: Awaited<ReturnType<AllocModule['allocationUsage']>>): void {
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
}

/** `alloc list` of a fleet registry: which node holds what, the live nodes, the pools. */
async function listFleet(where: ReturnType<typeof location>, io: CliIo, json: boolean): Promise<number> {
  const registry = alloc.openFleetRegistry(where);
  const list = await registry.list();
  const offline = list.find((a) => a.offline !== undefined)?.offline;
  let status: Awaited<ReturnType<typeof registry.status>> | undefined;
  let usage: Awaited<ReturnType<typeof registry.usage>> | undefined;
  let usageError: string | undefined;
  if (offline === undefined && !(list.length === 0 && (await isOffline(registry)))) {
    status = await registry.status();
    try {
      usage = await registry.usage();
    } catch (error) {
      usageError = (error as Error).message;
    }
  }
  const warnings: string[] = [];
  if (offline !== undefined || status === undefined)
    warnings.push(
      `the fleet registry ${registry.location} is unreachable: showing what this node's cache holds (allocations this node made or used), not the fleet`,
    );
  warn(io, warnings);
  if (json) {
    writeJson(io, {
      ok: true,
      registry: registry.location,
      node: registry.node,
      offline: status === undefined,
      allocations: list.map(allocationJson),
      ...(status === undefined
        ? {}
        : { nodes: status.nodes, config: status.config ?? null, revision: status.revision }),
      ...(usage === undefined ? (usageError === undefined ? {} : { usageError }) : { usage }),
      warnings,
    });
    return 0;
  }
  if (list.length === 0) io.stdout.write('no allocations\n');
  else {
    table(
      io,
      ['ID', 'NAME', 'NODE', 'LEASE', 'HELD BY', 'UIDS', 'GIDS', 'POLICY', 'CREATED'],
      list.map((a) => [
        a.id,
        a.name,
        a.node ?? '-',
        a.lease === undefined ? 'persistent' : a.lease,
        (a.holders ?? []).join(',') || '-',
        ranges(a.uids),
        ranges(a.gids),
        a.policy,
        a.created,
      ]),
    );
  }
  if (status !== undefined) {
    io.stdout.write(
      status.nodes.length === 0
        ? 'nodes: none has a live agent\n'
        : `nodes (with a live agent): ${status.nodes.map((n) => `${n.node} (lease ${n.lease}, TTL ${n.ttl} s, since ${n.since})`).join('; ')}\n`,
    );
  }
  if (usage !== undefined) writeUsage(io, usage);
  else if (usageError !== undefined) io.stdout.write(`pools: ${usageError}\n`);
  return 0;
}

/** Whether the registry answers (for a list that came back empty: from the cache, or truly empty). */
async function isOffline(registry: import('../alloc/index.js').FleetRegistry): Promise<boolean> {
  try {
    await registry.status();
    return false;
  } catch (error) {
    if ((error as { code?: string }).code === 'REGISTRY_UNREACHABLE') return true;
    throw error;
  }
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
  const released = await alloc.release(positionals[0]!, {
    ...location(values),
    ...(values.force ? { force: true } : {}),
  });
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
  const { released, kept } = await collectAllocationGarbage(location(values));
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

function fleetOnly(values: { registry?: string | undefined }, command: string): string {
  const text = alloc.fleetRegistryText(values.registry === undefined ? {} : { registryUrl: values.registry });
  if (text === undefined) {
    throw new UsageError(`alloc ${command} needs a fleet registry`, {
      hint:
        command === 'config'
          ? 'give --registry etcd://HOST:PORT/PREFIX (or set USERNS_REGISTRY); the local pools are configured in /etc/userns/alloc.json'
          : 'give --registry etcd://HOST:PORT/PREFIX (or set USERNS_REGISTRY)',
    });
  }
  return text;
}

function configText(config: import('../alloc/index.js').FleetConfig): string {
  return [
    `uid pool ${ranges(config.uidPool)}`,
    `gid pool ${ranges(config.gidPool)}`,
    `policy ${config.policy ?? 'first-fit (default)'}`,
    `lease TTL ${config.leaseTtl ?? 60} s${config.leaseTtl === undefined ? ' (default)' : ''}`,
  ].join('\n  ');
}

async function doConfig(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, COMMANDS['alloc config'].options, 'alloc config');
  if (values.help) return writeHelp(io, 'alloc config');
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const text = fleetOnly(values, 'config');
  const registry = alloc.openFleetRegistry(location(values));
  const poolArg = (list: string[] | undefined, option: string) =>
    list?.map((t) => alloc.parsePoolArgument(t, option));
  const pool = poolArg(values.pool, '--pool');
  const uidPool = poolArg(values['uid-pool'], '--uid-pool') ?? pool;
  const gidPool = poolArg(values['gid-pool'], '--gid-pool') ?? pool;
  let leaseTtl: number | undefined;
  if (values['lease-ttl'] !== undefined) {
    if (!/^[0-9]{1,6}$/.test(values['lease-ttl']))
      throw new UsageError(`--lease-ttl ${JSON.stringify(values['lease-ttl'])}: expected whole seconds`);
    leaseTtl = Number(values['lease-ttl']);
  }
  if (values.policy !== undefined) alloc.parsePolicy(values.policy);
  const setting =
    uidPool !== undefined || gidPool !== undefined || values.policy !== undefined || leaseTtl !== undefined;
  if (!setting) {
    if (values.force) throw new UsageError('--force goes with a new configuration');
    const status = await registry.status();
    if (values.json) {
      writeJson(io, {
        ok: true,
        registry: registry.location,
        config: status.config ?? null,
        nodes: status.nodes,
      });
      return 0;
    }
    if (status.config === undefined) {
      io.stdout.write(
        `${registry.location}: no configuration yet; set it with: userns alloc config --registry ${text} --pool START:COUNT\n`,
      );
      return 0;
    }
    io.stdout.write(`${registry.location}:\n  ${configText(status.config)}\n`);
    return 0;
  }
  const current = (await registry.status()).config;
  const uid = uidPool ?? current?.uidPool;
  const gid = gidPool ?? current?.gidPool;
  if (uid === undefined || gid === undefined) {
    throw new UsageError(`${registry.location} has no configuration yet: give its pools`, {
      hint: '--pool START:COUNT (both kinds), or --uid-pool and --gid-pool',
    });
  }
  const policy = values.policy ?? current?.policy;
  const ttl = leaseTtl ?? current?.leaseTtl;
  const result = await registry.setConfig(
    {
      uidPool: uid,
      gidPool: gid,
      ...(policy === undefined ? {} : { policy }),
      ...(ttl === undefined ? {} : { leaseTtl: ttl }),
    },
    values.force ? { force: true } : {},
  );
  const warnings =
    result.outside.length === 0
      ? []
      : [
          `${result.outside.length} allocation(s) keep ranges outside the new pools: ${result.outside.map((a) => a.name).join(', ')}`,
        ];
  warn(io, warnings);
  if (values.json) {
    writeJson(io, {
      ok: true,
      registry: registry.location,
      config: result.config,
      previous: result.previous ?? null,
      warnings,
    });
    return 0;
  }
  io.stdout.write(`${registry.location}: configuration set\n  ${configText(result.config)}\n`);
  return 0;
}

async function doAgent(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, COMMANDS['alloc agent'].options, 'alloc agent');
  if (values.help) return writeHelp(io, 'alloc agent');
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const text = fleetOnly(values, 'agent');
  let ttl: number | undefined;
  if (values.ttl !== undefined) {
    if (!/^[0-9]{1,6}$/.test(values.ttl))
      throw new UsageError(`--ttl ${JSON.stringify(values.ttl)}: expected whole seconds`);
    ttl = Number(values.ttl);
  }
  const say = (event: import('../alloc/index.js').AgentEvent) => {
    if (values.json) {
      io.stdout.write(`${JSON.stringify(event)}\n`);
      return;
    }
    switch (event.type) {
      case 'registered':
        io.stdout.write(
          `agent of node ${event.node} in ${alloc.parseRegistryUrl(text).display}: lease ${event.lease} (TTL ${event.ttl} s, ${event.adopted ? 'adopted from the previous run' : 'new'})\n`,
        );
        break;
      case 'keepalive-failed':
        io.stderr.write(
          `userns: warning: cannot keep the lease alive (retrying): ${event.message.split('\n')[0]}\n`,
        );
        break;
      case 'keepalive-restored':
        io.stderr.write('userns: keepalives answered again\n');
        break;
      case 'lost':
        io.stderr.write(
          `userns: warning: the lease ${event.lease} of node ${event.node} expired: its leased allocations were released fleet-wide (${event.forgotten} known here); registering again\n`,
        );
        break;
      case 'stopped':
        io.stdout.write(
          `agent of node ${event.node} stopped: ${event.revoked ? 'lease revoked, its leased allocations released' : `lease ${event.lease} left to expire after its TTL`}\n`,
        );
        break;
    }
  };
  const where = location(values);
  const agent = await alloc.startAgent({ ...where, ...(ttl === undefined ? {} : { ttl }) }, say);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await agent.stop(values['revoke-on-exit'] ? { revoke: true } : {});
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
    if (first === 'config') return await doConfig(rest, io);
    if (first === 'agent') return await doAgent(rest, io);
    if (first === 'help') return await writeHelp(io, 'alloc');
    return await doAllocate(argv, io);
  } catch (error) {
    return reportError(error, io, json);
  } finally {
    alloc.closeAllocationRegistries();
  }
};
