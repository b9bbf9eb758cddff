/**
 * Typed errors. Every error userns throws on purpose is a UsernsError with a stable `code`
 * (safe to match on in scripts and in `--json` output), a message that says what was wrong and
 * where, and, when there is one, a `hint` that says what to do about it.
 */
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
  readonly code: string;
  readonly hint: string | undefined;
  readonly data: Record<string, unknown> | undefined;

  constructor(code: string, message: string, details: ErrorDetails = {}) {
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
    code: string,
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

/**
 * A file of the state root (a database, a lock, a state file) that cannot be used: a symbolic
 * link or a directory planted where a file belongs, a full file system, a damaged or too new
 * database. Codes: STATE_FILE_UNSAFE, STATE_FILE_NOT_A_FILE, NO_SPACE, STATE_FILE_ERROR,
 * REGISTRY_CORRUPT, REGISTRY_TOO_NEW, REGISTRY_UNAVAILABLE, LOCK_TIMEOUT, LOCK_UNAVAILABLE.
 * `data.path` names the file.
 */
export class StateFileError extends UsernsError {}
