/**
 * Open flags Node's `fs.constants` lacks.
 *
 * O_PATH (Linux; the same value on every architecture Node supports but alpha/sparc/parisc): a
 * descriptor that only pins a place in the tree. Opening one needs search permission on the way
 * to it, as a path lookup does, not read permission on the file or directory itself; it serves
 * as the base of `/proc/self/fd/N/NAME`, for fstat, and to hand a mount to another process.
 * libuv adds O_CLOEXEC.
 */
export const O_PATH = 0o10000000;
