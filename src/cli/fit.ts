/** `userns fit`: which IDs of a tree a map cannot represent. */
import { UsageError } from '../errors/index.js';
import type { FitResult, UnfitId } from '../shift/fit.js';
import { fitTree } from '../shift/fit.js';
import { type Command, parseCommandLine, reportError, writeJson } from './common.js';
import { readKindMaps } from './shift.js';

export const HELP = `Usage: userns fit [options] MAP DIR

Lists every UID and GID used in DIR that a user namespace with MAP cannot represent: file owners,
POSIX ACL entries, file-capability root IDs, and the users and groups of DIR's own /etc/passwd
and /etc/group (resolved inside DIR). IDs are the IDs the namespace would see (inside IDs of
MAP), as in an image unpacked by root. Each comes with a few example paths; the report ends with
the smallest map from 0 that would fit the tree. This is the check to run when an image fails to
unpack with "potentially insufficient UIDs or GIDs available in user namespace".

nobody/nogroup entries of /etc/passwd and /etc/group (or ID 65534) that no file uses are listed
as ignorable: an unmapped ID is shown as the overflow ID anyway.

MAP: inline triples inside:outside:count[,…], a file in any format userns reads, 'self' (this
process's own maps) or 'pid:N'. The gid map is MAP's gid entries unless --gidmap gives one.

Options:
  --gidmap MAP            the gid map (default: from MAP)
  --examples N            example paths per ID (default 3)
  --cross-filesystems     also walk filesystems mounted under DIR
  --json                  the report as JSON
  -h, --help              this text

Exit status: 0 when MAP fits the tree, 1 when it does not (or part of the tree was unreadable),
2 for usage errors.

Examples:
  userns fit 0:100000:65536 ./rootfs
  userns fit self ./rootfs          # does the current namespace fit this image?
`;

const OPTIONS = {
  gidmap: { type: 'string' },
  examples: { type: 'string' },
  'cross-filesystems': { type: 'boolean' },
} as const;

function idLine(u: UnfitId): string {
  return `  ${u.kind} ${String(u.id).padEnd(10)} ${u.sources.join(', ')}${u.count > 0 ? ` (${u.count} entr${u.count === 1 ? 'y' : 'ies'})` : ''}: ${u.examples.join(', ')}`;
}

export function fitText(r: FitResult): string {
  const lines: string[] = [];
  if (r.missing.length === 0) {
    lines.push(`${r.dir}: the map fits (${r.seen.toLocaleString('en-US')} entries)`);
  } else {
    lines.push(
      `${r.dir}: the map cannot represent ${r.missing.length} ID${r.missing.length === 1 ? '' : 's'} (${r.seen.toLocaleString('en-US')} entries):`,
    );
    for (const u of r.missing) lines.push(idLine(u));
  }
  if (r.ignored.length > 0) {
    lines.push('ignorable (nobody/nogroup, shown as the overflow ID when unmapped):');
    for (const u of r.ignored) lines.push(idLine(u));
  }
  const highest = `highest uid ${r.highest.uid ?? '-'}, gid ${r.highest.gid ?? '-'}`;
  lines.push(
    `smallest map from 0 that fits: count ${r.smallestSize} (e.g. 0:100000:${r.smallestSize}; ${highest})`,
  );
  for (const e of r.errors) lines.push(`  unreadable: ${e.op} ${e.path || '.'}: ${e.errno}`);
  if (r.errorCount > 0)
    lines.push(`warning: ${r.errorCount} entries could not be read; the answer may be incomplete`);
  return `${lines.join('\n')}\n`;
}

export const main: Command = async (argv, io) => {
  let json = argv.includes('--json');
  try {
    const { values, positionals } = parseCommandLine(argv, OPTIONS, 'fit');
    json = values.json === true;
    if (values.help) {
      io.stdout.write(HELP);
      return 0;
    }
    if (positionals.length !== 2) {
      throw new UsageError('give MAP and DIR', { hint: "see 'userns fit --help'" });
    }
    let examples = 3;
    if (values.examples !== undefined) {
      examples = Number(values.examples);
      if (!Number.isInteger(examples) || examples < 0 || examples > 1000) {
        throw new UsageError(`--examples must be a whole number from 0 to 1000, not '${values.examples}'`);
      }
    }
    const maps = await readKindMaps(positionals[0]!, values.gidmap, io);
    const result = await fitTree(positionals[1]!, maps.uid, {
      gid: maps.gid,
      examples,
      crossFilesystems: values['cross-filesystems'] === true,
    });
    const ok = result.fits && result.errorCount === 0;
    if (json) writeJson(io, { ok, ...result });
    else io.stdout.write(fitText(result));
    return ok ? 0 : 1;
  } catch (error) {
    return reportError(error, io, json);
  }
};
