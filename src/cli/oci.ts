/**
 * `userns oci`: fill an OCI bundle's config.json (or a Kubernetes userns record) with validated
 * ID maps, or check one.
 */
import { UsageError } from '../errors/index.js';
import type { Extent } from '../idmap/extent.js';
import * as oci from '../oci/index.js';
import { COMMANDS } from './commands.js';
import { type CliIo, type Command, mapJson, parseCommandLine, writeHelp, writeJson } from './common.js';
import { checkUsernsMode } from './mapping-options.js';

const OPTIONS = COMMANDS.oci.options;

const lines = (extents: readonly Extent[]) =>
  extents.length === 0
    ? '    (none)'
    : extents.map((e) => `    ${e.inside} ${e.outside} ${e.count}`).join('\n');

export const main: Command = async (argv: string[], io: CliIo): Promise<number> => {
  // `--allocate` without a value: parseArgs wants one, so it gets an empty one.
  const args = argv.map((a) => (a === '--allocate' ? '--allocate=' : a));
  const { values, positionals } = parseCommandLine(args, OPTIONS, 'oci');
  if (values.help) return writeHelp(io, 'oci');
  const help = "see 'userns oci --help'";
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0 ? 'no file given' : `one file at a time, not ${positionals.length}`,
      { hint: `usage: userns oci [options] BUNDLE/config.json; ${help}` },
    );
  }
  const mode = values.userns;
  checkUsernsMode(mode, help);
  const format = values.format;
  if (format !== undefined && format !== 'oci' && format !== 'kubernetes') {
    throw new UsageError(`--format must be oci or kubernetes, not '${format}'`, { hint: help });
  }
  if (values.fallback !== undefined && values.fallback !== 'single' && values.fallback !== 'none') {
    throw new UsageError(`--fallback must be single (or none), not '${values.fallback}'`, { hint: help });
  }
  const sources = [
    values.allocate !== undefined || mode?.startsWith('auto:') ? '--allocate' : undefined,
    values.uidmap !== undefined || values.gidmap !== undefined ? '--uidmap/--gidmap' : undefined,
    values['from-kubernetes'] !== undefined ? '--from-kubernetes' : undefined,
  ].filter((s) => s !== undefined);
  if (sources.length > 1) {
    throw new UsageError(`${sources.join(' and ')} both choose the maps; give one`, { hint: help });
  }
  if (values.allocate !== undefined && mode?.startsWith('auto:')) {
    throw new UsageError('--allocate and --userns auto:… both allocate; give one', { hint: help });
  }
  if (values.name !== undefined && values.allocate === undefined && !mode?.startsWith('auto:')) {
    throw new UsageError('--name names an allocation: use it with --allocate', { hint: help });
  }
  const json = values.json === true;
  const file = positionals[0]!;
  const onlyCheck =
    values.check === true &&
    mode === undefined &&
    sources.length === 0 &&
    values['idmap-mount'] === undefined;

  if (onlyCheck) {
    const path = oci.configPath(file);
    const report = await oci.checkOciConfig(path, format === undefined ? {} : { format });
    if (json) {
      writeJson(io, {
        ok: true,
        file: path,
        check: true,
        format: report.format,
        userNamespace: report.userNamespace,
        uidMap: mapJson(report.uidMappings),
        gidMap: mapJson(report.gidMappings),
        idmappedMounts: report.idmappedMounts.map((m) => ({
          destination: m.destination,
          uidMap: mapJson(m.uidMappings),
          gidMap: mapJson(m.gidMappings),
        })),
        warnings: report.warnings,
      });
      return 0;
    }
    for (const w of report.warnings) io.stderr.write(`userns: warning: ${w}\n`);
    io.stdout.write(
      `ok: ${path} (${report.format}; user namespace: ${report.userNamespace})\n` +
        `  uid map (inside outside count):\n${lines(report.uidMappings)}\n` +
        `  gid map:\n${lines(report.gidMappings)}\n` +
        report.idmappedMounts
          .map((m) => `  idmapped mount ${m.destination ?? '(no destination)'}\n`)
          .join(''),
    );
    return 0;
  }

  const result = await oci.fillOciConfig(file, {
    ...(mode === undefined ? {} : { userns: mode as 'auto' }),
    ...(values.uidmap === undefined ? {} : { uidMap: values.uidmap.join(',') }),
    ...(values.gidmap === undefined ? {} : { gidMap: values.gidmap.join(',') }),
    ...(values['from-kubernetes'] === undefined ? {} : { fromKubernetes: values['from-kubernetes'] }),
    ...(values.allocate === undefined ? {} : { allocate: values.allocate === '' ? true : values.allocate }),
    ...(values.name === undefined ? {} : { allocationName: values.name }),
    ...(values.root === undefined ? {} : { stateRoot: values.root }),
    ...(values['idmap-mount'] === undefined ? {} : { idmapMounts: values['idmap-mount'] }),
    ...(values['no-split'] ? { noSplit: true } : {}),
    ...(values.fallback === undefined ? {} : { fallback: values.fallback as 'single' | 'none' }),
    ...(values.check ? { check: true } : {}),
    ...(format === undefined ? {} : { format: format as 'oci' | 'kubernetes' }),
  });
  if (json) {
    writeJson(io, {
      ok: true,
      file: result.file,
      check: values.check === true,
      format: result.format,
      changed: result.changed,
      written: result.written,
      changes: result.changes,
      uidMap: mapJson(result.report.uidMappings),
      gidMap: mapJson(result.report.gidMappings),
      userNamespace: result.report.userNamespace,
      idmappedMounts: result.report.idmappedMounts.map((m) => ({
        destination: m.destination,
        uidMap: mapJson(m.uidMappings),
        gidMap: mapJson(m.gidMappings),
      })),
      allocation: result.allocation,
      warnings: result.warnings,
    });
    return 0;
  }
  for (const w of result.warnings) io.stderr.write(`userns: warning: ${w}\n`);
  const verb = values.check
    ? result.changed
      ? 'would fill'
      : 'already filled'
    : result.written
      ? 'filled'
      : 'unchanged';
  const alloc = result.allocation;
  io.stdout.write(
    `${verb}: ${result.file} (${result.changes.join(', ')})\n` +
      `  uid map (inside outside count):\n${lines(result.report.uidMappings)}\n` +
      `  gid map:\n${lines(result.report.gidMappings)}\n` +
      (alloc === null
        ? ''
        : `  allocation: ${alloc.name} (${alloc.id}, ${alloc.size} IDs${alloc.reused ? ', reused' : ''})\n`),
  );
  return 0;
};
