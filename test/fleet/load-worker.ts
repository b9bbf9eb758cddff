/**
 * One allocating process of test/fleet/load.test.ts: "container runtimes" of two nodes in one
 * process, each with its node's state root, that allocate and release against the fleet
 * registry as fast as they can, and report every outcome. Not a test file; run as
 * `node load-worker.js JSON` with
 *   { registry, nodes, base, ops, seed, names, leased, until }
 * (node N's state root is base/N, shared with the other processes of node N) and prints one
 * JSON line: WorkerOutput.
 *
 * Operations, chosen by a seeded generator so a failing run can be repeated:
 *  - allocate a named, shared, persistent range (one of `names`, always 1000 IDs): every process
 *    of every node must get the same range for a name;
 *  - allocate an unnamed range of 1…5000 IDs (first fit or slot), persistent or on the node's
 *    lease (`leased` of the time, lease 'auto': the node's agent runs in the test process);
 *  - release one of its own unnamed allocations (by id).
 * A release whose outcome is unknown (the registry did not answer) is tried again later with
 * ifExists; at the end everything pending is settled so the test can compare exact sets.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { FleetRegistry } from '../../src/alloc/fleet/registry.js';
import { parseRegistryUrl } from '../../src/alloc/fleet/url.js';
import type { Allocation } from '../../src/alloc/registry.js';
import type { UsernsError } from '../../src/errors/index.js';

export interface WorkerInput {
  registry: string;
  /** The nodes this process acts for (each operation picks one). */
  nodes: string[];
  /** Node N's state root is base/N. */
  base: string;
  ops: number;
  seed: number;
  names: string[];
  /** Share of unnamed allocations made on the node's lease (0…1). */
  leased: number;
  /** Keep going after `ops` operations until this file exists (the test's fault injection is over). */
  until: string;
}

export interface Outcome {
  op: 'allocate' | 'named';
  id: string;
  name: string;
  uids: { start: number; count: number }[];
  gids: { start: number; count: number }[];
  uidMap: { inside: number; outside: number; count: number }[];
  gidMap: { inside: number; outside: number; count: number }[];
  lease?: string;
  reused?: boolean;
  /** The etcd revision that created it. */
  seq: number;
  /** The node that made it. */
  node: string;
  /** The node that asked (for a name: maybe another one, which read it). */
  askedBy: string;
  ms: number;
}

export interface WorkerOutput {
  nodes: string[];
  /** Allocations reported as made (or read, for names). */
  results: Outcome[];
  /**
   * Ids released, with the etcd revision of the release (undefined: a release retried after an
   * unknown outcome found it gone, so an earlier try did it at a revision not known).
   */
  released: { id: string; seq?: number }[];
  releaseMs: number[];
  errors: Record<string, number>;
  /** Ids released with an unknown outcome at first, settled at the end. */
  retriedReleases: number;
}

/** mulberry32: small, seeded, good enough to choose operations. */
function generator(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const outcome = (op: Outcome['op'], a: Allocation, askedBy: string, ms: number): Outcome => ({
  op,
  id: a.id,
  name: a.name,
  uids: a.uids,
  gids: a.gids,
  uidMap: a.uidMap,
  gidMap: a.gidMap,
  ...(a.lease === undefined ? {} : { lease: a.lease }),
  ...(a.reused === undefined ? {} : { reused: a.reused }),
  seq: a.seq,
  node: a.node ?? '',
  askedBy,
  ms,
});

async function run(input: WorkerInput): Promise<WorkerOutput> {
  const random = generator(input.seed);
  const url = parseRegistryUrl(input.registry);
  const registries = new Map(
    input.nodes.map((node) => [
      node,
      new FleetRegistry(url, { dir: join(input.base, node), node, systemTaken: null, idleCloseMs: 0 }),
    ]),
  );
  const on = (node: string) => registries.get(node)!;
  const anyNode = () => input.nodes[Math.floor(random() * input.nodes.length)]!;
  const results: Outcome[] = [];
  const released: WorkerOutput['released'] = [];
  const releaseMs: number[] = [];
  const errors: Record<string, number> = {};
  const held: Allocation[] = [];
  const unsettled: { id: string; node: string }[] = [];
  let retriedReleases = 0;
  const failed = (error: unknown) => {
    const code = (error as UsernsError).code ?? (error as Error).message;
    errors[code] = (errors[code] ?? 0) + 1;
    if ((error as UsernsError).code === undefined) throw error; // not a typed error: a bug
  };
  try {
    for (let i = 0; (i < input.ops || !existsSync(input.until)) && i < 20 * input.ops; i++) {
      const r = random();
      const t0 = performance.now();
      if (held.length > 0 && r < 0.4) {
        const [a] = held.splice(Math.floor(random() * held.length), 1);
        try {
          const r = await on(a!.node!).release(a!.id);
          released.push({ id: a!.id, seq: r!.seq });
          releaseMs.push(performance.now() - t0);
        } catch (error) {
          failed(error);
          unsettled.push({ id: a!.id, node: a!.node! }); // may or may not have happened: settled below
        }
      } else if (r < 0.55) {
        const name = input.names[Math.floor(random() * input.names.length)]!;
        try {
          const node = anyNode();
          const a = await on(node).allocate({ size: 1000, policy: { kind: 'first-fit' }, name });
          results.push(outcome('named', a, node, performance.now() - t0));
        } catch (error) {
          failed(error);
        }
      } else {
        const size = 1 + Math.floor(random() * 5000);
        const slot = random() < 0.2;
        const lease = random() < input.leased ? 'auto' : 'none';
        try {
          const node = anyNode();
          const a = await on(node).allocate({
            size: slot ? 65536 : size,
            policy: slot ? { kind: 'slot', slotSize: 65536 } : { kind: 'first-fit' },
            lease,
          });
          results.push(outcome('allocate', a, node, performance.now() - t0));
          held.push(a);
        } catch (error) {
          failed(error); // an allocation that failed is never used; an orphan is released below
        }
      }
    }
    // Settle: releases whose outcome was unknown, then the orphans of allocations whose answer
    // was lost (gc resolves this node's pending transactions first; nothing else is judged here
    // because no allocation of the load has a holder or a namespace).
    for (const { id, node } of unsettled) {
      for (let attempt = 0; ; attempt++) {
        try {
          const r = await on(node).release(id, { ifExists: true });
          retriedReleases++;
          released.push(r === undefined ? { id } : { id, seq: r.seq });
          break;
        } catch (error) {
          if (attempt >= 20) throw error;
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
      }
    }
    for (const registry of registries.values()) await registry.collectGarbage(async () => 'alive');
  } finally {
    for (const registry of registries.values()) registry.close();
  }
  return { nodes: input.nodes, results, released, releaseMs, errors, retriedReleases };
}

const input = JSON.parse(process.argv[2]!) as WorkerInput;
run(input).then(
  (output) => {
    process.stdout.write(`${JSON.stringify(output)}\n`);
  },
  (error: unknown) => {
    process.stderr.write(
      `worker ${input.nodes.join('+')}/${input.seed}: ${(error as Error).stack ?? String(error)}\n`,
    );
    process.exitCode = 1;
  },
);
