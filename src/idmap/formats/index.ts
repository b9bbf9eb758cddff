import { UsernsError } from '../../errors/index.js';
import type { ExtentKind, IdKind, KindedExtent } from '../extent.js';
import type { IdMap } from '../idmap.js';
import { formatIncusRawIdmap, parseIncusRawIdmap } from './incus.js';
import { formatUsernsJson, parseUsernsJson } from './json.js';
import { formatKernelMap, parseKernelMap } from './kernel.js';
import { expandKinds, kinded, singleKind } from './kinds.js';
import { formatKubernetesUserns, parseKubernetesUserns } from './kubernetes.js';
import { formatLxcIdmap, parseLxcIdmap } from './lxc.js';
import { formatNewidmapArgs, type NewidmapTarget, parseNewidmapCommand } from './newuidmap.js';
import { formatOciLinux, formatOciMappings, parseOciMappings } from './oci.js';
import { formatPodmanMap, parsePodmanMap } from './podman.js';
import { parseError } from './position.js';
import { formatSubid, parseSubid } from './subid.js';
import { formatTriples, parseTriples } from './triples.js';
import {
  formatUnshareArgs,
  isUnshareKeyword,
  isUnshareSingle,
  parseUnshareMap,
  resolveUnshareSingles,
} from './unshare.js';

/**
 * Every map format, by name, with a parse and a format function of the same shape, so that
 * `userns map convert --from X --to Y` works for any pair.
 *
 * Entries are KindedExtent: formats that hold a single map of unknown kind (kernel text,
 * triples, newuidmap without a program name, subid) parse to kind `ctx.kind`, or 'both' when no
 * kind is given; when writing them, `ctx.kind` selects the entries, and entries mixing UID-only
 * and GID-only mappings without a `ctx.kind` are refused (MIXED_KINDS) rather than merged.
 * Formats with one list per kind (OCI object, Kubernetes, userns JSON, unshare options) write
 * 'both' entries into both lists, so they read back as a uid copy and a gid copy.
 */

export type FormatName =
  | 'kernel'
  | 'oci'
  | 'kubernetes'
  | 'podman'
  | 'lxc'
  | 'subid'
  | 'newuidmap'
  | 'unshare'
  | 'incus'
  | 'json'
  | 'triples';

/** What a format needs besides the text: the kind, the parent map, a label for messages, the owner. */
export interface FormatContext {
  /** The kind of map being read or written (uid_map or gid_map). */
  kind?: IdKind | undefined;
  /** The current namespace's map (podman `@` and rootless `+`). */
  parent?: IdMap | undefined;
  /** File name or label for error messages. */
  source?: string | undefined;
  /** Owner written in subid output; when reading subid, only this owner's lines are used. */
  owner?: string | undefined;
  /** newuidmap output: program name (default newuidmap, or newgidmap for kind gid). */
  program?: string | undefined;
  /** newuidmap output: target pid or fd (default the placeholder `$PID`). */
  pid?: NewidmapTarget | undefined;
  /** The caller's euid and egid: unshare's `--map-user`, `-r` and `-c` map them. */
  caller?: { uid: number; gid: number } | undefined;
}

/** A map format: a one-line description, a parser and a writer of kinded extents. */
export interface MapFormat {
  description: string;
  /** The extents of `text`, each with its kind (uid, gid or both). @throws ParseError. */
  parse(text: string, ctx?: FormatContext): KindedExtent[];
  /** `entries` written in this format. @throws UsernsError when the format cannot hold them. */
  format(entries: readonly KindedExtent[], ctx?: FormatContext): string;
}

const singleKindOf = (ctx: FormatContext): ExtentKind => ctx.kind ?? 'both';

function sameExtents(a: readonly KindedExtent[], b: readonly KindedExtent[]): boolean {
  return (
    a.length === b.length &&
    a.every((e, i) => e.inside === b[i]!.inside && e.outside === b[i]!.outside && e.count === b[i]!.count)
  );
}

/** podman maps are built per kind; without one, both are built and merged when identical. */
function parsePodman(text: string, ctx: FormatContext): KindedExtent[] {
  const options = { parent: ctx.parent, source: ctx.source };
  if (ctx.kind !== undefined)
    return parsePodmanMap(text, { ...options, kind: ctx.kind }).extents.map((e) => kinded(e, ctx.kind!));
  const uid = parsePodmanMap(text, { ...options, kind: 'uid' }).extents.map((e) => kinded(e, 'uid'));
  const gid = parsePodmanMap(text, { ...options, kind: 'gid' }).extents.map((e) => kinded(e, 'gid'));
  if (sameExtents(uid, gid)) return uid.map((e) => kinded(e, 'both'));
  return [...uid, ...gid];
}

function parseSubidMap(text: string, ctx: FormatContext): KindedExtent[] {
  const { entries, problems } = parseSubid(text, { source: ctx.source });
  // Converting a file with a bad line would silently lose a range: refuse instead.
  if (problems[0] !== undefined) throw problems[0];
  let inside = 0;
  const out: KindedExtent[] = [];
  for (const e of entries) {
    if (ctx.owner !== undefined && e.owner !== ctx.owner) continue;
    // The ranges as a namespace would use them: laid out from inside ID 0, in file order
    // (what `unshare --map-auto` does with one range).
    out.push({ inside, outside: e.start, count: e.count, kind: singleKindOf(ctx) });
    inside += e.count;
  }
  return out;
}

function formatSubidMap(entries: readonly KindedExtent[], ctx: FormatContext): string {
  if (ctx.owner === undefined) {
    throw new UsernsError(
      'OWNER_REQUIRED',
      'writing subuid/subgid lines needs the owner (a user name or UID)',
      {
        hint: 'give the owner, e.g. --owner alice',
      },
    );
  }
  const extents = singleKind(entries, ctx.kind, 'subid');
  let inside = 0;
  for (const e of extents) {
    if (e.inside !== inside) {
      throw new UsernsError(
        'NOT_SUBID_LAYOUT',
        `a subid file only records host ranges, laid out from inside ID 0; this map has inside ID ${e.inside} where ${inside} would follow`,
        {
          hint: 'only maps whose inside IDs run 0, 1, 2, … without gaps (in written order) can be written as subid lines',
        },
      );
    }
    inside += e.count;
  }
  const owner = ctx.owner;
  return formatSubid(extents.map((e) => ({ owner, start: e.outside, count: e.count })));
}

function parseNewidmap(text: string, ctx: FormatContext): KindedExtent[] {
  const args = parseNewidmapCommand(text, { source: ctx.source });
  // The program says which map it writes; only without one does the caller's kind apply.
  const kind: ExtentKind =
    args.program === undefined ? singleKindOf(ctx) : /newgidmap$/.test(args.program) ? 'gid' : 'uid';
  return args.extents.map((e) => kinded(e, kind));
}

function parseUnshare(text: string, ctx: FormatContext): KindedExtent[] {
  const out: KindedExtent[] = [];
  const parsed = parseUnshareMap(text, { source: ctx.source, kind: singleKindOf(ctx) });
  const single = parsed.find(isUnshareSingle);
  if (single !== undefined && ctx.caller === undefined) {
    throw parseError(
      'CALLER_REQUIRED',
      "--map-user, --map-group, -r and -c map the caller's own IDs, which this reader was not given",
      { source: ctx.source, line: single.line, column: single.column, text: '' },
      'give the caller (FormatContext.caller: {uid, gid}); the CLI passes your euid and egid',
    );
  }
  const entries = ctx.caller === undefined ? parsed : resolveUnshareSingles(parsed, ctx.caller);
  for (const entry of entries) {
    if (isUnshareSingle(entry)) continue;
    if (isUnshareKeyword(entry)) {
      throw parseError(
        'UNRESOLVED_KEYWORD',
        `'${entry.keyword}' depends on /etc/subuid or the current map, so it has no fixed extents`,
        { source: ctx.source, line: entry.line, column: entry.column, text: entry.keyword },
        'resolve it first (userns reads /etc/subuid for auto/subids) or write the ranges explicitly',
      );
    }
    out.push(entry);
  }
  return out;
}

/** Every map format userns reads and writes, by name (what `userns map convert` takes). */
export const FORMATS: Record<FormatName, MapFormat> = {
  kernel: {
    description: '/proc/PID/uid_map text: "inside outside count" per line',
    parse: (text, ctx = {}) =>
      parseKernelMap(text, { source: ctx.source }).map((e) => kinded(e, singleKindOf(ctx))),
    format: (entries, ctx = {}) => formatKernelMap(singleKind(entries, ctx.kind, 'kernel')),
  },
  oci: {
    description: 'OCI runtime-spec JSON: [{"containerID","hostID","size"}] or linux.uidMappings/gidMappings',
    parse: (text, ctx = {}) => parseOciMappings(text, { source: ctx.source }),
    format: (entries, ctx = {}) => {
      // With a kind: that kind's mapping list (what goes into linux.uidMappings); all-'both'
      // entries: a bare list; otherwise the linux section with both lists.
      if (ctx.kind !== undefined) return formatOciMappings(singleKind(entries, ctx.kind, 'oci'));
      if (entries.every((e) => e.kind === 'both')) return formatOciMappings(entries);
      return formatOciLinux(entries);
    },
  },
  kubernetes: {
    description:
      'Kubernetes pod userns record: {"uidMappings":[{"hostId","containerId","length"}],"gidMappings":[…]}',
    parse: (text, ctx = {}) => parseKubernetesUserns(text, { source: ctx.source }),
    format: (entries) => formatKubernetesUserns(entries),
  },
  podman: {
    description: 'podman --uidmap/--gidmap: [+][u|g]container:[@]host[:size],…',
    parse: (text, ctx = {}) => parsePodman(text, ctx),
    format: (entries, ctx = {}) =>
      formatPodmanMap(ctx.kind === undefined ? entries : singleKind(entries, ctx.kind, 'podman')),
  },
  lxc: {
    description: 'LXC config: lxc.idmap = u|g inside outside count',
    parse: (text, ctx = {}) => parseLxcIdmap(text, { source: ctx.source }),
    format: (entries) => formatLxcIdmap(entries),
  },
  subid: {
    description: '/etc/subuid, /etc/subgid: owner:start:count (ranges laid out from inside ID 0)',
    parse: (text, ctx = {}) => parseSubidMap(text, ctx),
    format: (entries, ctx = {}) => formatSubidMap(entries, ctx),
  },
  newuidmap: {
    description: 'newuidmap/newgidmap command: newuidmap PID inside outside count …',
    parse: (text, ctx = {}) => parseNewidmap(text, ctx),
    format: (entries, ctx = {}) => {
      const program = ctx.program ?? (ctx.kind === 'gid' ? 'newgidmap' : 'newuidmap');
      return formatNewidmapArgs(
        program,
        ctx.pid ?? { placeholder: '$PID' },
        singleKind(entries, ctx.kind, 'newuidmap'),
      ).join(' ');
    },
  },
  unshare: {
    description: 'util-linux unshare: --map-users=inner:outer:count --map-groups=…',
    parse: (text, ctx = {}) => parseUnshare(text, ctx),
    format: (entries, ctx = {}) =>
      formatUnshareArgs(
        ctx.kind === undefined ? entries : expandKinds(entries).filter((e) => e.kind === ctx.kind),
      ).join(' '),
  },
  incus: {
    description: 'Incus/LXD raw.idmap: both|uid|gid HOST CONTAINER (inclusive A-B ranges)',
    parse: (text, ctx = {}) => parseIncusRawIdmap(text, { source: ctx.source }),
    format: (entries) => formatIncusRawIdmap(entries),
  },
  json: {
    description: 'userns JSON: {"uid": [[inside, outside, count], …], "gid": […]} or [[…], …]',
    parse: (text, ctx = {}) => parseUsernsJson(text, { source: ctx.source }),
    format: (entries) => formatUsernsJson(entries),
  },
  triples: {
    description: 'inline triples: inside:outside:count,…',
    parse: (text, ctx = {}) =>
      parseTriples(text, { source: ctx.source }).map((e) => kinded(e, singleKindOf(ctx))),
    format: (entries, ctx = {}) => formatTriples(singleKind(entries, ctx.kind, 'triples')),
  },
};

/** The names of {@link FORMATS}. */
export const FORMAT_NAMES = Object.keys(FORMATS) as FormatName[];

/**
 * Other names accepted for a format: `proc` is the kernel format (what /proc/PID/uid_map holds;
 * Incus and LXC call it that).
 */
export const FORMAT_ALIASES: Readonly<Record<string, FormatName>> = { proc: 'kernel' };

/** A format name or alias → the format's name; undefined when it names none. */
export function formatByName(name: string): FormatName | undefined {
  if (Object.hasOwn(FORMATS, name)) return name as FormatName;
  return Object.hasOwn(FORMAT_ALIASES, name) ? FORMAT_ALIASES[name] : undefined;
}

export { detectFormat } from './detect.js';
