/**
 * The CLI's standard output and standard error: direct `write(2)`s on file descriptors 1 and 2,
 * and one policy for output that cannot be written.
 *
 * Why not process.stdout: Node builds it on first use from its stream modules (a pipe is a
 * net.Socket, a file a SyncWriteStream), which Node's start-up snapshot does not hold. Measured
 * with `--cpu-prof` on `userns map split --parent self 0:0:100`: 5 ms of a 65 ms start-up (issue
 * 18). Node writes to pipes, files and terminals synchronously on Linux anyway, so a
 * `writeSync` loop behaves the same, and nothing is left unwritten at exit.
 *
 * The policy (test/cli/output.test.ts):
 * - a closed pipe (EPIPE: `userns alloc list | head -1`) ends the output quietly; the exit status
 *   stays the operation's, so a script knows an allocation was made and does not make it again;
 * - any other error (ENOSPC behind a redirect to a full disk) is reported in one line at exit,
 *   and a successful exit becomes 1: the output is lost;
 * - a descriptor left non-blocking by whoever opened it (EAGAIN) hands the rest of the output, in
 *   order, to Node's stream for it, which waits until the reader catches up.
 */
import { fstatSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';

/** What a command writes to: `write` and, for colour decisions, `isTTY`. */
export interface OutputStream {
  write(chunk: string | Uint8Array): boolean;
  readonly isTTY?: boolean;
}

let outputFailure: string | undefined;
let exitHooked = false;

/** Records the first output failure; printed on standard error at exit, exit status 0 → 1. */
function noteFailure(name: string, code: string): void {
  outputFailure ??= `userns: cannot write to ${name}: ${code}\n`;
  if (exitHooked) return;
  exitHooked = true;
  process.once('exit', (status) => {
    if (outputFailure === undefined) return;
    try {
      writeSync(2, outputFailure);
    } catch {
      // standard error is gone too
    }
    if (status === 0) process.exitCode = 1;
  });
}

/**
 * Applies the policy to one of Node's own streams (the EAGAIN fallback): EPIPE (and writes after
 * the stream was destroyed) are quiet, anything else is noted.
 */
function guardStream(stream: NodeJS.WritableStream, name: string): NodeJS.WritableStream {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE' || error.code === 'ERR_STREAM_DESTROYED') return;
    noteFailure(name, error.code ?? error.message);
  });
  return stream;
}

/** Standard output (fd 1) or standard error (fd 2), written with `writeSync`. */
export class FdOutput implements OutputStream {
  readonly #fd: 1 | 2;
  readonly #name: string;
  /** 'open': writeSync; 'closed': output dropped (EPIPE or another error); else Node's stream. */
  #state: 'open' | 'closed' | NodeJS.WritableStream = 'open';
  #isTTY: boolean | undefined;

  constructor(fd: 1 | 2) {
    this.#fd = fd;
    this.#name = fd === 1 ? 'standard output' : 'standard error';
  }

  /**
   * Whether the descriptor is a terminal. Only a character device can be one, and only then is
   * node:tty (which loads the stream modules) asked.
   */
  get isTTY(): boolean {
    if (this.#isTTY === undefined) {
      let device = false;
      try {
        device = fstatSync(this.#fd).isCharacterDevice();
      } catch {
        // a closed descriptor is no terminal
      }
      // node:tty only when a terminal is possible: it loads the stream modules.
      this.#isTTY = device && createRequire(import.meta.url)('node:tty').isatty(this.#fd) === true;
    }
    return this.#isTTY;
  }

  /** Writes the whole chunk before it returns (or hands it to the stream, see above); true. */
  write(chunk: string | Uint8Array): boolean {
    if (this.#state === 'closed') return true;
    if (this.#state !== 'open') return this.#state.write(chunk);
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    let done = 0;
    while (done < bytes.length) {
      try {
        done += writeSync(this.#fd, bytes, done, bytes.length - done);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EINTR') continue;
        if (code === 'EAGAIN') {
          this.#state = guardStream(this.#fd === 1 ? process.stdout : process.stderr, this.#name);
          return this.#state.write(bytes.subarray(done));
        }
        this.#state = 'closed';
        if (code !== 'EPIPE') noteFailure(this.#name, code ?? String(error));
        return true;
      }
    }
    return true;
  }
}
