/**
 * The help texts, made from the command table (src/cli/commands.ts): `userns --help`,
 * `userns CMD --help` and `userns help CMD` print these.
 */
import {
  COMMANDS,
  type CommandName,
  type CommandSpec,
  type OptionSpec,
  PROGRAM,
  TOP_COMMANDS,
} from './commands.js';

/** The help option every command takes (parseCommandLine adds it). */
export const HELP_OPTION: OptionSpec = { type: 'boolean', short: 'h', help: 'this text' };

/** `-s, --long VALUE` as help shows an option. */
export function optionLabel(name: string, option: OptionSpec): string {
  const value =
    option.value === undefined ? '' : option.value.startsWith('[') ? option.value : ` ${option.value}`;
  return `${option.short === undefined ? '' : `-${option.short}, `}--${name}${value}`;
}

/** An option's label longer than this stands on a line of its own, its help below it. */
const LABEL_MAX = 22;

/** The "Options:" block: labels in a column, help beside them, continuation lines under the help. */
export function optionRows(options: Readonly<Record<string, OptionSpec>>): string {
  const entries = [...Object.entries(options), ['help', HELP_OPTION] as const];
  const labels = entries.map(([name, option]) => optionLabel(name, option));
  const column = Math.max(...labels.map((l) => (l.length > LABEL_MAX ? 0 : l.length))) + 2;
  const indent = ' '.repeat(2 + column);
  return entries
    .map(([, option], i) => {
      const label = labels[i]!;
      const [first, ...rest] = option.help.split('\n');
      const head =
        label.length > LABEL_MAX ? `  ${label}\n${indent}${first}` : `  ${label.padEnd(column)}${first}`;
      return [head, ...rest.map((line) => `${indent}${line}`)].join('\n');
    })
    .join('\n');
}

/**
 * Fills `{formats}` and `{format-names}` (see commands.ts) from the format registry, loaded only
 * then: start-up, measured 10 rounds each on the loaded 2-core development machine, importing the
 * formats takes 189 ms against 16 ms for the error classes alone.
 */
export async function fillPlaceholders(text: string): Promise<string> {
  if (!text.includes('{format')) return text;
  const { FORMATS } = await import('../idmap/formats/index.js');
  return text.replaceAll('{format-names}', Object.keys(FORMATS).join(', ')).replaceAll(
    '{formats}',
    Object.entries(FORMATS)
      .map(([name, f]) => `  ${name.padEnd(11)} ${f.description}`)
      .join('\n'),
  );
}

/** The help of one command, as `userns CMD --help` prints it. */
export async function commandHelp(name: CommandName): Promise<string> {
  const spec: CommandSpec = COMMANDS[name];
  // A line that starts with blanks continues the synopsis above it: indented under the command.
  const usage = spec.usage
    .map((line, i) => `${i === 0 ? 'Usage: ' : '       '}${/^\s/.test(line) ? '       ' : 'userns '}${line}`)
    .join('\n');
  // A group of subcommands without options of its own (map) has no Options block.
  const hasOptions = Object.keys(spec.options).length > 0 || !('subcommands' in spec);
  const parts = [
    usage,
    spec.description,
    ...(hasOptions ? [`Options:\n${optionRows(spec.options)}`] : []),
    ...(spec.after === undefined ? [] : [spec.after]),
  ];
  return fillPlaceholders(`${parts.join('\n\n')}\n`);
}

/** `  NAME  text…` with the text from column 17, wrapped at 96 columns (NAME on its own line when long). */
function wrap(label: string, text: string): string {
  const column = 17;
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && column + line.length + 1 + word.length > 96) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  lines.push(line);
  const indent = ' '.repeat(column);
  const head =
    label.length < column - 1 ? `${label.padEnd(column)}${lines[0]}` : `${label}\n${indent}${lines[0]}`;
  return [head, ...lines.slice(1).map((l) => `${indent}${l}`)].join('\n');
}

/** `userns --help`: the commands and their summaries. */
export function programHelp(): string {
  const width = Math.max(...TOP_COMMANDS.map((n) => n.length)) + 2;
  return `Usage: userns <command> [options]
       userns help <command> | --version | --help

${PROGRAM.summary}.

Commands:
${TOP_COMMANDS.map((name) => `  ${name.padEnd(width)} ${COMMANDS[name].summary}`).join('\n')}

Run 'userns help <command>' or 'userns <command> --help' for the options of a command; the
manual page userns(1) has them all.

${PROGRAM.conventions}

Environment:
${PROGRAM.environment.map(([name, text]) => `${wrap(`  ${name}`, text)}`).join('\n')}
`;
}
