/**
 * `userns doctor`: find and explain what blocks user namespaces here.
 */

import { runDoctor } from '../doctor/doctor.js';
import type { Check, DoctorReport, Evidence } from '../doctor/types.js';
import { UsageError } from '../errors/index.js';
import { type CliIo, type Command, parseCommandLine, useColour, writeJson } from './common.js';

export const HELP = `Usage: userns doctor [--user NAME] [--newuidmap PATH] [--newgidmap PATH] [--no-probe] [--json]

Checks everything that can stand in the way of user namespaces for a user (default: you), says
for each finding what is wrong, what it read (value, file and line) and the exact fix, and ends
with a live probe that really creates a user namespace with the maps 'userns run' would use.

Checks:
  kernel       user namespaces compiled in; user.max_user_namespaces (0 blocks everyone);
               kernel.unprivileged_userns_clone (Debian/Ubuntu); kernel.apparmor_restrict_
               unprivileged_userns (Ubuntu >= 23.10) and AppArmor profiles for the helper;
               nesting (running in a container) and how many IDs this namespace has;
               kernel.overflowuid/overflowgid; seccomp
  subids       the user's /etc/subuid and /etc/subgid entries (by name or numeric UID),
               libsubid ('subid:' in nsswitch.conf, getsubids), ranges under 65536 IDs,
               ranges overlapping another user's, the user's own ID inside its range,
               subgid missing while subuid exists, malformed lines
  newidmap     newuidmap/newgidmap present, setuid root or file capabilities
               (security.capability), owner, mode, version, nosuid mounts
  environment  XDG_RUNTIME_DIR, whether / is a shared mount, no_new_privs
  namespaces   nsfs file handles (Linux 6.18+: joins by handle, --hold none), pidfds,
               whether --hold mount is available to you, and each of your named namespaces:
               how it is held (keeper, mount, none) and whether it is alive
  probe        creates a namespace through the real 'userns run' path, reads the maps back
               inside and reports the exact step that failed (helper launch, unshare,
               newuidmap, newgidmap, write, setup, exec, read back)

For root, the rootless checks (subordinate IDs, newuidmap) are informational: root writes its
maps directly. Run as root with --user NAME to diagnose another user; the probe then runs as
that user.

Options:
  --user NAME        diagnose this user (login name or UID) instead of yourself
  --newuidmap PATH   inspect and use this newuidmap (default: from PATH)
  --newgidmap PATH   inspect and use this newgidmap (default: from PATH)
  --no-probe         skip the live probe (and the named-namespace checks, which start the helper)
  --root DIR         state root whose named namespaces are reported (default: yours)
  --json             one object: { ok, user, checks: [{ id, status, title, message, evidence, fix }] }
  -h, --help         this text

Output is coloured on a terminal (NO_COLOR=1 turns it off).

Exit status: 0 when nothing blocks (warnings allowed), 1 when a check found an error,
2 for usage errors.

Examples:
  userns doctor
  sudo userns doctor --user alice
  userns doctor --json | jq '.checks[] | select(.status != "ok")'
`;

const OPTIONS = {
  user: { type: 'string' },
  newuidmap: { type: 'string' },
  newgidmap: { type: 'string' },
  'no-probe': { type: 'boolean' },
  root: { type: 'string' },
} as const;

const GROUP_TITLES: Record<string, string> = {
  kernel: 'Kernel',
  subids: 'Subordinate IDs',
  newidmap: 'newuidmap / newgidmap',
  environment: 'Environment',
  namespaces: 'Named namespaces',
  probe: 'Live probe',
};

const MARK: Record<Check['status'], { mark: string; colour: number }> = {
  ok: { mark: '✓', colour: 32 },
  warning: { mark: '!', colour: 33 },
  error: { mark: '✗', colour: 31 },
  skipped: { mark: '-', colour: 2 },
};

/** A short text of the evidence: FILE:LINE = VALUE, for the report. */
function evidenceText(e: Evidence): string | undefined {
  const where = e.file === undefined ? undefined : `${e.file}${e.line === undefined ? '' : `:${e.line}`}`;
  let value: string | undefined;
  if (e.value !== undefined && e.value !== null) {
    value = typeof e.value === 'string' ? e.value : JSON.stringify(e.value);
    if (value.length > 160) value = `${value.slice(0, 157)}...`;
  }
  if (where === undefined && value === undefined) return undefined;
  if (where === undefined) return value;
  return value === undefined ? where : `${where} = ${value}`;
}

function indent(text: string, first: string, rest: string): string {
  return text
    .split('\n')
    .map((line, i) => (i === 0 ? first : rest) + line)
    .join('\n');
}

/** The readable report. */
export function renderReport(report: DoctorReport, colour: boolean): string {
  const paint = (code: number, text: string) => (colour ? `\x1b[${code}m${text}\x1b[0m` : text);
  const bold = (text: string) => paint(1, text);
  const dim = (text: string) => paint(2, text);
  const out: string[] = [];
  const u = report.user;
  out.push(bold(`userns doctor: ${u.name} (uid ${u.uid}, gid ${u.gid})`));
  for (const [group, title] of Object.entries(GROUP_TITLES)) {
    const checks = report.checks.filter((c) => c.group === group);
    if (checks.length === 0) continue;
    out.push('', bold(title));
    for (const c of checks) {
      const m = MARK[c.status];
      out.push(indent(`${c.title}: ${c.message}`, `  ${paint(m.colour, m.mark)} `, '    '));
      if (c.status === 'warning' || c.status === 'error') {
        const ev = evidenceText(c.evidence);
        if (ev !== undefined) out.push(dim(indent(ev, '      read: ', '            ')));
        if (c.fix !== undefined) out.push(indent(c.fix, `      ${paint(36, 'fix:')} `, '           '));
      }
    }
  }
  const count = (s: Check['status']) => report.checks.filter((c) => c.status === s).length;
  const errors = count('error');
  const warnings = count('warning');
  const summary =
    errors > 0
      ? paint(31, `${errors} error${errors === 1 ? '' : 's'}: something blocks user namespaces for ${u.name}`)
      : paint(32, `nothing blocks user namespaces for ${u.name}`);
  out.push('', `${summary}${warnings > 0 ? ` (${warnings} warning${warnings === 1 ? '' : 's'})` : ''}`);
  return `${out.join('\n')}\n`;
}

export const main: Command = async (argv: string[], io: CliIo): Promise<number> => {
  const { values, positionals } = parseCommandLine(argv, OPTIONS, 'doctor');
  if (values.help) {
    io.stdout.write(HELP);
    return 0;
  }
  if (positionals.length > 0) {
    throw new UsageError(`unexpected argument '${positionals[0]}'`, { hint: "see 'userns doctor --help'" });
  }
  const report = await runDoctor({
    ...(values.user === undefined ? {} : { user: values.user }),
    ...(values.newuidmap === undefined ? {} : { newuidmap: values.newuidmap }),
    ...(values.newgidmap === undefined ? {} : { newgidmap: values.newgidmap }),
    ...(values.root === undefined ? {} : { stateRoot: values.root }),
    probe: values['no-probe'] !== true,
  });
  if (values.json) {
    writeJson(io, {
      ok: !report.blocking,
      user: report.user,
      checks: report.checks.map((c) => ({
        id: c.id,
        status: c.status,
        title: c.title,
        message: c.message,
        evidence: c.evidence,
        fix: c.fix ?? null,
      })),
    });
  } else {
    io.stdout.write(renderReport(report, useColour(io.stdout, io.env)));
  }
  return report.blocking ? 1 : 0;
};
