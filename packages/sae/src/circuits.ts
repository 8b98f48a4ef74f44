import {
  badInput,
  batchTokens,
  type LanguageModel,
  logitDiff,
  type Metric,
  type PairBatch,
  type Patch,
  type Progress,
  parseSiteKey,
  RunContext,
  readMetric,
  type SiteKey,
} from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';
import type { FeatureAttributionResult, PositionMode } from './attribution.js';
import type { SparseAutoencoder } from './sae.js';
import { checkSaes, type SaeNodeOptions, SaeSplice } from './splice.js';

/**
 * A node of a sparse feature circuit: one SAE feature, or the SAE's error term, at a site; at one position, or
 * (position undefined) at every position.
 */
export interface FeatureNode {
  readonly key: SiteKey;
  readonly kind: 'feature' | 'error';
  /** Feature index (0 for the error). */
  readonly index: number;
  readonly position?: number;
}

export interface ScoredFeatureNode extends FeatureNode {
  readonly score: number;
}

/** "resid_post.3/f123", "resid_post.3/err", with "@5" for a position. */
export function featureNodeId(n: FeatureNode): string {
  return `${n.key}/${n.kind === 'error' ? 'err' : `f${n.index}`}${n.position === undefined ? '' : `@${n.position}`}`;
}

/** Every feature and error node of an attribution result, with its score (the node universe). */
export function featureNodesFromResult(result: FeatureAttributionResult): ScoredFeatureNode[] {
  const out: ScoredFeatureNode[] = [];
  for (const s of result.sites) {
    if (result.positions === 'sum') {
      (s.features as number[]).forEach((score, index) => {
        out.push({ key: s.key, kind: 'feature', index, score });
      });
      out.push({ key: s.key, kind: 'error', index: 0, score: s.error as number });
    } else {
      (s.features as number[][]).forEach((row, position) => {
        row.forEach((score, index) => {
          out.push({ key: s.key, kind: 'feature', index, position, score });
        });
        out.push({ key: s.key, kind: 'error', index: 0, position, score: (s.error as number[])[position]! });
      });
    }
  }
  return out;
}

export interface FeatureSelect {
  /** `threshold`: |score| (or score) ≥ value; `top-k`: the value largest. */
  readonly mode: 'threshold' | 'top-k';
  readonly value: number;
  readonly by?: 'abs' | 'signed';
}

/** Selects a circuit from scored nodes (ties in top-k broken by the nodes' order). */
export function selectFeatureNodes(
  nodes: readonly ScoredFeatureNode[],
  options: FeatureSelect,
): ScoredFeatureNode[] {
  const by = options.by ?? 'abs';
  if (by !== 'abs' && by !== 'signed')
    throw badInput(`node selection by '${String(by)}': choose abs or signed`);
  const k = (n: ScoredFeatureNode) => (by === 'abs' ? Math.abs(n.score) : n.score);
  if (options.mode === 'threshold') {
    if (!Number.isFinite(options.value)) throw badInput(`threshold must be finite (got ${options.value})`);
    return nodes.filter((n) => Number.isFinite(n.score) && k(n) >= options.value);
  }
  if (options.mode === 'top-k') {
    if (!Number.isInteger(options.value) || options.value < 0)
      throw badInput(`top-k needs a non-negative integer (got ${options.value})`);
    return nodes
      .map((n, i) => [n, i] as const)
      .filter(([n]) => Number.isFinite(n.score))
      .sort((a, b) => k(b[0]) - k(a[0]) || a[1] - b[1])
      .slice(0, options.value)
      .map(([n]) => n);
  }
  throw badInput(`unknown selection mode '${String(options.mode)}': choose threshold or top-k`);
}

export interface FeatureCircuitEvaluation {
  readonly nodes: number;
  /** m(C): every node outside C mean-ablated. */
  readonly mCircuit: number;
  /** m(M∖C): C mean-ablated. */
  readonly mComplement: number;
  /** (m(C) − m(∅)) / (m(M) − m(∅)). */
  readonly faithfulness: number;
  /** (m(M∖C) − m(∅)) / (m(M) − m(∅)): near 0 for a complete circuit. */
  readonly completeness: number;
}

export interface FeatureCircuitEvalOptions {
  /** Nodes per feature summed over positions (default) or per position. */
  readonly positions?: PositionMode;
  readonly metric?: Metric;
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: Progress) => void;
}

interface SlotMeans {
  readonly sae: SparseAutoencoder;
  /** [1, T_test, dSae] and [1, T_test, dIn]: the discovery set's means, aligned to the evaluation batch. */
  readonly features: tf.Tensor;
  readonly error: tf.Tensor;
}

/**
 * Faithfulness and completeness of sparse feature circuits (Marks et al. 2024; METHOD.md §6). The node universe is
 * every feature and error node of the SAEs; ablated nodes take their mean over the discovery set's clean prompts
 * (per position, over the prompts long enough to have it; positions of the evaluation batch beyond the
 * discovery set's longest prompt take the mean over all its tokens). Runs are on the evaluation batch's clean
 * prompts. m(M) is the run with nothing ablated (the model itself: the splice is exact), m(∅) the run with every
 * node ablated. Each `evaluate` costs two forward passes.
 */
export class FeatureCircuitEvaluator {
  private readonly slots = new Map<SiteKey, SlotMeans>();
  private readonly tokens: tf.Tensor2D;
  private readonly readout: number[] | undefined;
  mFull = Number.NaN;
  mEmpty = Number.NaN;
  forwardPasses = 0;

  private constructor(
    readonly model: LanguageModel,
    readonly batch: PairBatch,
    readonly saes: ReadonlyMap<SiteKey, SparseAutoencoder>,
    readonly positions: PositionMode,
    readonly metric: Metric,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.tokens = batchTokens(batch, 'clean');
    this.readout = metric.readout === 'last' ? [...batch.lastPositions] : undefined;
  }

  /** `discovery`: where the means come from; `evaluation`: the held-out pairs the circuit is scored on. */
  static async create(
    model: LanguageModel,
    discovery: PairBatch,
    evaluation: PairBatch,
    saes: readonly SparseAutoencoder[],
    options: FeatureCircuitEvalOptions = {},
  ): Promise<FeatureCircuitEvaluator> {
    const positions = options.positions ?? 'sum';
    if (positions !== 'sum' && positions !== 'each') throw badInput(`positions must be 'sum' or 'each'`);
    const bySite = checkSaes(model, saes);
    const ev = new FeatureCircuitEvaluator(
      model,
      evaluation,
      bySite,
      positions,
      options.metric ?? logitDiff,
      options.signal,
    );
    try {
      await ev.computeMeans(discovery);
      ev.mFull = await ev.run(() => false);
      ev.mEmpty = await ev.run(() => true);
    } catch (e) {
      ev.dispose();
      throw e;
    }
    return ev;
  }

  private async computeMeans(discovery: PairBatch): Promise<void> {
    const tokens = batchTokens(discovery, 'clean');
    const splice = new SaeSplice(this.saes, new Map([...this.saes.keys()].map((k) => [k, { cache: true }])));
    const ctx = new RunContext({ hooks: splice.hooks(), signal: this.signal });
    try {
      tf.tidy(() => {
        this.model.forward({ tokens }, ctx, {
          readout: this.metric.readout === 'last' ? [...discovery.lastPositions] : undefined,
        });
      });
      this.forwardPasses++;
      splice.assertAllVisited();
      const acts = splice.takeCache();
      const T = this.batch.seqLen;
      for (const [key, a] of acts) {
        const [features, error] = tf.tidy(() => [
          alignedMean(a.features, discovery, T),
          alignedMean(a.error, discovery, T),
        ]);
        tf.dispose([a.features, a.error]);
        this.slots.set(key, {
          sae: this.saes.get(key)!,
          features: tf.keep(features!),
          error: tf.keep(error!),
        });
      }
    } finally {
      ctx.dispose();
      splice.dispose();
      tokens.dispose();
    }
  }

  /** The metric on the evaluation batch with the nodes for which `ablated` holds mean-ablated. */
  private async run(ablated: (n: FeatureNode) => boolean): Promise<number> {
    const T = this.batch.seqLen;
    const P = this.positions === 'each' ? T : 1;
    const owned: tf.Tensor[] = [];
    const nodes = new Map<SiteKey, SaeNodeOptions>();
    try {
      for (const [key, slot] of this.slots) {
        const F = slot.sae.dSae;
        const fm = new Uint8Array(P * F);
        const em = new Uint8Array(P);
        let any = false;
        for (let p = 0; p < P; p++) {
          const position = this.positions === 'each' ? p : undefined;
          for (let i = 0; i < F; i++) {
            if (
              ablated({ key, kind: 'feature', index: i, ...(position === undefined ? {} : { position }) })
            ) {
              fm[p * F + i] = 1;
              any = true;
            }
          }
          if (ablated({ key, kind: 'error', index: 0, ...(position === undefined ? {} : { position }) })) {
            em[p] = 1;
            any = true;
          }
        }
        if (!any) continue;
        const fMask = tf.tensor3d(fm, [1, P, F], 'bool');
        const eMask = tf.tensor3d(em, [1, P, 1], 'bool');
        owned.push(fMask, eMask);
        const fp: Patch = { mask: fMask, value: slot.features };
        const ep: Patch = { mask: eMask, value: slot.error };
        nodes.set(key, { featurePatches: [fp], errorPatches: [ep] });
      }
      const splice = new SaeSplice(this.saes, nodes);
      const ctx = new RunContext({ hooks: splice.hooks(), signal: this.signal });
      try {
        const value = tf.tidy(() =>
          this.metric.compute(
            this.model.forward({ tokens: this.tokens }, ctx, { readout: this.readout }),
            this.batch,
          ),
        );
        this.forwardPasses++;
        return await readMetric(value, this.metric, 'ablated').finally(() => value.dispose());
      } finally {
        ctx.dispose();
        splice.dispose();
      }
    } finally {
      tf.dispose(owned);
    }
  }

  /** Every node the evaluator ablates: features and errors of each SAE (per position of the evaluation batch). */
  universe(): FeatureNode[] {
    const out: FeatureNode[] = [];
    const ps =
      this.positions === 'each' ? Array.from({ length: this.batch.seqLen }, (_, t) => t) : [undefined];
    for (const [key, slot] of this.slots) {
      for (const p of ps) {
        const at = p === undefined ? {} : { position: p };
        for (let i = 0; i < slot.sae.dSae; i++) out.push({ key, kind: 'feature', index: i, ...at });
        out.push({ key, kind: 'error', index: 0, ...at });
      }
    }
    return out;
  }

  /** m(C), m(M∖C), faithfulness and completeness of a circuit. */
  async evaluate(circuit: Iterable<FeatureNode>): Promise<FeatureCircuitEvaluation> {
    const ids = new Set<string>();
    for (const n of circuit) {
      const slot = this.slots.get(n.key);
      if (!slot) throw badInput(`node ${featureNodeId(n)}: no SAE at ${n.key}`);
      if ((n.position === undefined) !== (this.positions === 'sum')) {
        throw badInput(
          `node ${featureNodeId(n)}: the evaluator's nodes are ${this.positions === 'sum' ? 'summed over positions' : 'per position'}`,
        );
      }
      if (n.kind === 'feature' && (!Number.isInteger(n.index) || n.index < 0 || n.index >= slot.sae.dSae)) {
        throw badInput(`node ${featureNodeId(n)}: feature outside 0..${slot.sae.dSae - 1}`);
      }
      if (n.position !== undefined && (n.position < 0 || n.position >= this.batch.seqLen)) {
        throw badInput(`node ${featureNodeId(n)}: position outside 0..${this.batch.seqLen - 1}`);
      }
      ids.add(featureNodeId(n.kind === 'error' ? { ...n, index: 0 } : n));
    }
    const inC = (n: FeatureNode) => ids.has(featureNodeId(n));
    const mCircuit = await this.run((n) => !inC(n));
    const mComplement = await this.run(inC);
    const span = this.mFull - this.mEmpty;
    const norm = (m: number) => (span === 0 ? Number.NaN : (m - this.mEmpty) / span);
    return {
      nodes: ids.size,
      mCircuit,
      mComplement,
      faithfulness: norm(mCircuit),
      completeness: norm(mComplement),
    };
  }

  dispose(): void {
    this.tokens.dispose();
    for (const s of this.slots.values()) tf.dispose([s.features, s.error]);
    this.slots.clear();
  }
}

/**
 * Mean of x [B,T,d] over the prompts of `batch` per position (rows shorter than a position do not count), as
 * [1,T_out,d]; positions ≥ T (or that no prompt reaches) take the mean over every real token.
 */
function alignedMean(x: tf.Tensor, batch: PairBatch, tOut: number): tf.Tensor {
  const { size, seqLen, lastPositions } = batch;
  const w = new Float32Array(size * seqLen);
  for (let b = 0; b < size; b++) for (let t = 0; t <= lastPositions[b]!; t++) w[b * seqLen + t] = 1;
  const wt = tf.tensor3d(w, [size, seqLen, 1]);
  const num = tf.sum(tf.mul(x, wt), 0, true); // [1,T,d]
  const den = tf.sum(wt, 0, true); // [1,T,1]
  const perPos = tf.div(num, tf.maximum(den, 1));
  const overall = tf.div(tf.sum(num, 1, true), tf.maximum(tf.sum(den, 1, true), 1)); // [1,1,d]
  const counts = den.dataSync();
  const parts: tf.Tensor[] = [];
  for (let t = 0; t < tOut; t++) {
    parts.push(t < seqLen && counts[t]! > 0 ? tf.slice(perPos, [0, t, 0], [1, 1, -1]) : overall);
  }
  return tf.concat(parts, 1);
}

export interface FeatureSweepPoint extends FeatureCircuitEvaluation {
  /** The threshold (threshold sweeps) or k (top-k sweeps). */
  readonly threshold: number;
}

/**
 * The curve against the number of nodes: each threshold (or k) selects a circuit, evaluated by faithfulness and
 * completeness; a selection equal to the previous one reuses its evaluation.
 */
export async function sweepFeatureCircuits(
  evaluator: FeatureCircuitEvaluator,
  scored: readonly ScoredFeatureNode[],
  values: readonly number[],
  options: { mode?: 'threshold' | 'top-k'; by?: 'abs' | 'signed'; onProgress?: (p: Progress) => void } = {},
): Promise<FeatureSweepPoint[]> {
  const out: FeatureSweepPoint[] = [];
  let prevKey = '';
  let prev: FeatureCircuitEvaluation | undefined;
  for (const [i, value] of values.entries()) {
    const nodes = selectFeatureNodes(scored, {
      mode: options.mode ?? 'threshold',
      value,
      by: options.by ?? 'abs',
    });
    const key = nodes.map(featureNodeId).join(',');
    const ev = key === prevKey && prev ? prev : await evaluator.evaluate(nodes);
    prevKey = key;
    prev = ev;
    out.push({ threshold: value, ...ev });
    options.onProgress?.({ phase: 'circuits', done: i + 1, total: values.length });
  }
  return out;
}

/** One top-activating context of a feature: tokens of a text window, the position, the activation. */
export interface FeatureContext {
  readonly tokens: readonly string[];
  readonly position: number;
  readonly activation: number;
}

/**
 * The feature circuit as a Graphviz digraph: one cluster per SAE site (in layer order), one box per node (red for
 * positive, blue for negative scores, darker for larger |score|), the error nodes as ellipses, the feature's top
 * context (the token in brackets) in its label, and edges from each site's nodes to the next site's (node-level
 * circuits carry no edge weights; edges show the direction information can flow).
 */
export function featureCircuitToDot(
  nodes: readonly ScoredFeatureNode[],
  options: {
    title?: string;
    contexts?: ReadonlyMap<string, readonly FeatureContext[]>;
    tokenLabels?: readonly string[];
    maxEdges?: number;
  } = {},
): string {
  const order: Record<string, number> = {
    resid_pre: 0,
    attn_out: 1,
    resid_mid: 2,
    mlp_out: 3,
    resid_post: 4,
  };
  const rank = (k: SiteKey) => {
    const { site, layer } = parseSiteKey(k);
    return layer * 10 + (order[site] ?? 5);
  };
  const esc = (s: string) => s.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n');
  const maxAbs = Math.max(1e-30, ...nodes.map((n) => Math.abs(n.score)));
  const lines = [
    'digraph features {',
    '  rankdir=BT;',
    '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
  ];
  if (options.title) lines.push(`  label="${esc(options.title)}"; labelloc=t;`);
  const bySite = new Map<SiteKey, ScoredFeatureNode[]>();
  for (const n of nodes) bySite.set(n.key, [...(bySite.get(n.key) ?? []), n]);
  const sites = [...bySite.keys()].sort((a, b) => rank(a) - rank(b));
  sites.forEach((key, i) => {
    lines.push(`  subgraph cluster_${i} {`, `    label="${esc(key)}"; color="#cccccc";`);
    for (const n of bySite.get(key)!) {
      const t = Math.abs(n.score) / maxAbs;
      const hex = Math.round(255 - 180 * t)
        .toString(16)
        .padStart(2, '0');
      const fill = n.score >= 0 ? `#ff${hex}${hex}` : `#${hex}${hex}ff`;
      const pos =
        n.position === undefined
          ? ''
          : ` @${n.position}${options.tokenLabels?.[n.position] !== undefined ? ` ${JSON.stringify(options.tokenLabels[n.position])}` : ''}`;
      let label = `${n.kind === 'error' ? 'error' : `f${n.index}`}${pos}\\n${n.score.toPrecision(3)}`;
      const ctx = options.contexts?.get(featureNodeId({ ...n, position: undefined } as FeatureNode))?.[0];
      if (ctx && n.kind === 'feature') {
        const lo = Math.max(0, ctx.position - 6);
        const text = ctx.tokens
          .slice(lo, ctx.position + 2)
          .map((tok, j) => (lo + j === ctx.position ? `[${tok}]` : tok))
          .join('');
        label += `\\n${esc(text.replaceAll('\n', ' ').slice(0, 60))}`;
      }
      const shape = n.kind === 'error' ? ', shape=ellipse' : '';
      lines.push(`    "${esc(featureNodeId(n))}" [label="${label}", fillcolor="${fill}"${shape}];`);
    }
    lines.push('  }');
  });
  const maxEdges = options.maxEdges ?? 1500;
  let edges = 0;
  outer: for (let i = 0; i + 1 < sites.length; i++) {
    for (const a of bySite.get(sites[i]!)!) {
      for (const b of bySite.get(sites[i + 1]!)!) {
        if (a.position !== undefined && b.position !== undefined && b.position < a.position) continue;
        if (edges++ >= maxEdges) break outer;
        lines.push(`  "${esc(featureNodeId(a))}" -> "${esc(featureNodeId(b))}" [color="#99999980"];`);
      }
    }
  }
  lines.push('}', '');
  return lines.join('\n');
}
