import { UsageError } from '../errors/index.js';
import { isPrivileged } from '../system/self.js';
import { currentUser, lookupUser } from '../system/users.js';
import { environmentChecks } from './environment.js';
import { kernelChecks } from './kernel.js';
import { namespaceChecks } from './namespaces.js';
import { newidmapChecks } from './newidmap.js';
import { type ProbeOptions, probeAsUser, probeHere } from './probe.js';
import { registryChecks } from './registry.js';
import { subidChecks } from './subids.js';
import { type Check, check, type DoctorContext, type DoctorOptions, type DoctorReport } from './types.js';

/** The order of the groups in the report. */
export const GROUPS = [
  { group: 'kernel', title: 'Kernel' },
  { group: 'subids', title: 'Subordinate IDs' },
  { group: 'newidmap', title: 'newuidmap / newgidmap' },
  { group: 'environment', title: 'Environment' },
  { group: 'namespaces', title: 'Named namespaces' },
  { group: 'registry', title: 'Fleet allocation registry' },
  { group: 'probe', title: 'Live probe' },
] as const;

/**
 * Checks everything that can stand in the way of user namespaces for a user (default: the one
 * running this), and ends with a live probe that creates a namespace the way `userns run` does.
 * Never throws for a finding (findings are checks); throws a UsageError for an unknown user.
 */
export async function runDoctor(options: DoctorOptions = {}): Promise<DoctorReport> {
  const self = await currentUser();
  let target = self;
  if (options.user !== undefined) {
    const found = await lookupUser(options.user);
    if (found === undefined) {
      throw new UsageError(`no such user: '${options.user}'`, {
        hint: 'give a login name or UID that getent passwd knows',
      });
    }
    target = found;
  }
  const privileged = isPrivileged();
  const ctx: DoctorContext = {
    options,
    target,
    targetIsRoot: target.uid === 0,
    targetIsSelf: target.uid === self.uid,
    privileged,
  };
  const [subids, newidmap, registry] = await Promise.all([
    subidChecks(ctx),
    newidmapChecks(ctx),
    registryChecks(ctx),
  ]);
  const checks: Check[] = [
    ...kernelChecks(ctx),
    ...subids,
    ...newidmap,
    ...environmentChecks(ctx),
    ...registry,
  ];

  if (options.probe !== false) {
    checks.push(...(await namespaceChecks(ctx)));
    const probeOptions: ProbeOptions = {
      ...(options.newuidmap === undefined ? {} : { newuidmap: options.newuidmap }),
      ...(options.newgidmap === undefined ? {} : { newgidmap: options.newgidmap }),
      ...(options.helperPath === undefined ? {} : { helperPath: options.helperPath }),
      ...(options.probeTimeoutMs === undefined ? {} : { timeoutMs: options.probeTimeoutMs }),
    };
    let probe: Check;
    if (ctx.targetIsSelf) {
      probe = await probeHere(probeOptions);
    } else if ((process.geteuid?.() ?? -1) === 0) {
      probe = await probeAsUser(target, probeOptions);
    } else {
      probe = check(
        'probe',
        'userns',
        "live probe: 'userns run'",
        'skipped',
        `the probe runs as ${target.name} only when doctor runs as root or as ${target.name}`,
        { value: null },
        `run 'userns doctor' as ${target.name}, or 'sudo userns doctor --user ${target.name}'`,
      );
    }
    const explained = checks.filter((c) => c.status === 'error').map((c) => c.id);
    if (probe.status === 'error' && explained.length > 0) {
      probe = {
        ...probe,
        fix: `${probe.fix === undefined ? '' : `${probe.fix}\n`}fix the errors above first: ${explained.join(', ')}`,
      };
    }
    checks.push(probe);
  }
  return {
    user: { name: target.name, uid: target.uid, gid: target.gid },
    runner: { uid: self.uid, privileged },
    checks,
    blocking: checks.some((c) => c.status === 'error'),
  };
}
