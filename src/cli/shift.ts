/** `userns shift`: rewrite a tree's owners from one ID map to another. */
import { UsageError } from '../errors/index.js';
import type { IdMap } from '../idmap/idmap.js';
import {
  type ShiftChange,
  type ShiftOptions,
  type ShiftProgress,
  type ShiftResult,
  shiftIncomplete,
  shiftTree,
} from '../shift/shift.js';
import type { UnmappedPolicy } from '../shift/tree-walk.js';
import { COMMANDS } from './commands.js';
import { type CliIo, type Command, parseCommandLine, reportError, writeHelp, writeJson } from './common.js';
import { parseMapInput, readMapArgument } from './map-input.js';

const OPTIONS = COMMANDS.shift.options;

/** Reads a MAP argument once and returns its uid and gid maps (a gid override replaces the latter). */
export async function readKindMaps(
  argument: string,
  gidArgument: string | undefined,
  io: CliIo,
  labels: { uid: string; gid: string } = { uid: 'argument', gid: 'argument' },
): Promise<{ uid: IdMap; gid: IdMap }> {
  const raw = await readMapArgument(argument, { kind: 'uid', stdin: () => io.stdin, label: labels.uid });
  const uid = parseMapInput(raw, { kind: 'uid' });
  let gid: IdMap;
  if (gidArgument === undefined) {
    gid = parseMapInput(raw, { kind: 'gid' });
  } else {
    const rawGid = await readMapArgument(gidArgument, {
      kind: 'gid',
      stdin: () => io.stdin,
      label: labels.gid,
    });
    gid = parseMapInput(rawGid, { kind: 'gid' });
  }
  return { uid, gid };
}

function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

/** "12,345 / 100,000 entries, 45,000/s, 2 s left" */
export function progressLine(p: ShiftProgress, elapsedMs: number): string {
  const rate = elapsedMs > 0 ? (p.seen * 1000) / elapsedMs : 0;
  let text = `${formatCount(p.seen)}${p.total === null ? '' : ` / ${formatCount(p.total)}`} entries, ${formatCount(Math.round(rate))}/s`;
  if (p.total !== null && rate > 0) {
    const left = Math.max(0, Math.ceil((p.total - p.seen) / rate));
    text += `, ${left} s left`;
  }
  return text;
}

function rangeText(r: { start: number; count: number }): string {
  return r.count === 0 ? 'none' : `${r.start}-${r.start + r.count - 1}`;
}

function changeLine(c: ShiftChange): string {
  const id = (v: number | null) => (v === null ? '?' : String(v));
  return `${c.path}: ${id(c.old.uid)}:${id(c.old.gid)} → ${id(c.new.uid)}:${id(c.new.gid)} (${c.what.join(', ')})`;
}

function summaryText(r: ShiftResult, policy: UnmappedPolicy): string {
  const incomplete = shiftIncomplete(r, policy);
  const lines = [
    `${r.dryRun ? 'would shift' : 'shifted'} ${r.dir}: ${formatCount(r.seen)} entries seen, ${formatCount(r.changed)} ${r.dryRun ? 'to change' : 'changed'}` +
      (r.alreadyShifted > 0 ? `, ${formatCount(r.alreadyShifted)} already shifted` : '') +
      (r.skipped > 0 ? `, ${formatCount(r.skipped)} skipped (IDs without translation)` : '') +
      (r.errorCount > 0 ? `, ${formatCount(r.errorCount)} errors` : '') +
      (r.hardlinks > 0 ? `, ${formatCount(r.hardlinks)} hard links handled once` : '') +
      ` (${(r.elapsedMs / 1000).toFixed(2)} s${r.protectiveNamespace ? ', protective user namespace' : ''})`,
  ];
  if (
    r.alreadyShifted > 0 &&
    r.changed === 0 &&
    r.alreadyShifted + r.hardlinks + r.mountpoints.length >= r.seen
  )
    lines.push(
      "  already shifted to this map? every entry's IDs are already in --to's range and not in --from's",
    );
  else if (r.alreadyShifted > 0)
    lines.push(
      `  ${formatCount(r.alreadyShifted)} entr${r.alreadyShifted === 1 ? 'y was' : 'ies were'} already in --to's range (an earlier shift was interrupted?): left as they are`,
    );
  if (r.continued) lines.push('  finished a shift of these maps that had been interrupted');
  if (r.intermediate !== null)
    lines.push(
      `  the --from and --to ranges overlap: ${r.dryRun ? 'would go' : 'went'} through intermediate IDs (uid ${rangeText(r.intermediate.uid)}, gid ${rangeText(r.intermediate.gid)}), so that an interrupted shift can be finished`,
    );
  for (const m of r.mountpoints) lines.push(`  skipped mount point: ${m} (--cross-filesystems to shift it)`);
  for (const u of r.unmapped) {
    const where = u.where === 'owner' ? '' : ` in ${u.where === 'acl' ? 'an ACL' : 'a file capability'}`;
    const id = u.id === null ? `a ${u.kind} outside the ranges` : `${u.kind} ${u.id}`;
    const count = `${u.count} entr${u.count === 1 ? 'y' : 'ies'}`;
    lines.push(`  not translated: ${id}${where} (${count}; e.g. ${u.examples.join(', ')})`);
  }
  for (const e of r.errors) lines.push(`  error: ${e.op} ${e.path || '.'}: ${e.errno}`);
  if (r.errorCount > r.errors.length) lines.push(`  … and ${r.errorCount - r.errors.length} more errors`);
  if (incomplete !== null)
    lines.push(
      `  the shift ${r.dryRun ? 'would be' : 'is'} incomplete: ${incomplete.reason}`,
      `  hint: ${incomplete.hint}`,
    );
  return `${lines.join('\n')}\n`;
}

export const main: Command = async (argv, io) => {
  let json = argv.includes('--json');
  try {
    const { values, positionals } = parseCommandLine(argv, OPTIONS, 'shift');
    json = values.json === true;
    if (values.help) return writeHelp(io, 'shift');
    if (positionals.length !== 1) {
      throw new UsageError(positionals.length === 0 ? 'DIR is missing' : 'give exactly one DIR', {
        hint: "see 'userns shift --help'",
      });
    }
    if (values.from === undefined || values.to === undefined) {
      throw new UsageError('both --from MAP and --to MAP are required', {
        hint: "see 'userns shift --help'",
      });
    }
    const unmapped = values.unmapped ?? 'error';
    if (unmapped !== 'error' && unmapped !== 'skip' && unmapped !== 'overflow') {
      throw new UsageError(`--unmapped must be error, skip or overflow, not '${unmapped}'`);
    }
    const from = await readKindMaps(values.from, values['from-gid'], io, {
      uid: '--from',
      gid: values['from-gid'] === undefined ? '--from' : '--from-gid',
    });
    const to = await readKindMaps(values.to, values['to-gid'], io, {
      uid: '--to',
      gid: values['to-gid'] === undefined ? '--to' : '--to-gid',
    });

    const showProgress = !json && values.quiet !== true && io.stderr.isTTY === true;
    const started = performance.now();
    const changes: ShiftChange[] = [];
    const options: ShiftOptions = {
      from,
      to,
      reverse: values.reverse === true,
      dryRun: values['dry-run'] === true,
      unmapped,
      userns: values['no-userns'] !== true,
      crossFilesystems: values['cross-filesystems'] === true,
      forgetInterrupted: values['forget-interrupted'] === true,
      ...(values.root === undefined ? {} : { stateRoot: values.root }),
      countFirst: showProgress,
      mapWrite: {
        ...(values.newuidmap === undefined ? {} : { newuidmap: values.newuidmap }),
        ...(values.newgidmap === undefined ? {} : { newgidmap: values.newgidmap }),
      },
    };
    if (showProgress) {
      options.onProgress = (p) => io.stderr.write(`\r\x1b[K${progressLine(p, performance.now() - started)}`);
    }
    if (values.verbose) {
      options.onChange = (c) => {
        if (json) changes.push(c);
        else io.stdout.write(`${changeLine(c)}\n`);
      };
    }
    let result: ShiftResult;
    try {
      result = await shiftTree(positionals[0]!, options);
    } finally {
      if (showProgress) io.stderr.write('\r\x1b[K');
    }
    // A dry run fails where the run would (the run itself throws SHIFT_INCOMPLETE).
    const failed = shiftIncomplete(result, unmapped) !== null;
    if (json) {
      writeJson(io, {
        ok: !failed,
        ...result,
        ...(values.verbose ? { changes } : {}),
      });
    } else {
      io.stdout.write(summaryText(result, unmapped));
    }
    return failed ? 1 : 0;
  } catch (error) {
    return reportError(error, io, json);
  }
};
