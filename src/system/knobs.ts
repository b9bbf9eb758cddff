import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { INVALID_ID } from '../idmap/extent.js';
import { parseKernelMap } from '../idmap/formats/kernel.js';
import { IdMap } from '../idmap/idmap.js';

/**
 * Readers for the kernel settings that decide whether user namespaces can be created here.
 * Every reader is synchronous (tiny files) and never throws: a file that cannot be read gives
 * `value: undefined` with the errno, so that callers can tell "absent on this kernel" (ENOENT)
 * from "present but unreadable".
 *
 * Every path is relative to an overridable root (`procRoot`, default /proc; `sysRoot`, default
 * /sys; `apparmorDir`, default /etc/apparmor.d; `bootDir`, default /boot) so that tests can point
 * the readers at temporary files for the settings that cannot be changed on the test machine
 * (e.g. Ubuntu's AppArmor knob on a kernel without AppArmor).
 *
 * Not readable from userspace, hence absent: how many user namespaces exist (per-user counts
 * live in the kernel's ucounts) and how deep the current namespace is nested (needs the
 * NS_GET_PARENT ioctl).
 */

export interface KnobOptions {
  /** Where procfs is mounted (default /proc). */
  procRoot?: string;
  /** Where sysfs is mounted (default /sys). */
  sysRoot?: string;
  /** AppArmor profile directory (default /etc/apparmor.d). */
  apparmorDir?: string;
  /** Where the kernel config may be found as config-RELEASE (default /boot). */
  bootDir?: string;
}

/** One integer setting read from a file. */
export interface Knob {
  /** The file read, e.g. /proc/sys/user/max_user_namespaces. */
  file: string;
  /** Its sysctl name, e.g. user.max_user_namespaces. */
  sysctl: string;
  /** The value; undefined when the file is absent (this kernel has no such setting) or unreadable. */
  value: number | undefined;
  /** The file exists. */
  exists: boolean;
  /** The errno of a failed read (ENOENT = the kernel has no such setting). */
  errno?: string;
  /** The raw text when it was not a number. */
  raw?: string;
}

function proc(options: KnobOptions, ...parts: string[]): string {
  return join(options.procRoot ?? '/proc', ...parts);
}

function readText(file: string): { text?: string; errno?: string } {
  try {
    return { text: readFileSync(file, 'latin1') };
  } catch (error) {
    return { errno: (error as NodeJS.ErrnoException).code ?? 'EIO' };
  }
}

/** Reads an integer /proc/sys file. */
export function readKnob(sysctl: string, options: KnobOptions = {}): Knob {
  const file = proc(options, 'sys', ...sysctl.split('.'));
  const { text, errno } = readText(file);
  if (text === undefined)
    return { file, sysctl, value: undefined, exists: errno !== 'ENOENT', errno: errno! };
  const trimmed = text.trim();
  if (!/^-?[0-9]+$/.test(trimmed)) return { file, sysctl, value: undefined, exists: true, raw: trimmed };
  return { file, sysctl, value: Number(trimmed), exists: true };
}

/** user.max_user_namespaces: how many user namespaces each user may own (0 = none can be created). */
export function maxUserNamespaces(options: KnobOptions = {}): Knob {
  return readKnob('user.max_user_namespaces', options);
}

/** kernel.unprivileged_userns_clone (Debian/Ubuntu patch; absent on mainline kernels): 0 = only CAP_SYS_ADMIN may create. */
export function unprivilegedUsernsClone(options: KnobOptions = {}): Knob {
  return readKnob('kernel.unprivileged_userns_clone', options);
}

/** kernel.apparmor_restrict_unprivileged_userns (Ubuntu ≥ 23.10): 1 = unconfined programs get a namespace without capabilities. */
export function apparmorRestrictUnprivilegedUserns(options: KnobOptions = {}): Knob {
  return readKnob('kernel.apparmor_restrict_unprivileged_userns', options);
}

/** kernel.overflowuid / kernel.overflowgid: the ID shown for IDs that are not mapped (default 65534). */
export function overflowIds(options: KnobOptions = {}): { uid: Knob; gid: Knob } {
  return { uid: readKnob('kernel.overflowuid', options), gid: readKnob('kernel.overflowgid', options) };
}

/** kernel.threads-max: the kernel's default for max_user_namespaces is half of it. */
export function threadsMax(options: KnobOptions = {}): Knob {
  return readKnob('kernel.threads-max', options);
}

/** The inode of the initial user namespace (PROC_USER_INIT_INO, 0xEFFFFFFD). */
export const INIT_USER_NS_INODE = 0xeffffffd;

export interface UserNamespaceSupport {
  /** /proc/self/ns/user exists: the kernel has user namespaces (CONFIG_USER_NS). */
  supported: boolean;
  /** The file checked. */
  file: string;
  /** Its link text, e.g. user:[4026531837]. */
  link?: string;
  /** The namespace's inode number. */
  inode?: number;
  errno?: string;
  /** CONFIG_USER_NS from /proc/config.gz or /boot/config-RELEASE, when one of them exists. */
  config?: { file: string; line: number; value: string };
}

/** Where CONFIG_NAME is set in the kernel config, if the config can be found. */
export function kernelConfigOption(
  name: string,
  options: KnobOptions = {},
): { file: string; line: number; value: string } | undefined {
  const candidates = [proc(options, 'config.gz'), join(options.bootDir ?? '/boot', `config-${release()}`)];
  for (const file of candidates) {
    let text: string;
    try {
      const data = readFileSync(file);
      text = (file.endsWith('.gz') ? gunzipSync(data) : data).toString('latin1');
    } catch {
      continue;
    }
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      if (line.startsWith(`${name}=`)) return { file, line: i + 1, value: line.slice(name.length + 1) };
      if (line === `# ${name} is not set`) return { file, line: i + 1, value: 'n' };
    }
    return { file, line: 0, value: 'n' };
  }
  return undefined;
}

/** Whether this kernel has user namespaces: /proc/self/ns/user, and CONFIG_USER_NS when readable. */
export function userNamespaceSupport(options: KnobOptions = {}): UserNamespaceSupport {
  const file = proc(options, 'self', 'ns', 'user');
  const result: UserNamespaceSupport = { supported: false, file };
  try {
    result.link = readlinkSync(file);
    result.supported = true;
    result.inode = statSync(file).ino;
  } catch (error) {
    const errno = (error as NodeJS.ErrnoException).code ?? 'EIO';
    // A regular file in a test fixture (readlink EINVAL): it exists.
    if (errno === 'EINVAL') {
      result.supported = true;
      const m = /\[([0-9]+)\]/.exec(readText(file).text ?? '');
      if (m) {
        result.link = `user:[${m[1]}]`;
        result.inode = Number(m[1]);
      }
    } else {
      result.errno = errno;
    }
  }
  if (result.link !== undefined) {
    const m = /\[([0-9]+)\]/.exec(result.link);
    if (m) result.inode = Number(m[1]);
  }
  const config = kernelConfigOption('CONFIG_USER_NS', options);
  if (config !== undefined) result.config = config;
  return result;
}

export interface Nesting {
  /** This process runs in a user namespace other than the initial one (a container, a sandbox). */
  nested: boolean;
  /** The inode of the current user namespace (INIT_USER_NS_INODE in the initial one). */
  inode: number | undefined;
  /** /proc/self/uid_map and gid_map as read. */
  uidMapFile: string;
  gidMapFile: string;
  uidMap: IdMap | undefined;
  gidMap: IdMap | undefined;
  uidMapText?: string;
  gidMapText?: string;
  /** The maps are the full identity `0 0 4294967295` (what the initial namespace shows). */
  fullIdentity: boolean;
  /** How many uids / gids the current namespace maps. */
  uidCount: number;
  gidCount: number;
}

function isFullIdentity(map: IdMap | undefined): boolean {
  if (map === undefined || map.extents.length !== 1) return false;
  const e = map.extents[0]!;
  return e.inside === 0 && e.outside === 0 && e.count === INVALID_ID;
}

/**
 * Whether we run inside a nested user namespace, and how many IDs it has. Nested = the current
 * namespace's inode is not the initial namespace's, or (when the inode cannot be read) its uid
 * map is not the full identity `0 0 4294967295`.
 */
export function nesting(options: KnobOptions = {}): Nesting {
  const uidMapFile = proc(options, 'self', 'uid_map');
  const gidMapFile = proc(options, 'self', 'gid_map');
  const read = (file: string) => {
    const { text } = readText(file);
    if (text === undefined) return { map: undefined, text: undefined };
    try {
      return { map: new IdMap(parseKernelMap(text, { source: file })), text };
    } catch {
      return { map: undefined, text };
    }
  };
  const u = read(uidMapFile);
  const g = read(gidMapFile);
  const support = userNamespaceSupport(options);
  const fullIdentity = isFullIdentity(u.map) && isFullIdentity(g.map);
  const nested = support.inode !== undefined ? support.inode !== INIT_USER_NS_INODE : !fullIdentity;
  return {
    nested,
    inode: support.inode,
    uidMapFile,
    gidMapFile,
    uidMap: u.map,
    gidMap: g.map,
    ...(u.text === undefined ? {} : { uidMapText: u.text }),
    ...(g.text === undefined ? {} : { gidMapText: g.text }),
    fullIdentity,
    uidCount: u.map?.size ?? 0,
    gidCount: g.map?.size ?? 0,
  };
}

/** Seccomp and no_new_privs of this process (/proc/self/status). */
export function processRestrictions(options: KnobOptions = {}): {
  file: string;
  seccomp: number | undefined;
  seccompLine?: number;
  noNewPrivs: boolean;
  noNewPrivsLine?: number;
} {
  const file = proc(options, 'self', 'status');
  const lines = (readText(file).text ?? '').split('\n');
  const out: ReturnType<typeof processRestrictions> = { file, seccomp: undefined, noNewPrivs: false };
  lines.forEach((line, i) => {
    const s = /^Seccomp:\s*([0-9]+)/.exec(line);
    if (s) {
      out.seccomp = Number(s[1]);
      out.seccompLine = i + 1;
    }
    const n = /^NoNewPrivs:\s*([0-9]+)/.exec(line);
    if (n) {
      out.noNewPrivs = n[1] === '1';
      out.noNewPrivsLine = i + 1;
    }
  });
  return out;
}

export interface AppArmorProfile {
  file: string;
  /** Line of the first `userns` rule. */
  line: number;
  /** The profile names or attachment paths declared in the file. */
  attachments: string[];
  /** The file's profile attaches to the given program (an exact path or a glob matching it). */
  matchesProgram: boolean;
}

export interface AppArmorState {
  /** AppArmor is active (securityfs has an apparmor directory). */
  enabled: boolean;
  /** The directory checked, e.g. /sys/kernel/security/apparmor. */
  securityDir: string;
  profileDir: string;
  /** Profiles in profileDir with a `userns` rule. */
  usernsProfiles: AppArmorProfile[];
}

/** AppArmor's glob syntax (`*`, `**`, `?`, `{a,b}`) as a RegExp, enough to match a program path. */
function apparmorGlob(glob: string): RegExp {
  let re = '';
  let depth = 0;
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        re += '.*';
        i++;
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '{') {
      re += '(?:';
      depth++;
    } else if (c === '}' && depth > 0) {
      re += ')';
      depth--;
    } else if (c === ',' && depth > 0) re += '|';
    else re += c.replace(/[.+^$(){}|[\]\\]/g, '\\$&');
  }
  try {
    return new RegExp(`^${re}$`);
  } catch {
    return /(?!)/;
  }
}

/**
 * AppArmor's state and the profiles that grant `userns` to `program` (our helper): with
 * kernel.apparmor_restrict_unprivileged_userns = 1, only programs confined by a profile with a
 * `userns,` rule (or running unconfined by a profile with flags=(unconfined)) get a usable
 * user namespace.
 */
export function appArmor(program: string | undefined, options: KnobOptions = {}): AppArmorState {
  const securityDir = join(options.sysRoot ?? '/sys', 'kernel', 'security', 'apparmor');
  const profileDir = options.apparmorDir ?? '/etc/apparmor.d';
  let enabled = false;
  try {
    enabled = statSync(securityDir).isDirectory();
  } catch {
    // not enabled
  }
  const usernsProfiles: AppArmorProfile[] = [];
  let names: string[] = [];
  try {
    names = readdirSync(profileDir);
  } catch {
    // no profile directory
  }
  for (const name of names.sort()) {
    const file = join(profileDir, name);
    let text: string;
    try {
      if (!statSync(file).isFile()) continue;
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    const lines = text.split('\n');
    const ruleLine = lines.findIndex((l) => /^\s*(?:audit\s+)?(?:allow\s+)?userns\b[^#]*,/.test(l));
    if (ruleLine < 0) continue;
    const attachments: string[] = [];
    for (const raw of lines) {
      const line = raw.replace(/#.*/, '').trim();
      const m = /^profile\s+(\S+)(?:\s+(\/\S+|"[^"]+"))?/.exec(line) ?? /^(\/\S+)\s.*\{/.exec(line);
      if (!m) continue;
      for (const part of [m[1], m[2]]) {
        if (part !== undefined) attachments.push(part.replace(/^"|"$/g, ''));
      }
    }
    const matchesProgram =
      program !== undefined &&
      attachments.some((a) => a.startsWith('/') && (a === program || apparmorGlob(a).test(program)));
    usernsProfiles.push({ file, line: ruleLine + 1, attachments, matchesProgram });
  }
  return { enabled, securityDir, profileDir, usernsProfiles };
}

export interface MountPropagation {
  file: string;
  /** The line of the mount at `/` (the last one: later mounts on / hide earlier ones). */
  line: number | undefined;
  /** `shared:N` among its optional fields. */
  shared: boolean;
  /** The optional fields, e.g. ['shared:1'] or [] (private). */
  optional: string[];
}

/** Whether `/` is a shared mount (rootless podman wants it: mounts then propagate into containers). */
export function rootMountPropagation(options: KnobOptions = {}): MountPropagation {
  const file = proc(options, 'self', 'mountinfo');
  const lines = (readText(file).text ?? '').split('\n');
  let found: MountPropagation = { file, line: undefined, shared: false, optional: [] };
  lines.forEach((line, i) => {
    const f = line.split(' ');
    if (f.length < 7 || f[4] !== '/') return;
    const sep = f.indexOf('-', 6);
    const optional = f.slice(6, sep < 0 ? undefined : sep);
    found = { file, line: i + 1, shared: optional.some((o) => o.startsWith('shared:')), optional };
  });
  return found;
}

export interface SysctlSetting {
  file: string;
  line: number;
  value: string;
}

const SYSCTL_DIRS = [
  '/etc/sysctl.d',
  '/run/sysctl.d',
  '/usr/local/lib/sysctl.d',
  '/usr/lib/sysctl.d',
  '/lib/sysctl.d',
];

/**
 * Where the boot-time configuration sets a sysctl (`name = value` or `name=value`, with `.` or
 * `/` separators, `-` prefix allowed), in the files systemd-sysctl and `sysctl --system` read:
 * *.conf in the sysctl.d directories, then /etc/sysctl.conf. All occurrences, in reading order
 * (the last one wins at boot).
 */
export function sysctlSettings(
  name: string,
  options: { sysctlDirs?: readonly string[]; sysctlConf?: string } = {},
): SysctlSetting[] {
  const files: string[] = [];
  const seen = new Set<string>();
  const dirs = options.sysctlDirs ?? SYSCTL_DIRS;
  const byName = new Map<string, string>();
  for (const dir of dirs) {
    let names: string[] = [];
    try {
      names = readdirSync(dir).filter((n) => n.endsWith('.conf'));
    } catch {
      continue;
    }
    // A file name in an earlier directory hides the same name in later ones.
    for (const n of names) if (!byName.has(n)) byName.set(n, join(dir, n));
  }
  for (const n of [...byName.keys()].sort()) files.push(byName.get(n)!);
  files.push(options.sysctlConf ?? '/etc/sysctl.conf');
  const wanted = name.replace(/\//g, '.');
  const out: SysctlSetting[] = [];
  for (const file of files) {
    if (seen.has(file)) continue;
    seen.add(file);
    const { text } = readText(file);
    if (text === undefined) continue;
    text.split('\n').forEach((raw, i) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
      const m = /^-?\s*([^=\s]+)\s*=\s*(.*)$/.exec(line);
      if (m && m[1]!.replace(/\//g, '.') === wanted) out.push({ file, line: i + 1, value: m[2]!.trim() });
    });
  }
  return out;
}
