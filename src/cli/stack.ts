/**
 * Stack traces of internal errors (bugs) as TypeScript positions. The CLI runs from one bundled
 * file (scripts/bundle-cli.mjs); a stack that says `main.bundle.cjs:5664:12` is useless in a bug
 * report. Node maps stacks itself only when source maps were enabled before the code was loaded
 * (`--enable-source-maps`, which costs start-up time on every run), so the one path that needs it,
 * a crash, maps its own stack with the bundle's `.map` file and node:module's SourceMap.
 *
 *   mapStack('Error: x\n    at f (file:///p/dist/src/cli/main.bundle.cjs:10:5)')
 *     → 'Error: x\n    at f (file:///p/src/spawn/spawn.ts:42:7)'
 *
 * Frames of files without a readable `<file>.map` (Node's own, the unbundled modules, whose maps
 * tsc writes beside them too and are used as well), and positions the map does not cover, are
 * left as they are. Never throws.
 */
import { existsSync, readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** `(FILE:LINE:COL)` or ` at FILE:LINE:COL` in a V8 stack line; FILE a path or a file: URL. */
const FRAME = /((?:file:\/\/)?\/[^\s():]+\.(?:c?js|mjs)):(\d+):(\d+)/g;

export function mapStack(stack: string): string {
  const maps = new Map<string, SourceMap | null>();
  const mapOf = (file: string): SourceMap | null => {
    let map = maps.get(file);
    if (map !== undefined) return map;
    map = null;
    try {
      const path = file.startsWith('file:') ? fileURLToPath(file) : file;
      if (existsSync(`${path}.map`)) {
        const payload = JSON.parse(readFileSync(`${path}.map`, 'utf8'));
        // Sources are relative to the map's directory (or to its sourceRoot).
        const base = resolve(dirname(path), payload.sourceRoot ?? '');
        payload.sources = (payload.sources as string[]).map((s) => resolve(base, s));
        payload.sourceRoot = '';
        map = new SourceMap(payload);
      }
    } catch {
      map = null;
    }
    maps.set(file, map);
    return map;
  };
  return stack.replace(FRAME, (whole, file: string, line: string, column: string) => {
    const map = mapOf(file);
    if (map === null) return whole;
    // V8 positions are 1-based; SourceMap.findEntry takes and returns 0-based ones.
    const entry = map.findEntry(Number(line) - 1, Number(column) - 1) as {
      originalSource?: string;
      originalLine?: number;
      originalColumn?: number;
    };
    if (entry?.originalSource === undefined || entry.originalLine === undefined) return whole;
    const source = file.startsWith('file:') ? pathToFileURL(entry.originalSource).href : entry.originalSource;
    return `${source}:${entry.originalLine + 1}:${(entry.originalColumn ?? 0) + 1}`;
  });
}
