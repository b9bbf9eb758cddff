/**
 * `userns oci`: fill an OCI bundle's config.json (or a Kubernetes userns record) with validated
 * ID maps, or check one.
 */
import { UsageError } from '../errors/index.js';
import type { Extent } from '../idmap/extent.js';
import * as oci from '../oci/index.js';
import { type CliIo, type Command, parseCommandLine, writeJson } from './common.js';
import { checkUsernsMode } from './mapping-options.js';

export const HELP = `Usage: userns oci [--userns MODE] [--uidmap MAP]... [--gidmap MAP]...
                 [--allocate[=size=N,...]] [--name NAME] [--idmap-mount DEST]...
                 [--check] [--format oci|kubernetes] [--json] BUNDLE/config.json

Fills the ID maps of an OCI runtime bundle (runc, crun, podman): linux.uidMappings and
linux.gidMappings, a {"type": "user"} entry in linux.namespaces, and for idmapped mounts the
mount's uidMappings, gidMappings and "idmap" option. The maps are chosen as 'userns run' chooses
them, cut at this namespace's own extents when you run nested, and checked as the kernel, the
runtime and newuidmap would check them. The file is replaced atomically; every other field, its
order, the indentation (tabs as 'runc spec' writes, or spaces) and every number stay as they were.
On any error nothing is written.

A Kubernetes per-pod userns record ({"uidMappings": [{"hostId", "containerId", "length"}], …},
kubelet <root>/pods/<podUID>/userns) is recognised too, and written compact as the kubelet does.

Options:
  --userns MODE          the maps when no --uidmap/--gidmap is given (default: auto)
                           auto      root: every ID; others: 0 = you, 1… = your subordinate IDs
                           self, keep-id, identity   as in 'userns run'
                           auto:size=N[,...]         the same as --allocate=size=N,...
  --uidmap MAP           uid map in podman syntax, INSIDE:OUTSIDE[:COUNT][,...]; repeatable
                         (OUTSIDE = IDs of the namespace the runtime runs in)
  --gidmap MAP           gid map (default: the same as --uidmap)
  --from-kubernetes FILE the maps of a Kubernetes userns record
  --allocate[=OPTIONS]   a range from the allocation registry ('userns alloc'), named after the
                         bundle (its directory's name and a hash of its path, so each bundle
                         has its own; --name to choose); OPTIONS as podman's auto:
                         size=N, policy=first-fit|contiguous|slot[:SIZE]|base:N, uidmapping=M, gidmapping=M.
                         An allocation of that name is reused, so filling again keeps the IDs;
                         'userns alloc release NAME' frees it
  --name NAME            the allocation's name
  --root DIR             state root of the registry
  --idmap-mount DEST     give the mount at DEST the container's maps (an idmapped mount: files
                         owned by N on disk appear as N inside); repeatable
  --no-split             write the maps as given, without cutting them at this namespace's extents
  --fallback single      without subordinate IDs, map only your own IDs (with a warning)
  --check                validate only: the file as it is, or as the options would fill it;
                         write nothing, allocate nothing (exit 1 when something would be refused)
  --format FORMAT        oci or kubernetes (default: recognised; kubernetes creates a missing file)
  --json                 machine-readable output
  -h, --help             this text

Checks: every map as the kernel would take it (overlaps, limits, IDs this namespace has, lines
inside one line of its map), maps and a user namespace together, no maps with a user namespace
joined by path, both kinds for idmapped mounts, your subordinate ranges when you are not root,
and the kubelet's rules for Kubernetes records (one mapping per kind, the same for both, from 0).
Errors name the file, the JSON path, and its line and column.

Examples:
  runc spec --rootless && userns oci --uidmap 0:100000:65536 config.json
  userns oci --allocate=size=65536 --idmap-mount /data mybundle
  userns oci --userns auto config.json            # rootless: you + your subordinate IDs
  userns oci --check --json mybundle/config.json
  userns oci --format kubernetes --allocate=size=65536,policy=slot --name pod1 pods/pod1/userns
`;

const OPTIONS = {
  userns: { type: 'string' },
  uidmap: { type: 'string', multiple: true },
  gidmap: { type: 'string', multiple: true },
  'from-kubernetes': { type: 'string' },
  allocate: { type: 'string' },
  name: { type: 'string' },
  root: { type: 'string' },
  'idmap-mount': { type: 'string', multiple: true },
  'no-split': { type: 'boolean' },
  fallback: { type: 'string' },
  check: { type: 'boolean' },
  format: { type: 'string' },
} as const;

const triples = (extents: readonly Extent[]) => extents.map((e) => [e.inside, e.outside, e.count]);
const lines = (extents: readonly Extent[]) =>
  extents.length === 0
    ? '    (none)'
    : extents.map((e) => `    ${e.inside} ${e.outside} ${e.count}`).join('\n');

export const main: Command = async (argv: string[], io: CliIo): Promise<number> => {
  // `--allocate` without a value: parseArgs wants one, so it gets an empty one.
  const args = argv.map((a) => (a === '--allocate' ? '--allocate=' : a));
  const { values, positionals } = parseCommandLine(args, OPTIONS, 'oci');
  if (values.help) {
    io.stdout.write(HELP);
    return 0;
  }
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
        uidMappings: triples(report.uidMappings),
        gidMappings: triples(report.gidMappings),
        idmappedMounts: report.idmappedMounts.map((m) => ({
          destination: m.destination,
          uidMappings: triples(m.uidMappings),
          gidMappings: triples(m.gidMappings),
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
      uidMappings: triples(result.report.uidMappings),
      gidMappings: triples(result.report.gidMappings),
      userNamespace: result.report.userNamespace,
      idmappedMounts: result.report.idmappedMounts.map((m) => m.destination),
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
