/**
 * A small seeded PRNG (xorshift32) for the kernel differential tests: each run prints its seed,
 * and USERNS_ORACLE_SEED=<seed> replays exactly the same cases.
 */
export function seededRandom(seed: number) {
  let state = seed >>> 0 || 1;
  const next = () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 4294967296;
  };
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[int(0, xs.length - 1)]!;
  return { next, int, pick };
}

export type SeededRandom = ReturnType<typeof seededRandom>;

/** The seed of this run: USERNS_ORACLE_SEED, or one derived from the clock. */
export const ORACLE_SEED = Number(process.env.USERNS_ORACLE_SEED ?? Date.now() % 2147483647);
