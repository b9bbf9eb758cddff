/**
 * Reading input with a size cap: a file, a descriptor or a stream (standard input) is read up to
 * a limit no real input of its kind reaches, and one byte more is an `INPUT_TOO_LARGE` error
 * instead of memory growing without end (a one-line 200 MB map file, `/dev/zero` on stdin).
 *
 * The limits: a kernel uid_map/gid_map write is one page (4 KiB here), so 1 MiB leaves room for
 * every other map format (comments, JSON layout, 340 lines in any notation); OCI config.json and
 * Kubernetes records are a few KiB to tens of KiB, so 4 MiB.
 */
import { closeSync, constants, openSync, readSync } from 'node:fs';
import { InputTooLargeError } from '../errors/index.js';

/** Map input: files and standard input given as a MAP. */
export const MAP_INPUT_LIMIT = 1 << 20;
/** OCI config.json, Kubernetes userns records. */
export const CONFIG_INPUT_LIMIT = 4 << 20;

/** Reads an open descriptor to its end, at most `limit` bytes (else InputTooLargeError). */
export function readFdBounded(fd: number, limit: number, source: string): Buffer {
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const chunk = Buffer.allocUnsafe(Math.min(64 * 1024, limit + 1 - total));
    const n = readSync(fd, chunk, 0, chunk.length, null);
    if (n === 0) break;
    chunks.push(chunk.subarray(0, n));
    total += n;
    if (total > limit) throw new InputTooLargeError(source, limit);
  }
  return Buffer.concat(chunks, total);
}

/**
 * Reads a file by path (following links: for inputs that are only read), at most `limit`
 * bytes. Errors from open/read are thrown as they are (ENOENT…), for the caller to explain.
 */
export function readFileBounded(path: string, limit: number, source = path): Buffer {
  const fd = openSync(path, constants.O_RDONLY);
  try {
    return readFdBounded(fd, limit, source);
  } finally {
    closeSync(fd);
  }
}

/** Reads a stream (standard input) to its end, at most `limit` bytes; stops reading past it. */
export async function readStreamBounded(
  stream: NodeJS.ReadableStream,
  limit: number,
  source: string,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    chunks.push(buffer);
    total += buffer.length;
    if (total > limit) {
      (stream as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
      throw new InputTooLargeError(source, limit);
    }
  }
  return Buffer.concat(chunks, total);
}
