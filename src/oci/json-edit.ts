/**
 * Surgical edits of a JSON document: replace the value of a member, add members to an object,
 * append to an array — leaving every other byte of the document as it was (field order,
 * indentation, numbers like 9223372036854775807 or 1.0 that JSON.parse would change, a missing
 * final newline). New text follows the document's own style: indented with its unit (tabs, as
 * `runc spec` writes, or N spaces) at the depth it goes to, or compact when the document is
 * compact (Go's json.Marshal, the kubelet).
 *
 * Positions (where each value and key starts and ends) come from the one JSON reader, the
 * positioned reader of the map formats (src/idmap/formats/json-tree.ts): nothing here scans JSON
 * text again.
 */
import { type JsonArray, type JsonNode, type JsonObject, lastMember } from '../idmap/formats/json-tree.js';

/** One replacement of text[start, end) by `text` (start === end: an insertion). */
export interface Edit {
  start: number;
  end: number;
  text: string;
}

export interface JsonStyle {
  /** Members on their own lines (false: everything on one line). */
  pretty: boolean;
  /** One level of indentation ('\t', '  ', '    '). */
  unit: string;
  /** Between a key and its value: ': ' or ':'. */
  colon: string;
  /** Line ending. */
  eol: '\n' | '\r\n';
}

/** The whitespace before `offset` on its line, when nothing else precedes it there; else undefined. */
export function ownLineIndent(text: string, offset: number): string | undefined {
  const lineStart = text.lastIndexOf('\n', offset - 1) + 1;
  const before = text.slice(lineStart, offset);
  return /^[ \t]*$/.test(before) ? before : undefined;
}

/** The leading whitespace of the line holding `offset`. */
export function lineIndentAt(text: string, offset: number): string {
  const lineStart = text.lastIndexOf('\n', offset - 1) + 1;
  return /^[ \t]*/.exec(text.slice(lineStart, offset))![0];
}

/** How the document is laid out, read from its root's first member (or item). */
export function detectStyle(text: string, root: JsonNode): JsonStyle {
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  const first =
    root.type === 'object'
      ? root.members[0]?.offset
      : root.type === 'array'
        ? root.items[0]?.offset
        : undefined;
  let colon = ': ';
  if (root.type === 'object' && root.members.length > 0) {
    const m = root.members[0]!;
    const spacing = /^[ \t]*:([ \t]*)$/.exec(text.slice(m.keyEnd, m.value.offset));
    if (spacing !== null) colon = `:${spacing[1]}`;
  }
  if (first === undefined) {
    // An empty root: pretty unless written on one line.
    const pretty = text.trim().includes('\n');
    return { pretty, unit: '  ', colon: pretty ? ': ' : colon, eol };
  }
  const indent = ownLineIndent(text, first);
  if (indent === undefined) return { pretty: false, unit: '', colon, eol };
  const base = lineIndentAt(text, root.offset);
  const unit = indent.startsWith(base) && indent.length > base.length ? indent.slice(base.length) : '  ';
  return { pretty: true, unit, colon, eol };
}

/** `value` as JSON text in the document's style, its first line at the current position and
 * the following ones indented from `indent` (the indentation of the line it starts on). */
export function render(value: unknown, style: JsonStyle, indent: string): string {
  if (!style.pretty) return JSON.stringify(value);
  const text = JSON.stringify(value, null, style.unit);
  return text.replace(/\n/g, style.eol + indent);
}

/** The same, on one line (for inline arrays and objects in a pretty document): `[1, 2]`, `{"a": 1}`. */
function renderInline(value: unknown, style: JsonStyle): string {
  if (!style.pretty) return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((v) => renderInline(v, style)).join(', ')}]`;
  if (typeof value === 'object' && value !== null) {
    const members = Object.entries(value).filter(([, v]) => v !== undefined);
    return `{${members.map(([k, v]) => `${JSON.stringify(k)}${style.colon}${renderInline(v, style)}`).join(', ')}}`;
  }
  return JSON.stringify(value);
}

/**
 * Sets members of `obj`: an existing member (its last occurrence) gets its value replaced in
 * place; the others are added after the last member, in the given order.
 */
export function setMembers(
  text: string,
  obj: JsonObject,
  entries: readonly (readonly [string, unknown])[],
  style: JsonStyle,
): Edit[] {
  const edits: Edit[] = [];
  const added: (readonly [string, unknown])[] = [];
  for (const entry of entries) {
    const existing = lastMember(obj, entry[0]);
    if (existing === undefined) {
      added.push(entry);
      continue;
    }
    const start = existing.value.offset;
    const end = existing.value.end;
    const indent = lineIndentAt(text, existing.offset);
    const inline =
      !text.slice(start, end).includes('\n') && ownLineIndent(text, existing.offset) === undefined;
    edits.push({
      start,
      end,
      text: inline ? renderInline(entry[1], style) : render(entry[1], style, indent),
    });
  }
  if (added.length === 0) return edits;
  const member = (key: string, value: unknown, indent: string, inline: boolean) =>
    `${JSON.stringify(key)}${style.colon}${inline ? renderInline(value, style) : render(value, style, indent)}`;
  if (obj.members.length > 0) {
    const last = obj.members[obj.members.length - 1]!;
    const at = last.value.end;
    const indent = style.pretty ? ownLineIndent(text, last.offset) : undefined;
    const text_ =
      indent === undefined
        ? added.map(([k, v]) => `,${style.pretty ? ' ' : ''}${member(k, v, '', true)}`).join('')
        : added.map(([k, v]) => `,${style.eol}${indent}${member(k, v, indent, false)}`).join('');
    edits.push({ start: at, end: at, text: text_ });
    return edits;
  }
  // An empty object: rewritten whole.
  const end = obj.end;
  if (!style.pretty) {
    edits.push({
      start: obj.offset,
      end,
      text: `{${added.map(([k, v]) => member(k, v, '', true)).join(',')}}`,
    });
    return edits;
  }
  const outer = lineIndentAt(text, obj.offset);
  const inner = outer + style.unit;
  const body = added.map(([k, v]) => `${inner}${member(k, v, inner, false)}`).join(`,${style.eol}`);
  edits.push({ start: obj.offset, end, text: `{${style.eol}${body}${style.eol}${outer}}` });
  return edits;
}

/** Appends `value` to an array, in the layout of its items. */
export function appendItem(text: string, array: JsonArray, value: unknown, style: JsonStyle): Edit {
  const end = array.end;
  if (array.items.length > 0) {
    const last = array.items[array.items.length - 1]!;
    const at = last.end;
    const indent = style.pretty ? ownLineIndent(text, last.offset) : undefined;
    if (indent !== undefined)
      return { start: at, end: at, text: `,${style.eol}${indent}${render(value, style, indent)}` };
    let separator = style.pretty ? ', ' : ',';
    if (array.items.length >= 2) {
      const previous = array.items[array.items.length - 2]!;
      separator = text.slice(previous.end, last.offset);
    }
    return { start: at, end: at, text: `${separator}${renderInline(value, style)}` };
  }
  if (!style.pretty) return { start: array.offset, end, text: `[${JSON.stringify(value)}]` };
  const outer = lineIndentAt(text, array.offset);
  const inner = outer + style.unit;
  return {
    start: array.offset,
    end,
    text: `[${style.eol}${inner}${render(value, style, inner)}${style.eol}${outer}]`,
  };
}

/** Applies non-overlapping edits (in any order). */
export function applyEdits(text: string, edits: readonly Edit[]): string {
  const sorted = [...edits].sort((a, b) => b.start - a.start || b.end - a.end);
  let out = text;
  let limit = Number.POSITIVE_INFINITY;
  for (const e of sorted) {
    if (e.end > limit) throw new Error(`overlapping JSON edits at offset ${e.start}`);
    out = out.slice(0, e.start) + e.text + out.slice(e.end);
    limit = e.start;
  }
  return out;
}
