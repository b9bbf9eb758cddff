/**
 * Checks of the fleet allocation registry, when one is configured (--registry, or
 * $USERNS_REGISTRY): every etcd member answers; the pool configuration exists, reads and is
 * consistent with what is stored (alloc/fleet/registry.ts verify: index, names, leases, no
 * overlap, allocations inside the pools); this node has a live agent; this machine's own IDs
 * (passwd/group entries, users' subordinate ranges) inside the fleet pool, and any allocation
 * that holds some of them.
 */
import { join } from 'node:path';
import { stateRoot } from '../alloc/allocate.js';
import { connectFleet } from '../alloc/fleet/client.js';
import { FleetRegistry } from '../alloc/fleet/registry.js';
import { isFleetRegistry, parseRegistryUrl, redact } from '../alloc/fleet/url.js';
import { SystemTaken } from '../alloc/system-taken.js';
import { formatRange } from '../idmap/extent.js';
import { intersectRanges, rangesSize } from '../idmap/ranges.js';
import { type Check, check, type DoctorContext } from './types.js';

const c = (
  name: string,
  title: string,
  status: Check['status'],
  message: string,
  evidence: Check['evidence'],
  fix?: string,
) => check('registry', name, title, status, message, evidence, fix);

interface MemberAnswer {
  endpoint: string;
  version?: string;
  leader?: boolean;
  error?: string;
}

async function askMember(url: ReturnType<typeof parseRegistryUrl>, endpoint: string): Promise<MemberAnswer> {
  const one = connectFleet({ ...url, endpoints: [endpoint], timeoutMs: 2000, tryTimeoutMs: 1500 });
  try {
    const status = await one.maintenance.status({ deadline: Date.now() + 2000 });
    return { endpoint, version: status.version, leader: status.leader === status.header.member_id };
  } catch (error) {
    return { endpoint, error: ((error as Error).message ?? String(error)).split('\n')[0]! };
  } finally {
    one.close();
  }
}

/** The registry checks (none when no fleet registry is configured). */
export async function registryChecks(ctx: DoctorContext): Promise<Check[]> {
  const env = ctx.options.env ?? process.env;
  const text = ctx.options.registry ?? env.USERNS_REGISTRY;
  if (text === undefined || text === '' || text === 'local') return [];
  const shown = redact(text);
  if (!isFleetRegistry(text)) {
    return [
      c(
        'url',
        'fleet registry',
        'error',
        `${JSON.stringify(shown)} is neither local nor an etcd:// URL`,
        { value: shown },
        'set USERNS_REGISTRY=etcd://HOST:PORT[,HOST:PORT…]/PREFIX',
      ),
    ];
  }
  let url: ReturnType<typeof parseRegistryUrl>;
  try {
    url = parseRegistryUrl(text);
  } catch (error) {
    return [
      c(
        'url',
        'fleet registry',
        'error',
        (error as Error).message,
        { value: shown },
        'fix the registry URL (userns alloc --help)',
      ),
    ];
  }
  const checks: Check[] = [];
  const answers = await Promise.all(url.endpoints.map((e) => askMember(url, e)));
  const up = answers.filter((a) => a.error === undefined);
  const down = answers.filter((a) => a.error !== undefined);
  const leader = up.find((a) => a.leader)?.endpoint;
  const evidence = { value: url.display, members: answers };
  if (up.length === 0) {
    checks.push(
      c(
        'reachable',
        `fleet registry ${url.display}`,
        'error',
        `no etcd member answers: ${down.map((d) => `${d.endpoint}: ${d.error}`).join('; ')}`,
        evidence,
        'start etcd or fix the network between this machine and its members; meanwhile this node only gets the named ranges it holds (from its cache), no new ones',
      ),
    );
    return checks;
  }
  checks.push(
    c(
      'reachable',
      `fleet registry ${url.display}`,
      down.length === 0 ? 'ok' : 'warning',
      down.length === 0
        ? `all ${up.length} members answer (etcd ${up[0]!.version})${leader === undefined ? ', but none says it leads' : `, leader ${leader}`}`
        : `${up.length} of ${answers.length} members answer; ${down.map((d) => `${d.endpoint}: ${d.error}`).join('; ')}`,
      evidence,
      down.length === 0
        ? undefined
        : 'bring the members that do not answer back: with fewer than a majority the registry stops',
    ),
  );
  const dir = join(stateRoot(ctx.options.stateRoot), 'alloc');
  const registry = new FleetRegistry(url, {
    dir,
    idleCloseMs: 0,
    ...(ctx.options.node === undefined ? {} : { node: ctx.options.node }),
  });
  try {
    const status = await registry.status().catch((error: Error) => error);
    if (status instanceof Error) {
      checks.push(
        c(
          'config',
          'pool configuration',
          'error',
          status.message,
          { value: `${url.prefix}/config` },
          `set it: userns alloc config --registry ${url.display} --pool START:COUNT`,
        ),
      );
      return checks;
    }
    if (status.config === undefined) {
      checks.push(
        c(
          'config',
          'pool configuration',
          'error',
          `${url.prefix}/config does not exist: nothing can be allocated`,
          { value: null },
          `set it once for the fleet: userns alloc config --registry ${url.display} --pool START:COUNT [--policy slot]`,
        ),
      );
      return checks;
    }
    const config = status.config;
    const verdict = await registry.verify();
    const pools = `uids ${config.uidPool.map((r) => formatRange(r.start, r.count)).join(',')}, gids ${config.gidPool.map((r) => formatRange(r.start, r.count)).join(',')}`;
    checks.push(
      c(
        'config',
        'pool configuration',
        verdict.problems.length > 0 ? 'error' : verdict.warnings.length > 0 ? 'warning' : 'ok',
        verdict.problems.length > 0
          ? `${verdict.problems.length} problem${verdict.problems.length > 1 ? 's' : ''} in the stored registry: ${verdict.problems.slice(0, 5).join('; ')}${verdict.problems.length > 5 ? '; …' : ''}`
          : verdict.warnings.length > 0
            ? verdict.warnings.slice(0, 5).join('; ')
            : `${pools}, policy ${config.policy ?? 'first-fit'}, lease TTL ${config.leaseTtl ?? 60} s; ${verdict.allocations.length} allocation${verdict.allocations.length === 1 ? '' : 's'}, consistent`,
        { value: config, problems: verdict.problems, warnings: verdict.warnings },
        verdict.problems.length > 0
          ? 'keys of the registry were changed by something other than userns: compare with etcdctl get --prefix ' +
              url.prefix
          : verdict.warnings.length > 0
            ? 'release the allocations outside the pools, or make the pools contain them again (userns alloc config)'
            : undefined,
      ),
    );
    const me = status.nodes.find((n) => n.node === registry.node);
    checks.push(
      c(
        'node',
        `node ${registry.node}`,
        me === undefined ? 'warning' : 'ok',
        me === undefined
          ? `no agent keeps a lease for ${registry.node}: 'alloc --lease' fails, and allocations of run and create are persistent (gc on this node releases them); ${status.nodes.length} other node${status.nodes.length === 1 ? ' has' : 's have'} a live agent`
          : `its agent keeps lease ${me.lease} (TTL ${me.ttl} s) alive since ${me.since}; ${status.nodes.length} node${status.nodes.length === 1 ? '' : 's'} live in all`,
        { value: me ?? null, nodes: status.nodes.map((n) => n.node) },
        me === undefined
          ? `run one (as a service): userns alloc agent --registry ${url.display} --node ${registry.node}`
          : undefined,
      ),
    );
    const taken = await new SystemTaken({
      poolOwner: { name: '\0fleet', uid: -1 },
      ...(ctx.options.subuidPath === undefined ? {} : { subuidPath: ctx.options.subuidPath }),
      ...(ctx.options.subgidPath === undefined ? {} : { subgidPath: ctx.options.subgidPath }),
    }).refresh();
    const inside = {
      uid: intersectRanges(taken.uid, config.uidPool),
      gid: intersectRanges(taken.gid, config.gidPool),
    };
    const held = verdict.allocations.filter(
      (a) => intersectRanges(a.uids, inside.uid).length > 0 || intersectRanges(a.gids, inside.gid).length > 0,
    );
    const count = rangesSize(inside.uid) + rangesSize(inside.gid);
    const why = [...taken.why.uid, ...taken.why.gid]
      .filter((x) => intersectRanges([x], [...config.uidPool, ...config.gidPool]).length > 0)
      .slice(0, 5)
      .map((x) => `${formatRange(x.start, x.count)} ${x.reason}`);
    checks.push(
      c(
        'local-ids',
        "this machine's IDs in the fleet pool",
        held.length > 0 ? 'error' : count > 0 ? 'warning' : 'ok',
        held.length > 0
          ? `allocation${held.length > 1 ? 's' : ''} ${held.map((a) => `${a.name} (${a.id})`).join(', ')} hold IDs that are in use on this machine (${why.join('; ')}): those users can reach those containers' files here`
          : count > 0
            ? `${count} IDs of the fleet pool are in use on this machine (${why.join('; ')}): never allocated from here${me === undefined ? ', but other nodes may allocate them until this node runs an agent (which publishes them)' : ', nor, since its agent publishes them, from any node'}`
            : 'no passwd/group entry or subordinate range of this machine lies inside the fleet pool',
        { value: { uid: inside.uid, gid: inside.gid } },
        held.length > 0 || count > 0
          ? "move those users' subordinate ranges out of the fleet pool (usermod --del-subuids/--add-subuids), or take them out of the pool (userns alloc config)"
          : undefined,
      ),
    );
  } finally {
    registry.close();
  }
  return checks;
}
