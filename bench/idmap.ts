/**
 * ID-map core benchmarks: lookups (ours vs. the linear scan most implementations use, measured
 * side by side in the same run), split + validate, and parsing /proc map text.
 */
import type { Extent } from '../src/idmap/extent.js';
import { formatKernelMap, parseKernelMap } from '../src/idmap/formats/kernel.js';
import { IdMap } from '../src/idmap/idmap.js';
import { splitAcrossParent } from '../src/idmap/split.js';
import { validateMap } from '../src/idmap/validate.js';

/** Runs `fn` (which does `opsPerCall` operations) repeatedly for about `ms` and returns ops/s. */
function rate(fn: () => void, opsPerCall: number, ms = 700): number {
  for (let i = 0; i < 20; i++) fn(); // warm up the JIT
  let calls = 0;
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(ms) * 1_000_000n;
  let now = start;
  while (now < deadline) {
    fn();
    calls++;
    now = process.hrtime.bigint();
  }
  return (calls * opsPerCall) / (Number(now - start) / 1e9);
}

function lcg(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s;
  };
}

/** 340 extents of 1000 IDs each, inside contiguous from 0, outside scattered (shuffled). */
function bigMap(): Extent[] {
  const next = lcg(42);
  const order = Array.from({ length: 340 }, (_, i) => i).sort(() => (next() & 1 ? 1 : -1));
  return order.map((slot, i) => ({ inside: i * 1000, outside: 1_000_000 + slot * 5000, count: 1000 }));
}

function linearToOutside(extents: readonly Extent[], id: number): number | undefined {
  for (const e of extents) if (id >= e.inside && id < e.inside + e.count) return e.outside + (id - e.inside);
  return undefined;
}
function linearToInside(extents: readonly Extent[], id: number): number | undefined {
  for (const e of extents)
    if (id >= e.outside && id < e.outside + e.count) return e.inside + (id - e.outside);
  return undefined;
}

export function benchIdmap(): Record<string, number> {
  const extents = bigMap();
  const map = new IdMap(extents);
  const next = lcg(7);
  // Random IDs, about 90% of them mapped, for both directions.
  const insideIds = Float64Array.from({ length: 4096 }, () => next() % 378_000);
  const outsideIds = Float64Array.from({ length: 4096 }, () => 1_000_000 + (next() % 1_800_000));
  let sink = 0;
  // Each direction is timed in its own loop (as a caller translating many IDs would run it),
  // with the same IDs for ours and the linear scan; the figure for both directions is the
  // combined rate 2 / (1/out + 1/in). Rounds interleave ours and linear so noise hits both.
  const loop = (lookup: (id: number) => number | undefined, ids: Float64Array) => () => {
    let sum = 0;
    for (let i = 0; i < ids.length; i++) sum += lookup(ids[i]!) ?? 1;
    sink += sum;
  };
  const variants = {
    oursOut: loop((id) => map.toOutside(id), insideIds),
    oursIn: loop((id) => map.toInside(id), outsideIds),
    linearOut: loop((id) => linearToOutside(extents, id), insideIds),
    linearIn: loop((id) => linearToInside(extents, id), outsideIds),
  };
  const best: Record<keyof typeof variants, number> = { oursOut: 0, oursIn: 0, linearOut: 0, linearIn: 0 };
  for (let round = 0; round < 3; round++) {
    for (const name of Object.keys(variants) as (keyof typeof variants)[]) {
      best[name] = Math.max(best[name], rate(variants[name], 4096, 300));
    }
  }
  const ours = 2 / (1 / best.oursOut + 1 / best.oursIn);
  const naive = 2 / (1 / best.linearOut + 1 / best.linearIn);

  // Split + validate: a 340-extent request, each line inside one of the 340 parent extents, so
  // the split has 340 pieces and validation runs every check (page size raised so the byte
  // limit does not end it early: 340 such lines are ~5 KB, as on a 64 KiB-page kernel).
  const parent = extents.map((e) => ({ inside: e.outside, outside: e.outside + 50_000_000, count: e.count }));
  const request = extents.map((e, i) => ({ inside: i * 1000 + 10, outside: e.outside + 10, count: 900 }));
  // A parent is read once and used for many requests: as an IdMap its sorted form is cached.
  const parentMap = new IdMap(parent);
  const splitValidate = () => {
    const split = splitAcrossParent(request, parentMap);
    const verdict = validateMap(split, { parent: parentMap, pageSize: 65536 });
    if (!verdict.ok) throw new Error(verdict.reason ?? 'invalid');
  };
  const splitValidatePerS = rate(splitValidate, 1, 1000);

  const procText = formatKernelMap(extents, 'proc').repeat(1);
  const parseMb = rate(() => parseKernelMap(procText), procText.length / 1e6, 1000);
  if (sink === 42) console.log(''); // keep the lookups observable
  return {
    lookup_per_s: Math.round(ours),
    lookup_linear_per_s: Math.round(naive),
    lookup_speedup_vs_linear: Number((ours / naive).toFixed(1)),
    split_validate_per_s: Math.round(splitValidatePerS),
    parse_proc_mb_per_s: Number(parseMb.toFixed(1)),
  };
}
