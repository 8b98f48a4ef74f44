import * as tf from '@tensorflow/tfjs-core';
import { RunContext, type SiteHook } from '../context.js';
import { batchTokens, type PairBatch } from '../data.js';
import { ErrorCodes, RelpError } from '../errors.js';
import { disposeAll } from '../memory.js';
import { logitDiff, type Metric, readMetric } from '../metrics.js';
import type { LanguageModel } from '../model.js';
import { EDGE_SITE_DEFS, type SiteKey } from '../sites.js';
import { downstreamRead, type EdgeGraph, edgeName, modelEdgeGraph, upstreamWrite } from './graph.js';
import { edgeUpstreamKeys, stackUpstream } from './matrix.js';
import type { EdgeScores } from './types.js';

/**
 * Edge circuits (docs/method.md §17): top-n selection, pruning to what connects the input to the logits,
 * evaluation with every edge outside the circuit ablated, faithfulness curves with MIB's CPR and CMD, and a JSON
 * export in EAP-IG's `Graph.to_json` layout.
 */

/** MIB's edge fractions: a circuit of int(f · edges) top edges per fraction f. */
export const MIB_EDGE_FRACTIONS: readonly number[] = [
  0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1,
];

/** A set of edges of a graph as [u, v] pairs. */
export interface EdgeSet {
  readonly graph: EdgeGraph;
  readonly edges: readonly (readonly [number, number])[];
}

/**
 * The n edges of a result with the largest |score| (`abs`) or score (`signed`), ties broken by the result's edge
 * order; non-finite scores are never selected. Per-position results are summed over positions.
 */
export function topEdges(result: EdgeScores, n: number, by: 'abs' | 'signed' = 'abs'): EdgeSet {
  if (!Number.isInteger(n) || n < 0) {
    throw new RelpError(ErrorCodes.BadInput, `top-n needs a whole number ≥ 0, got ${n}`);
  }
  const total = result.scores.map((s) => (typeof s === 'number' ? s : s.reduce((a, b) => a + b, 0)));
  const key = (i: number) => (by === 'abs' ? Math.abs(total[i]!) : total[i]!);
  const order = total
    .map((_, i) => i)
    .filter((i) => Number.isFinite(total[i]))
    .sort((a, b) => key(b) - key(a) || a - b);
  return { graph: result.graph, edges: order.slice(0, n).map((i) => result.index[i]!) };
}

/**
 * Greedy growth from the logits (EAP-IG's `apply_greedy`): the candidates start as the edges into `logits`; the
 * best candidate (largest |score| with `abs`, largest score with `signed`; ties by the result's edge order) joins
 * the circuit, and when its writer joins for the first time, the edges into that writer's inputs (a head's
 * query, key and value inputs — its key/value head's under grouped-query attention — or an MLP's input) become
 * candidates. So every chosen edge feeds the logits through chosen edges. Stops after n edges or when no
 * candidate is left. Per-position results are summed over positions; non-finite scores are never chosen.
 */
export function greedyEdges(result: EdgeScores, n: number, by: 'abs' | 'signed' = 'abs'): EdgeSet {
  if (!Number.isInteger(n) || n < 0) {
    throw new RelpError(ErrorCodes.BadInput, `greedy growth needs a whole number ≥ 0 of edges, got ${n}`);
  }
  const g = result.graph;
  const total = result.scores.map((s) => (typeof s === 'number' ? s : s.reduce((a, b) => a + b, 0)));
  const key = (i: number) => (by === 'abs' ? Math.abs(total[i]!) : total[i]!);
  // Result edges by reader, and readers by writer.
  const intoReader = new Map<number, number[]>();
  result.index.forEach(([, v], i) => {
    if (Number.isFinite(total[i])) intoReader.set(v, [...(intoReader.get(v) ?? []), i]);
  });
  const readersOf = new Map<number, number[]>();
  g.downstream.forEach((_, v) => {
    for (const w of writersOf(g, v)) readersOf.set(w, [...(readersOf.get(w) ?? []), v]);
  });
  const heap = new EdgeHeap((a, b) => key(a) - key(b) || b - a);
  const queued = new Set<number>();
  const offer = (v: number) => {
    for (const i of intoReader.get(v) ?? []) {
      if (!queued.has(i)) {
        queued.add(i);
        heap.push(i);
      }
    }
  };
  offer(g.downstream.length - 1);
  const inCircuit = new Set<number>();
  const chosen: (readonly [number, number])[] = [];
  while (chosen.length < n && heap.size > 0) {
    const i = heap.pop();
    const [u] = result.index[i]!;
    chosen.push(result.index[i]!);
    if (!inCircuit.has(u)) {
      inCircuit.add(u);
      for (const v of readersOf.get(u) ?? []) offer(v);
    }
  }
  return { graph: g, edges: chosen };
}

/** A binary max-heap of edge indices under `cmp` (positive: a before b). */
class EdgeHeap {
  private readonly items: number[] = [];
  constructor(private readonly cmp: (a: number, b: number) => number) {}
  get size(): number {
    return this.items.length;
  }
  push(x: number): void {
    const a = this.items;
    a.push(x);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.cmp(a[i]!, a[p]!) <= 0) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }
  pop(): number {
    const a = this.items;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.cmp(a[l]!, a[m]!) > 0) m = l;
        if (r < a.length && this.cmp(a[r]!, a[m]!) > 0) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}

/** The writer node (upstream index) a reader belongs to: several for a shared key/value head. */
function writersOf(g: EdgeGraph, v: number): number[] {
  const name = g.downstream[v]!;
  if (name === 'logits') return [];
  const read = downstreamRead(g, v);
  const per = g.nHeads + 1;
  const l = Number(/^[am](\d+)/.exec(name)![1]);
  if (name.startsWith('m')) return [1 + l * per + g.nHeads];
  if (name.endsWith('<q>')) return [1 + l * per + read.head!];
  const rep = g.nHeads / g.nKvHeads;
  return Array.from({ length: rep }, (_, i) => 1 + l * per + read.head! * rep + i);
}

/**
 * The edges of a set that lie on a path from `input` to `logits` through the set (EAP-IG's pruning): a node
 * with no incoming edge from a connected node (the input excepted), or with no outgoing edge towards the logits,
 * is dropped with its edges.
 */
export function pruneEdges(set: EdgeSet): EdgeSet {
  const g = set.graph;
  const reached = new Array<boolean>(g.upstream.length).fill(false);
  reached[0] = true;
  const into = new Map<number, number[]>();
  for (const [u, v] of set.edges) into.set(v, [...(into.get(v) ?? []), u]);
  // Writers in graph order: every reader of a writer reads only earlier writers.
  const readersOf = new Map<number, number[]>();
  g.downstream.forEach((_, v) => {
    for (const w of writersOf(g, v)) readersOf.set(w, [...(readersOf.get(w) ?? []), v]);
  });
  for (let w = 1; w < g.upstream.length; w++) {
    reached[w] = (readersOf.get(w) ?? []).some((v) => (into.get(v) ?? []).some((u) => reached[u]));
  }
  const useful = new Array<boolean>(g.upstream.length).fill(false);
  const logits = g.downstream.length - 1;
  const usefulReader = (v: number) => v === logits || writersOf(g, v).some((w) => useful[w]);
  const outOf = new Map<number, number[]>();
  for (const [u, v] of set.edges) outOf.set(u, [...(outOf.get(u) ?? []), v]);
  for (let w = g.upstream.length - 1; w >= 0; w--) useful[w] = (outOf.get(w) ?? []).some(usefulReader);
  return { graph: g, edges: set.edges.filter(([u, v]) => reached[u] && useful[u] && usefulReader(v)) };
}

/** The nodes a pruned set keeps (writers with an edge, and readers' nodes), in graph order, plus logits. */
export function edgeSetNodes(set: EdgeSet): string[] {
  const g = set.graph;
  const on = new Set<number>();
  for (const [u, v] of set.edges) {
    on.add(u);
    for (const w of writersOf(g, v)) on.add(w);
  }
  return [...g.upstream.filter((_, u) => on.has(u)), 'logits'];
}

export interface EdgeAblationOptions {
  /** What an ablated edge carries instead: the corrupt run's activation (default), or its mean over clean prompts. */
  readonly ablation?: 'corrupt' | 'mean';
  readonly metric?: Metric;
  readonly signal?: AbortSignal;
}

/**
 * The metric of clean runs in which every edge outside each set is ablated: each reader v's input becomes its
 * input in that run plus Σ over ablated edges u→v of (a_u,ablated − a_u in that run), on v's head (docs/method.md
 * §17). `null` stands for the full model (nothing ablated). One forward pass per set.
 */
export async function evaluateEdgeSets(
  model: LanguageModel,
  batch: PairBatch,
  sets: readonly (EdgeSet | null)[],
  options: EdgeAblationOptions = {},
): Promise<number[]> {
  const metric = options.metric ?? logitDiff;
  const ablation = options.ablation ?? 'corrupt';
  if (ablation !== 'corrupt' && ablation !== 'mean') {
    throw new RelpError(ErrorCodes.BadInput, `unknown ablation '${String(ablation)}': use corrupt or mean`);
  }
  const g = modelEdgeGraph(model);
  for (const s of sets) {
    if (s !== null && s.graph.upstream.length !== g.upstream.length) {
      throw new RelpError(ErrorCodes.BadInput, 'an edge set of another model’s graph');
    }
  }
  const readout = metric.readout === 'last' ? [...batch.lastPositions] : undefined;
  const up = edgeUpstreamKeys(g);
  const clean = batchTokens(batch, 'clean');
  let values: tf.Tensor4D | undefined;
  try {
    values = await ablationValues(model, batch, g, up, ablation, readout);
    const out: number[] = [];
    for (const set of sets) {
      out.push(await ablatedMetric(model, batch, g, up, set, values, clean, metric, readout, options.signal));
    }
    return out;
  } finally {
    clean.dispose();
    values?.dispose();
  }
}

/** The upstream nodes' ablation values [B,T,n_up,d]: the corrupt run's, or the clean prompts' mean per position. */
async function ablationValues(
  model: LanguageModel,
  batch: PairBatch,
  g: EdgeGraph,
  up: readonly SiteKey[],
  ablation: 'corrupt' | 'mean',
  readout: number[] | undefined,
): Promise<tf.Tensor4D> {
  const ctx = new RunContext({ cache: up, extraSites: EDGE_SITE_DEFS });
  const tokens = batchTokens(batch, ablation === 'corrupt' ? 'corrupt' : 'clean');
  try {
    tf.tidy(() => {
      model.forward({ tokens }, ctx, { readout });
    });
    const cache = ctx.takeCache();
    try {
      return tf.tidy(() => {
        const all = stackUpstream(g, cache);
        if (ablation === 'corrupt') return all;
        // Mean over the prompts long enough to have each position.
        const T = batch.seqLen;
        const has = batch.lastPositions.map((last) =>
          Array.from({ length: T }, (_, p) => (p <= last ? 1 : 0)),
        );
        const w = tf.tensor2d(has, [batch.size, T]);
        const counts = tf.maximum(tf.sum(w, 0), 1);
        const mean = tf.div(
          tf.sum(tf.mul(all, tf.reshape(w, [batch.size, T, 1, 1])), 0),
          tf.reshape(counts, [T, 1, 1]),
        );
        return tf.tile(tf.expandDims(mean, 0), [batch.size, 1, 1, 1]) as tf.Tensor4D;
      });
    } finally {
      disposeAll(cache);
    }
  } finally {
    tokens.dispose();
    ctx.dispose();
  }
}

async function ablatedMetric(
  model: LanguageModel,
  batch: PairBatch,
  g: EdgeGraph,
  up: readonly SiteKey[],
  set: EdgeSet | null,
  values: tf.Tensor4D,
  tokens: tf.Tensor2D,
  metric: Metric,
  readout: number[] | undefined,
  signal: AbortSignal | undefined,
): Promise<number> {
  const hooks = new Map<SiteKey, SiteHook[]>();
  // The current run's upstream activations, kept past each block's tidy until the run ends.
  const current = new Map<SiteKey, tf.Tensor>();
  if (set !== null) {
    const kept = new Set(set.edges.map(([u, v]) => u * g.downstream.length + v));
    for (const key of up) {
      hooks.set(key, [
        (x) => {
          current.set(key, tf.keep(x));
          return x;
        },
      ]);
    }
    const readers = new Map<SiteKey, number[]>();
    g.downstream.forEach((_, v) => {
      const k = downstreamRead(g, v).key;
      readers.set(k, [...(readers.get(k) ?? []), v]);
    });
    for (const [key, vs] of readers) {
      const n = g.prev[vs[0]!]!;
      // ablate[u][j]: 1 where the edge u → vs[j] is not in the set.
      const mask = new Float32Array(n * vs.length);
      for (let u = 0; u < n; u++) {
        vs.forEach((v, j) => {
          if (!kept.has(u * g.downstream.length + v)) mask[u * vs.length + j] = 1;
        });
      }
      const hook: SiteHook = (x) =>
        tf.tidy(() => {
          const writers = new Map<SiteKey, tf.Tensor>();
          for (let u = 0; u < n; u++)
            writers.set(upstreamWrite(g, u).key, current.get(upstreamWrite(g, u).key)!);
          const keys = up.filter((k) => writers.has(k));
          const now = tf.concat(
            keys.map((k) => {
              const t = writers.get(k)!;
              return t.rank === 3 ? tf.expandDims(t, 2) : t;
            }),
            2,
          );
          const [b, t, , d] = now.shape as [number, number, number, number];
          const diff = tf.sub(tf.slice(values, [0, 0, 0, 0], [b, t, n, d]), now);
          // [B,T,d,n] · [n, readers] → [B,T,readers,d]
          const m = tf.tensor2d(mask, [n, vs.length]);
          const add = tf.transpose(
            tf.reshape(tf.matMul(tf.reshape(tf.transpose(diff, [0, 1, 3, 2]), [b * t * d, n]), m), [
              b,
              t,
              d,
              vs.length,
            ]),
            [0, 1, 3, 2],
          );
          return tf.add(x, x.rank === 4 ? add : tf.reshape(add, x.shape));
        });
      hooks.set(key, [...(hooks.get(key) ?? []), hook]);
    }
  }
  const ctx = new RunContext({ hooks, extraSites: EDGE_SITE_DEFS, ...(signal ? { signal } : {}) });
  try {
    const m = tf.tidy(() => metric.compute(model.forward({ tokens }, ctx, { readout }), batch));
    return await readMetric(m, metric, 'clean').finally(() => m.dispose());
  } finally {
    ctx.dispose();
    disposeAll(current);
  }
}

export interface EdgeCircuitCurve {
  readonly fractions: readonly number[];
  /** The edges requested per fraction (int(f · edges)) and kept after pruning. */
  readonly requested: readonly number[];
  readonly kept: readonly number[];
  readonly faithfulness: readonly number[];
  /** m(full model) and m(every edge ablated). */
  readonly full: number;
  readonly empty: number;
  /** MIB's CPR: the area under faithfulness over the fractions (trapezoids, linear axis); higher is better. */
  readonly cpr: number;
  /** MIB's CMD: the area under |1 − faithfulness|; lower is better. */
  readonly cmd: number;
}

/**
 * Faithfulness of the top-n pruned edge circuits over MIB's edge fractions: faithfulness(C) = (m(C) − m(∅)) /
 * (m(M) − m(∅)), with m(M) the clean run and m(∅) every edge ablated; CPR and CMD as MIB computes them.
 */
export async function edgeCircuitCurve(
  model: LanguageModel,
  batch: PairBatch,
  result: EdgeScores,
  options: EdgeAblationOptions & {
    readonly fractions?: readonly number[];
    readonly by?: 'abs' | 'signed';
    /** How a circuit of n edges is chosen: the top n (default) or greedy growth from the logits. */
    readonly select?: 'top' | 'greedy';
  } = {},
): Promise<EdgeCircuitCurve> {
  const fractions = options.fractions ?? MIB_EDGE_FRACTIONS;
  if (
    fractions.length < 2 ||
    fractions.some((f, i) => !(f > 0 && f <= 1) || (i > 0 && f <= fractions[i - 1]!))
  ) {
    throw new RelpError(ErrorCodes.BadInput, 'fractions must be at least two increasing numbers in (0, 1]');
  }
  const total = result.graph.nEdges;
  const requested = fractions.map((f) => Math.floor(f * total));
  const choose = options.select === 'greedy' ? greedyEdges : topEdges;
  const sets = requested.map((n) => pruneEdges(choose(result, n, options.by)));
  const empty: EdgeSet = { graph: result.graph, edges: [] };
  const [full, none, ...ms] = await evaluateEdgeSets(model, batch, [null, empty, ...sets], options);
  const span = full! - none!;
  const faithfulness = ms.map((m) => (m - none!) / span);
  let cpr = 0;
  let cmd = 0;
  for (let i = 0; i + 1 < fractions.length; i++) {
    const w = fractions[i + 1]! - fractions[i]!;
    cpr += (w * (faithfulness[i]! + faithfulness[i + 1]!)) / 2;
    cmd += (w * (Math.abs(1 - faithfulness[i]!) + Math.abs(1 - faithfulness[i + 1]!))) / 2;
  }
  return {
    fractions,
    requested,
    kept: sets.map((s) => s.edges.length),
    faithfulness,
    full: full!,
    empty: none!,
    cpr,
    cmd,
  };
}

/** EAP-IG's `Graph.to_json` layout: cfg, nodes {name: {in_graph}}, edges {name: {score, in_graph}}. */
export interface EapGraphJson {
  readonly cfg: {
    readonly n_layers: number;
    readonly n_heads: number;
    readonly n_key_value_heads: number;
    readonly parallel_attn_mlp: boolean;
    readonly d_model: number;
  };
  readonly nodes: Record<string, { in_graph: boolean }>;
  readonly edges: Record<string, { score: number; in_graph: boolean }>;
}

/**
 * A result (every edge scored) as EAP-IG's JSON, with `circuit` (default: none) marking edges and nodes in
 * the graph. Unscored edges are refused (BAD_INPUT): EAP-IG's files list every edge.
 */
export function edgeGraphJson(result: EdgeScores, dModel: number, circuit?: EdgeSet): EapGraphJson {
  const g = result.graph;
  if (result.edges.length !== g.nEdges) {
    throw new RelpError(
      ErrorCodes.BadInput,
      `the JSON lists every edge: ${result.edges.length} of ${g.nEdges} edges are scored`,
    );
  }
  const inSet = new Set((circuit?.edges ?? []).map(([u, v]) => edgeName(g, u, v)));
  const nodesIn = new Set(circuit ? edgeSetNodes(circuit) : []);
  const nodes: Record<string, { in_graph: boolean }> = {};
  for (const n of [...g.upstream, 'logits']) nodes[n] = { in_graph: n === 'logits' || nodesIn.has(n) };
  const edges: Record<string, { score: number; in_graph: boolean }> = {};
  result.edges.forEach((name, i) => {
    const s = result.scores[i]!;
    edges[name] = {
      score: typeof s === 'number' ? s : s.reduce((a, b) => a + b, 0),
      in_graph: inSet.has(name),
    };
  });
  return {
    cfg: {
      n_layers: g.nLayers,
      n_heads: g.nHeads,
      n_key_value_heads: g.nKvHeads,
      parallel_attn_mlp: g.parallel,
      d_model: dModel,
    },
    nodes,
    edges,
  };
}
