// Writes the manual page userns(1) to dist/man/userns.1 from the command table
// (src/cli/commands.ts, compiled by tsc into dist/src/cli/), the source of --help too.
// Run by `npm run build` and `npm pack` (prepack) after tsc; package.json's "man" ships it.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { manPage } = await import(join(root, 'dist/src/cli/man.js'));
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const output = join(root, 'dist/man/userns.1');
mkdirSync(dirname(output), { recursive: true });
writeFileSync(output, await manPage(version));
