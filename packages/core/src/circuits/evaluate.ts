import * as tf from '@tensorflow/tfjs-core';
import type { Progress } from '../attribution/types.js';
import { type Patch, RunContext, type SiteHook } from '../context.js';
import { batchTokens, type PairBatch } from '../data.js';
import { badInput, ErrorCodes, RelpError } from '../errors.js';
import { logitDiff, type Metric, readMetric } from '../metrics.js';
import type { LanguageModel } from '../model.js';
import {
  findSite,
  isModelSite,
  type SiteDef,
  type SiteKey,
  type SiteName,
  siteKey,
  unitGranularities,
} from '../sites.js';
import { type CircuitNode, nodeId, nodeKey, type SelectBy, selectNodes } from './nodes.js';

/**
 * How nodes outside the kept set are ablated: to their mean over the data set (per position, over the clean
 * prompts; the default of Marks et al.), or to their value on each pair's corrupt prompt.
 */
export type Ablation = 'mean' | 'corrupt';

export interface CircuitEvalOptions {
  readonly ablation?: Ablation;
  /** Default: logit difference at the last position. */
  readonly metric?: Metric;
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: Progress) => void;
  /** Run-time sites the nodes may sit at (e.g. an SAE's features), visited by `hooks`. */
  readonly extraSites?: readonly SiteDef[];
  /** Hooks in every run (before the ablation patches' sites are read), e.g. an SAE splice. */
  readonly hooks?: ReadonlyMap<SiteKey, readonly SiteHook[]>;
  /**
   * Mean ablation: take the means over this batch's clean prompts (a discovery split) instead of the evaluated
   * batch's. Positions of the evaluated batch beyond its longest prompt take its mean over every real token.
   */
  readonly meansFrom?: PairBatch;
}

export interface CircuitEvaluation {
  readonly nodes: number;
  /** m(C): everything in the universe outside C ablated. */
  readonly mCircuit: number;
  /** m(M∖C): C itself ablated. */
  readonly mComplement: number;
  /** (m(C) − m(∅)) / (m(M) − m(∅)); NaN when m(M) = m(∅). */
  readonly faithfulness: number;
  /** (m(M∖C) − m(∅)) / (m(M) − m(∅)): near 0 for a complete circuit. */
  readonly completeness: number;
}

interface SiteSlot {
  readonly site: string;
  readonly layer: number;
  readonly key: SiteKey;
  /** Mask shape [1, T, …] and the number of cells in it. */
  readonly maskShape: number[];
  readonly cells: number;
  /** Whether nodes at this site carry a unit (head, neuron or feature) index, at axis 2 after position. */
  readonly perUnit: boolean;
  /** The ablation value, [1,T,…] (mean) or [B,T,…] (corrupt). Kept. */
  value: tf.Tensor | undefined;
}

/**
 * Evaluates circuits over a fixed node universe (docs/method.md §14). The model runs on the clean prompts with
 * RunContext patches replacing every ablated node by its ablation value; m(M) is the clean run, m(∅) the run with
 * every node of the universe ablated. Construction caches the ablation values and computes m(M) and m(∅);
 * each `evaluate` costs two forward passes (C kept, C ablated). Call `dispose` when done.
 */
export class CircuitEvaluator {
  private readonly slots = new Map<SiteKey, SiteSlot>();
  private readonly tokens: tf.Tensor2D;
  private readonly readout: number[] | undefined;
  private readonly universeIds: Set<string>;
  /** nodeId of each universe node, in order (a run looks every node up). */
  private readonly ids: readonly string[];
  mFull = Number.NaN;
  mEmpty = Number.NaN;
  forwardPasses = 0;

  private constructor(
    readonly model: LanguageModel,
    readonly batch: PairBatch,
    readonly universe: readonly CircuitNode[],
    readonly ablation: Ablation,
    readonly metric: Metric,
    private readonly signal: AbortSignal | undefined,
    private readonly extraSites: readonly SiteDef[],
    private readonly hooks: ReadonlyMap<SiteKey, readonly SiteHook[]> | undefined,
    private readonly meansFrom: PairBatch | undefined,
  ) {
    this.tokens = batchTokens(batch, 'clean');
    this.readout = metric.readout === 'last' ? [...batch.lastPositions] : undefined;
    this.ids = universe.map(nodeId);
    this.universeIds = new Set(this.ids);
  }

  static async create(
    model: LanguageModel,
    batch: PairBatch,
    universe: readonly CircuitNode[],
    options: CircuitEvalOptions = {},
  ): Promise<CircuitEvaluator> {
    const ablation = options.ablation ?? 'mean';
    if (ablation !== 'mean' && ablation !== 'corrupt') {
      throw badInput(`unknown ablation '${String(ablation)}': choose mean or corrupt`);
    }
    if (universe.length === 0) throw badInput('the node universe is empty');
    const ev = new CircuitEvaluator(
      model,
      batch,
      universe,
      ablation,
      options.metric ?? logitDiff,
      options.signal,
      options.extraSites ?? [],
      options.hooks,
      options.meansFrom,
    );
    try {
      ev.planSlots();
      await ev.computeAblationValues();
      ev.mFull = await ev.run(new Set());
      ev.mEmpty = await ev.run(ev.universeIds);
    } catch (e) {
      ev.dispose();
      throw e;
    }
    return ev;
  }

  private planSlots(): void {
    const T = this.batch.seqLen;
    for (const n of this.universe) {
      const def = findSite(n.site, this.extraSites);
      if (def === undefined || (isModelSite(def) && !this.model.sites.includes(def.name as SiteName))) {
        throw new RelpError(
          ErrorCodes.UnknownSite,
          `site '${n.site}' does not exist in ${this.model.architecture}`,
          {
            details: { site: n.site },
          },
        );
      }
      if (!def.circuitNodes) {
        throw badInput(`circuit nodes at '${n.site}' are not supported (use residual, head or neuron sites)`);
      }
      const nLayers = def.layers(this.model.dims);
      if (!Number.isInteger(n.layer) || n.layer < 0 || n.layer >= nLayers) {
        throw badInput(`node ${nodeId(n)}: layer outside 0..${nLayers - 1}`);
      }
      if (!Number.isInteger(n.position) || n.position < 0 || n.position >= T) {
        throw badInput(`node ${nodeId(n)}: position outside 0..${T - 1}`);
      }
      const key = siteKey(def, n.layer);
      let slot = this.slots.get(key);
      if (!slot) {
        const full = def.shape(this.model.dims, 1, T);
        // Circuit-node sites are [B, T, …] with their one unit axis (if any) right after position.
        const unit = unitGranularities(def)[0];
        const perUnit = n.unit !== undefined;
        if (perUnit && (unit === undefined || def.axes[unit] !== 2)) {
          throw badInput(`node ${nodeId(n)}: ${n.site} has no head, neuron or feature axis`);
        }
        const maskShape = full.map((d, ax) => (ax === 1 ? T : perUnit && ax === 2 ? d : 1));
        slot = {
          site: def.name,
          layer: n.layer,
          key,
          maskShape,
          cells: maskShape.reduce((a, b) => a * b, 1),
          perUnit,
          value: undefined,
        };
        this.slots.set(key, slot);
      } else if (slot.perUnit !== (n.unit !== undefined)) {
        throw badInput(`nodes at ${key} mix whole-position and per-unit granularity`);
      }
      if (n.unit !== undefined) {
        const units = slot.maskShape[2]!;
        if (!Number.isInteger(n.unit) || n.unit < 0 || n.unit >= units) {
          throw badInput(`node ${nodeId(n)}: unit outside 0..${units - 1}`);
        }
      }
    }
  }

  private async computeAblationValues(): Promise<void> {
    const from = this.ablation === 'mean' ? (this.meansFrom ?? this.batch) : this.batch;
    const tokens =
      this.ablation === 'corrupt'
        ? batchTokens(this.batch, 'corrupt')
        : from === this.batch
          ? this.tokens
          : batchTokens(from, 'clean');
    const readout =
      from === this.batch
        ? this.readout
        : this.metric.readout === 'last'
          ? [...from.lastPositions]
          : undefined;
    const ctx = this.context({ cache: this.slots.keys() });
    try {
      tf.tidy(() => {
        this.model.forward({ tokens }, ctx, { readout });
      });
      this.forwardPasses++;
      ctx.assertAllVisited();
      const cache = ctx.takeCache();
      for (const [key, x] of cache) {
        const slot = this.slots.get(key)!;
        if (this.ablation === 'corrupt') {
          slot.value = x;
        } else {
          slot.value = tf.keep(tf.tidy(() => promptMeans(x, from, this.batch.seqLen)));
          x.dispose();
        }
      }
    } finally {
      ctx.dispose();
      if (tokens !== this.tokens) tokens.dispose();
    }
  }

  /** The metric with the given node ids ablated. */
  private async run(ablated: ReadonlySet<string>): Promise<number> {
    const patches = new Map<SiteKey, Patch[]>();
    const owned: tf.Tensor[] = [];
    try {
      const masks = new Map<SiteKey, Uint8Array>();
      for (const [i, n] of this.universe.entries()) {
        if (!ablated.has(this.ids[i]!)) continue;
        const key = nodeKey(n);
        const slot = this.slots.get(key)!;
        let m = masks.get(key);
        if (!m) {
          m = new Uint8Array(slot.cells);
          masks.set(key, m);
        }
        const units = slot.perUnit ? slot.maskShape[2]! : 1;
        m[n.position * units + (n.unit ?? 0)] = 1;
      }
      for (const [key, m] of masks) {
        const slot = this.slots.get(key)!;
        const mask = tf.tensor(m, slot.maskShape, 'bool');
        owned.push(mask);
        patches.set(key, [{ mask, value: slot.value! }]);
      }
      const ctx = this.context({ patches });
      const value = tf.tidy(() =>
        this.metric.compute(
          this.model.forward({ tokens: this.tokens }, ctx, { readout: this.readout }),
          this.batch,
        ),
      );
      this.forwardPasses++;
      try {
        return await readMetric(value, this.metric, ablated.size === 0 ? 'clean' : 'ablated');
      } finally {
        value.dispose();
      }
    } finally {
      for (const t of owned) t.dispose();
    }
  }

  /** A run's context: the evaluator's signal, run-time sites and hooks. */
  private context(options: {
    cache?: Iterable<SiteKey>;
    patches?: ReadonlyMap<SiteKey, Patch[]>;
  }): RunContext {
    return new RunContext({
      ...options,
      signal: this.signal,
      extraSites: this.extraSites,
      ...(this.hooks === undefined ? {} : { hooks: this.hooks }),
    });
  }

  /** m(C), m(M∖C), faithfulness and completeness of a circuit (nodes outside the universe are an error). */
  async evaluate(circuit: Iterable<CircuitNode>): Promise<CircuitEvaluation> {
    const inC = new Set<string>();
    for (const n of circuit) {
      const id = nodeId(n);
      if (!this.universeIds.has(id)) throw badInput(`node ${id} is not in the node universe`);
      inC.add(id);
    }
    const outside = new Set([...this.universeIds].filter((id) => !inC.has(id)));
    const mCircuit = await this.run(outside);
    const mComplement = await this.run(inC);
    const span = this.mFull - this.mEmpty;
    const norm = (m: number) => (span === 0 ? Number.NaN : (m - this.mEmpty) / span);
    return {
      nodes: inC.size,
      mCircuit,
      mComplement,
      faithfulness: norm(mCircuit),
      completeness: norm(mComplement),
    };
  }

  dispose(): void {
    this.tokens.dispose();
    for (const s of this.slots.values()) {
      s.value?.dispose();
      s.value = undefined;
    }
  }
}

/**
 * Mean of x [B,T,…] over the prompts of `batch` per position, counting only rows long enough to have that position,
 * as [1,T_out,…]; positions from T on (an evaluated batch longer than the one the means come from) take the mean
 * over every real token.
 */
function promptMeans(x: tf.Tensor, batch: PairBatch, tOut: number): tf.Tensor {
  const { size, seqLen, lastPositions } = batch;
  const m = new Float32Array(size * seqLen);
  for (let b = 0; b < size; b++) for (let t = 0; t <= lastPositions[b]!; t++) m[b * seqLen + t] = 1;
  const w = tf.reshape(tf.tensor2d(m, [size, seqLen]), [size, seqLen, ...x.shape.slice(2).map(() => 1)]);
  const num = tf.sum(tf.mul(x, w), 0, true);
  const den = tf.sum(w, 0, true);
  const perPosition = tf.div(num, tf.maximum(den, 1));
  // Every position before seqLen has a prompt (the longest one).
  if (tOut === seqLen) return perPosition;
  if (tOut < seqLen)
    return tf.slice(
      perPosition,
      x.shape.map(() => 0),
      [1, tOut, ...x.shape.slice(2)],
    );
  const overall = tf.div(tf.sum(num, 1, true), tf.maximum(tf.sum(den, 1, true), 1));
  const parts = [perPosition];
  for (let t = seqLen; t < tOut; t++) parts.push(overall);
  return tf.concat(parts, 1);
}

export interface SweepPoint extends CircuitEvaluation {
  /** The threshold (threshold sweeps) or k (top-k sweeps). */
  readonly threshold: number;
}

/** What scores a circuit of nodes N: a CircuitEvaluator, or an evaluator of other node kinds (an SAE's features). */
export interface CircuitScorer<N> {
  evaluate(circuit: Iterable<N>): Promise<CircuitEvaluation>;
}

/**
 * Faithfulness and completeness for each threshold (selection on |score| or signed score), or each k of a top-k
 * selection: the curve against the number of nodes. A value that selects the same node set as the previous one
 * reuses its evaluation.
 */
export async function sweepThresholds<N extends { readonly score: number }>(
  evaluator: CircuitScorer<NoInfer<N>>,
  scored: readonly N[],
  thresholds: readonly number[],
  options: {
    by?: SelectBy;
    mode?: 'threshold' | 'top-k';
    /** The progress phase (default 'thresholds'). */
    phase?: string;
    onProgress?: (p: Progress) => void;
  } = {},
): Promise<SweepPoint[]> {
  const out: SweepPoint[] = [];
  const index = new Map(scored.map((n, i) => [n, i]));
  let prevKey = '';
  let prev: CircuitEvaluation | undefined;
  for (const [i, threshold] of thresholds.entries()) {
    const nodes = selectNodes(scored, {
      mode: options.mode ?? 'threshold',
      value: threshold,
      by: options.by ?? 'abs',
    });
    const key = nodes.map((n) => index.get(n)).join(',');
    const ev = key === prevKey && prev ? prev : await evaluator.evaluate(nodes);
    prevKey = key;
    prev = ev;
    out.push({ threshold, ...ev });
    options.onProgress?.({ phase: options.phase ?? 'thresholds', done: i + 1, total: thresholds.length });
  }
  return out;
}

/** One-shot: evaluates a single circuit and frees everything. */
export async function evaluateCircuit(
  model: LanguageModel,
  batch: PairBatch,
  universe: readonly CircuitNode[],
  circuit: Iterable<CircuitNode>,
  options: CircuitEvalOptions = {},
): Promise<CircuitEvaluation & { mFull: number; mEmpty: number }> {
  const ev = await CircuitEvaluator.create(model, batch, universe, options);
  try {
    return { ...(await ev.evaluate(circuit)), mFull: ev.mFull, mEmpty: ev.mEmpty };
  } finally {
    ev.dispose();
  }
}
