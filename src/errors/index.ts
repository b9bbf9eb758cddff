/**
 * Every error class of userns. Every error userns throws on purpose is a UsernsError with a
 * stable `code` from ErrorCode (codes.ts; safe to match on in scripts and in `--json` output), a
 * message that says what was wrong and where, and, when there is one, a `hint` that says what to
 * do about it. The layer that throws an error says in its docstrings which codes it uses.
 */
import type { ErrorCode } from './codes.js';

export type {
  AllocErrorCode,
  ErrorCode,
  MapErrorCode,
  MountErrorCode,
  NamespaceErrorCode,
  NewIdmapErrorCode,
  OciErrorCode,
  ParseErrorCode,
  ShiftErrorCode,
  SpawnErrorCode,
  StateErrorCode,
} from './codes.js';

/** What a UsernsError carries besides its code and message: a hint, the facts (`data`), the cause. */
export interface ErrorDetails {
  /** What to do about it, in one sentence. */
  hint?: string;
  /** Extra machine-readable facts (printed by `--json`). */
  data?: Record<string, unknown>;
  cause?: unknown;
}

/**
 * The base of every error userns throws on purpose: a stable `code` (match on it, not on the
 * message), a message that says what was wrong and where, a `hint` that says what to do, and
 * `data` with the facts (printed by the CLI's `--json`).
 */
export class UsernsError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly data: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = details.hint;
    this.data = details.data;
  }

  /** The JSON form printed by the CLI's `--json`. */
  toJSON(): Record<string, unknown> {
    return {
      error: this.name,
      code: this.code,
      message: this.message,
      ...(this.hint === undefined ? {} : { hint: this.hint }),
      ...(this.data === undefined ? {} : { data: this.data }),
    };
  }
}

/** Where in a piece of parsed input something went wrong. Lines and columns count from 1. */
export interface SourcePosition {
  /** File path, `-` for standard input, or a short label such as `argument` or `--uidmap`. */
  source?: string;
  line: number;
  column: number;
}

/** A piece of text in some map format could not be parsed. */
export class ParseError extends UsernsError {
  readonly source: string | undefined;
  readonly line: number;
  readonly column: number;
  /** The offending text (the token or line), verbatim. */
  readonly text: string;

  constructor(
    code: ErrorCode,
    reason: string,
    position: SourcePosition & { text: string },
    details: ErrorDetails = {},
  ) {
    const where = `${position.source ?? 'input'}:${position.line}:${position.column}`;
    super(code, `${where}: ${reason} (at ${JSON.stringify(position.text)})`, {
      ...details,
      data: {
        source: position.source ?? null,
        line: position.line,
        column: position.column,
        text: position.text,
        ...details.data,
      },
    });
    this.source = position.source;
    this.line = position.line;
    this.column = position.column;
    this.text = position.text;
  }
}

/** A map is well-formed but does not satisfy a rule (overlap, limits, not inside the parent...). */
export class MapError extends UsernsError {}

/** The command line was used wrongly (the CLI exits 2 for these). */
export class UsageError extends UsernsError {
  constructor(message: string, details: ErrorDetails = {}) {
    super('USAGE', message, details);
  }
}

// ---------------------------------------------------------------------------------------------
// The error classes of the layers above the ID-map core, one per concern.

/** Where to look when something about namespaces or maps fails. */
export const DOCTOR_HINT = "run 'userns doctor' for a full diagnosis";

/** A UsernsError that may carry the native helper's report: the failed step and its errno name. */
export interface StepDetails extends ErrorDetails {
  /** The errno name the kernel gave (ENOENT, EPERM, …). */
  errno?: string;
  /** The helper's step that failed (src/native/protocol.md, "Reports"): unshare, exec, mount-idmap, … */
  step?: string;
}

/**
 * Starting a command in new namespaces failed: the helper could not be started, a namespace could
 * not be created, the IDs could not be switched, or the command could not be executed.
 *
 * Codes: HELPER_MISSING, PLATFORM_UNSUPPORTED (not Linux), HELPER_DIED, HELPER_PROTOCOL,
 * UNSHARE_FAILED, SETGROUPS_FAILED,
 * ID_NOT_MAPPED, SETID_FAILED, MOUNT_PROC_FAILED, CWD_FAILED, COMMAND_NOT_FOUND,
 * COMMAND_NOT_EXECUTABLE, EXEC_FAILED, JOIN_FAILED, NS_STALE, KEEPER_FAILED, SETUP_FAILED,
 * HOOK_FAILED, WALK_FAILED, USAGE. `data.step` and `data.errno` carry the helper's report when
 * there is one.
 */
export class SpawnError extends UsernsError {
  readonly errno: string | undefined;
  readonly step: string | undefined;

  constructor(code: ErrorCode, message: string, details: StepDetails = {}) {
    super(code, message, {
      ...details,
      data: {
        ...(details.step === undefined ? {} : { step: details.step }),
        ...(details.errno === undefined ? {} : { errno: details.errno }),
        ...details.data,
      },
    });
    this.errno = details.errno;
    this.step = details.step;
  }
}

/**
 * Writing the ID maps failed: newuidmap/newgidmap missing or unusable, a range the user may not
 * map, or the kernel refused the map.
 *
 * Codes: NEWUIDMAP_MISSING, NEWGIDMAP_MISSING, NEWUIDMAP_NOT_SETUID, NEWGIDMAP_NOT_SETUID,
 * NEWUIDMAP_FAILED, NEWGIDMAP_FAILED, RANGE_NOT_ALLOWED, MAP_WRITE_FAILED, SETGROUPS_WRITE_FAILED,
 * SETGROUPS_DENIED, NO_SUBORDINATE_IDS, INVALID_MAP.
 */
export class NewIdmapError extends UsernsError {}

/**
 * A mount could not be made. A SpawnError (it fails the start of a command in the same way), with
 * `errno` and `step` when the kernel refused.
 *
 * Codes: MOUNT_SPEC_INVALID, MOUNT_SOURCE_MISSING, MOUNT_TARGET_MISSING, MOUNT_TARGET_SYMLINK,
 * MOUNT_TYPE_MISMATCH, MOUNT_NOT_PRIVILEGED, MOUNT_FAILED, IDMAP_UNSUPPORTED_FS,
 * IDMAP_KERNEL_TOO_OLD, IDMAP_NOT_PRIVILEGED, IDMAP_ALREADY_IDMAPPED, IDMAP_MAP_EMPTY,
 * IDMAP_ID_NOT_MAPPED, IDMAP_FAILED. `data` carries `source`, `target`, `fsType`, `errno` and
 * `step` when known.
 */
export class MountError extends SpawnError {}

/** A lock held by another live process was not released in time. Code: LOCK_TIMEOUT. */
export class LockTimeoutError extends UsernsError {}

/** The state root cannot be used. Codes: STATE_ROOT_UNUSABLE, STATE_ROOT_UNSAFE. */
export class StateRootError extends UsernsError {}

/**
 * A file of the state root (a database, a lock, a state file) that cannot be used: a symbolic
 * link or a directory planted where a file belongs, a full file system, a damaged or too new
 * database. Codes: STATE_FILE_UNSAFE, STATE_FILE_NOT_A_FILE, NO_SPACE, STATE_FILE_ERROR,
 * REGISTRY_CORRUPT, REGISTRY_TOO_NEW, REGISTRY_UNAVAILABLE, LOCK_TIMEOUT, LOCK_UNAVAILABLE.
 * `data.path` names the file.
 */
export class StateFileError extends UsernsError {}

/** A name that would become a path under the state root is not allowed. Code: INVALID_NAME. */
export class InvalidNameError extends UsernsError {}

/**
 * The allocation registry refused a request. Codes: ALLOC_EXHAUSTED, ALLOC_NAME_TAKEN,
 * ALLOC_NOT_FOUND, ALLOC_BAD_SIZE, ALLOC_PASSTHROUGH_TAKEN, ALLOC_NOT_OWNER, ALLOC_CORRUPT and
 * the registry's other ALLOC_* codes (src/alloc/registry.ts).
 */
export class AllocError extends UsernsError {}

/**
 * A named namespace cannot be used, created or removed.
 * Codes: NS_EXISTS, NS_NOT_FOUND, NS_STALE, NS_CREATING, NS_BROKEN, NS_UNSAFE, NS_KEEPER_FAILED,
 * NS_GONE (its namespaces no longer exist: a stale nsfs handle), NS_HOLD_UNSUPPORTED (a hold mode
 * this caller or kernel cannot use), NS_HANDLES_UNAVAILABLE (nsfs handles recorded but unusable
 * here), NS_UNCHECKABLE (its keeper runs where this process cannot see or stop it), USAGE. (Invalid names: InvalidNameError INVALID_NAME; state root problems: StateRootError; a
 * lock held too long: LockTimeoutError LOCK_TIMEOUT; setup failures: SpawnError / NewIdmapError.)
 */
export class NamespaceError extends UsernsError {}

/**
 * An OCI config.json or Kubernetes userns record is wrong, or cannot be read or written.
 * Codes: OCI_READ_FAILED, OCI_WRITE_FAILED (the file), OCI_INVALID (a mapping field has the
 * wrong type or value: data.path is its JSON path), OCI_MAP_REJECTED (the kernel would refuse a
 * map: data.errno, data.path), OCI_MISSING_MAPS, OCI_NO_USER_NAMESPACE, OCI_USERNS_PATH,
 * OCI_MOUNT_NOT_FOUND, OCI_MOUNT_MAPS, OCI_UNKNOWN_FORMAT, OCI_CONFIG_SYMLINK, OCI_CHECK_ALLOCATE,
 * OCI_INVALID_NAME, OCI_ALLOCATION_GONE, OCI_ALLOCATION_MISMATCH, KUBERNETES_RULES,
 * RANGE_NOT_ALLOWED; what the runtime would refuse on this machine: OCI_IDMAP_NOT_BIND (an
 * idmapped mount that is not a bind mount), OCI_IDMAP_NOT_PRIVILEGED (an idmapped mount the
 * caller may not make), OCI_ROOT_UNREACHABLE (the container's root cannot reach root.path:
 * data.directory blocks it), OCI_ROOT_SYMLINK (root.path goes through a symbolic link).
 */
export class OciError extends UsernsError {}

/**
 * Code REEXEC_UNSUPPORTED: the program was read from standard input and cannot be run again.
 * Failures to set up the namespace keep their own types and codes (SpawnError, NewIdmapError,
 * MapError, NamespaceError, AllocError: e.g. NO_SUBORDINATE_IDS, NEWUIDMAP_MISSING, NS_STALE).
 */
export class ReexecError extends UsernsError {}

/**
 * A shift or fit could not be done (src/shift/): the tree, the maps or the walk. `result` holds
 * what the walk did before it stopped, when it ran (a ShiftResult for shiftTree).
 */
export class ShiftError<Result = unknown> extends UsernsError {
  readonly result: Result | undefined;
  constructor(code: ErrorCode, message: string, details: ErrorDetails & { result?: Result } = {}) {
    super(code, message, details);
    this.result = details.result;
  }
}

/** The source and target maps of a shift cannot be turned into walk tables. */
export class ShiftPlanError extends UsernsError {}

/** The helper's tree walk rejected its job. Code: WALK_JOB_INVALID. */
export class WalkError extends UsernsError {}

/**
 * Input larger than the limit of its kind (src/system/bounded-read.ts): a map file or standard
 * input past 1 MiB, an OCI config past 4 MiB. Code: INPUT_TOO_LARGE, `data: { source, limit }`.
 */
export class InputTooLargeError extends UsernsError {
  constructor(source: string, limit: number) {
    super(
      'INPUT_TOO_LARGE',
      `${source} is larger than ${formatBytes(limit)}, more than any real input of its kind`,
      {
        hint: 'check that this is the right file: real maps (a kernel map is under 4 KiB) and configs are far smaller',
        data: { source, limit },
      },
    );
  }
}

function formatBytes(n: number): string {
  return n % (1 << 20) === 0 ? `${n / (1 << 20)} MiB` : n % 1024 === 0 ? `${n / 1024} KiB` : `${n} bytes`;
}

/**
 * A symbolic link where none may be (src/system/no-follow.ts). Code: PATH_SYMLINK,
 * `data: { path, link }`: the path asked for, the link met.
 */
export class SymlinkRefusedError extends UsernsError {}
