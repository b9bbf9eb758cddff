/**
 * One direction of dependencies: every import in src/ (static `import`, `export … from`, type
 * imports, `import('…')` types and dynamic `import()`) goes to the module's own folder or to a
 * folder lower in the layer order that docs/architecture.md writes down. The order is read from
 * that document, so the document and the code cannot drift apart.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const SRC = join(REPO, 'src');

/** The layers, lowest first, from the line of docs/architecture.md that starts with "Order:". */
export function layerOrder(markdown: string): string[][] {
  const line = markdown.split('\n').find((l) => /^Order:/.test(l.trim()));
  if (line === undefined) throw new Error('docs/architecture.md has no "Order:" line');
  return line
    .replace(/^\s*Order:\s*/, '')
    .replace(/`/g, '')
    .split('→')
    .map((rank) =>
      rank
        .split('/')
        .map((name) => name.trim())
        .filter((name) => name !== ''),
    );
}

export interface ImportUse {
  /** The file, relative to src/ ("spawn/spawn.ts"). */
  file: string;
  line: number;
  specifier: string;
  kind: 'static' | 'dynamic';
  /** The comment right before a dynamic import (the reason it is dynamic), or ''. */
  comment: string;
}

/** Every import of a TypeScript source text. */
export function importsOf(file: string, text: string): ImportUse[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const out: ImportUse[] = [];
  const lineOf = (node: ts.Node) => source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1;
  const add = (node: ts.Node, spec: ts.Node | undefined, kind: ImportUse['kind']) => {
    if (spec === undefined || !ts.isStringLiteralLike(spec)) {
      if (kind === 'dynamic')
        out.push({ file, line: lineOf(node), specifier: '<computed>', kind, comment: '' });
      return;
    }
    let comment = '';
    if (kind === 'dynamic') {
      // The comments before the import() and everything that holds it: the statement, an
      // object member of a table, the table's declaration, the function it is in.
      const comments: string[] = [];
      for (let at: ts.Node | undefined = node; at !== undefined && !ts.isSourceFile(at); at = at.parent) {
        for (const r of ts.getLeadingCommentRanges(text, at.getFullStart()) ?? [])
          comments.push(text.slice(r.pos, r.end));
      }
      comment = comments.join('\n');
    }
    out.push({ file, line: lineOf(node), specifier: spec.text, kind, comment });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node))
      add(node, node.moduleSpecifier, 'static');
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference))
      add(node, node.moduleReference.expression, 'static');
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument))
      add(node, node.argument.literal, 'static');
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword)
      add(node, node.arguments[0], 'dynamic');
    ts.forEachChild(node, visit);
  };
  visit(source);
  return out;
}

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

/** The layer of a file under src/: its top folder, or "index" for src/index.ts. */
function layerOf(fileUnderSrc: string): string {
  const parts = fileUnderSrc.split(sep);
  return parts.length === 1 ? parts[0]!.replace(/\.ts$/, '') : parts[0]!;
}

/**
 * What is wrong with each import, against `order` (index 0 lowest): an import of a folder that
 * is not lower (nor the file's own), outside src/, of a package, or a dynamic import outside a
 * CLI command module or without the comment that says what it saves.
 */
export function violations(uses: readonly ImportUse[], order: readonly (readonly string[])[]): string[] {
  const rank = new Map<string, number>();
  order.forEach((names, i) => {
    for (const n of names) rank.set(n, i);
  });
  const problems: string[] = [];
  for (const use of uses) {
    const where = `src/${use.file}:${use.line}`;
    const from = layerOf(use.file);
    const fromRank = from === 'index' ? order.length : rank.get(from);
    if (fromRank === undefined) {
      problems.push(`${where}: folder src/${from}/ is not in the layer order of docs/architecture.md`);
      continue;
    }
    if (use.kind === 'dynamic') {
      if (from !== 'cli')
        problems.push(`${where}: dynamic import('${use.specifier}') outside src/cli/ (import it statically)`);
      else if (!/start-up|startup/i.test(use.comment))
        problems.push(
          `${where}: dynamic import('${use.specifier}') without a comment on the start-up it saves`,
        );
    }
    const spec = use.specifier;
    if (spec.startsWith('node:') || builtinModules.includes(spec)) continue;
    if (!spec.startsWith('.')) {
      problems.push(`${where}: '${spec}' is not a relative import or a node: builtin`);
      continue;
    }
    const target = relative(SRC, resolve(SRC, dirname(use.file), spec));
    if (target.startsWith('..')) {
      problems.push(`${where}: '${spec}' leaves src/`);
      continue;
    }
    const to = layerOf(target.replace(/\.js$/, '.ts'));
    if (to === from) continue;
    const toRank = to === 'index' ? order.length : rank.get(to);
    if (toRank === undefined) problems.push(`${where}: '${spec}' imports src/${to}/, which has no layer`);
    else if (toRank >= fromRank)
      problems.push(
        `${where}: ${from} imports ${to} ('${spec}'), but ${to} is ${toRank === fromRank ? 'beside' : 'above'} ${from} in docs/architecture.md`,
      );
  }
  return problems;
}

describe('layer order (docs/architecture.md)', () => {
  const order = layerOrder(readFileSync(join(REPO, 'docs/architecture.md'), 'utf8'));
  const files = sources(SRC);
  const uses = files.flatMap((path) => importsOf(relative(SRC, path), readFileSync(path, 'utf8')));

  test('every folder of src/ has its place in the order, and every layer exists', () => {
    const folders = readdirSync(SRC).filter((name) => statSync(join(SRC, name)).isDirectory());
    assert.deepEqual(folders.sort(), order.flat().sort());
  });

  test('every import goes to the same folder or a lower layer; dynamic imports only in the CLI', () => {
    assert.ok(uses.length > 300, `found only ${uses.length} imports: the parser is broken`);
    assert.deepEqual(violations(uses, order), []);
  });

  test('the check sees static, type, re-export and dynamic imports against the order', () => {
    const text = [
      "import { spawn } from '../spawn/spawn.js';",
      "import type { IdMap } from '../idmap/idmap.js';",
      "export { SpawnError } from '../errors/index.js';",
      "type T = import('../cli/main.js').Command;",
      'async function f() {',
      "  return import('../alloc/index.js');",
      '}',
      "const map = require('x');",
    ].join('\n');
    const found = importsOf(join('native', 'x.ts'), text);
    assert.deepEqual(
      found.map((u) => [u.specifier, u.kind]),
      [
        ['../spawn/spawn.js', 'static'],
        ['../idmap/idmap.js', 'static'],
        ['../errors/index.js', 'static'],
        ['../cli/main.js', 'static'],
        ['../alloc/index.js', 'dynamic'],
      ],
    );
    const problems = violations(found, order);
    assert.equal(problems.length, 4, problems.join('\n'));
    assert.match(problems[0]!, /native imports spawn/);
    assert.match(problems[1]!, /native imports cli/);
    assert.match(problems[2]!, /dynamic import/);
    assert.match(problems[3]!, /native imports alloc/);
    // A dynamic import in a CLI command module needs its reason.
    const cli = importsOf(join('cli', 'x.ts'), "const m = () => import('./map.js');");
    assert.match(violations(cli, order)[0]!, /without a comment/);
    const ok = importsOf(join('cli', 'x.ts'), "// start-up: 3 ms less\nconst m = () => import('./map.js');");
    assert.deepEqual(violations(ok, order), []);
  });
});
