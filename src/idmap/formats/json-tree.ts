import type { ParseError, ParseErrorCode } from '../../errors/index.js';
import { decimalU32, isProblem } from './numbers.js';
import { parseErrorAt } from './position.js';

/**
 * A small JSON reader that keeps the offset of every value, for the JSON-based map formats
 * (OCI, Kubernetes, userns JSON). JSON.parse cannot do this: its error messages carry a
 * position only sometimes (it depends on the V8 version), and a wrong value deep inside a valid
 * document (`"size": -1`) has no position at all. It also keeps numbers as their literal text
 * (so 4294967296, 1e3 and 1.0 can be refused precisely) and never builds objects from keys (no
 * `__proto__` surprises). Grammar: RFC 8259; a leading byte-order mark is skipped.
 */

/** A value with where it is in the text: `offset` of its first character, `end` just after its last. */
export type JsonNode =
  | { type: 'object'; offset: number; end: number; members: JsonMember[] }
  | { type: 'array'; offset: number; end: number; items: JsonNode[] }
  | { type: 'string'; offset: number; end: number; value: string }
  | { type: 'number'; offset: number; end: number; raw: string }
  | { type: 'boolean'; offset: number; end: number; value: boolean }
  | { type: 'null'; offset: number; end: number };

export type JsonObject = Extract<JsonNode, { type: 'object' }>;
export type JsonArray = Extract<JsonNode, { type: 'array' }>;

export interface JsonMember {
  key: string;
  /** Where the key's opening quote is, and just after its closing quote. */
  offset: number;
  keyEnd: number;
  value: JsonNode;
}

/** Nesting deeper than this is refused (map documents are 3–4 levels deep; this bounds recursion). */
const MAX_DEPTH = 256;

const ESCAPES: Record<string, string> = {
  '"': '"',
  '\\': '\\',
  '/': '/',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
};

class Reader {
  pos = 0;
  constructor(
    readonly text: string,
    readonly source: string | undefined,
  ) {}

  fail(reason: string, offset = this.pos): ParseError {
    const found = offset >= this.text.length ? 'end of input' : this.text.slice(offset, offset + 12);
    return parseErrorAt('BAD_JSON', `invalid JSON: ${reason}`, this, offset, found);
  }

  skipSpace(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      this.pos++;
    }
  }

  value(depth: number): JsonNode {
    if (depth > MAX_DEPTH) throw this.fail(`nested more than ${MAX_DEPTH} levels deep`);
    this.skipSpace();
    const offset = this.pos;
    const c = this.text[this.pos];
    if (c === '{') return this.object(depth);
    if (c === '[') return this.array(depth);
    if (c === '"') {
      const value = this.string();
      return { type: 'string', offset, end: this.pos, value };
    }
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) {
      const raw = this.number();
      return { type: 'number', offset, end: this.pos, raw };
    }
    for (const [word, value] of [
      ['true', true],
      ['false', false],
      ['null', null],
    ] as const) {
      if (this.text.startsWith(word, this.pos)) {
        this.pos += word.length;
        const end = this.pos;
        return value === null ? { type: 'null', offset, end } : { type: 'boolean', offset, end, value };
      }
    }
    throw this.fail(c === undefined ? 'unexpected end of input, expected a value' : 'expected a value');
  }

  object(depth: number): JsonNode {
    const offset = this.pos++;
    const members: JsonMember[] = [];
    this.skipSpace();
    if (this.text[this.pos] === '}') {
      this.pos++;
      return { type: 'object', offset, end: this.pos, members };
    }
    for (;;) {
      this.skipSpace();
      const keyOffset = this.pos;
      if (this.text[this.pos] !== '"') throw this.fail('expected a property name in double quotes');
      const key = this.string();
      const keyEnd = this.pos;
      this.skipSpace();
      if (this.text[this.pos] !== ':') throw this.fail("expected ':' after the property name");
      this.pos++;
      members.push({ key, offset: keyOffset, keyEnd, value: this.value(depth + 1) });
      this.skipSpace();
      const c = this.text[this.pos];
      this.pos++;
      if (c === '}') return { type: 'object', offset, end: this.pos, members };
      if (c !== ',') throw this.fail("expected ',' or '}'", this.pos - 1);
    }
  }

  array(depth: number): JsonNode {
    const offset = this.pos++;
    const items: JsonNode[] = [];
    this.skipSpace();
    if (this.text[this.pos] === ']') {
      this.pos++;
      return { type: 'array', offset, end: this.pos, items };
    }
    for (;;) {
      items.push(this.value(depth + 1));
      this.skipSpace();
      const c = this.text[this.pos];
      this.pos++;
      if (c === ']') return { type: 'array', offset, end: this.pos, items };
      if (c !== ',') throw this.fail("expected ',' or ']'", this.pos - 1);
    }
  }

  string(): string {
    const t = this.text;
    const start = this.pos;
    this.pos++; // opening quote
    let out = '';
    let runStart = this.pos;
    for (;;) {
      if (this.pos >= t.length) throw this.fail('unterminated string', start);
      const c = t.charCodeAt(this.pos);
      if (c === 0x22) {
        out += t.slice(runStart, this.pos);
        this.pos++;
        return out;
      }
      if (c < 0x20) throw this.fail('control character in a string (escape it)');
      if (c === 0x5c) {
        out += t.slice(runStart, this.pos);
        const e = t[this.pos + 1];
        if (e === 'u') {
          const hex = t.slice(this.pos + 2, this.pos + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw this.fail('bad \\u escape');
          out += String.fromCharCode(Number.parseInt(hex, 16));
          this.pos += 6;
        } else if (e !== undefined && Object.hasOwn(ESCAPES, e)) {
          out += ESCAPES[e];
          this.pos += 2;
        } else {
          throw this.fail('bad escape in a string');
        }
        runStart = this.pos;
        continue;
      }
      this.pos++;
    }
  }

  number(): string {
    let end = this.pos;
    while (end < this.text.length && /[0-9.eE+-]/.test(this.text[end]!)) end++;
    const raw = this.text.slice(this.pos, end);
    if (!/^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/.test(raw)) throw this.fail('bad number');
    this.pos = end;
    return raw;
  }
}

/** Parses a whole JSON document. Throws ParseError BAD_JSON with the line and column. */
export function parseJsonTree(text: string, source?: string): JsonNode {
  const reader = new Reader(text, source);
  if (text.charCodeAt(0) === 0xfeff) reader.pos = 1;
  const node = reader.value(0);
  reader.skipSpace();
  if (reader.pos < text.length) throw reader.fail('unexpected text after the JSON value');
  return node;
}

/** The member `key` (the last one when repeated: the one JSON.parse and Go keep), or undefined. */
export function lastMember(node: JsonObject, key: string): JsonMember | undefined {
  for (let i = node.members.length - 1; i >= 0; i--) if (node.members[i]!.key === key) return node.members[i];
  return undefined;
}

/** The value of `key` (the last one when repeated, as JSON.parse and Go do). */
export function member(node: JsonObject, key: string): JsonNode | undefined {
  return lastMember(node, key)?.value;
}

export function describe(node: JsonNode): string {
  switch (node.type) {
    case 'object':
      return 'an object';
    case 'array':
      return 'an array';
    case 'string':
      return 'a string';
    case 'number':
      return `the number ${node.raw.length > 20 ? `${node.raw.slice(0, 20)}…` : node.raw}`;
    case 'boolean':
      return String(node.value);
    case 'null':
      return 'null';
  }
}

/** Typed access to a parsed document, with errors positioned at the offending value. */
export class JsonDoc {
  constructor(
    readonly text: string,
    readonly source: string | undefined,
  ) {}

  snippet(node: JsonNode): string {
    return this.text.slice(node.offset, node.offset + 40);
  }

  fail(code: ParseErrorCode, reason: string, node: JsonNode, hint?: string): ParseError {
    return parseErrorAt(code, reason, this, node.offset, this.snippet(node), hint);
  }

  object(node: JsonNode, what: string, hint?: string): JsonObject {
    if (node.type !== 'object')
      throw this.fail('WRONG_TYPE', `${what} must be an object, found ${describe(node)}`, node, hint);
    return node;
  }

  array(node: JsonNode, what: string, hint?: string): JsonArray {
    if (node.type !== 'array')
      throw this.fail('WRONG_TYPE', `${what} must be an array, found ${describe(node)}`, node, hint);
    return node;
  }

  u32(node: JsonNode, what: string): number {
    if (node.type !== 'number')
      throw this.fail('WRONG_TYPE', `${what} must be a number, found ${describe(node)}`, node);
    const value = decimalU32(node.raw, what);
    if (isProblem(value)) throw this.fail(value.code, value.reason, node);
    return value;
  }

  /** A required member of an object. */
  field(obj: JsonObject, key: string, what: string, hint?: string): JsonNode {
    const value = member(obj, key);
    if (value === undefined) {
      throw this.fail('MISSING_FIELD', `${what} has no "${key}"`, obj, hint);
    }
    return value;
  }
}
