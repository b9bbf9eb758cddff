/**
 * `userns doctor`: find and explain what blocks user namespaces here.
 */

import { runDoctor } from '../doctor/doctor.js';
import type { Check, DoctorReport, Evidence } from '../doctor/types.js';
import { UsageError } from '../errors/index.js';
import { COMMANDS } from './commands.js';
import { type CliIo, type Command, parseCommandLine, useColour, writeHelp, writeJson } from './common.js';

const OPTIONS = COMMANDS.doctor.options;

const GROUP_TITLES: Record<string, string> = {
  kernel: 'Kernel',
  subids: 'Subordinate IDs',
  newidmap: 'newuidmap / newgidmap',
  environment: 'Environment',
  namespaces: 'Named namespaces',
  registry: 'Fleet allocation registry',
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
  if (values.help) return writeHelp(io, 'doctor');
  if (positionals.length > 0) {
    throw new UsageError(`unexpected argument '${positionals[0]}'`, { hint: "see 'userns doctor --help'" });
  }
  const report = await runDoctor({
    ...(values.user === undefined ? {} : { user: values.user }),
    ...(values.newuidmap === undefined ? {} : { newuidmap: values.newuidmap }),
    ...(values.newgidmap === undefined ? {} : { newgidmap: values.newgidmap }),
    ...(values.registry === undefined ? {} : { registry: values.registry }),
    ...(values.node === undefined ? {} : { node: values.node }),
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
