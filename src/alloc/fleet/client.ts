/**
 * The etcd v3 client of the fleet registry: npm's `etcd3` (with `cockatiel` for its fault
 * handling), loaded with require() on the first connection only: loading it costs 0.4–1 s
 * (docs/etcd-notes.md), which no command that does not use a fleet registry may pay.
 *
 * Configured as docs/etcd-notes.md found necessary: a deadline on every unary call (etcd3 has
 * none: a hung member makes a call wait forever), retries on another member with exponential
 * backoff within one overall bound (the URL's timeout=), no per-member circuit breaker (etcd3's
 * opens on a few timeouts during an election and then refuses every call for 5 s), streams
 * (lease keepalives) without a deadline.
 *
 * Errors become typed ones: no member answering within the bound (refused, no quorum, hung) →
 * REGISTRY_UNREACHABLE; authentication or permission → REGISTRY_DENIED; a lease etcd does not
 * know → leaseGone() is true.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { AllocError, UsernsError } from '../../errors/index.js';
import type { Kv } from './layout.js';
import type { FleetRegistryUrl } from './url.js';

// --- the part of etcd3's API userns uses -----------------------------------------------------

export interface ResponseHeader {
  cluster_id: string;
  member_id: string;
  revision: string;
}

export interface RangeRequest {
  key: Buffer;
  range_end?: Buffer;
  limit?: number;
  revision?: string | number;
  serializable?: boolean;
  keys_only?: boolean;
  count_only?: boolean;
}

export interface RangeResponse {
  header: ResponseHeader;
  kvs: Kv[];
  more: boolean;
  count: string;
}

export type CompareTarget = 'Version' | 'Create' | 'Mod' | 'Value' | 'Lease';
export type CompareResult = 'Equal' | 'Greater' | 'Less' | 'NotEqual';

export interface Compare {
  key: Buffer;
  target: CompareTarget;
  result: CompareResult;
  create_revision?: string | number;
  mod_revision?: string | number;
  value?: Buffer;
  lease?: string | number;
  range_end?: Buffer;
}

export interface RequestOp {
  request_range?: RangeRequest;
  request_put?: { key: Buffer; value: Buffer; lease?: string | number };
  request_delete_range?: { key: Buffer; range_end?: Buffer };
}

export interface ResponseOp {
  response_range?: RangeResponse;
  response_put?: { header: ResponseHeader };
  response_delete_range?: { header: ResponseHeader; deleted: string };
}

export interface TxnRequest {
  compare: Compare[];
  success: RequestOp[];
  failure: RequestOp[];
}

export interface TxnResponse {
  header: ResponseHeader;
  succeeded: boolean;
  responses: ResponseOp[];
}

export interface KeepAliveStream {
  write(request: { ID: string }): void;
  end(): void;
  on(event: 'data', handler: (response: { ID: string; TTL: string }) => void): KeepAliveStream;
  on(event: 'error', handler: (error: Error) => void): KeepAliveStream;
  on(event: 'end' | 'close', handler: () => void): KeepAliveStream;
  removeAllListeners(): void;
}

export interface EtcdClient {
  kv: {
    range(request: RangeRequest, options?: object): Promise<RangeResponse>;
    txn(request: TxnRequest, options?: object): Promise<TxnResponse>;
  };
  leaseClient: {
    leaseGrant(request: {
      TTL: number;
      ID?: number;
    }): Promise<{ ID: string; TTL: string; header: ResponseHeader }>;
    leaseRevoke(request: { ID: string }): Promise<unknown>;
    leaseTimeToLive(request: { ID: string }): Promise<{ ID: string; TTL: string; grantedTTL: string }>;
    leaseKeepAlive(options?: object): Promise<KeepAliveStream>;
  };
  maintenance: {
    status(
      options?: object,
    ): Promise<{ header: ResponseHeader; version: string; leader: string; dbSize: string }>;
  };
  cluster: {
    memberList(
      request?: object,
      options?: object,
    ): Promise<{ members: { ID: string; name: string; clientURLs: string[] }[] }>;
  };
  close(): void;
}

interface Etcd3Module {
  Etcd3: new (options: object) => EtcdClient;
  isRecoverableError(error: unknown): boolean;
  EtcdLeaseInvalidError: ErrorClass;
  GRPCUnauthenticatedError: ErrorClass;
  EtcdAuthenticationFailedError: ErrorClass;
  EtcdInvalidAuthTokenError: ErrorClass;
  EtcdPermissionDeniedError: ErrorClass;
}

interface CockatielModule {
  ExponentialBackoff: new (options: { initialDelay: number; maxDelay: number }) => unknown;
  handleWhen(predicate: (error: Error) => boolean): unknown;
  noop: unknown;
  retry(policy: unknown, options: { maxAttempts: number; backoff: unknown }): unknown;
  TimeoutStrategy: { Aggressive: unknown };
  timeout(ms: number, strategy: unknown): unknown;
  wrap(...policies: unknown[]): unknown;
  TaskCancelledError: ErrorClass;
  BrokenCircuitError: ErrorClass;
}

/** An error class of a loaded package (compared with isA, never constructed here). */
type ErrorClass = { readonly prototype: Error };

function isA(error: unknown, ...classes: ErrorClass[]): boolean {
  return classes.some((c) => typeof c === 'function' && error instanceof (c as unknown as typeof Error));
}

let modules: { etcd3: Etcd3Module; cockatiel: CockatielModule } | undefined;

/** etcd3 and cockatiel, required on first use (REGISTRY_UNAVAILABLE when they cannot be). */
export function etcdModules(): { etcd3: Etcd3Module; cockatiel: CockatielModule } {
  if (modules === undefined) {
    const require = createRequire(import.meta.url);
    try {
      modules = {
        etcd3: require('etcd3') as Etcd3Module,
        cockatiel: require('cockatiel') as CockatielModule,
      };
    } catch (error) {
      throw new AllocError(
        'REGISTRY_UNAVAILABLE',
        `the etcd client (npm etcd3) cannot be loaded: ${(error as Error).message.split('\n')[0]}`,
        {
          hint: 'a fleet registry needs the etcd3 and cockatiel packages: reinstall userns with its dependencies (npm install)',
          cause: error,
        },
      );
    }
  }
  return modules;
}

/** Whether etcd3 has been loaded in this process (tests check that commands without etcd never load it). */
export function etcdLoaded(): boolean {
  return modules !== undefined;
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new AllocError('REGISTRY_TLS', `cannot read the ${what} ${path}: ${(error as Error).message}`, {
      hint: 'the cacert=, cert= and key= options of the registry URL name PEM files',
    });
  }
}

/** Opens a client (connections are made on the first call). */
export function connectFleet(url: FleetRegistryUrl): EtcdClient {
  const { etcd3, cockatiel } = etcdModules();
  const options: Record<string, unknown> = {
    hosts: url.endpoints,
    // Streams (lease keepalive) must stay open: no deadline for them.
    defaultCallOptions: (context: { isStream: boolean }) =>
      context.isStream ? {} : { deadline: Date.now() + url.tryTimeoutMs },
    faultHandling: {
      host: () => cockatiel.noop,
      global: cockatiel.wrap(
        cockatiel.timeout(url.timeoutMs, cockatiel.TimeoutStrategy.Aggressive),
        cockatiel.retry(cockatiel.handleWhen(etcd3.isRecoverableError), {
          maxAttempts: 8,
          backoff: new cockatiel.ExponentialBackoff({ initialDelay: 50, maxDelay: 1000 }),
        }),
      ),
    },
    // The registry reads its index whole (one key per reserved range): allow large answers.
    grpcOptions: { 'grpc.max_receive_message_length': 256 * 1024 * 1024 },
  };
  if (url.username !== undefined) options.auth = { username: url.username, password: url.password ?? '' };
  if (url.cacert !== undefined || url.cert !== undefined) {
    const credentials: Record<string, Buffer> = {};
    if (url.cacert !== undefined) credentials.rootCertificate = readPem(url.cacert, 'CA certificate');
    if (url.cert !== undefined) credentials.certChain = readPem(url.cert, 'client certificate');
    if (url.certKey !== undefined) credentials.privateKey = readPem(url.certKey, 'client key');
    options.credentials = credentials;
  }
  return new etcd3.Etcd3(options);
}

/** Whether an error means that no member answered in time (refused, no quorum, hung, timed out). */
export function isUnreachable(error: unknown): boolean {
  if (modules === undefined || !(error instanceof Error)) return false;
  const { etcd3, cockatiel } = modules;
  if (isA(error, cockatiel.TaskCancelledError, cockatiel.BrokenCircuitError)) return true;
  if (isDenied(error)) return false;
  if (etcd3.isRecoverableError(error)) return true;
  // grpc-js reports a refused or failed connection in several ways; all are "cannot reach".
  return /ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|No connection established|Failed to connect/i.test(
    error.message,
  );
}

function isDenied(error: unknown): boolean {
  if (modules === undefined) return false;
  const { etcd3 } = modules;
  return isA(
    error,
    etcd3.GRPCUnauthenticatedError,
    etcd3.EtcdAuthenticationFailedError,
    etcd3.EtcdInvalidAuthTokenError,
    etcd3.EtcdPermissionDeniedError,
  );
}

/** Whether etcd said the lease does not exist (expired or revoked). */
export function leaseGone(error: unknown): boolean {
  return modules !== undefined && isA(error, modules.etcd3.EtcdLeaseInvalidError);
}

/**
 * The typed error for what a call to the registry threw: REGISTRY_UNREACHABLE, REGISTRY_DENIED,
 * or REGISTRY_ERROR for anything else etcd answered; errors of userns itself pass unchanged.
 */
export function registryError(error: unknown, url: FleetRegistryUrl, doing: string): Error {
  if (error instanceof UsernsError) return error;
  const message = (error as Error)?.message ?? String(error);
  if (isUnreachable(error)) {
    return new AllocError(
      'REGISTRY_UNREACHABLE',
      `the fleet registry ${url.display} did not answer while ${doing} (${message.split('\n')[0]}; waited up to ${url.timeoutMs} ms)`,
      {
        hint: 'check that the etcd members are up and reachable from here (userns doctor checks it); allocations this node already holds keep working from its cache',
        data: { registry: url.display, timeoutMs: url.timeoutMs },
        cause: error,
      },
    );
  }
  if (isDenied(error)) {
    return new AllocError(
      'REGISTRY_DENIED',
      `the fleet registry ${url.display} refused ${doing}: ${message}`,
      {
        hint: `give a user with read and write access to ${url.prefix}/ (etcd://USER:PASSWORD@…) or the client certificate etcd expects (etcds://…?cert=…&key=…)`,
        data: { registry: url.display },
        cause: error,
      },
    );
  }
  return new AllocError(
    'REGISTRY_ERROR',
    `the fleet registry ${url.display} failed while ${doing}: ${message}`,
    {
      data: { registry: url.display },
      cause: error,
    },
  );
}
