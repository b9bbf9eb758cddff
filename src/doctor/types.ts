import type { UserInfo } from '../system/users.js';

/** ok: fine. warning: works, but something will bite. error: blocks user namespaces. skipped: not applicable or not checked. */
export type CheckStatus = 'ok' | 'warning' | 'error' | 'skipped';

/** The area a check belongs to (the report is grouped by it; it is also the prefix of the id). */
export type CheckGroup =
  | 'kernel'
  | 'subids'
  | 'newidmap'
  | 'environment'
  | 'namespaces'
  | 'registry'
  | 'probe';

/** What a check read: the value, and where (file and line, counting from 1) when it came from a file. */
export interface Evidence {
  value?: unknown;
  file?: string;
  line?: number;
  [key: string]: unknown;
}

/**
 * One finding of `userns doctor`: what was checked, its status (ok, warning, error, skipped),
 * what it read (evidence: value, file, line) and the fix.
 */
export interface Check {
  /** Stable identifier, `group.name`, e.g. `kernel.max_user_namespaces`. */
  id: string;
  group: CheckGroup;
  /** A short title, e.g. "user.max_user_namespaces". */
  title: string;
  status: CheckStatus;
  /** What was found, in one or two sentences. */
  message: string;
  evidence: Evidence;
  /** The exact fix (commands or file edits), when something is wrong. */
  fix?: string;
}

/** Options of {@link runDoctor}. */
export interface DoctorOptions {
  /** The user to diagnose (login name or UID); default: the user running doctor. */
  user?: string;
  /** newuidmap / newgidmap to inspect and to use in the probe (default: found in PATH). */
  newuidmap?: string;
  newgidmap?: string;
  /** Substitute files (tests; the live probe still uses the real ones through newuidmap). */
  subuidPath?: string;
  subgidPath?: string;
  nsswitchPath?: string;
  /** getsubids to run (default: found in PATH); a path that does not exist = not installed. */
  getsubidsPath?: string;
  /** Roots of /proc and /sys, the AppArmor profile directory (tests). */
  procRoot?: string;
  sysRoot?: string;
  apparmorDir?: string;
  /** Run the live probe (default true). */
  probe?: boolean;
  /** The native helper (default: $USERNS_HELPER, else the package's own for this platform). */
  helperPath?: string;
  /** Environment of the user being diagnosed, for XDG_RUNTIME_DIR (default: process.env when diagnosing oneself). */
  env?: NodeJS.ProcessEnv;
  /** Give up on the live probe after this long (default 20 s). */
  probeTimeoutMs?: number;
  /** A fleet allocation registry to check (default: $USERNS_REGISTRY; none or `local`: no registry checks). */
  registry?: string;
  /** This machine's node name in it (default: $USERNS_NODE, else the host name). */
  node?: string;
  /**
   * The state root: whose named namespaces are reported, and where this node's cache of the
   * fleet registry lives (default: the caller's; see userns create).
   */
  stateRoot?: string;
}

/**
 * The result of {@link runDoctor}: every check in order, and whether something blocks user
 * namespaces for the user.
 */
export interface DoctorReport {
  /** The user diagnosed. */
  user: { name: string; uid: number; gid: number };
  /** Who ran doctor (its effective UID) and whether it writes maps directly (CAP_SETUID+CAP_SETGID). */
  runner: { uid: number; privileged: boolean };
  checks: Check[];
  /** Some check has status 'error'. */
  blocking: boolean;
}

/** What every group of checks gets. */
export interface DoctorContext {
  options: DoctorOptions;
  /** The user diagnosed. */
  target: UserInfo;
  /** The target is root (uid 0): rootless-only checks are informational. */
  targetIsRoot: boolean;
  /** The target is the user running doctor. */
  targetIsSelf: boolean;
  /** Doctor runs privileged (can write maps directly, can run things as the target). */
  privileged: boolean;
}

export function check(
  group: CheckGroup,
  name: string,
  title: string,
  status: CheckStatus,
  message: string,
  evidence: Evidence,
  fix?: string,
): Check {
  return {
    id: `${group}.${name}`,
    group,
    title,
    status,
    message,
    evidence,
    ...(fix === undefined ? {} : { fix }),
  };
}

/** Status for a rootless-only finding: as is for an unprivileged target, informational for root. */
export function forTarget(ctx: DoctorContext, status: CheckStatus): CheckStatus {
  return ctx.targetIsRoot && (status === 'error' || status === 'warning') ? 'ok' : status;
}
