/**
 * The manual page userns(1), made from the command table (src/cli/commands.ts) at build time by
 * scripts/build-man.mjs and shipped in the package (`man` in package.json).
 */
import {
  COMMANDS,
  type CommandName,
  type CommandSpec,
  type OptionSpec,
  PROGRAM,
  TOP_COMMANDS,
} from './commands.js';
import { fillPlaceholders, HELP_OPTION, optionLabel } from './help.js';

/**
 * Text for roff: backslashes escaped, hyphens as `\-` (so options copy as ASCII hyphen-minus),
 * every character outside ASCII as `\[uXXXX]` (groff and mandoc read it without preconv), and
 * a line that starts with `.` or `'` protected with `\&`.
 */
export function roffEscape(text: string): string {
  let out = '';
  for (const ch of text.replaceAll('\\', '\\e').replaceAll('-', '\\-')) {
    const code = ch.codePointAt(0)!;
    out += code < 0x80 ? ch : `\\[u${code.toString(16).toUpperCase().padStart(4, '0')}]`;
  }
  return out.replace(/^([.'])/gm, '\\&$1');
}

/**
 * Help text (commands.ts conventions) as roff: prose lines are joined and filled; a run of lines
 * that start with a space is kept as it is (`.nf`), indented by its own leading spaces.
 */
export function roffText(text: string): string {
  const out: string[] = [];
  let literal = false;
  let first = true;
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      if (literal) out.push('.fi');
      literal = false;
      if (!first) out.push('.PP');
      continue;
    }
    first = false;
    const verbatim = line.startsWith(' ');
    if (verbatim && !literal) out.push('.nf');
    if (!verbatim && literal) out.push('.fi');
    literal = verbatim;
    out.push(roffEscape(line));
  }
  if (literal) out.push('.fi');
  // .PP twice in a row, or at the end, adds nothing.
  return out
    .filter((line, i) => !(line === '.PP' && (out[i + 1] === '.PP' || i === out.length - 1)))
    .join('\n');
}

function roffOption(name: string, option: OptionSpec): string {
  const label = roffEscape(optionLabel(name, option)).replace(/ (\S+)$/, ' \\fI$1\\fR');
  return `.TP\n.B ${label}\n${roffText(option.help)}`;
}

async function commandSection(name: CommandName): Promise<string> {
  const spec: CommandSpec = COMMANDS[name];
  const parts = [
    `.SS ${roffEscape(`userns ${name}`)}`,
    roffEscape(spec.summary.replace(/^./, (c) => c.toUpperCase())).concat('.'),
    '.PP',
    '.nf',
    // A line that starts with blanks continues the synopsis above it (as in --help).
    ...spec.usage.map((line) =>
      /^\s/.test(line) ? `.B "${roffEscape(`       ${line}`)}"` : `.B ${roffEscape(`userns ${line}`)}`,
    ),
    '.fi',
    '.PP',
    roffText(await fillPlaceholders(spec.description)),
  ];
  const options = Object.entries(spec.options as Record<string, OptionSpec>);
  if (options.length > 0 || !('subcommands' in spec)) {
    parts.push(
      '.PP',
      'Options:',
      '.RS',
      ...options.map(([n, o]) => roffOption(n, o)),
      roffOption('help', HELP_OPTION),
      '.RE',
    );
  }
  if (spec.after !== undefined) parts.push('.PP', roffText(await fillPlaceholders(spec.after)));
  return parts.join('\n');
}

/** The whole page, for version `version` of userns. */
export async function manPage(version: string): Promise<string> {
  const commands: string[] = [];
  for (const top of TOP_COMMANDS) {
    commands.push(await commandSection(top));
    const spec = COMMANDS[top];
    if ('subcommands' in spec) {
      for (const sub of spec.subcommands) commands.push(await commandSection(`${top} ${sub}` as CommandName));
    }
  }
  const table = (rows: readonly (readonly [string, string])[]) =>
    rows.map(([term, text]) => `.TP\n.B ${roffEscape(term)}\n${roffEscape(text)}`).join('\n');
  return `.\\" The manual page of userns ${version}, generated from src/cli/commands.ts by scripts/build-man.mjs.
.TH USERNS 1 "" "userns ${version}" "User Commands"
.SH NAME
userns \\- ${roffEscape(PROGRAM.summary)}
.SH SYNOPSIS
.nf
.B userns \\fIcommand\\fR [\\fIoptions\\fR] [\\fIarguments\\fR]
.B userns help \\fIcommand\\fR [\\fIsubcommand\\fR]
.B userns \\-\\-version
.fi
.SH DESCRIPTION
${roffText(PROGRAM.description)}
.PP
${roffText(PROGRAM.conventions)}
.PP
Commands:
.RS
.PD 0
${TOP_COMMANDS.map((n) => `.TP 12\n.B ${roffEscape(n)}\n${roffEscape(COMMANDS[n].summary)}`).join('\n')}
.PD
.RE
.SH COMMANDS
${commands.join('\n')}
.SH EXIT STATUS
${roffText(PROGRAM.exitStatus)}
.SH ENVIRONMENT
${table(PROGRAM.environment)}
.SH FILES
${table(PROGRAM.files)}
.SH SEE ALSO
${PROGRAM.seeAlso
  .map((ref, i, all) => `.BR ${ref.replace(/\((\d)\)$/, ' ($1)')}${i < all.length - 1 ? ',' : ''}`)
  .join('\n')}
`;
}
