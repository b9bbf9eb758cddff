import type { IdRange } from '../idmap/ranges.js';

/**
 * The free IDs of one pool (one kind: uid or gid) as an ordered set of disjoint, non-adjacent
 * gaps [start, end), held in a treap keyed by start and augmented with each subtree's largest gap
 * and total free count. Every operation is O(log g) (g = number of gaps, at most one more than
 * the number of allocations), except that carving a range out removes every gap it covers.
 *
 * - first fit (lowest block of `size` IDs): descend, skipping any subtree whose largest gap is
 *   smaller than `size`; with alignment 1 the left subtree, when it qualifies, always holds an
 *   answer, so the search never backtracks: O(log g).
 * - aligned fit (start a multiple of `align`): the same descent, checking the aligned candidate
 *   in each qualifying gap. A gap at least size + align − 1 long always holds one, so it can only
 *   backtrack over gaps between size and size + align − 2 long; when every allocation is
 *   aligned (the slot policies), gaps are aligned too and it never does.
 */

interface Node {
  start: number;
  end: number;
  priority: number;
  left: Node | null;
  right: Node | null;
  /** Largest end − start in this subtree. */
  maxLen: number;
  /** Sum of end − start in this subtree. */
  total: number;
  /** Number of gaps in this subtree. */
  size: number;
}

function update(n: Node): Node {
  const len = n.end - n.start;
  let maxLen = len;
  let total = len;
  let size = 1;
  const { left, right } = n;
  if (left !== null) {
    if (left.maxLen > maxLen) maxLen = left.maxLen;
    total += left.total;
    size += left.size;
  }
  if (right !== null) {
    if (right.maxLen > maxLen) maxLen = right.maxLen;
    total += right.total;
    size += right.size;
  }
  n.maxLen = maxLen;
  n.total = total;
  n.size = size;
  return n;
}

/** xorshift32: deterministic priorities, no dependence on Math.random's quality. */
let seed = 0x2545f491;
function nextPriority(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return seed >>> 0;
}

function makeNode(start: number, end: number): Node {
  const len = end - start;
  return { start, end, priority: nextPriority(), left: null, right: null, maxLen: len, total: len, size: 1 };
}

/** Both trees hold keys in order (every key of a below every key of b). */
function merge(a: Node | null, b: Node | null): Node | null {
  if (a === null) return b;
  if (b === null) return a;
  if (a.priority > b.priority) {
    a.right = merge(a.right, b);
    return update(a);
  }
  b.left = merge(a, b.left);
  return update(b);
}

/** Splits into (starts < key, starts ≥ key). */
function split(n: Node | null, key: number): [Node | null, Node | null] {
  if (n === null) return [null, null];
  if (n.start < key) {
    const [l, r] = split(n.right, key);
    n.right = l;
    return [update(n), r];
  }
  const [l, r] = split(n.left, key);
  n.left = r;
  return [l, update(n)];
}

/** Removes and returns the last node of a tree. */
function popLast(n: Node): [Node | null, Node] {
  if (n.right === null) {
    const rest = n.left;
    n.left = null;
    return [rest, update(n)];
  }
  const [rest, last] = popLast(n.right);
  n.right = rest;
  return [update(n), last];
}

/** Removes and returns the first node of a tree. */
function popFirst(n: Node): [Node | null, Node] {
  if (n.left === null) {
    const rest = n.right;
    n.right = null;
    return [rest, update(n)];
  }
  const [rest, first] = popFirst(n.left);
  n.left = rest;
  return [update(n), first];
}

function alignUp(value: number, align: number): number {
  if (align <= 1) return value;
  const r = value % align;
  return r === 0 ? value : value + (align - r);
}

/** A request to FreeSpace.fit: `size` IDs (≥ 1) whose start is a multiple of `align`. */
export interface FitRequest {
  size: number;
  /** Start must be a multiple of this (default 1). */
  align?: number;
}

/**
 * The free IDs of one pool as ordered gaps in a balanced tree whose nodes know the largest gap
 * and the free total below them: first fit and aligned fits in O(log n), take and give back in
 * O(log n). IDs are u32 numbers; ranges are `{start, count}`.
 */
export class FreeSpace {
  #root: Node | null = null;

  /** Builds from ranges (any order; overlapping or adjacent ones are merged). */
  constructor(free: Iterable<IdRange> = []) {
    const sorted = [...free].filter((r) => r.count > 0).sort((a, b) => a.start - b.start);
    let root: Node | null = null;
    let curStart = -1;
    let curEnd = -1;
    const flush = () => {
      if (curStart >= 0) root = merge(root, makeNode(curStart, curEnd));
    };
    for (const r of sorted) {
      if (curStart >= 0 && r.start <= curEnd) {
        curEnd = Math.max(curEnd, r.start + r.count);
        continue;
      }
      flush();
      curStart = r.start;
      curEnd = r.start + r.count;
    }
    flush();
    this.#root = root;
  }

  /** Number of free IDs. */
  get total(): number {
    return this.#root?.total ?? 0;
  }

  /** Length of the largest free block. */
  get largest(): number {
    return this.#root?.maxLen ?? 0;
  }

  /** Number of gaps. */
  get gapCount(): number {
    return this.#root?.size ?? 0;
  }

  /** The gaps in order (O(g)). */
  ranges(): IdRange[] {
    const out: IdRange[] = [];
    const walk = (n: Node | null): void => {
      if (n === null) return;
      walk(n.left);
      out.push({ start: n.start, count: n.end - n.start });
      walk(n.right);
    };
    walk(this.#root);
    return out;
  }

  /** The gap containing `id`, if any. O(log g). */
  gapContaining(id: number): IdRange | undefined {
    let n = this.#root;
    let best: Node | null = null;
    while (n !== null) {
      if (n.start <= id) {
        best = n;
        n = n.right;
      } else n = n.left;
    }
    return best !== null && id < best.end ? { start: best.start, count: best.end - best.start } : undefined;
  }

  /** True when every ID of [start, start+count) is free. */
  isFree(start: number, count: number): boolean {
    const g = this.gapContaining(start);
    return g !== undefined && start + count <= g.start + g.count;
  }

  /** The lowest start of a free block of `size` IDs whose start is a multiple of `align`. */
  findFit(request: FitRequest): number | undefined {
    const { size } = request;
    const align = request.align ?? 1;
    if (size <= 0) return undefined;
    const search = (n: Node | null): number | undefined => {
      if (n === null || n.maxLen < size) return undefined;
      const inLeft = search(n.left);
      if (inLeft !== undefined) return inLeft;
      const candidate = alignUp(n.start, align);
      if (candidate + size <= n.end) return candidate;
      return search(n.right);
    };
    return search(this.#root);
  }

  /**
   * Marks [start, start+count) as used. IDs in it that are not free are ignored (so a range that
   * reaches outside the pool, or into IDs that are taken anyway, can be carved safely).
   */
  carve(start: number, count: number): void {
    if (count <= 0) return;
    const end = start + count;
    let [low, rest] = split(this.#root, start);
    const keep: Node[] = [];
    if (low !== null) {
      const [lowRest, last] = popLast(low);
      low = lowRest;
      if (last.end > start) {
        if (last.start < start) keep.push(makeNode(last.start, start));
        if (last.end > end) keep.push(makeNode(end, last.end));
      } else keep.push(last);
    }
    const [middle, high] = split(rest, end);
    rest = high;
    if (middle !== null) {
      const [, last] = popLast(middle);
      if (last.end > end) keep.push(makeNode(end, last.end));
    }
    let root = low;
    keep.sort((a, b) => a.start - b.start);
    for (const k of keep) {
      k.left = null;
      k.right = null;
      root = merge(root, update(k));
    }
    this.#root = merge(root, rest);
  }

  /**
   * Marks [start, start+count) as free. The caller guarantees that none of it is free already
   * (it was carved before); adjacent gaps are merged so the set stays canonical.
   */
  release(start: number, count: number): void {
    if (count <= 0) return;
    let s = start;
    let e = start + count;
    let [low, high] = split(this.#root, start);
    if (low !== null) {
      const [lowRest, last] = popLast(low);
      if (last.end === s) {
        s = last.start;
        low = lowRest;
      } else if (last.end > s) {
        throw new Error(
          `FreeSpace.release: ${start}+${count} overlaps the free gap ${last.start}-${last.end}`,
        );
      } else low = merge(lowRest, last);
    }
    if (high !== null) {
      const [highRest, first] = popFirst(high);
      if (first.start === e) {
        e = first.end;
        high = highRest;
      } else if (first.start < e) {
        throw new Error(
          `FreeSpace.release: ${start}+${count} overlaps the free gap ${first.start}-${first.end}`,
        );
      } else high = merge(first, highRest);
    }
    this.#root = merge(merge(low, makeNode(s, e)), high);
  }
}
