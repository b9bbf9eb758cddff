/**
 * The registry a command uses: `local` (the SQLite registry under the state root) or a fleet
 * registry on etcd v3:
 *
 *   etcd://[USER[:PASSWORD]@]HOST[:PORT][,HOST[:PORT]…]/PREFIX[?OPTION=VALUE&…]
 *   etcds://…   the same over TLS
 *
 * - HOST is a DNS name, an IPv4 address or a bracketed IPv6 address; PORT defaults to 2379.
 *   Give every member: calls fail over between them.
 * - PREFIX (required) is one or more `/`-separated segments of [A-Za-z0-9._-]: every key of the
 *   registry lives under it, so several registries (or other programs) share one cluster.
 * - Options: `timeout=MS` bounds a call with all its retries (default 10000: after it the
 *   registry counts as unreachable and the local cache answers what it can), `try-timeout=MS`
 *   bounds one try (default 2000), `cacert=`, `cert=`, `key=` name PEM files for TLS (etcds).
 *
 * Pure: nothing is read or connected here.
 */
import { UsageError } from '../../errors/index.js';

/** A parsed `etcd://` registry URL (see {@link parseRegistryUrl}). */
export interface FleetRegistryUrl {
  /** `etcd://h1:2379,h2:2379/prefix`: as given, without credentials or options (for messages). */
  display: string;
  /** The same with the hosts sorted: what this node's cache is keyed by. */
  key: string;
  /** `http://h1:2379`, … (`https://` for etcds). */
  endpoints: string[];
  /** `/userns/prod`: no trailing slash. */
  prefix: string;
  tls: boolean;
  /** PEM files for TLS. */
  cacert?: string;
  cert?: string;
  certKey?: string;
  username?: string;
  password?: string;
  /** Bound of one call with its retries, in ms. */
  timeoutMs: number;
  /** Bound of one try, in ms. */
  tryTimeoutMs: number;
}

export const DEFAULT_ETCD_PORT = 2379;
export const DEFAULT_TIMEOUT_MS = 10_000;
export const DEFAULT_TRY_TIMEOUT_MS = 2_000;

const SEGMENT = /^[A-Za-z0-9._-]+$/;
const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/;

function bad(text: string, why: string): UsageError {
  return new UsageError(`registry ${JSON.stringify(redact(text))}: ${why}`, {
    hint: 'write local, or etcd://HOST:PORT[,HOST:PORT…]/PREFIX (e.g. etcd://10.0.0.1:2379,10.0.0.2:2379/userns/prod)',
  });
}

/** The text with a password in it replaced by `***` (for messages). */
export function redact(text: string): string {
  return text.replace(/^(etcds?:\/\/[^:@/]*):[^@/]*@/, '$1:***@');
}

function milliseconds(text: string, value: string, option: string): number {
  if (!/^[0-9]{1,7}$/.test(value) || Number(value) < 1)
    throw bad(text, `${option}=${value} is not a number of milliseconds`);
  return Number(value);
}

/** Whether `text` names a fleet registry (etcd:// or etcds://). */
export function isFleetRegistry(text: string | undefined): boolean {
  return text !== undefined && /^etcds?:\/\//.test(text);
}

/**
 * Parses a fleet registry URL (UsageError, naming what is wrong, for anything else). `local`
 * and the empty string are not fleet registries: check with isFleetRegistry first.
 */
export function parseRegistryUrl(text: string): FleetRegistryUrl {
  const m = /^(etcds?):\/\/([^/?#]*)(\/[^?#]*)?(?:\?([^#]*))?$/.exec(text);
  if (m === null) throw bad(text, 'not an etcd:// or etcds:// URL');
  const tls = m[1] === 'etcds';
  let authority = m[2]!;
  let username: string | undefined;
  let password: string | undefined;
  const at = authority.lastIndexOf('@');
  if (at >= 0) {
    const info = authority.slice(0, at);
    authority = authority.slice(at + 1);
    const colon = info.indexOf(':');
    username = decodeURIComponent(colon < 0 ? info : info.slice(0, colon));
    if (colon >= 0) password = decodeURIComponent(info.slice(colon + 1));
    if (username === '') throw bad(text, 'an empty user name before @');
  }
  if (authority === '') throw bad(text, 'no host');
  const hosts = authority.split(',').map((h) => {
    const hm = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+)(?::([0-9]{1,5}))?$/.exec(h);
    if (hm === null) throw bad(text, `${JSON.stringify(h)} is not HOST[:PORT]`);
    const host = hm[1]!;
    if (!host.startsWith('[') && !HOSTNAME.test(host))
      throw bad(text, `${JSON.stringify(host)} is not a host name or address`);
    const port = hm[2] === undefined ? DEFAULT_ETCD_PORT : Number(hm[2]);
    if (port < 1 || port > 65535) throw bad(text, `port ${hm[2]} is out of range`);
    return `${host}:${port}`;
  });
  const path = m[3] ?? '';
  const segments = path.split('/').filter((s) => s !== '');
  if (segments.length === 0)
    throw bad(text, 'no PREFIX: every key of the registry lives under it (e.g. /userns/prod)');
  for (const s of segments) {
    if (!SEGMENT.test(s) || s === '.' || s === '..')
      throw bad(text, `prefix segment ${JSON.stringify(s)} may only hold A-Z a-z 0-9 . _ -`);
  }
  const prefix = `/${segments.join('/')}`;
  const url: FleetRegistryUrl = {
    display: `${m[1]}://${hosts.join(',')}${prefix}`,
    key: `${m[1]}://${[...new Set(hosts)].sort().join(',')}${prefix}`,
    endpoints: hosts.map((h) => `${tls ? 'https' : 'http'}://${h}`),
    prefix,
    tls,
    timeoutMs: DEFAULT_TIMEOUT_MS,
    tryTimeoutMs: DEFAULT_TRY_TIMEOUT_MS,
  };
  if (username !== undefined) url.username = username;
  if (password !== undefined) url.password = password;
  for (const pair of (m[4] ?? '').split('&').filter((p) => p !== '')) {
    const eq = pair.indexOf('=');
    const name = decodeURIComponent(eq < 0 ? pair : pair.slice(0, eq));
    const value = decodeURIComponent(eq < 0 ? '' : pair.slice(eq + 1));
    if (name === 'timeout') url.timeoutMs = milliseconds(text, value, name);
    else if (name === 'try-timeout') url.tryTimeoutMs = milliseconds(text, value, name);
    else if (name === 'cacert' || name === 'cert' || name === 'key') {
      if (!tls) throw bad(text, `${name}= needs TLS: write etcds://`);
      if (value === '') throw bad(text, `${name}= needs a file`);
      if (name === 'cacert') url.cacert = value;
      else if (name === 'cert') url.cert = value;
      else url.certKey = value;
    } else
      throw bad(
        text,
        `unknown option ${JSON.stringify(name)} (known: timeout, try-timeout, cacert, cert, key)`,
      );
  }
  if ((url.cert === undefined) !== (url.certKey === undefined)) throw bad(text, 'cert= and key= go together');
  return url;
}
