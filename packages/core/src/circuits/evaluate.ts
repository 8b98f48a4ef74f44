import * as tf from '@tensorflow/tfjs-core';
import type { Progress } from '../attribution/types.js';
import { type Patch, RunContext } from '../context.js';
import { batchTokens, type PairBatch } from '../data.js';
import { badInput, ErrorCodes, RelpError } from '../errors.js';
import { logitDiff, type Metric, readMetric } from '../metrics.js';
import { type LanguageModel, siteShape } from '../model.js';
import { type SiteKey, type SiteName, siteKey } from '../sites.js';
import { type CircuitNode, nodeId, type ScoredNode, type SelectBy, selectNodes } from './nodes.js';

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
  readonly site: SiteName;
  readonly layer: number;
  readonly key: SiteKey;
  /** Mask shape [1, T, …] and the number of cells in it. */
  readonly maskShape: number[];
  readonly cells: number;
  /** Whether nodes at this site carry a unit (head / neuron) axis. */
  readonly unitAxis: 'none' | 'head' | 'neuron';
  /** The ablation value, [1,T,…] (mean) or [B,T,…] (corrupt). Kept. */
  value: tf.Tensor | undefined;
}

const HEAD_AXIS_SITES: readonly SiteName[] = ['z', 'result', 'q', 'k', 'v'];
const NEURON_AXIS_SITES: readonly SiteName[] = ['mlp_pre', 'mlp_post'];

/**
 * Evaluates circuits over a fixed node universe (METHOD.md §6). The model runs on the clean prompts with
 * RunContext patches replacing every ablated node by its ablation value; m(M) is the clean run, m(∅) the run with
 * every node of the universe ablated. Construction caches the ablation values and computes m(M) and m(∅);
 * each `evaluate` costs two forward passes (C kept, C ablated). Call `dispose` when done.
 */
export class CircuitEvaluator {
  private readonly slots = new Map<SiteKey, SiteSlot>();
  private readonly tokens: tf.Tensor2D;
  private readonly readout: number[] | undefined;
  private readonly universeIds: Set<string>;
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
  ) {
    this.tokens = batchTokens(batch, 'clean');
    this.readout = metric.readout === 'last' ? [...batch.lastPositions] : undefined;
    this.universeIds = new Set(universe.map(nodeId));
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
      if (!this.model.sites.includes(n.site)) {
        throw new RelpError(
          ErrorCodes.UnknownSite,
          `site '${n.site}' does not exist in ${this.model.architecture}`,
          {
            details: { site: n.site },
          },
        );
      }
      if (n.site === 'pattern' || n.site.endsWith('_scale')) {
        throw badInput(`circuit nodes at '${n.site}' are not supported (use residual, head or neuron sites)`);
      }
      if (!Number.isInteger(n.layer) || n.layer < 0 || n.layer >= this.model.dims.nLayers) {
        throw badInput(`node ${nodeId(n)}: layer outside 0..${this.model.dims.nLayers - 1}`);
      }
      if (!Number.isInteger(n.position) || n.position < 0 || n.position >= T) {
        throw badInput(`node ${nodeId(n)}: position outside 0..${T - 1}`);
      }
      const key = siteKey(n.site, n.layer);
      let slot = this.slots.get(key);
      if (!slot) {
        const full = siteShape(this.model.dims, n.site, 1, T);
        const unitAxis = HEAD_AXIS_SITES.includes(n.site)
          ? 'head'
          : NEURON_AXIS_SITES.includes(n.site)
            ? 'neuron'
            : 'none';
        const useUnit = n.unit !== undefined;
        const maskShape =
          unitAxis === 'head' && useUnit
            ? [1, T, full[2]!, 1]
            : unitAxis === 'neuron' && useUnit
              ? [1, T, full[2]!]
              : [1, T, ...full.slice(2).map(() => 1)];
        slot = {
          site: n.site,
          layer: n.layer,
          key,
          maskShape,
          cells: maskShape.reduce((a, b) => a * b, 1),
          unitAxis: useUnit ? unitAxis : 'none',
          value: undefined,
        };
        if (useUnit && unitAxis === 'none')
          throw badInput(`node ${nodeId(n)}: ${n.site} has no head or neuron axis`);
        this.slots.set(key, slot);
      } else if ((slot.unitAxis !== 'none') !== (n.unit !== undefined)) {
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
    const which = this.ablation === 'mean' ? 'clean' : 'corrupt';
    const tokens = which === 'clean' ? this.tokens : batchTokens(this.batch, 'corrupt');
    const ctx = new RunContext({ cache: this.slots.keys(), signal: this.signal });
    try {
      tf.tidy(() => {
        this.model.forward({ tokens }, ctx, { readout: this.readout });
      });
      this.forwardPasses++;
      ctx.assertAllVisited();
      const cache = ctx.takeCache();
      for (const [key, x] of cache) {
        const slot = this.slots.get(key)!;
        if (this.ablation === 'corrupt') {
          slot.value = x;
        } else {
          slot.value = tf.keep(tf.tidy(() => this.maskedMean(x)));
          x.dispose();
        }
      }
    } finally {
      ctx.dispose();
      if (tokens !== this.tokens) tokens.dispose();
    }
  }

  /** Mean over the batch of each position, counting only rows long enough to have that position. [1,T,…] */
  private maskedMean(x: tf.Tensor): tf.Tensor {
    const { size, seqLen, lastPositions } = this.batch;
    const m = new Float32Array(size * seqLen);
    for (let b = 0; b < size; b++) for (let t = 0; t <= lastPositions[b]!; t++) m[b * seqLen + t] = 1;
    const w = tf.reshape(tf.tensor2d(m, [size, seqLen]), [size, seqLen, ...x.shape.slice(2).map(() => 1)]);
    const num = tf.sum(tf.mul(x, w), 0, true);
    const den = tf.maximum(tf.sum(w, 0, true), 1);
    return tf.div(num, den);
  }

  /** The metric with the given node ids ablated. */
  private async run(ablated: ReadonlySet<string>): Promise<number> {
    const patches = new Map<SiteKey, Patch[]>();
    const owned: tf.Tensor[] = [];
    try {
      const masks = new Map<SiteKey, Uint8Array>();
      for (const n of this.universe) {
        if (!ablated.has(nodeId(n))) continue;
        const key = siteKey(n.site, n.layer);
        const slot = this.slots.get(key)!;
        let m = masks.get(key);
        if (!m) {
          m = new Uint8Array(slot.cells);
          masks.set(key, m);
        }
        const units = slot.unitAxis === 'none' ? 1 : slot.maskShape[2]!;
        m[n.position * units + (n.unit ?? 0)] = 1;
      }
      for (const [key, m] of masks) {
        const slot = this.slots.get(key)!;
        const mask = tf.tensor(m, slot.maskShape, 'bool');
        owned.push(mask);
        patches.set(key, [{ mask, value: slot.value! }]);
      }
      const ctx = new RunContext({ patches, signal: this.signal });
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

export interface SweepPoint extends CircuitEvaluation {
  readonly threshold: number;
}

/**
 * Faithfulness and completeness for each threshold (selection on |score| or signed score): the curve against the
 * number of nodes. Thresholds that select the same node set as the previous one reuse its evaluation.
 */
export async function sweepThresholds(
  evaluator: CircuitEvaluator,
  scored: readonly ScoredNode[],
  thresholds: readonly number[],
  options: { by?: SelectBy; onProgress?: (p: Progress) => void } = {},
): Promise<SweepPoint[]> {
  const out: SweepPoint[] = [];
  let prevKey = '';
  let prev: CircuitEvaluation | undefined;
  for (const [i, threshold] of thresholds.entries()) {
    const nodes = selectNodes(scored, { mode: 'threshold', value: threshold, by: options.by ?? 'abs' });
    const key = nodes.map(nodeId).join(',');
    const ev = key === prevKey && prev ? prev : await evaluator.evaluate(nodes);
    prevKey = key;
    prev = ev;
    out.push({ threshold, ...ev });
    options.onProgress?.({ phase: 'thresholds', done: i + 1, total: thresholds.length });
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
