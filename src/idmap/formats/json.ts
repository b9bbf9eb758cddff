import type { Extent, KindedExtent } from '../extent.js';
import { type JsonArray, JsonDoc, type JsonNode, member, parseJsonTree } from './json-tree.js';
import { byKind, kinded } from './kinds.js';
import { assertWritable } from './numbers.js';

/**
 * userns's own JSON: `{"uid": [[inside, outside, count], …], "gid": [[…]]}`, or a bare array of
 * triples `[[0, 1000, 1], …]` (kind 'both'). Also accepted: the CLI's `--json` output
 * `{"ok": true, "map": [[…]]}` (its `map` member, kind 'both'), so one command's output can be
 * piped into another. Unknown members are ignored.
 */

export interface UsernsJsonParseOptions {
  source?: string;
}

const HINT = 'expected [[inside, outside, count], …] or {"uid": [[…]], "gid": [[…]]}';
const FIELDS = ['inside', 'outside', 'count'] as const;

function triples(doc: JsonDoc, list: JsonArray, name: string): Extent[] {
  return list.items.map((item, i) => {
    const what = `${name}[${i}]`;
    const triple = doc.array(item, what, 'each entry is [inside, outside, count]');
    if (triple.items.length !== 3) {
      throw doc.fail(
        triple.items.length < 3 ? 'MISSING_FIELD' : 'SYNTAX',
        `${what} has ${triple.items.length} numbers, expected 3: [inside, outside, count]`,
        triple,
      );
    }
    const [inside, outside, count] = triple.items.map((n, f) => doc.u32(n, `${what} ${FIELDS[f]}`)) as [
      number,
      number,
      number,
    ];
    return { inside, outside, count };
  });
}

/**
 * Parses userns JSON: `{"uid": [[inside, outside, count], …], "gid": […]}` or a bare list of triples
 * (for both kinds).
 *
 * @throws ParseError with the line and column of the offending value.
 */
export function parseUsernsJson(text: string, options: UsernsJsonParseOptions = {}): KindedExtent[] {
  const doc = new JsonDoc(text, options.source);
  const root: JsonNode = parseJsonTree(text, options.source);
  if (root.type === 'array') return triples(doc, root, 'map').map((e) => kinded(e, 'both'));
  const obj = doc.object(root, 'the document', HINT);
  const out: KindedExtent[] = [];
  let found = false;
  for (const kind of ['uid', 'gid'] as const) {
    const list = member(obj, kind);
    if (list === undefined) continue;
    found = true;
    for (const e of triples(doc, doc.array(list, `"${kind}"`), kind)) out.push(kinded(e, kind)); // (no push(...): large inputs would overflow the call stack)
  }
  const map = member(obj, 'map');
  if (map !== undefined) {
    found = true;
    for (const e of triples(doc, doc.array(map, '"map"'), 'map')) out.push(kinded(e, 'both'));
  }
  if (!found) throw doc.fail('MISSING_FIELD', 'expected a "uid" or "gid" member (or "map")', obj, HINT);
  return out;
}

function list(extents: readonly Extent[]): string {
  return `[${extents
    .map((e) => {
      assertWritable(e, 'userns JSON');
      return `[${e.inside},${e.outside},${e.count}]`;
    })
    .join(',')}]`;
}

/**
 * Entries all of kind 'both' → a bare array; otherwise `{"uid": […], "gid": […]}` with a member
 * per kind that has entries ('both' entries in both). One line, newline-terminated.
 */
export function formatUsernsJson(entries: readonly KindedExtent[]): string {
  if (entries.every((e) => e.kind === 'both')) return `${list(entries)}\n`;
  const { uid, gid } = byKind(entries);
  const members: string[] = [];
  if (uid.length > 0) members.push(`"uid":${list(uid)}`);
  if (gid.length > 0) members.push(`"gid":${list(gid)}`);
  return `{${members.join(',')}}\n`;
}
