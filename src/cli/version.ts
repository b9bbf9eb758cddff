/** `userns version`, `userns --version`, `userns -V`: the version in the package's package.json. */
import { readFileSync } from 'node:fs';
import { UsageError } from '../errors/index.js';
import { COMMANDS } from './commands.js';
import { type Command, parseCommandLine, writeHelp, writeJson } from './common.js';

/** The package's own package.json (three levels above dist/src/cli/). */
const PACKAGE_JSON = new URL('../../../package.json', import.meta.url);

/** The version of this userns, as its package.json says (the one source of it). */
export function packageVersion(): string {
  const { name, version } = JSON.parse(readFileSync(PACKAGE_JSON, 'utf8')) as {
    name?: string;
    version?: string;
  };
  if (name !== 'userns' || typeof version !== 'string') {
    throw new Error(`${PACKAGE_JSON.pathname} is not the package.json of userns`);
  }
  return version;
}

export const main: Command = async (argv, io) => {
  const { values, positionals } = parseCommandLine(argv, COMMANDS.version.options, 'version');
  if (values.help) return writeHelp(io, 'version');
  if (positionals.length > 0) {
    throw new UsageError(`unexpected argument '${positionals[0]}'`, { hint: "see 'userns version --help'" });
  }
  const version = packageVersion();
  if (values.json) {
    writeJson(io, {
      ok: true,
      version,
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
    });
  } else io.stdout.write(`userns ${version}\n`);
  return 0;
};
