/** `userns fit`: which IDs of a tree a map cannot represent. */
import { UsageError } from '../errors/index.js';
import type { FitResult, UnfitId } from '../shift/fit.js';
import { fitTree } from '../shift/fit.js';
import { COMMANDS } from './commands.js';
import { type Command, parseCommandLine, reportError, writeHelp, writeJson } from './common.js';
import { readKindMaps } from './shift.js';

const OPTIONS = COMMANDS.fit.options;

function idLine(u: UnfitId): string {
  return `  ${u.kind} ${String(u.id).padEnd(10)} ${u.sources.join(', ')}${u.count > 0 ? ` (${u.count} entr${u.count === 1 ? 'y' : 'ies'})` : ''}: ${u.examples.join(', ')}`;
}

export function fitText(r: FitResult): string {
  const lines: string[] = [];
  if (r.missing.length === 0 && r.outsideFrom.length === 0) {
    lines.push(`${r.dir}: the map fits (${r.seen.toLocaleString('en-US')} entries)`);
  } else if (r.missing.length === 0) {
    lines.push(
      `${r.dir}: the map fits every ID read through --from, but ${r.outsideFrom.length} on-disk ID${r.outsideFrom.length === 1 ? ' is' : 's are'} not in --from (${r.seen.toLocaleString('en-US')} entries)`,
    );
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
  if (r.outsideFrom.length > 0) {
    lines.push('on-disk IDs --from does not map (shift the tree, or extend --from):');
    for (const u of r.outsideFrom) lines.push(idLine(u));
  }
  if (r.smallestSize !== null && r.suggestion !== null) {
    const where = (kind: 'uid' | 'gid') =>
      r.highest[kind] === null ? `${kind} -` : `${kind} ${r.highest[kind]} (${r.highestFrom[kind]})`;
    lines.push(
      `smallest map from 0 that fits: count ${r.smallestSize} (e.g. ${r.suggestion}); highest ${where('uid')}, ${where('gid')}`,
    );
  } else {
    const named = r.unrepresentable.map((u) => `${u.kind} ${u.id} (${u.examples.join(', ')})`).join(', ');
    lines.push(
      `no map can fit this tree: ${named} ${r.unrepresentable.length === 1 ? 'is' : 'are'} (u32)-1, never an ID`,
    );
  }
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
    if (values.help) return writeHelp(io, 'fit');
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
    const maps = await readKindMaps(positionals[0]!, values.gidmap, io, {
      uid: 'MAP',
      gid: values.gidmap === undefined ? 'MAP' : '--gidmap',
    });
    const from =
      values.from === undefined
        ? undefined
        : await readKindMaps(values.from, values['from-gid'], io, {
            uid: '--from',
            gid: values['from-gid'] === undefined ? '--from' : '--from-gid',
          });
    if (from === undefined && values['from-gid'] !== undefined)
      throw new UsageError('--from-gid needs --from', { hint: "see 'userns fit --help'" });
    const result = await fitTree(positionals[1]!, maps.uid, {
      gid: maps.gid,
      ...(from === undefined ? {} : { from }),
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
