import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { ParseError, UsernsError } from '../errors/index.js';
import type { IdKind } from '../idmap/extent.js';
import { parseSubid, type SubidEntry, subidOwnerMatches } from '../idmap/formats/subid.js';
import { type IdRange, subtractRanges } from '../idmap/ranges.js';
import { findProgram, run } from './exec.js';

/**
 * A user's subordinate UIDs/GIDs (the ranges newuidmap/newgidmap let them map), found the way
 * shadow's libsubid finds them:
 *
 * 1. /etc/nsswitch.conf `subid: MODULE` (one module; default `files`). With a module other than
 *    `files` (sss, ldap...) the files are not consulted at all: we ask `getsubids` (shadow ≥ 4.10,
 *    which goes through libsubid), since only libsubid can load the module.
 * 2. Otherwise the file (/etc/subuid or /etc/subgid): every well-formed line whose owner is the
 *    login name or the decimal UID, in file order. Both files are keyed by the USER.
 * 3. No matching line: ask `getsubids` too (it also finds entries whose owner is another name of
 *    the same UID). getsubids not installed, or "Error fetching ranges": no ranges. (Skipped when
 *    the caller substituted the file but not getsubids, which always reads the real one.)
 */

/**
 * Where subordinate ranges are read from (for tests and special setups): the files, nsswitch.conf, getsubids.
 */
export interface SubordinateOptions {
  subuidPath?: string;
  subgidPath?: string;
  nsswitchPath?: string;
  /** getsubids to run (default: found in PATH or the standard dirs); a missing path = not installed. */
  getsubidsPath?: string;
}

/** A user's subordinate ranges of one kind and where they came from. */
export interface SubordinateRanges {
  /** The ranges, in file (or getsubids output) order, neither sorted nor merged. */
  ranges: IdRange[];
  /** Where they came from; 'none' = no ranges at all. */
  source: 'files' | 'libsubid' | 'none';
  /** The file read (also when it had no entry for the user or did not exist); absent when the NSS module ruled the files out. */
  file?: string;
  /** The `subid:` NSS module in force ('files' when nsswitch.conf has no such line). */
  module: string;
  /** The getsubids program asked, when it was. */
  getsubids?: string;
  /** Malformed lines of the file (every owner's: one of them may be the user's own broken line), or of getsubids output. */
  problems: ParseError[];
  /**
   * The matching entries. From a file: with their line numbers in it. From getsubids: owner as
   * printed by getsubids, line = the line of its output.
   */
  entries: SubidEntry[];
}

/** A subordinate ID file as read: every entry and every malformed line. */
export interface SubidFile {
  file: string;
  exists: boolean;
  /** Every well-formed entry, all owners, file order. */
  entries: SubidEntry[];
  problems: ParseError[];
}

/**
 * The subid file read for `kind`: the option, else $USERNS_SUBUID_FILE / $USERNS_SUBGID_FILE,
 * else /etc/subuid or /etc/subgid. The variables let a test or a chroot-like setup give userns
 * its own files; newuidmap and getsubids still read the real ones (see getSubordinateRanges).
 */
export function subidFile(kind: IdKind, options: SubordinateOptions = {}): string {
  return kind === 'uid'
    ? (options.subuidPath ?? (process.env.USERNS_SUBUID_FILE || '/etc/subuid'))
    : (options.subgidPath ?? (process.env.USERNS_SUBGID_FILE || '/etc/subgid'));
}

const fileFor = (kind: IdKind, options: SubordinateOptions) => subidFile(kind, options);

/**
 * The module named by the `subid:` line of nsswitch.conf text, or undefined when there is none.
 * Comments (`#` to end of line) are ignored; shadow uses only the first word.
 */
export function parseNsswitchSubid(text: string): string | undefined {
  let found: string | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    const m = /^subid\s*:\s*(\S+)/.exec(line);
    if (m) found = m[1]!;
  }
  return found;
}

async function nssModule(options: SubordinateOptions): Promise<string> {
  try {
    return (
      parseNsswitchSubid(await readFile(options.nsswitchPath ?? '/etc/nsswitch.conf', 'utf8')) ?? 'files'
    );
  } catch {
    return 'files';
  }
}

/** Reads and parses a subuid/subgid file. A missing file is empty; an unreadable one is an error. */
async function readSubidFile(file: string): Promise<SubidFile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { file, exists: false, entries: [], problems: [] };
    throw new UsernsError('SUBID_UNREADABLE', `cannot read ${file}: ${(error as Error).message}`, {
      hint: `${file} must be readable by everyone (it is mode 0644, owned by root, normally): chmod 644 ${file}`,
      data: { file, errno: code ?? null },
      cause: error,
    });
  }
  return { file, exists: true, ...parseSubid(text, { source: file }) };
}

/** Every entry of /etc/subuid or /etc/subgid (all owners), e.g. for overlap checks. */
export async function listAllSubordinateRanges(
  kind: IdKind,
  options: SubordinateOptions = {},
): Promise<SubidFile> {
  return readSubidFile(fileFor(kind, options));
}

/**
 * Parses `getsubids [-g] USER` output: one `INDEX: OWNER START COUNT` line per range.
 * Lines that do not have this form are returned as problems (source `getsubids`).
 */
export function parseGetsubidsOutput(text: string): { entries: SubidEntry[]; problems: ParseError[] } {
  const entries: SubidEntry[] = [];
  const problems: ParseError[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '') continue;
    const m = /^\s*[0-9]+:\s+(\S+)\s+([0-9]{1,10})\s+([0-9]{1,10})\s*$/.exec(line);
    const start = m ? Number(m[2]) : Number.NaN;
    const count = m ? Number(m[3]) : Number.NaN;
    if (!m || count < 1 || start + count > 4294967296) {
      problems.push(
        new ParseError(
          'GETSUBIDS_OUTPUT',
          'unexpected getsubids output (expected "INDEX: OWNER START COUNT")',
          {
            source: 'getsubids',
            line: i + 1,
            column: 1,
            text: line,
          },
        ),
      );
      continue;
    }
    entries.push({ owner: m[1]!, start, count, line: i + 1 });
  }
  return { entries, problems };
}

interface GetsubidsAnswer {
  program: string | undefined;
  entries: SubidEntry[];
  problems: ParseError[];
}

async function askGetsubids(
  user: { name: string; uid: number },
  kind: IdKind,
  options: SubordinateOptions,
): Promise<GetsubidsAnswer> {
  const program = options.getsubidsPath ?? findProgram('getsubids');
  if (program === undefined) return { program, entries: [], problems: [] };
  // getsubids has no `--`; a name starting with '-' would be taken as an option. No such login exists.
  const who = user.name.startsWith('-') || user.name === '' ? String(user.uid) : user.name;
  const result = await run(program, kind === 'gid' ? ['-g', who] : [who]);
  // Not installed: nothing to ask. Exit 1 "Error fetching ranges": the user has none.
  if (result.missing || result.code !== 0)
    return { program: result.missing ? undefined : program, entries: [], problems: [] };
  return { program, ...parseGetsubidsOutput(result.stdout) };
}

/**
 * The subordinate UIDs (kind 'uid', /etc/subuid) or GIDs ('gid', /etc/subgid) of a user, with
 * where they came from. See the module comment for the lookup order.
 */
export async function getSubordinateRanges(
  user: { name: string; uid: number },
  kind: IdKind,
  options: SubordinateOptions = {},
): Promise<SubordinateRanges> {
  const module = await nssModule(options);
  const toRanges = (entries: SubidEntry[]): IdRange[] =>
    entries.map((e) => ({ start: e.start, count: e.count }));

  if (module !== 'files') {
    const answer = await askGetsubids(user, kind, options);
    return {
      ranges: toRanges(answer.entries),
      source: answer.entries.length > 0 ? 'libsubid' : 'none',
      module,
      ...(answer.program === undefined ? {} : { getsubids: answer.program }),
      problems: answer.problems,
      entries: answer.entries,
    };
  }

  const parsed = await readSubidFile(fileFor(kind, options));
  const mine = parsed.entries.filter((e) => subidOwnerMatches(e.owner, user));
  if (mine.length > 0) {
    return {
      ranges: toRanges(mine),
      source: 'files',
      file: parsed.file,
      module,
      problems: parsed.problems,
      entries: mine,
    };
  }
  // getsubids reads the real /etc/subuid: asking it about a file the caller substituted would mix
  // two sources, unless the caller substituted getsubids too.
  const defaultFile = parsed.file === (kind === 'uid' ? '/etc/subuid' : '/etc/subgid');
  const answer =
    defaultFile || options.getsubidsPath !== undefined
      ? await askGetsubids(user, kind, options)
      : { program: undefined, entries: [], problems: [] };
  return {
    ranges: toRanges(answer.entries),
    source: answer.entries.length > 0 ? 'libsubid' : 'none',
    file: parsed.file,
    module,
    ...(answer.program === undefined ? {} : { getsubids: answer.program }),
    problems: [...parsed.problems, ...answer.problems],
    entries: answer.entries,
  };
}

/** SUB_UID_MIN/MAX/COUNT (or SUB_GID_*) of /etc/login.defs: where useradd puts new ranges. */
export interface LoginDefs {
  min: number;
  max: number;
  count: number;
  file: string;
}

/** SUB_UID_MIN/MAX/COUNT (or SUB_GID_*) from /etc/login.defs, with shadow's defaults. */
export function loginDefs(kind: IdKind, file = '/etc/login.defs'): LoginDefs {
  const prefix = kind === 'uid' ? 'SUB_UID_' : 'SUB_GID_';
  const out = { min: 100000, max: 600100000, count: 65536, file };
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return out;
  }
  for (const raw of text.split('\n')) {
    const m = /^\s*(SUB_[UG]ID_(?:MIN|MAX|COUNT))\s+([0-9]+)\s*$/.exec(raw);
    if (!m || !m[1]!.startsWith(prefix)) continue;
    const key = m[1]!.slice(prefix.length).toLowerCase() as 'min' | 'max' | 'count';
    out[key] = Number(m[2]);
  }
  if (out.count < 1) out.count = 65536;
  return out;
}

/**
 * The first `count` IDs at or above SUB_UID_MIN that no range in `taken` uses (the way useradd
 * picks), so that one range fits both /etc/subuid and /etc/subgid.
 */
export function freeRange(taken: readonly IdRange[], defs: LoginDefs, count = defs.count): IdRange {
  const free = subtractRanges([{ start: defs.min, count: Math.max(1, defs.max - defs.min + 1) }], taken);
  const hit = free.find((r) => r.count >= count);
  return { start: hit?.start ?? defs.max + 1, count };
}

/**
 * A range to suggest to a user who has no subordinate IDs: free in both /etc/subuid and
 * /etc/subgid (no other user's line uses it), where useradd would put it. What `userns doctor`
 * proposes, and every hint that says "add a range".
 */
export async function suggestSubordinateRange(
  options: SubordinateOptions & { loginDefsPath?: string } = {},
): Promise<IdRange> {
  const [u, g] = await Promise.all([
    listAllSubordinateRanges('uid', options),
    listAllSubordinateRanges('gid', options),
  ]);
  const taken = [...u.entries, ...g.entries].map((e) => ({ start: e.start, count: e.count }));
  return freeRange(taken, loginDefs('uid', options.loginDefsPath));
}
