/**
 * "Which of these sorted ranges starts last at or before id?" in O(1) for spread-out ranges:
 * the search behind every lookup and every cut at a parent's boundaries.
 *
 * A bucket table over the covered span (a power of two of buckets, about two per range, at most
 * 4096) gives, for each bucket, the last range starting at or before the bucket's first ID. A
 * query is a shift, one table read and a binary search over the ranges that start inside that
 * bucket (usually none or one), so O(log n) at worst, when ranges cluster.
 */
export class StartIndex {
  readonly #starts: Float64Array;
  readonly #low: number;
  readonly #shift: number;
  readonly #buckets: Int32Array; // -1: no range starts at or before the bucket

  /** `starts` ascending; `high` the exclusive end of the last range (the span's end). */
  constructor(starts: Float64Array, high: number) {
    this.#starts = starts;
    const n = starts.length;
    this.#low = n > 0 ? starts[0]! : 0;
    const span = Math.max(1, high - this.#low);
    let shift = 0;
    let buckets = new Int32Array(0);
    // A span beyond 2^32 (values no kernel map holds) gets no table: plain binary search.
    if (n > 0 && span <= 2 ** 32) {
      const wanted = Math.min(4096, 2 ** Math.ceil(Math.log2(Math.max(2, 2 * n))));
      while (shift < 31 && 2 ** shift * wanted < span) shift++;
      buckets = new Int32Array(Math.ceil(span / 2 ** shift));
      let k = -1;
      for (let b = 0; b < buckets.length; b++) {
        const bucketStart = this.#low + b * 2 ** shift;
        while (k + 1 < n && starts[k + 1]! <= bucketStart) k++;
        buckets[b] = k;
      }
    }
    this.#shift = shift;
    this.#buckets = buckets;
  }

  /** Index of the last range starting at or before `id`, or -1. */
  lastAtOrBefore(id: number): number {
    const starts = this.#starts;
    const buckets = this.#buckets;
    let k = -1;
    let last = starts.length - 1;
    if (buckets.length > 0) {
      if (id < this.#low) return -1;
      const offset = id - this.#low;
      if (offset < 2 ** 32) {
        // 0 <= offset < 2^32, so the unsigned shift divides exactly by 2^shift.
        const b = offset >>> this.#shift;
        if (b < buckets.length) {
          k = buckets[b]!;
          // Ranges starting after the bucket's first ID, up to id: those before the next bucket's.
          if (b + 1 < buckets.length) last = buckets[b + 1]!;
        } else {
          k = last; // past the span: the last range starts before id
        }
      } else {
        k = last;
      }
    }
    if (k < last && starts[k + 1]! <= id) {
      // Binary search (no data-dependent branches) over (k, last] for the last start <= id.
      let base = k + 1;
      let len = last - k;
      while (len > 1) {
        const half = len >>> 1;
        base = starts[base + half]! <= id ? base + half : base;
        len -= half;
      }
      k = base;
    }
    return k;
  }
}
