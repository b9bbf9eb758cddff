/** Checks of the operation logs that alloc-worker.ts prints (for the concurrency tests). */
import assert from 'node:assert/strict';
import type { IdRange } from '../../src/idmap/ranges.js';

export type Entry =
  | { op: 'add'; w: string; id: string; seq: number; uids: IdRange[]; gids: IdRange[] }
  | { op: 'del'; w: string; id: string; seq: number };

function overlaps(a: IdRange[], b: IdRange[]): boolean {
  return a.some((x) => b.some((y) => x.start < y.start + y.count && y.start < x.start + x.count));
}

/**
 * Replays every operation in sequence order and asserts: the sequence numbers are one gap-free
 * total order, no allocation ever overlaps another live one (uids or gids), and every release
 * was of a live allocation. Returns the ids live at the end, the most live at once, and the
 * entries in order.
 */
export function replay(entries: Entry[]): { live: Set<string>; maxLive: number; ordered: Entry[] } {
  const ordered = [...entries].sort((a, b) => a.seq - b.seq);
  assert.deepEqual(
    ordered.map((e) => e.seq),
    ordered.map((_, i) => i + 1),
    'every operation of every process has a distinct, gap-free sequence number',
  );
  const live = new Map<string, Entry & { op: 'add' }>();
  let maxLive = 0;
  for (const e of ordered) {
    if (e.op === 'add') {
      for (const other of live.values()) {
        assert.ok(!overlaps(e.uids, other.uids), `uids of ${e.id} and ${other.id} overlap`);
        assert.ok(!overlaps(e.gids, other.gids), `gids of ${e.id} and ${other.id} overlap`);
      }
      live.set(e.id, e);
      maxLive = Math.max(maxLive, live.size);
    } else assert.ok(live.delete(e.id), `released ${e.id}, which was not live`);
  }
  return { live: new Set(live.keys()), maxLive, ordered };
}
