/**
 * The live probe: creates a user namespace exactly the way `userns run` does (spawn() with the
 * mode run uses by default, 'auto'; the same newuidmap/newgidmap), runs a command in it that
 * prints its own maps, and compares them with what was planned. A failure names the step:
 * plan, helper launch, unshare, newuidmap, newgidmap, write, setup, exec or read back.
 *
 * For another user (doctor run as root with --user NAME), the same probe runs as that user, in a
 * separate Node process started with setpriv (or su), because that is what the user experiences.
 */
import { execFile } from 'node:child_process';
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DOCTOR_HINT, UsernsError } from '../errors/index.js';
import type { Extent } from '../idmap/extent.js';
import { parseKernelMap } from '../idmap/formats/kernel.js';
import type { IdMap } from '../idmap/idmap.js';
import { packagedHelperPath } from '../native/helper-binary.js';
import { planArgv, type SpawnOptions, type SpawnPlan, spawn } from '../spawn/spawn.js';
import { PACKAGE_ROOT, type StagedPackage, stagePackage } from '../state/stage.js';
import { findProgram } from '../system/exec.js';
import { firstUnreachable, unreachableData } from '../system/reachability.js';
import { type Check, check } from './types.js';

/** Options of the live probe (the last check of `userns doctor`). */
export interface ProbeOptions {
  newuidmap?: string;
  newgidmap?: string;
  helperPath?: string;
  /** Give up (and kill the probe) after this long (default 20 s). */
  timeoutMs?: number;
}

/** The step of `userns run` that failed, from a typed error's code. */
export type ProbeStep =
  | 'plan'
  | 'helper launch'
  | 'unshare'
  | 'newuidmap'
  | 'newgidmap'
  | 'write'
  | 'setup'
  | 'exec'
  | 'read back'
  | 'timeout';

/** Which step an error of spawn() comes from. */
export function stepOf(error: unknown): ProbeStep {
  if (!(error instanceof UsernsError)) return 'plan';
  const code = error.code;
  const data = error.data ?? {};
  if (code.startsWith('HELPER_') || code === 'PLATFORM_UNSUPPORTED') return 'helper launch';
  if (code === 'UNSHARE_FAILED') return 'unshare';
  if (code.startsWith('NEWUIDMAP_')) return 'newuidmap';
  if (code.startsWith('NEWGIDMAP_')) return 'newgidmap';
  if (code === 'RANGE_NOT_ALLOWED')
    return data.tool === 'newgidmap' || data.kind === 'gid' ? 'newgidmap' : 'newuidmap';
  if (code === 'MAP_WRITE_FAILED') {
    if (data.predicted === true) return 'plan';
    if (data.tool === 'newuidmap' || data.tool === 'newgidmap') return data.tool;
    return 'write';
  }
  if (code === 'SETGROUPS_WRITE_FAILED' || code === 'SETGROUPS_DENIED') return 'write';
  if (code === 'MAP_READBACK_FAILED') return 'read back';
  if (code.startsWith('COMMAND_') || code === 'EXEC_FAILED') return 'exec';
  if (
    [
      'SETGROUPS_FAILED',
      'ID_NOT_MAPPED',
      'SETID_FAILED',
      'MOUNT_PROC_FAILED',
      'CWD_FAILED',
      'SETUP_FAILED',
      'HOOK_FAILED',
      'ABORTED',
    ].includes(code)
  )
    return 'setup';
  return 'plan';
}

function lines(map: IdMap | readonly Extent[]): string[] {
  const extents = 'extents' in map ? map.extents : map;
  return extents.map((e) => `${e.inside} ${e.outside} ${e.count}`);
}

/** Same extents, whatever the order (the kernel reads back more than 5 lines sorted). */
function sameMap(a: string[], b: string[]): boolean {
  return a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');
}

const SCRIPT = 'cat /proc/self/uid_map; echo --; cat /proc/self/gid_map; echo --; cat /proc/self/setgroups';

function stripDoctorHint(hint: string | undefined): string | undefined {
  if (hint === undefined) return undefined;
  const text = hint.replace(`; ${DOCTOR_HINT}`, '').replace(DOCTOR_HINT, '').trim();
  return text === '' ? undefined : text;
}

function describePlan(plan: SpawnPlan): string {
  const how = (method: string, argv: string[] | null) =>
    method === 'direct' ? 'written directly' : `written by ${argv?.[0] ?? method}`;
  return `uid map ${lines(plan.uidMap).join(', ')} (${how(plan.uidMethod, plan.newuidmapArgv)}), gid map ${lines(plan.gidMap).join(', ')} (${how(plan.gidMethod, plan.newgidmapArgv)})`;
}

/**
 * Runs the probe in this process, as the user this process runs as. Never rejects: a failure is
 * a Check with status 'error' and `evidence.step`.
 */
export async function probeHere(options: ProbeOptions = {}): Promise<Check> {
  const title = "live probe: 'userns run' (mode auto)";
  const spawnOptions: SpawnOptions = {
    userns: 'auto',
    ...(options.newuidmap === undefined ? {} : { newuidmap: options.newuidmap }),
    ...(options.newgidmap === undefined ? {} : { newgidmap: options.newgidmap }),
    ...(options.helperPath === undefined ? {} : { helperPath: options.helperPath }),
  };
  const sh = findProgram('sh') ?? '/bin/sh';
  const argv = [sh, '-c', SCRIPT];
  const who = { uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 };
  const fail = (step: ProbeStep, message: string, error: unknown, extra: Record<string, unknown> = {}) => {
    const known = error instanceof UsernsError ? error : undefined;
    const evidence: Record<string, unknown> = {
      value: null,
      step,
      ...who,
      ...(known === undefined
        ? {}
        : {
            code: known.code,
            ...(typeof known.data?.errno === 'string' ? { errno: known.data.errno } : {}),
            error: known.message,
            ...(known.data === undefined ? {} : { data: known.data }),
          }),
      ...extra,
    };
    const fix = stripDoctorHint(known?.hint);
    return check('probe', 'userns', title, 'error', message, evidence, fix);
  };

  let plan: SpawnPlan;
  try {
    plan = await planArgv(argv, spawnOptions);
  } catch (error) {
    return fail('plan', `planning the maps failed: ${(error as Error).message}`, error);
  }
  const planned = { uid: lines(plan.uidMap), gid: lines(plan.gidMap) };
  const plannedEvidence = {
    planned: { uid_map: planned.uid, gid_map: planned.gid },
    methods: { uid: plan.uidMethod, gid: plan.gidMethod },
    ...(plan.newuidmapArgv === null ? {} : { newuidmap: plan.newuidmapArgv }),
    ...(plan.newgidmapArgv === null ? {} : { newgidmap: plan.newgidmapArgv }),
  };

  let stdout = '';
  let stderr = '';
  let timedOut = false;
  let result: Awaited<ReturnType<typeof spawn>>;
  try {
    const child = spawn(argv[0]!, argv.slice(1), { ...spawnOptions, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (d: string) => {
      stdout += d;
    });
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs ?? 20_000);
    try {
      result = await child;
    } finally {
      clearTimeout(timer);
    }
  } catch (error) {
    if (timedOut)
      return fail(
        'timeout',
        `the probe did not finish within ${options.timeoutMs ?? 20_000} ms`,
        error,
        plannedEvidence,
      );
    const step = stepOf(error);
    return fail(
      step,
      `'userns run' fails at step '${step}': ${(error as Error).message}`,
      error,
      plannedEvidence,
    );
  }
  if (timedOut || result.exitCode !== 0) {
    return fail(
      timedOut ? 'timeout' : 'exec',
      timedOut
        ? `the probe did not finish within ${options.timeoutMs ?? 20_000} ms`
        : `the namespace was created and the maps written, but '${argv.join(' ')}' exited ${result.exitCode ?? result.signal}: ${stderr.trim()}`,
      undefined,
      { ...plannedEvidence, stdout, stderr },
    );
  }
  const [uidText = '', gidText = '', setgroups = ''] = stdout.split('--\n');
  let inside: { uid: string[]; gid: string[] };
  try {
    inside = {
      uid: lines(parseKernelMap(uidText, { source: 'uid_map (inside)' })),
      gid: lines(parseKernelMap(gidText, { source: 'gid_map (inside)' })),
    };
  } catch (error) {
    return fail(
      'read back',
      `the maps printed inside the namespace cannot be parsed: ${(error as Error).message}`,
      error,
      {
        ...plannedEvidence,
        stdout,
      },
    );
  }
  const readBack = {
    value: { uid_map: inside.uid, gid_map: inside.gid, setgroups: setgroups.trim() },
    file: '/proc/self/uid_map (inside the new namespace)',
  };
  if (!sameMap(inside.uid, planned.uid) || !sameMap(inside.gid, planned.gid)) {
    return fail(
      'read back',
      `the maps in force differ from the plan: uid_map ${inside.uid.join(', ')} (planned ${planned.uid.join(', ')}), gid_map ${inside.gid.join(', ')} (planned ${planned.gid.join(', ')})`,
      undefined,
      { ...plannedEvidence, ...readBack },
    );
  }
  const single = !plan.privileged && plan.uidMap.size === 1;
  return check(
    'probe',
    'userns',
    title,
    'ok',
    `created a user namespace as uid ${who.uid} the way 'userns run' does and read its maps back inside: ${describePlan(plan)}; setgroups ${setgroups.trim()}` +
      (warnings(result).length > 0 ? `; warnings: ${warnings(result).join('; ')}` : '') +
      (single ? ' (only the own uid is mapped: no subordinate IDs)' : ''),
    { ...readBack, ...plannedEvidence, ...who },
  );
}

function warnings(result: { warnings?: string[] }): string[] {
  return result.warnings ?? [];
}

/**
 * Runs the probe as another user (needs root): a Node process started with setpriv (or su) as
 * that user imports this module and runs probeHere().
 */
export async function probeAsUser(
  user: { name: string; uid: number; gid: number; home?: string },
  options: ProbeOptions = {},
): Promise<Check> {
  const title = `live probe: 'userns run' as ${user.name}`;
  // The user must be able to run node, import this package and execute the helper. A private
  // install (under /root, mode 0700) is staged into a world-readable copy for the probe; a node
  // the user cannot reach is a finding that names the path, its mode and owner.
  const accessor = {
    uid: user.uid,
    gid: user.gid,
    groups: [],
    label: `${user.name} (uid ${user.uid}, gid ${user.gid})`,
  };
  const explicitHelper = options.helperPath ?? (process.env.USERNS_HELPER || undefined);
  const unreachableTool = firstUnreachable(
    [
      { path: process.execPath, need: 'execute' },
      ...(explicitHelper === undefined ? [] : [{ path: explicitHelper, need: 'execute' as const }]),
    ],
    accessor,
  );
  if (unreachableTool !== undefined) {
    const blocked = unreachableTool;
    const data = unreachableData(blocked, accessor);
    return check(
      'probe',
      'userns',
      title,
      'error',
      `cannot run the probe as ${user.name}: ${blocked.reason}`,
      { value: null, step: 'helper launch', ranAs: user.name, code: 'PATH_UNREACHABLE', unreachable: data },
      `install ${blocked.target === process.execPath ? 'node' : 'the helper'} where ${user.name} can reach it (e.g. /usr/local), or run doctor as ${user.name}`,
    );
  }
  let staged: StagedPackage | undefined;
  let moduleUrl = import.meta.url;
  const needsCopy = firstUnreachable(
    [
      { path: fileURLToPath(import.meta.url), need: 'read' },
      ...(explicitHelper === undefined ? [{ path: bundledHelper(), need: 'execute' as const }] : []),
    ],
    accessor,
  );
  if (needsCopy !== undefined) {
    try {
      // The probe's modules import no npm package (test/doctor/probe-graph.test.ts): copying
      // node_modules too (megabytes) would only slow doctor down.
      staged = stagePackage({ dependencies: false });
    } catch (error) {
      return check(
        'probe',
        'userns',
        title,
        'error',
        `cannot run the probe as ${user.name}: ${needsCopy.reason}; and ${(error as Error).message}`,
        {
          value: null,
          step: 'helper launch',
          ranAs: user.name,
          code: 'PATH_UNREACHABLE',
          unreachable: unreachableData(needsCopy, accessor),
        },
        (error as UsernsError).hint,
      );
    }
    moduleUrl = pathToFileURL(join(staged.root, relative(PACKAGE_ROOT, fileURLToPath(import.meta.url)))).href;
  }
  try {
    const result = await probeAs(user, options, title, moduleUrl);
    return staged === undefined
      ? result
      : {
          ...result,
          evidence: {
            ...result.evidence,
            staged: { from: PACKAGE_ROOT, dir: staged.root, because: unreachableData(needsCopy!, accessor) },
          },
        };
  } finally {
    staged?.remove();
  }
}

/** The package's own helper binary for this machine (where helperPath() looks by default). */
function bundledHelper(): string {
  return packagedHelperPath();
}

async function probeAs(
  user: { name: string; uid: number; gid: number; home?: string },
  options: ProbeOptions,
  title: string,
  moduleUrl: string,
): Promise<Check> {
  const script =
    `const { probeHere } = await import(${JSON.stringify(moduleUrl)});` +
    'const c = await probeHere(JSON.parse(process.argv[1]));' +
    "process.stdout.write(JSON.stringify(c) + '\\n');";
  const nodeArgv = [process.execPath, '--input-type=module', '-e', script, JSON.stringify(options)];
  const setpriv = findProgram('setpriv');
  const su = findProgram('su');
  let file: string;
  let args: string[];
  let via: string;
  if (setpriv !== undefined) {
    file = setpriv;
    args = [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups', '--', ...nodeArgv];
    via = 'setpriv';
  } else if (su !== undefined) {
    file = su;
    const quoted = nodeArgv.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
    args = ['-s', '/bin/sh', user.name, '-c', `exec ${quoted}`];
    via = 'su';
  } else {
    return check(
      'probe',
      'userns',
      title,
      'skipped',
      `cannot run the probe as ${user.name}: neither setpriv (util-linux) nor su is installed`,
      { value: null },
      'apt-get install util-linux',
    );
  }
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: user.home || '/',
    USER: user.name,
    LOGNAME: user.name,
    LC_ALL: 'C',
    ...(process.env.USERNS_HELPER === undefined ? {} : { USERNS_HELPER: process.env.USERNS_HELPER }),
  };
  const timeoutMs = (options.timeoutMs ?? 20_000) + 10_000;
  const r = await new Promise<{ code: number | null; stdout: string; stderr: string; error?: Error }>(
    (resolve) => {
      execFile(
        file,
        args,
        { cwd: '/', env, timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8' },
        (error, stdout, stderr) => {
          resolve({
            code:
              error === null
                ? 0
                : typeof (error as { code?: unknown }).code === 'number'
                  ? (error as { code: number }).code
                  : null,
            stdout: String(stdout),
            stderr: String(stderr),
            ...(error === null ? {} : { error }),
          });
        },
      );
    },
  );
  const last = r.stdout.trim().split('\n').pop() ?? '';
  try {
    const result = JSON.parse(last) as Check;
    if (result && typeof result === 'object' && result.id === 'probe.userns') {
      return { ...result, title, evidence: { ...result.evidence, ranAs: user.name, via } };
    }
  } catch {
    // fall through
  }
  return check(
    'probe',
    'userns',
    title,
    'error',
    `running the probe as ${user.name} (through ${via}) failed before it could report: ${r.stderr.trim() || r.error?.message || `exit ${r.code}`}`,
    { value: null, step: 'helper launch', ranAs: user.name, via, stdout: r.stdout, stderr: r.stderr },
    `check that ${user.name} can run ${process.execPath} and read ${new URL('.', moduleUrl).pathname}`,
  );
}
