import type { ParseError } from '../../errors/index.js';
import type { FormatName } from './index.js';
import { type JsonNode, member, parseJsonTree } from './json-tree.js';
import { parseError } from './position.js';

/**
 * Guesses the format of a map text, for inputs given without `--from`.
 *
 * The rules, tried in this order (first match wins; "lines" means lines that are not blank
 * and, where the format has comments, not `#` comments):
 *
 * | #  | rule                                                                      | format     |
 * |----|---------------------------------------------------------------------------|------------|
 * | 1  | empty or only whitespace (an unwritten /proc map reads as "")            | kernel     |
 * | 2  | starts with `[` or `{`: JSON. A document with `uid`/`gid`/`map`, an array | json       |
 * |    | of arrays, or an empty array; else mapping objects spelled                |            |
 * |    | hostId/containerId/length; else (linux section, config.json, array of    | kubernetes |
 * |    | objects, anything else)                                                   | oci        |
 * | 3  | first token is `newuidmap`/`newgidmap` (or a path ending so)              | newuidmap  |
 * | 4  | a line starts with `lxc.`, or the first line is `u`/`g`/`b` + blank + digit | lxc        |
 * | 5  | the first line starts with `both `, `uid ` or `gid `                       | incus      |
 * | 6  | a token starts with `--map-`, or every token is auto/all/subids/`a,b,c`   | unshare    |
 * | 7  | every line is 3 whitespace-separated decimal numbers (blank lines allowed,  | kernel     |
 * |    | so that the kernel parser reports them precisely)                         |            |
 * | 8  | one line: pid, fd:N or $VAR, then a multiple of 3 numbers (base 0)        | newuidmap  |
 * | 9  | every line is `owner:number:number`, and the owner is a name, or there    | subid      |
 * |    | are several lines or `#` comments (one line whose owner is digits, maybe  |            |
 * |    | after podman flags u/g/+, is rule 10 or 11)                               |            |
 * | 10 | one line of `a:b:c` triples separated by commas                          | triples    |
 * | 11 | entries (split at commas/whitespace) of `[+ug]container:[@]host[:size]`   | podman     |
 * | 12 | loose: has ':' → podman if it uses +, @ or u/g flags, several lines →     | podman,    |
 * |    | subid, else triples; starts with a digit → kernel. (These only route the  | subid,     |
 * |    | text to the parser that can say precisely what is wrong with it.)         | triples,   |
 * |    |                                                                           | kernel     |
 * | —  | nothing matched: ParseError UNKNOWN_FORMAT                                | —          |
 *
 * Known ambiguities: a single `1000:100000:65536` line is both a subid line with a numeric owner
 * and a triple; it is read as triples (use --from subid). The podman output of entries without
 * a u/g flag is plain triples text, detected as triples, which parses to the same extents
 * (podman's sorting and merging aside). A bare `0:1000:1` unshare value is triples too (the
 * unshare format writes `--map-users=…`, which is detected as unshare).
 */

const SPACE = '[ \\t\\v\\f\\r]';
const KERNEL_LINE = new RegExp(`^${SPACE}*\\d+${SPACE}+\\d+${SPACE}+\\d+${SPACE}*$`);
const SUBID_LINE = /^[^:\s]+:\d+:\d+\r?$/;
const TRIPLES = /^\d+:\d+:\d+(,\d+:\d+:\d+)*$/;
const PODMAN_ENTRY = /^([+ug]*\d+:@?\d+:\d+:)*[+ug]*\d+:@?\d+(:\d+)?$/;
const NEWIDMAP_TARGET = /^(\d+|fd:\d+|\$[A-Za-z_]\w*|\$\{[A-Za-z_]\w*\})$/;
const BASE0 = /^\+?(0[xX][0-9a-fA-F]+|\d+)$/;
const UNSHARE_VALUE = /^(auto|all|subids|\d+,\d+,\d+)$/;

function jsonFormat(text: string): FormatName {
  let root: JsonNode;
  try {
    root = parseJsonTree(text);
  } catch {
    // Broken JSON: route by the spelling of the fields so the right parser reports the error.
    if (/"(hostId|containerId|length)"/.test(text)) return 'kubernetes';
    if (/"(hostID|containerID|size|linux|uidMappings|gidMappings)"/.test(text)) return 'oci';
    return 'json';
  }
  const isK8s = (n: JsonNode | undefined) =>
    n?.type === 'object' &&
    (member(n, 'hostId') !== undefined ||
      member(n, 'containerId') !== undefined ||
      member(n, 'length') !== undefined);
  if (root.type === 'array') {
    const first = root.items[0];
    if (first === undefined || first.type === 'array') return 'json';
    if (isK8s(first)) return 'kubernetes';
    return first.type === 'object' ? 'oci' : 'json';
  }
  if (root.type !== 'object') return 'json';
  if (
    member(root, 'uid') !== undefined ||
    member(root, 'gid') !== undefined ||
    member(root, 'map') !== undefined
  )
    return 'json';
  for (const key of ['uidMappings', 'gidMappings']) {
    const list = member(root, key);
    if (list?.type === 'array' && list.items.some(isK8s)) return 'kubernetes';
  }
  return 'oci';
}

/** Returns the format of `text` by the rules above; throws ParseError UNKNOWN_FORMAT. */
export function detectFormat(text: string, options: { source?: string } = {}): FormatName {
  const trimmed = text.trim();
  if (trimmed === '') return 'kernel';
  if (trimmed[0] === '[' || trimmed[0] === '{') return jsonFormat(text);

  const allLines = text.split('\n').filter((l) => l.trim() !== '');
  const lines = allLines.filter((l) => !/^\s*#/.test(l));
  const hasComments = lines.length !== allLines.length;
  const first = (lines[0] ?? '').trimStart();
  const words = trimmed.split(/\s+/);

  if (/(^|\/)new[ug]idmap$/.test(words[0]!)) return 'newuidmap';
  if (lines.some((l) => /^\s*lxc\./.test(l)) || /^[ugb][ \t]+\d/.test(first)) return 'lxc';
  if (/^(both|uid|gid) /.test(first)) return 'incus';
  if (words.some((w) => w.startsWith('--map-')) || words.every((w) => UNSHARE_VALUE.test(w)))
    return 'unshare';
  if (!hasComments && lines.length > 0 && lines.every((l) => KERNEL_LINE.test(l))) return 'kernel';
  if (
    lines.length === 1 &&
    words.length >= 4 &&
    (words.length - 1) % 3 === 0 &&
    NEWIDMAP_TARGET.test(words[0]!) &&
    words.slice(1).every((w) => BASE0.test(w))
  ) {
    return 'newuidmap';
  }
  if (lines.length > 0 && lines.every((l) => SUBID_LINE.test(l))) {
    if (lines.length > 1 || hasComments || !/^[+ug]*\d+:/.test(first)) return 'subid';
  }
  if (TRIPLES.test(trimmed)) return 'triples';
  if (words.flatMap((w) => w.split(',')).every((w) => w === '' || PODMAN_ENTRY.test(w))) return 'podman';

  // Loose rules: not valid in any format, but clearly meant as one of these.
  if (first.includes(':')) {
    if (/[@+]|(^|[,\s])[ug]+\d/.test(trimmed)) return 'podman';
    return lines.length > 1 ? 'subid' : 'triples';
  }
  if (/^\d/.test(first)) return 'kernel';
  throw unknown(text, options.source);
}

function unknown(text: string, source: string | undefined): ParseError {
  const line = text.split('\n').findIndex((l) => l.trim() !== '');
  const content = text.split('\n')[line] ?? '';
  return parseError(
    'UNKNOWN_FORMAT',
    'cannot tell which ID-map format this is',
    { source, line: line + 1, column: content.search(/\S/) + 1, text: content.trim() },
    'name the format with --from (kernel, oci, kubernetes, podman, lxc, subid, newuidmap, unshare, incus, json, triples)',
  );
}
