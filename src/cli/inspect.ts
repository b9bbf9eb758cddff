/** `userns inspect NAME`: one named namespace in detail. */
import { UsageError } from '../errors/index.js';
import { type InspectResult, inspectNamespace } from '../namespaces/index.js';
import { COMMANDS } from './commands.js';
import { type CliIo, type Command, parseCommandLine, writeHelp, writeJson } from './common.js';

const OPTIONS = COMMANDS.inspect.options;

export const main: Command = async (argv: string[], io: CliIo): Promise<number> => {
  const { values, positionals } = parseCommandLine(argv, OPTIONS, 'inspect');
  if (values.help) return writeHelp(io, 'inspect');
  if (positionals.length !== 1) {
    throw new UsageError(positionals.length === 0 ? 'no NAME given' : 'inspect takes one NAME', {
      hint: "usage: userns inspect [--json] NAME; see 'userns inspect --help'",
    });
  }
  const r = await inspectNamespace(positionals[0]!, values.root === undefined ? {} : { root: values.root });
  if (values.json) {
    writeJson(io, { ok: true, ...r });
    return 0;
  }
  io.stdout.write(namespaceText(r));
  for (const w of r.warnings) io.stderr.write(`userns: warning: ${w}\n`);
  return 0;
};

/** The text layout of a named namespace, as `inspect` prints it (and `create`, once made). */
export function namespaceText(r: InspectResult): string {
  const s = r.state;
  const triples = (m: [number, number, number][]) => m.map((t) => `    ${t.join(' ')}`).join('\n');
  let out = `name:        ${r.name}\nstatus:      ${r.status}${r.reason ? ` (${r.reason})` : ''}\npath:        ${r.path}\n`;
  if (s !== null) {
    const held =
      s.hold === 'keeper'
        ? `keeper (PID ${s.keeperPid}, start time ${s.keeperStartTime})`
        : s.hold === 'mount'
          ? `mount (bind mounts under ${r.path}/hold/, no process)`
          : 'none (lives while its processes do)';
    out +=
      `hold:        ${held}\n` +
      `created:     ${s.createdAt} by uid ${s.creator.uid}\n` +
      `namespaces:\n${s.namespaces.map((n) => `    ${n.type.padEnd(7)} ${n.inode}${n.handle ? `  handle ${n.handle}` : ''}`).join('\n')}\n` +
      `uid map (inside outside count):\n${triples(s.uidMap)}\n` +
      `gid map:\n${triples(s.gidMap)}\n` +
      `setgroups:   ${s.setgroups}\n` +
      `exec as:     ${s.user.uid}:${s.user.gid}\n`;
    if (s.subids !== null) {
      const fmt = (rs: { start: number; count: number }[]) =>
        rs.length === 0 ? 'none' : rs.map((x) => `${x.start}:${x.count}`).join(',');
      out += `subids at creation: uid ${fmt(s.subids.uid)}; gid ${fmt(s.subids.gid)}\n`;
    }
  }
  for (const c of r.subidChanges) {
    const fmt = (rs: { start: number; count: number }[]) => rs.map((x) => `${x.start}:${x.count}`).join(',');
    out += `sub${c.kind} changed:${c.added.length ? ` added ${fmt(c.added)} (not mapped)` : ''}${c.removed.length ? ` removed ${fmt(c.removed)} (still mapped)` : ''}\n`;
  }
  return out;
}
