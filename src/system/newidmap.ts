import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { findProgram, run } from './exec.js';
import { mountOf } from './mounts.js';

/**
 * Is newuidmap/newgidmap installed so that an unprivileged user can use it? It must be setuid
 * root (shadow's default) or carry file capabilities (`--with-fcaps`: cap_setuid+ep on
 * newuidmap, cap_setgid+ep on newgidmap), on a filesystem not mounted nosuid, and we must not
 * run with no_new_privs (both make the kernel ignore setuid bits and file capabilities).
 * `usable` describes the installation for unprivileged callers; root does not need the helper
 * to be privileged, but the answer is the same for root.
 */

export type NewIdmapTool = 'newuidmap' | 'newgidmap';

/** What {@link inspectNewIdmap} found out about newuidmap or newgidmap. */
export interface NewIdmapInfo {
  which: NewIdmapTool;
  /** The file inspected: the given path, or the one found in PATH, /usr/bin, /usr/sbin, /bin. */
  path: string | undefined;
  /** A regular file exists at `path`. */
  exists: boolean;
  /** Owner UID of the file. */
  owner: number | undefined;
  /** Permission bits (incl. setuid 0o4000), e.g. 0o4755. */
  mode: number | undefined;
  /** Setuid bit set and owned by root. */
  setuidRoot: boolean;
  /** File capabilities in getcap's text form (e.g. "cap_setuid=ep"); undefined when none or getcap is missing. */
  fileCaps: string | undefined;
  /** Whether getcap could be run (when not, file capabilities are unknown). */
  getcapAvailable: boolean;
  /** The file capabilities give cap_setuid (newuidmap) / cap_setgid (newgidmap) in permitted AND effective. */
  hasNeededCap: boolean;
  /** The mount holding the file has `nosuid` (its mount point when so). */
  nosuidMount: string | undefined;
  /** This process has no_new_privs set (NoNewPrivs: 1), so children it runs gain no privileges. */
  noNewPrivs: boolean;
  usable: boolean;
  /** What is wrong, in words, followed by the fix. undefined when usable. */
  reason: string | undefined;
  /** Version of the Debian package that owns the file (dpkg-query), when known. */
  version: string | undefined;
}

/** Options of {@link inspectNewIdmap}. */
export interface InspectOptions {
  /** Inspect this file instead of looking the tool up. */
  path?: string;
  /** getcap to run (default: found in PATH or the sbin dirs); a missing path = not installed. */
  getcapPath?: string;
}

const NEEDED_CAP: Record<NewIdmapTool, string> = { newuidmap: 'cap_setuid', newgidmap: 'cap_setgid' };

/**
 * The capability text of getcap output for one file, or undefined when it has none (getcap
 * prints nothing). Accepts both `PATH CAPS` (libcap ≥ 2.4x) and the older `PATH = CAPS`.
 */
export function parseGetcapOutput(output: string, path?: string): string | undefined {
  for (const raw of output.split('\n')) {
    const line = raw.trimEnd();
    if (line === '') continue;
    let rest: string | undefined;
    if (path !== undefined && line.startsWith(`${path} `)) {
      rest = line.slice(path.length + 1);
    } else {
      const m = /^(.*?) ((?:= )?(?:cap_|all|=|[0-9]).*)$/.exec(line);
      rest = m?.[2];
    }
    if (rest === undefined) continue;
    if (rest.startsWith('= ')) rest = rest.slice(2);
    rest = rest.trim();
    if (rest !== '') return rest;
  }
  return undefined;
}

/** The flags of one file capability (CAP_SETUID or CAP_SETGID) of newuidmap/newgidmap. */
export interface CapFlags {
  effective: boolean;
  permitted: boolean;
  inheritable: boolean;
}

/**
 * The flags a capability text (cap_from_text(3) syntax: clauses `caps OP flags [OP flags]...`
 * separated by spaces, caps a comma list, `all` or empty for all, OP `=` (set exactly), `+`
 * (raise) or `-` (lower), flags from `eip`) gives to one capability, e.g. `cap_setuid`.
 * undefined when the text does not parse.
 */
export function capabilityFlags(text: string, cap: string): CapFlags | undefined {
  const flags = { e: false, i: false, p: false };
  const wanted = cap.toLowerCase();
  for (const clause of text.trim().split(/\s+/)) {
    if (clause === '') continue;
    const m = /^([a-z0-9_,]*)((?:[=+-][eip]*)+)$/i.exec(clause);
    if (!m) return undefined;
    const names = m[1]!.toLowerCase();
    const applies = names === '' || names.split(',').some((n) => n === 'all' || n === wanted);
    if (names === '' && !m[2]!.startsWith('=')) return undefined;
    for (const op of m[2]!.match(/[=+-][eip]*/gi) ?? []) {
      if (!applies) continue;
      const set = op.slice(1).toLowerCase();
      if (op[0] === '=') {
        flags.e = flags.i = flags.p = false;
      }
      for (const f of set) {
        flags[f as 'e' | 'i' | 'p'] = op[0] !== '-';
      }
    }
  }
  return { effective: flags.e, permitted: flags.p, inheritable: flags.i };
}

/** The mount point holding `path` if that mount has the `nosuid` option, else undefined. */
export function nosuidMountOf(path: string, mountinfo?: string): string | undefined {
  const mount = mountOf(path, mountinfo);
  return mount?.options.includes('nosuid') ? mount.mountPoint : undefined;
}

function readNoNewPrivs(): boolean {
  try {
    return /^NoNewPrivs:\s*1\s*$/m.test(readFileSync('/proc/self/status', 'latin1'));
  } catch {
    return false;
  }
}

async function packageVersion(path: string): Promise<string | undefined> {
  const dpkg = findProgram('dpkg-query');
  if (dpkg === undefined) return undefined;
  const owner = await run(dpkg, ['-S', path]);
  const pkg = owner.code === 0 ? /^([^:\s,]+)(?::[^:\s,]+)?: /.exec(owner.stdout)?.[1] : undefined;
  if (pkg === undefined) return undefined;
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a dpkg-query format, not a JS template
  const version = await run(dpkg, ['-W', '-f=${Version}', pkg]);
  return version.code === 0 && version.stdout.trim() !== '' ? version.stdout.trim() : undefined;
}

const INSTALL_HINT =
  'apt-get install uidmap (Debian/Ubuntu), dnf install shadow-utils (Fedora), apk add shadow-uidmap (Alpine)';

/** Inspects newuidmap or newgidmap: where it is, how it is privileged, and whether that works. */
export async function inspectNewIdmap(
  which: NewIdmapTool,
  options: InspectOptions = {},
): Promise<NewIdmapInfo> {
  const path = options.path ?? findProgram(which, ['/usr/bin', '/usr/sbin', '/bin']);
  const cap = NEEDED_CAP[which];
  const info: NewIdmapInfo = {
    which,
    path,
    exists: false,
    owner: undefined,
    mode: undefined,
    setuidRoot: false,
    fileCaps: undefined,
    getcapAvailable: false,
    hasNeededCap: false,
    nosuidMount: undefined,
    noNewPrivs: readNoNewPrivs(),
    usable: false,
    reason: undefined,
    version: undefined,
  };
  if (path === undefined) {
    info.reason = `${which} is not installed (not found in PATH, /usr/bin, /usr/sbin or /bin): ${INSTALL_HINT}`;
    return info;
  }
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(path);
  } catch (error) {
    info.reason = `${path} does not exist (${(error as NodeJS.ErrnoException).code ?? 'error'}): ${INSTALL_HINT}`;
    return info;
  }
  if (!st.isFile()) {
    info.reason = `${path} is not a regular file: reinstall it (${INSTALL_HINT})`;
    return info;
  }
  info.exists = true;
  info.owner = st.uid;
  info.mode = st.mode & 0o7777;
  info.setuidRoot = (st.mode & 0o4000) !== 0 && st.uid === 0;

  const getcap = options.getcapPath ?? findProgram('getcap');
  const [caps, version] = await Promise.all([
    getcap === undefined ? Promise.resolve(undefined) : run(getcap, [path]),
    packageVersion(path),
  ]);
  info.version = version;
  if (caps !== undefined && !caps.missing) {
    info.getcapAvailable = true;
    info.fileCaps = caps.code === 0 ? parseGetcapOutput(caps.stdout, path) : undefined;
  }
  if (info.fileCaps !== undefined) {
    const flags = capabilityFlags(info.fileCaps, cap);
    info.hasNeededCap = flags?.permitted === true && flags.effective;
  }
  info.nosuidMount = nosuidMountOf(path);

  const fixPrivilege = `chmod u+s ${path} (the file must be owned by root: chown root:root ${path} first) or setcap ${cap}+ep ${path}`;
  if ((st.mode & 0o111) === 0) {
    info.reason = `${path} is not executable: chmod 755 ${path}, then ${fixPrivilege}`;
  } else if (!info.setuidRoot && !info.hasNeededCap) {
    if ((st.mode & 0o4000) !== 0) {
      info.reason = `${path} has the setuid bit but is owned by uid ${st.uid}, not root: chown root:root ${path} && chmod u+s ${path}`;
    } else if (info.fileCaps !== undefined) {
      info.reason = `${path} has no setuid bit, and its file capabilities "${info.fileCaps}" lack ${cap} in the permitted and effective sets: setcap ${cap}+ep ${path} or ${fixPrivilege}`;
    } else if (!info.getcapAvailable) {
      info.reason = `${path} has no setuid bit, and its file capabilities could not be checked (getcap is missing: apt-get install libcap2-bin); if it has none: ${fixPrivilege}`;
    } else {
      info.reason = `${path} has no setuid bit nor file capabilities: ${fixPrivilege}`;
    }
  } else if (info.nosuidMount !== undefined) {
    info.reason = `${path} is on a filesystem mounted nosuid (${info.nosuidMount}), so its setuid bit and file capabilities are ignored: remount it without nosuid (mount -o remount,suid ${info.nosuidMount}) or install ${which} on another filesystem`;
  } else if (info.noNewPrivs) {
    info.reason = `this process runs with no_new_privs (NoNewPrivs: 1 in /proc/self/status), so ${which} cannot gain privileges when run from it: start userns without no_new_privs (e.g. without --security-opt no-new-privileges / NoNewPrivileges=yes)`;
  }
  info.usable = info.reason === undefined;
  return info;
}
