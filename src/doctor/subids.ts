/**
 * Subordinate IDs: the user's entries in /etc/subuid and /etc/subgid (by name and by numeric
 * UID), libsubid (`subid:` in nsswitch.conf, getsubids), too-small ranges, ranges that overlap
 * another user's, the user's own ID inside its range, subgid missing when subuid exists,
 * malformed lines, and (nested) ranges this namespace cannot map.
 */
import { readFileSync } from 'node:fs';
import { formatRange, type IdKind } from '../idmap/extent.js';
import type { SubidEntry } from '../idmap/formats/subid.js';
import { subidOwnerMatches } from '../idmap/formats/subid.js';
import { type IdRange, insideRanges, intersectRanges, rangesSize } from '../idmap/ranges.js';
import { usablePool } from '../maps/modes.js';
import { nesting } from '../system/knobs.js';
import {
  freeRange,
  getSubordinateRanges,
  listAllSubordinateRanges,
  loginDefs,
  type SubidFile,
  type SubordinateOptions,
  type SubordinateRanges,
} from '../system/subordinate.js';
import { type Check, check, type DoctorContext, forTarget } from './types.js';

const span = (r: IdRange) => formatRange(r.start, r.count);
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

function overlaps(a: IdRange, b: IdRange): boolean {
  return a.start < b.start + b.count && b.start < a.start + a.count;
}

interface KindData {
  kind: IdKind;
  file: string;
  mine: SubordinateRanges;
  all: SubidFile;
}

function nsswitchLine(path: string): { line: number; text: string } | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  const lines = text.split('\n');
  let found: { line: number; text: string } | undefined;
  lines.forEach((l, i) => {
    if (/^\s*subid\s*:/.test(l.replace(/#.*/, ''))) found = { line: i + 1, text: l.trim() };
  });
  return found;
}

function entryEvidence(e: SubidEntry): Record<string, unknown> {
  return { owner: e.owner, start: e.start, count: e.count, line: e.line };
}

function sourceCheck(ctx: DoctorContext, uid: KindData): Check {
  const nsswitch = ctx.options.nsswitchPath ?? '/etc/nsswitch.conf';
  const line = nsswitchLine(nsswitch);
  const module = uid.mine.module;
  const getsubids = uid.mine.getsubids;
  const evidence = {
    value: module,
    file: nsswitch,
    ...(line === undefined ? {} : { line: line.line, text: line.text }),
    getsubids: getsubids ?? null,
  };
  const title = 'where subordinate IDs come from';
  if (module === 'files') {
    return check(
      'subids',
      'source',
      title,
      'ok',
      line === undefined
        ? `${nsswitch} has no 'subid:' line: subordinate IDs come from /etc/subuid and /etc/subgid`
        : `'${line.text}' (${nsswitch}:${line.line}): subordinate IDs come from /etc/subuid and /etc/subgid`,
      evidence,
    );
  }
  if (getsubids === undefined) {
    return check(
      'subids',
      'source',
      title,
      forTarget(ctx, 'error'),
      `'${line?.text ?? `subid: ${module}`}' (${nsswitch}:${line?.line ?? '?'}): subordinate IDs come from the NSS module '${module}' (libsubid), but getsubids is not installed, so userns cannot ask for them`,
      evidence,
      'apt-get install uidmap (Debian/Ubuntu; it has getsubids), dnf install shadow-utils-subid (Fedora)',
    );
  }
  return check(
    'subids',
    'source',
    title,
    'ok',
    `'${line?.text ?? `subid: ${module}`}' (${nsswitch}:${line?.line ?? '?'}): subordinate IDs come from the NSS module '${module}' through libsubid (asked with ${getsubids})`,
    evidence,
  );
}

function rangesCheck(ctx: DoctorContext, d: KindData, other: KindData, fixRange: IdRange): Check {
  const { kind, mine } = d;
  const user = ctx.target;
  const id = kind === 'uid' ? 'subuid' : 'subgid';
  const title = `${d.file} entries for ${user.name}`;
  const evidence: Record<string, unknown> = {
    value: mine.ranges,
    file: mine.file ?? d.file,
    source: mine.source,
    entries: mine.entries.map(entryEvidence),
    ...(mine.entries[0] !== undefined && mine.source === 'files' ? { line: mine.entries[0].line } : {}),
    ...(mine.getsubids === undefined ? {} : { getsubids: mine.getsubids }),
  };
  if (mine.ranges.length > 0) {
    const list = mine.entries
      .map(
        (e) => `${span(e)} (${mine.source === 'files' ? `${d.file}:${e.line}` : `getsubids line ${e.line}`})`,
      )
      .join(', ');
    const numeric = mine.entries.filter((e) => e.owner !== user.name && /^[0-9]+$/.test(e.owner));
    const numericNote =
      numeric.length > 0 && mine.source === 'files'
        ? `; ${numeric.length === mine.entries.length ? 'keyed' : `line ${numeric.map((e) => e.line).join(', ')} keyed`} by the numeric UID ${user.uid}, which newuidmap/newgidmap and userns recognise`
        : '';
    const from = mine.source === 'libsubid' ? ' from libsubid (getsubids)' : '';
    return check(
      'subids',
      id,
      title,
      'ok',
      `${user.name} has ${plural(rangesSize(mine.ranges), `subordinate ${kind}`)}${from}: ${list}${numericNote}`,
      evidence,
    );
  }
  const flag = kind === 'uid' ? '--add-subuids' : '--add-subgids';
  const both = other.mine.ranges.length === 0;
  const fix = both
    ? `usermod --add-subuids ${span(fixRange)} --add-subgids ${span(fixRange)} ${user.name}\n` +
      `(or add the line '${user.name}:${fixRange.start}:${fixRange.count}' to /etc/subuid and to /etc/subgid)`
    : `usermod ${flag} ${span(fixRange)} ${user.name}\n(or add the line '${user.name}:${fixRange.start}:${fixRange.count}' to ${d.file})`;
  if (ctx.targetIsRoot) {
    return check(
      'subids',
      id,
      title,
      'ok',
      `root has no subordinate ${kind}s in ${d.file}; it needs none (root writes maps directly)`,
      evidence,
    );
  }
  const lookedAt =
    mine.module === 'files'
      ? `no line for ${user.name} or ${user.uid} in ${d.file}`
      : `libsubid (module ${mine.module}) has none`;
  const getsubidsNote =
    mine.getsubids !== undefined && mine.module === 'files' ? ', and getsubids knows none' : '';
  const missingOnlyThis = !both;
  const message = missingOnlyThis
    ? `${user.name} has subordinate ${other.kind}s but no subordinate ${kind}s (${lookedAt}${getsubidsNote}): ` +
      `${kind === 'gid' ? 'newgidmap' : 'newuidmap'} refuses every ${kind} range, so only ${user.name}'s own ${kind} can be mapped`
    : `${user.name} has no subordinate ${kind}s (${lookedAt}${getsubidsNote}): only ${user.name}'s own ${kind} can be mapped ` +
      `(podman then fails with "potentially insufficient UIDs or GIDs available in user namespace")`;
  return check('subids', id, title, 'error', message, evidence, fix);
}

function sizeCheck(ctx: DoctorContext, uid: KindData, gid: KindData, fixRange: IdRange): Check {
  const user = ctx.target;
  const rows = [uid, gid].map((d) => {
    const own = d.kind === 'uid' ? user.uid : user.gid;
    const usable = rangesSize(usablePool(d.mine.ranges, own));
    return { d, usable };
  });
  const evidence = {
    value: { uids: rows[0]!.usable, gids: rows[1]!.usable },
    minimum: 65536,
  };
  const small = rows.filter((r) => r.d.mine.ranges.length > 0 && r.usable < 65536);
  const title = 'size of the subordinate ranges';
  if (rows.every((r) => r.d.mine.ranges.length === 0)) {
    return check('subids', 'size', title, 'skipped', `${user.name} has no subordinate ranges`, evidence);
  }
  if (small.length === 0) {
    return check(
      'subids',
      'size',
      title,
      'ok',
      `${rows[0]!.usable} subordinate uids and ${rows[1]!.usable} gids can be mapped (at least 65536 each)`,
      evidence,
    );
  }
  const parts = small.map(
    (r) =>
      `${plural(r.usable, `usable subordinate ${r.d.kind}`)} (${r.d.mine.entries.map((e) => `${span(e)} at ${r.d.file}:${e.line}`).join(', ')})`,
  );
  const fix = small.map((r) => `usermod --add-sub${r.d.kind}s ${span(fixRange)} ${user.name}`).join('\n');
  return check(
    'subids',
    'size',
    title,
    forTarget(ctx, 'warning'),
    `${user.name} has only ${parts.join(' and ')}: inside a namespace, IDs beyond that are unmapped, so images with files owned by IDs up to 65534 (nobody) fail ("potentially insufficient UIDs or GIDs available in user namespace")`,
    { ...evidence, file: small[0]!.d.file, line: small[0]!.d.mine.entries[0]?.line },
    `give ${user.name} at least 65536: ${fix}`,
  );
}

interface Clash {
  kind: IdKind;
  file: string;
  a: SubidEntry;
  b: SubidEntry;
}

function overlapCheck(ctx: DoctorContext, uid: KindData, gid: KindData, defsTaken: IdRange[]): Check {
  const user = ctx.target;
  const clashes: Clash[] = [];
  const machineWide = ctx.targetIsRoot;
  for (const d of [uid, gid]) {
    const entries = d.all.entries;
    for (let i = 0; i < entries.length; i++) {
      for (let j = i + 1; j < entries.length; j++) {
        const a = entries[i]!;
        const b = entries[j]!;
        if (!overlaps(a, b)) continue;
        const aMine = subidOwnerMatches(a.owner, user);
        const bMine = subidOwnerMatches(b.owner, user);
        if (machineWide || aMine || bMine) clashes.push({ kind: d.kind, file: d.file, a, b });
      }
    }
  }
  const title = machineWide ? 'overlapping ranges (all users)' : `ranges of ${user.name} that overlap others`;
  const evidence = {
    value: clashes.map((c) => ({
      file: c.file,
      a: entryEvidence(c.a),
      b: entryEvidence(c.b),
    })),
    ...(clashes[0] === undefined ? {} : { file: clashes[0].file, line: clashes[0].b.line }),
  };
  if (clashes.length === 0) {
    return check(
      'subids',
      'overlap',
      title,
      'ok',
      machineWide
        ? 'no two lines of /etc/subuid or /etc/subgid overlap'
        : `no range of ${user.name} overlaps another line`,
      evidence,
    );
  }
  const describe = (c: Clash) => {
    const same = subidOwnerMatches(c.a.owner, user) && subidOwnerMatches(c.b.owner, user);
    const who = (e: SubidEntry) => `${e.owner}:${e.start}:${e.count} (${c.file}:${e.line})`;
    return `${who(c.a)} overlaps ${who(c.b)}${same ? ` (both ${user.name}'s: the kernel refuses a map that uses an ID twice)` : ''}`;
  };
  const free = freeRange(defsTaken, loginDefs('uid'));
  const first = clashes[0]!;
  const moved = subidOwnerMatches(first.b.owner, user) && !machineWide ? first.a : first.b;
  const movedOwner = moved.owner;
  return check(
    'subids',
    'overlap',
    title,
    'warning',
    `${clashes.map(describe).join('; ')}: users whose ranges overlap can map the same host IDs, so each one's containers can read and write the other's files`,
    evidence,
    `give one of them a range of its own, e.g.: usermod --del-sub${first.kind}s ${span(moved)} --add-sub${first.kind}s ${formatRange(free.start, moved.count)} ${movedOwner}` +
      (/^[0-9]+$/.test(movedOwner) ? ' (use the login name of that UID)' : ''),
  );
}

function ownIdCheck(ctx: DoctorContext, uid: KindData, gid: KindData, defsTaken: IdRange[]): Check {
  const user = ctx.target;
  const hits: { kind: IdKind; file: string; id: number; entry: SubidEntry }[] = [];
  for (const d of [uid, gid]) {
    const own = d.kind === 'uid' ? user.uid : user.gid;
    for (const e of d.mine.entries) {
      if (own >= e.start && own < e.start + e.count)
        hits.push({ kind: d.kind, file: d.file, id: own, entry: e });
    }
  }
  const title = `${user.name}'s own IDs outside its ranges`;
  if (hits.length === 0) {
    return check(
      'subids',
      'own_id',
      title,
      'ok',
      `uid ${user.uid} and gid ${user.gid} are not inside ${user.name}'s own subordinate ranges`,
      { value: { uid: user.uid, gid: user.gid } },
    );
  }
  const h = hits[0]!;
  const free = freeRange(defsTaken, loginDefs(h.kind), h.entry.count);
  return check(
    'subids',
    'own_id',
    title,
    forTarget(ctx, 'warning'),
    hits
      .map(
        (x) =>
          `${user.name}'s own ${x.kind} ${x.id} lies inside its subordinate range ${span(x.entry)} (${x.file}:${x.entry.line})`,
      )
      .join('; ') +
      `: the namespace maps ${user.name} as 0 and the range from 1, so that ID would be mapped twice; userns leaves it out of the range, other tools (podman, unshare --map-auto) fail or map it twice`,
    {
      value: hits.map((x) => ({ kind: x.kind, id: x.id, ...entryEvidence(x.entry) })),
      file: h.file,
      line: h.entry.line,
    },
    `move the range above the regular user IDs: usermod --del-sub${h.kind}s ${span(h.entry)} --add-sub${h.kind}s ${span(free)} ${user.name}`,
  );
}

function syntaxCheck(uid: KindData, gid: KindData): Check {
  const problems = [...uid.all.problems, ...gid.all.problems];
  const evidence = {
    value: problems.map((p) => ({
      file: p.source ?? null,
      line: p.line,
      column: p.column,
      code: p.code,
      text: p.text,
    })),
    ...(problems[0] === undefined ? {} : { file: problems[0].source, line: problems[0].line }),
  };
  if (problems.length === 0) {
    return check(
      'subids',
      'syntax',
      'syntax of /etc/subuid and /etc/subgid',
      'ok',
      `every line of ${uid.file} and ${gid.file} is well-formed`,
      evidence,
    );
  }
  return check(
    'subids',
    'syntax',
    'syntax of /etc/subuid and /etc/subgid',
    'warning',
    `${plural(problems.length, 'malformed line')} (skipped by userns; podman refuses the whole file): ${problems.map((p) => p.message).join('; ')}`,
    evidence,
    'rewrite each such line as owner:start:count in decimal, e.g. alice:100000:65536 (no spaces, no DOS line endings)',
  );
}

function namespaceCheck(ctx: DoctorContext, uid: KindData, gid: KindData): Check | undefined {
  const n = nesting(ctx.options.procRoot === undefined ? {} : { procRoot: ctx.options.procRoot });
  if (!n.nested || n.uidMap === undefined || n.gidMap === undefined) return undefined;
  const missing = [uid, gid].flatMap((d) => {
    const available = insideRanges(d.kind === 'uid' ? n.uidMap! : n.gidMap!);
    return d.mine.entries
      .filter((e) => rangesSize(intersectRanges([e], available)) < e.count)
      .map((e) => ({ kind: d.kind, file: d.file, entry: e }));
  });
  const title = 'subordinate ranges mapped in this namespace';
  if (missing.length === 0) {
    return check(
      'subids',
      'in_namespace',
      title,
      'ok',
      `every subordinate range of ${ctx.target.name} is mapped in this (nested) namespace`,
      { value: n.uidMapText?.trim() ?? null, file: n.uidMapFile },
    );
  }
  return check(
    'subids',
    'in_namespace',
    title,
    forTarget(ctx, 'error'),
    `${missing.map((m) => `${span(m.entry)} (${m.file}:${m.entry.line})`).join(', ')} ${missing.length === 1 ? 'is' : 'are'} not (entirely) mapped in this nested namespace (${n.uidMapFile}: ${n.uidMapText?.trim().replace(/\s+/g, ' ')}), so newuidmap/newgidmap cannot map ${missing.length === 1 ? 'it' : 'them'} (EPERM)`,
    {
      value: missing.map((m) => ({ kind: m.kind, ...entryEvidence(m.entry) })),
      file: missing[0]!.file,
      line: missing[0]!.entry.line,
    },
    'use ranges inside the IDs this container has (see its /proc/self/uid_map), or give the container more IDs',
  );
}

/**
 * The subordinate-ID checks of `userns doctor`: the user's /etc/subuid and /etc/subgid entries,
 * libsubid, sizes, overlaps with other users, malformed lines.
 */
export async function subidChecks(ctx: DoctorContext): Promise<Check[]> {
  const o = ctx.options;
  const sub: SubordinateOptions = {
    ...(o.subuidPath === undefined ? {} : { subuidPath: o.subuidPath }),
    ...(o.subgidPath === undefined ? {} : { subgidPath: o.subgidPath }),
    ...(o.nsswitchPath === undefined ? {} : { nsswitchPath: o.nsswitchPath }),
    ...(o.getsubidsPath === undefined ? {} : { getsubidsPath: o.getsubidsPath }),
  };
  const user = { name: ctx.target.name, uid: ctx.target.uid };
  const [mineU, mineG, allU, allG] = await Promise.all([
    getSubordinateRanges(user, 'uid', sub),
    getSubordinateRanges(user, 'gid', sub),
    listAllSubordinateRanges('uid', sub),
    listAllSubordinateRanges('gid', sub),
  ]);
  const uid: KindData = { kind: 'uid', file: allU.file, mine: mineU, all: allU };
  const gid: KindData = { kind: 'gid', file: allG.file, mine: mineG, all: allG };
  const taken = [...allU.entries, ...allG.entries].map((e) => ({ start: e.start, count: e.count }));
  const defs = loginDefs('uid');
  const fixRange = freeRange(taken, defs);
  const checks = [
    sourceCheck(ctx, uid),
    rangesCheck(ctx, uid, gid, fixRange),
    rangesCheck(ctx, gid, uid, fixRange),
    sizeCheck(ctx, uid, gid, fixRange),
    overlapCheck(ctx, uid, gid, taken),
    ownIdCheck(ctx, uid, gid, taken),
    syntaxCheck(uid, gid),
  ];
  const ns = namespaceCheck(ctx, uid, gid);
  if (ns !== undefined) checks.push(ns);
  return checks;
}
