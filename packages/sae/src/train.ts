import {
  badInput,
  ErrorCodes,
  isRelpError,
  type LanguageModel,
  RelpError,
  RunContext,
  type SiteHook,
  type SiteKey,
  type SiteName,
  seededNormal,
  siteKey,
} from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';
import { checkSaeFitsModel } from './formats/common.js';
import { type SaeHookPoint, SparseAutoencoder } from './sae.js';

/** TopK (Gao et al. 2024) with the AuxK loss on dead features, or ReLU with an L1 penalty (weighted by decoder norms). */
export type TrainArchitecture =
  | {
      readonly kind: 'topk';
      readonly k: number;
      /** Dead features the auxiliary loss reconstructs the residual with (default dIn/2). */
      readonly auxK?: number;
      /** Weight of the AuxK loss (default 1/32). 0 turns it off. */
      readonly auxCoefficient?: number;
    }
  | {
      readonly kind: 'relu';
      /** λ of λ·Σ_i f_i·‖W_dec,i‖ (on inputs scaled to norm √dIn when normalizeInput is on). */
      readonly l1Coefficient: number;
      /** Optimiser steps over which λ rises linearly from 0 (default 0). */
      readonly l1WarmupSteps?: number;
    };

/** One SAE to train: where, how wide, which architecture. */
export interface SaeTrainSpec {
  readonly hookPoint: SaeHookPoint;
  readonly dSae: number;
  readonly arch: TrainArchitecture;
}

export interface TrainProgress {
  readonly phase: 'init' | 'train' | 'eval';
  readonly done: number;
  readonly total: number;
  /** Training tokens seen so far (per SAE). */
  readonly tokens: number;
  readonly elapsedS: number;
  /** Estimated seconds left in this phase. */
  readonly etaS: number;
  /** Running metrics per SAE (site key → numbers) over the last model batches. */
  readonly running?: Readonly<Record<string, { mse: number; explainedVariance: number; l0: number }>>;
}

export interface TrainOptions {
  readonly model: LanguageModel;
  readonly specs: readonly SaeTrainSpec[];
  /** Training token windows [contextLength] in the order they are used (see tokenWindows). */
  readonly windows: readonly Int32Array[];
  /** Held-out windows for the final evaluation. */
  readonly evalWindows?: readonly Int32Array[];
  /** Training tokens per SAE (activation rows); training stops when the windows run out first. */
  readonly tokens: number;
  /** Windows per model forward pass (default 8). */
  readonly batchWindows?: number;
  /** Activation rows per optimiser step (default 512). */
  readonly stepTokens?: number;
  /** Adam learning rate (default 4e-4), β1 (0.9), β2 (0.999), ε (1e-8). */
  readonly lr?: number;
  readonly beta1?: number;
  readonly beta2?: number;
  readonly eps?: number;
  /** Linear warm-up (optimiser steps, default 0) and linear decay to 0 over the last fraction (default 0.2). */
  readonly lrWarmupSteps?: number;
  readonly lrDecayFraction?: number;
  readonly seed?: number;
  /** Scale inputs so their mean norm is √dIn (SAELens expected_average_only_in). Default true. */
  readonly normalizeInput?: boolean;
  /** b_dec initialisation from the first batch of activations. Default geometric_median. */
  readonly bDecInit?: 'geometric_median' | 'mean' | 'zeros';
  /** Leading positions of each window left out of training and spliced evaluation (default 1: the BOS token). */
  readonly skipPositions?: number;
  /** A feature is dead when it has not fired in this many training tokens (default 100 000). */
  readonly deadWindowTokens?: number;
  /** Model batches between checkpoints (0: none). */
  readonly checkpointEvery?: number;
  /** Receives each checkpoint (the caller writes it). */
  readonly onCheckpoint?: (state: TrainerState) => Promise<void> | void;
  /** Continue from a checkpoint of the same run (same options, windows and seed). */
  readonly resume?: TrainerState;
  readonly onProgress?: (p: TrainProgress) => void;
  readonly signal?: AbortSignal;
  /** Windows per evaluation forward pass (default 4). */
  readonly evalBatchWindows?: number;
}

/** Everything needed to continue a run exactly where it stopped. */
export interface TrainerState {
  /** Model batches done. */
  readonly batches: number;
  readonly windowsUsed: number;
  readonly tokens: number;
  readonly elapsedS: number;
  readonly saes: readonly SaeTrainerState[];
}

export interface SaeTrainerState {
  readonly key: SiteKey;
  readonly spec: SaeTrainSpec;
  readonly inputScale: number;
  readonly step: number;
  /** wEnc, bEnc, wDec, bDec, then Adam's m and v for each, as float32. */
  readonly tensors: Readonly<Record<string, { shape: number[]; data: Float32Array }>>;
  /** Training token count at which each feature last fired (-1: never). */
  readonly lastFired: Float64Array;
}

export interface SaeMetrics {
  readonly site: string;
  readonly arch: TrainArchitecture;
  readonly dIn: number;
  readonly dSae: number;
  readonly tokens: number;
  readonly steps: number;
  readonly inputScale: number;
  /** Training: over the last 10% of model batches. */
  readonly train: { readonly mse: number; readonly explainedVariance: number; readonly l0: number };
  /** Features that did not fire in the last deadWindowTokens training tokens. */
  readonly deadFeatures: number;
  readonly deadWindowTokens: number;
  /** Held-out: reconstruction metrics in the site's own units, and next-token cross-entropy. */
  readonly eval?: {
    readonly tokens: number;
    readonly mse: number;
    readonly explainedVariance: number;
    readonly l0: number;
    readonly ceClean: number;
    readonly ceSpliced: number;
    readonly ceZeroAblated: number;
    /** (CE_zero − CE_spliced) / (CE_zero − CE_clean). */
    readonly ceLossRecovered: number;
  };
}

export interface TrainResult {
  readonly saes: SparseAutoencoder[];
  readonly metrics: SaeMetrics[];
  readonly state: TrainerState;
  readonly seconds: number;
}

const EPS_NORM = 1e-8;

/** Identity with no gradient (the AuxK target is a constant of the step). */
const stopGradient = (x: tf.Tensor): tf.Tensor =>
  tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor;
    return {
      value: tf.clone(input),
      gradFunc: (dy: tf.Tensor | tf.Tensor[]) => tf.zerosLike(dy as tf.Tensor),
    };
  })(x) as tf.Tensor;

/** The k-th largest entry of each row [n, 1], a constant of the step (no gradient through tf.topk). */
const kthLargestConst = (x: tf.Tensor, k: number): tf.Tensor =>
  tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor;
    const { values } = tf.topk(input, k, true);
    return {
      value: tf.slice(values, [0, k - 1], [input.shape[0]!, 1]),
      gradFunc: () => tf.zerosLike(input),
    };
  })(x) as tf.Tensor;

class RunningMean {
  private readonly window: number[][] = [];
  constructor(private readonly size: number) {}
  push(v: number[]): void {
    this.window.push(v);
    if (this.window.length > this.size) this.window.shift();
  }
  mean(): number[] {
    const n = this.window.length;
    if (n === 0) return [];
    return this.window[0]!.map((_, i) => this.window.reduce((a, r) => a + r[i]!, 0) / n);
  }
}

/**
 * Activations at several sites from one forward pass that stops after the deepest of them: a hook on the deepest
 * site aborts the run at the end of its block (ctx.checkAborted), so later blocks and the unembedding are skipped.
 * Returns [B, T, d] tensors the caller disposes.
 */
export function collectActivations(
  model: LanguageModel,
  tokens: tf.Tensor2D,
  keys: readonly SiteKey[],
): Map<SiteKey, tf.Tensor> {
  const deepest = Math.max(...keys.map((k) => Number(k.split('.')[1])));
  const stop = new AbortController();
  const deepestKeys = keys.filter((k) => Number(k.split('.')[1]) === deepest);
  const hook: SiteHook = (x) => {
    if (deepest < model.dims.nLayers - 1) stop.abort();
    return x;
  };
  const ctx = new RunContext({
    cache: keys,
    hooks: new Map(deepestKeys.map((k) => [k, [hook]] as const)),
    signal: stop.signal,
  });
  try {
    try {
      const logits = model.forward({ tokens }, ctx, { readout: new Array(tokens.shape[0]).fill(0) });
      logits.dispose();
    } catch (e) {
      if (!(isRelpError(e, ErrorCodes.Aborted) && stop.signal.aborted)) throw e;
    }
    const cache = ctx.takeCache();
    for (const k of keys) {
      if (!cache.has(k)) {
        for (const t of cache.values()) t.dispose();
        throw new RelpError(ErrorCodes.UnknownSite, `site ${k} was requested but the model never reached it`);
      }
    }
    return cache;
  } finally {
    ctx.dispose();
  }
}

/** Geometric median of the rows of x [n, d] (Weiszfeld iterations from the mean). */
export function geometricMedian(x: tf.Tensor2D, iterations = 30): tf.Tensor1D {
  return tf.tidy(() => {
    let b = tf.mean(x, 0) as tf.Tensor1D;
    for (let i = 0; i < iterations; i++) {
      const next = tf.tidy(() => {
        const dist = tf.sqrt(tf.sum(tf.square(tf.sub(x, b)), 1, true));
        const w = tf.div(1, tf.maximum(dist, 1e-6));
        return tf.div(tf.sum(tf.mul(w, x), 0), tf.sum(w)) as tf.Tensor1D;
      });
      b.dispose();
      b = next;
    }
    return b;
  });
}

/** Rows of w scaled to unit L2 norm. */
function unitRows(w: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.div(w, tf.maximum(tf.norm(w, 2, 1, true), EPS_NORM)) as tf.Tensor2D);
}

interface AdamSlot {
  readonly param: tf.Variable;
  readonly m: tf.Variable;
  readonly v: tf.Variable;
}

/** One SAE under training: variables, Adam moments, feature statistics. */
class SaeTrainer {
  readonly key: SiteKey;
  readonly sae: SparseAutoencoder;
  readonly slots: Record<'wEnc' | 'bEnc' | 'wDec' | 'bDec', AdamSlot>;
  step = 0;
  inputScale = 1;
  lastFired: Float64Array;
  readonly recent: RunningMean;

  constructor(
    readonly spec: SaeTrainSpec,
    init: { wEnc: tf.Tensor; bEnc: tf.Tensor; wDec: tf.Tensor; bDec: tf.Tensor },
    recentWindow: number,
  ) {
    this.key = siteKey(spec.hookPoint.site, spec.hookPoint.layer);
    const slot = (t: tf.Tensor): AdamSlot => ({
      param: tf.variable(t, true),
      m: tf.tidy(() => tf.variable(tf.zerosLike(t), false)),
      v: tf.tidy(() => tf.variable(tf.zerosLike(t), false)),
    });
    this.slots = {
      wEnc: slot(init.wEnc),
      bEnc: slot(init.bEnc),
      wDec: slot(init.wDec),
      bDec: slot(init.bDec),
    };
    tf.dispose([init.wEnc, init.bEnc, init.wDec, init.bDec]);
    const act =
      spec.arch.kind === 'topk' ? { kind: 'topk' as const, k: spec.arch.k } : { kind: 'relu' as const };
    // The training SAE reads inputs already scaled (inputScale 1); the scale is attached when it is handed out.
    this.sae = new SparseAutoencoder(
      {
        wEnc: this.slots.wEnc.param as unknown as tf.Tensor2D,
        bEnc: this.slots.bEnc.param as unknown as tf.Tensor1D,
        wDec: this.slots.wDec.param as unknown as tf.Tensor2D,
        bDec: this.slots.bDec.param as unknown as tf.Tensor1D,
      },
      { hookPoint: spec.hookPoint, activation: act, applyBDecToInput: true },
    );
    this.lastFired = new Float64Array(spec.dSae).fill(-1);
    this.recent = new RunningMean(recentWindow);
  }

  /** One Adam step on scaled inputs x [n, dIn]; returns [sum sq error, feature counts, firing counts] tensors. */
  trainStep(
    x: tf.Tensor2D,
    o: { lr: number; beta1: number; beta2: number; eps: number; dead: tf.Tensor1D | undefined },
  ): { sqErr: tf.Scalar; l0: tf.Scalar; fired: tf.Tensor1D } {
    return tf.tidy(() => {
      const arch = this.spec.arch;
      const n = x.shape[0];
      const vars = [
        this.slots.wEnc.param,
        this.slots.bEnc.param,
        this.slots.wDec.param,
        this.slots.bDec.param,
      ];
      let fKept: tf.Tensor | undefined;
      let errKept: tf.Tensor | undefined;
      const { grads } = tf.variableGrads(() => {
        const pre = this.sae.preActivations(x);
        const f = this.sae.activate(pre);
        const xhat = this.sae.decode(f);
        const err = tf.sub(xhat, x);
        const mse = tf.div(tf.sum(tf.square(err)), n);
        fKept = tf.keep(tf.clone(f));
        errKept = tf.keep(tf.sum(tf.square(err)));
        let loss: tf.Tensor = mse;
        if (arch.kind === 'relu') {
          const warm = arch.l1WarmupSteps ?? 0;
          const lambda = arch.l1Coefficient * (warm > 0 ? Math.min(1, (this.step + 1) / warm) : 1);
          const decNorm = tf.norm(this.slots.wDec.param, 2, 1);
          loss = tf.add(loss, tf.mul(lambda, tf.div(tf.sum(tf.mul(f, decNorm)), n)));
        } else if (o.dead !== undefined) {
          // AuxK: the residual error, as a constant, reconstructed by the auxK largest dead features.
          const auxK = Math.min(arch.auxK ?? Math.floor(x.shape[1] / 2), this.spec.dSae);
          const coef = arch.auxCoefficient ?? 1 / 32;
          const preDead = tf.where(
            tf.broadcastTo(tf.cast(o.dead, 'bool'), pre.shape),
            pre,
            tf.fill(pre.shape, -1e30),
          );
          const kth = kthLargestConst(preDead, auxK);
          const fAux = tf.where(tf.greaterEqual(preDead, kth), tf.relu(preDead), tf.zerosLike(preDead));
          const eHat = tf.matMul(fAux, this.slots.wDec.param);
          // Normalised by the residual's variance, as OpenAI's and dictionary_learning's AuxK are.
          const e = stopGradient(err);
          const eVar = tf.sum(tf.square(tf.sub(e, tf.mean(e, 0, true))));
          const aux = tf.div(tf.sum(tf.square(tf.sub(eHat, e))), tf.maximum(eVar, EPS_NORM));
          loss = tf.add(loss, tf.mul(coef, aux));
        }
        return loss as tf.Scalar;
      }, vars);
      // The decoder's rows stay unit norm: drop the gradient's component along each row, step, renormalise.
      const wDec = this.slots.wDec.param;
      const gDec = grads[wDec.name]!;
      grads[wDec.name] = tf.sub(gDec, tf.mul(tf.sum(tf.mul(gDec, wDec), 1, true), wDec));
      this.step++;
      const t = this.step;
      const lrT = (o.lr * Math.sqrt(1 - o.beta2 ** t)) / (1 - o.beta1 ** t);
      for (const s of Object.values(this.slots)) {
        const g = grads[s.param.name]!;
        s.m.assign(tf.add(tf.mul(o.beta1, s.m), tf.mul(1 - o.beta1, g)));
        s.v.assign(tf.add(tf.mul(o.beta2, s.v), tf.mul(1 - o.beta2, tf.square(g))));
        s.param.assign(tf.sub(s.param, tf.mul(lrT, tf.div(s.m, tf.add(tf.sqrt(s.v), o.eps)))));
      }
      wDec.assign(unitRows(wDec as unknown as tf.Tensor2D));
      const f = fKept!;
      const firing = tf.greater(f, 0);
      const out = {
        sqErr: errKept as tf.Scalar,
        l0: tf.sum(tf.cast(firing, 'float32')) as tf.Scalar,
        fired: tf.sum(tf.cast(firing, 'float32'), 0) as tf.Tensor1D,
      };
      tf.dispose(f);
      return out;
    });
  }

  /** The trained SAE with its input scale, as a new object over copies of the weights. */
  export(): SparseAutoencoder {
    const p = this.slots;
    return new SparseAutoencoder(
      {
        wEnc: tf.clone(p.wEnc.param) as tf.Tensor2D,
        bEnc: tf.clone(p.bEnc.param) as tf.Tensor1D,
        wDec: tf.clone(p.wDec.param) as tf.Tensor2D,
        bDec: tf.clone(p.bDec.param) as tf.Tensor1D,
      },
      {
        hookPoint: this.spec.hookPoint,
        activation: this.sae.activation,
        applyBDecToInput: true,
        inputScale: this.inputScale,
        provenance: { format: 'relp-train', steps: this.step },
      },
    );
  }

  async state(): Promise<SaeTrainerState> {
    const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const [name, s] of Object.entries(this.slots)) {
      tensors[name] = { shape: s.param.shape, data: (await s.param.data()) as Float32Array };
      tensors[`${name}.m`] = { shape: s.m.shape, data: (await s.m.data()) as Float32Array };
      tensors[`${name}.v`] = { shape: s.v.shape, data: (await s.v.data()) as Float32Array };
    }
    return {
      key: this.key,
      spec: this.spec,
      inputScale: this.inputScale,
      step: this.step,
      tensors,
      lastFired: Float64Array.from(this.lastFired),
    };
  }

  restore(st: SaeTrainerState): void {
    for (const [name, s] of Object.entries(this.slots)) {
      for (const [suffix, v] of [
        ['', s.param],
        ['.m', s.m],
        ['.v', s.v],
      ] as const) {
        const t = st.tensors[`${name}${suffix}`];
        if (!t || t.data.length !== v.size)
          throw badInput(`checkpoint of ${this.key} lacks ${name}${suffix}`);
        tf.tidy(() => v.assign(tf.tensor(t.data, v.shape, 'float32')));
      }
    }
    this.step = st.step;
    this.inputScale = st.inputScale;
    this.lastFired = Float64Array.from(st.lastFired);
  }

  dispose(): void {
    for (const s of Object.values(this.slots)) tf.dispose([s.param, s.m, s.v]);
  }
}

function validate(o: TrainOptions): void {
  if (o.specs.length === 0) throw badInput('no SAE to train: give at least one site');
  const seen = new Set<string>();
  for (const s of o.specs) {
    const key = siteKey(s.hookPoint.site, s.hookPoint.layer);
    if (seen.has(key)) throw badInput(`site ${key} is given twice`);
    seen.add(key);
    if (!Number.isInteger(s.dSae) || s.dSae < 1)
      throw badInput(`dSae must be a positive integer (got ${s.dSae})`);
    if (s.arch.kind === 'topk' && (!Number.isInteger(s.arch.k) || s.arch.k < 1 || s.arch.k > s.dSae))
      throw badInput(`TopK needs 1 ≤ k ≤ ${s.dSae} (got ${s.arch.k})`);
    if (s.arch.kind === 'relu' && !(s.arch.l1Coefficient >= 0))
      throw badInput(`the L1 coefficient must be ≥ 0 (got ${s.arch.l1Coefficient})`);
  }
  if (o.windows.length === 0) throw badInput('no training windows');
  const T = o.windows[0]!.length;
  if (o.windows.some((w) => w.length !== T)) throw badInput('training windows must all have the same length');
  if ((o.skipPositions ?? 1) >= T) throw badInput(`skipPositions must be below the context length ${T}`);
  if (!(o.tokens > 0)) throw badInput(`tokens must be > 0 (got ${o.tokens})`);
}

/**
 * Trains SAEs at several sites of a model from one activation stream: each model batch (batchWindows windows)
 * runs one forward pass that caches every site and stops after the deepest; each SAE then takes Adam steps of
 * stepTokens rows. Decoder rows stay unit norm (gradient projected, rows renormalised after each step); b_dec
 * starts at the geometric median (or mean) of the first batch; inputs are scaled to mean norm √dIn. Seeded and
 * deterministic: a run resumed from a checkpoint ends with the same weights as one that was never interrupted.
 */
export async function trainSaes(o: TrainOptions): Promise<TrainResult> {
  validate(o);
  const model = o.model;
  const B = o.batchWindows ?? 8;
  const stepTokens = o.stepTokens ?? 512;
  const lr = o.lr ?? 4e-4;
  const beta1 = o.beta1 ?? 0.9;
  const beta2 = o.beta2 ?? 0.999;
  const eps = o.eps ?? 1e-8;
  const seed = o.seed ?? 0;
  const skip = o.skipPositions ?? 1;
  const deadWindow = o.deadWindowTokens ?? 100_000;
  const T = o.windows[0]!.length;
  const rowsPerBatch = B * (T - skip);
  const totalBatches = Math.min(Math.ceil(o.tokens / rowsPerBatch), Math.floor(o.windows.length / B));
  if (totalBatches < 1) throw badInput(`need at least ${B} training windows for one batch`);
  const stepsPerBatch = Math.ceil(rowsPerBatch / stepTokens);
  const totalSteps = totalBatches * stepsPerBatch;
  const warmup = o.lrWarmupSteps ?? 0;
  const decayFrom = Math.floor(totalSteps * (1 - (o.lrDecayFraction ?? 0.2)));
  const lrAt = (step: number): number => {
    let f = 1;
    if (warmup > 0 && step < warmup) f = (step + 1) / warmup;
    if (step >= decayFrom && totalSteps > decayFrom) f *= (totalSteps - step) / (totalSteps - decayFrom);
    return lr * f;
  };
  const keys = o.specs.map((s) => siteKey(s.hookPoint.site, s.hookPoint.layer));
  const dIn = model.dims.dModel;
  const started = performance.now();
  const batchTokens = (first: number) => {
    const data = new Int32Array(B * T);
    for (let b = 0; b < B; b++) data.set(o.windows[first + b]!, b * T);
    return tf.tensor2d(data, [B, T], 'int32');
  };
  /** [B, T, d] → rows [B·(T − skip), d]. */
  const rows = (a: tf.Tensor): tf.Tensor2D =>
    tf.tidy(() => {
      const [b, t, d] = a.shape as [number, number, number];
      return tf.reshape(tf.slice(a, [0, skip, 0], [b, t - skip, d]), [-1, d]) as tf.Tensor2D;
    });

  const trainers: SaeTrainer[] = [];
  try {
    // ---- initialisation: weights (seeded), input scale and b_dec from the first batch (or the checkpoint)
    for (const [i, spec] of o.specs.entries()) {
      const probe = new SparseAutoencoder(
        {
          wEnc: tf.zeros([dIn, spec.dSae]),
          bEnc: tf.zeros([spec.dSae]),
          wDec: tf.zeros([spec.dSae, dIn]),
          bDec: tf.zeros([dIn]),
        },
        { hookPoint: spec.hookPoint, activation: { kind: 'relu' } },
      );
      try {
        checkSaeFitsModel(probe, model);
      } finally {
        probe.dispose();
      }
      const normal = seededNormal((seed * 1009 + i * 7919 + 1) >>> 0);
      const w = new Float32Array(spec.dSae * dIn);
      for (let j = 0; j < w.length; j++) w[j] = normal();
      const wDec = tf.tidy(() => unitRows(tf.tensor2d(w, [spec.dSae, dIn])));
      const wEnc = tf.transpose(wDec);
      trainers.push(
        new SaeTrainer(
          spec,
          { wEnc, bEnc: tf.zeros([spec.dSae]), wDec, bDec: tf.zeros([dIn]) },
          Math.max(1, Math.ceil(totalBatches / 10)),
        ),
      );
    }
    let batches = 0;
    let tokens = 0;
    let elapsedBefore = 0;
    if (o.resume) {
      const st = o.resume;
      for (const tr of trainers) {
        const s = st.saes.find((x) => x.key === tr.key);
        if (!s) throw badInput(`the checkpoint has no SAE at ${tr.key}`);
        tr.restore(s);
      }
      batches = st.batches;
      tokens = st.tokens;
      elapsedBefore = st.elapsedS;
    } else {
      o.onProgress?.({ phase: 'init', done: 0, total: 1, tokens: 0, elapsedS: 0, etaS: 0 });
      const toks = batchTokens(0);
      const acts = collectActivations(model, toks, keys);
      toks.dispose();
      try {
        for (const tr of trainers) {
          tf.tidy(() => {
            const x = rows(acts.get(tr.key)!);
            const meanNorm = tf.mean(tf.norm(x, 2, 1)).dataSync()[0]!;
            tr.inputScale = (o.normalizeInput ?? true) && meanNorm > 0 ? Math.sqrt(dIn) / meanNorm : 1;
            const xs = tf.mul(x, tr.inputScale) as tf.Tensor2D;
            const how = o.bDecInit ?? 'geometric_median';
            const b =
              how === 'zeros' ? tf.zeros([dIn]) : how === 'mean' ? tf.mean(xs, 0) : geometricMedian(xs);
            tr.slots.bDec.param.assign(b as tf.Tensor1D);
          });
        }
      } finally {
        tf.dispose([...acts.values()]);
      }
      o.onProgress?.({ phase: 'init', done: 1, total: 1, tokens: 0, elapsedS: 0, etaS: 0 });
    }

    // ---- training
    const elapsed = () => elapsedBefore + (performance.now() - started) / 1000;
    const startBatches = batches;
    const snapshot = async (): Promise<TrainerState> => ({
      batches,
      windowsUsed: batches * B,
      tokens,
      elapsedS: elapsed(),
      saes: await Promise.all(trainers.map((t) => t.state())),
    });
    while (batches < totalBatches) {
      if (o.signal?.aborted) throw new RelpError(ErrorCodes.Aborted, 'training was aborted');
      const toks = batchTokens(batches * B);
      const acts = collectActivations(model, toks, keys);
      toks.dispose();
      try {
        for (const tr of trainers) {
          const x = tf.tidy(() => tf.mul(rows(acts.get(tr.key)!), tr.inputScale) as tf.Tensor2D);
          let sq = 0;
          let l0 = 0;
          let sumSqDev = 0;
          try {
            sumSqDev = tf.tidy(() => tf.sum(tf.square(tf.sub(x, tf.mean(x, 0)))).dataSync()[0]!);
            for (let r0 = 0; r0 < rowsPerBatch; r0 += stepTokens) {
              const n = Math.min(stepTokens, rowsPerBatch - r0);
              const xb = tf.slice(x, [r0, 0], [n, dIn]);
              let dead: tf.Tensor1D | undefined;
              if (tr.spec.arch.kind === 'topk' && (tr.spec.arch.auxCoefficient ?? 1 / 32) > 0) {
                const mask = new Float32Array(tr.spec.dSae);
                let any = false;
                for (let f = 0; f < mask.length; f++) {
                  const last = tr.lastFired[f]!;
                  if (tokens + r0 - Math.max(last, 0) >= deadWindow) {
                    mask[f] = 1;
                    any = true;
                  }
                }
                if (any) dead = tf.tensor1d(mask);
              }
              const res = tr.trainStep(xb, { lr: lrAt(tr.step), beta1, beta2, eps, dead });
              const [e, l, fired] = await Promise.all([res.sqErr.data(), res.l0.data(), res.fired.data()]);
              tf.dispose([xb, dead, res.sqErr, res.l0, res.fired]);
              sq += e[0]!;
              l0 += l[0]!;
              const at = tokens + r0 + n;
              for (let f = 0; f < fired.length; f++) if (fired[f]! > 0) tr.lastFired[f] = at;
            }
          } finally {
            x.dispose();
          }
          tr.recent.push([sq / rowsPerBatch, 1 - sq / Math.max(sumSqDev, EPS_NORM), l0 / rowsPerBatch]);
        }
      } finally {
        tf.dispose([...acts.values()]);
      }
      batches++;
      tokens += rowsPerBatch;
      const el = elapsed();
      const rate = (performance.now() - started) / 1000 / (batches - startBatches);
      const running: Record<string, { mse: number; explainedVariance: number; l0: number }> = {};
      for (const tr of trainers) {
        const [mse, ev, l0] = tr.recent.mean();
        running[tr.key] = { mse: mse!, explainedVariance: ev!, l0: l0! };
      }
      o.onProgress?.({
        phase: 'train',
        done: batches,
        total: totalBatches,
        tokens,
        elapsedS: el,
        etaS: rate * (totalBatches - batches),
        running,
      });
      const every = o.checkpointEvery ?? 0;
      if (every > 0 && batches % every === 0 && batches < totalBatches && o.onCheckpoint) {
        await o.onCheckpoint(await snapshot());
      }
    }
    const state = await snapshot();
    const saes = trainers.map((t) => t.export());
    const metrics: SaeMetrics[] = trainers.map((tr) => {
      const [mse, ev, l0] = tr.recent.mean();
      let dead = 0;
      for (const last of tr.lastFired) if (last < 0 || tokens - last >= deadWindow) dead++;
      return {
        site: tr.key,
        arch: tr.spec.arch,
        dIn,
        dSae: tr.spec.dSae,
        tokens,
        steps: tr.step,
        inputScale: tr.inputScale,
        train: { mse: mse ?? Number.NaN, explainedVariance: ev ?? Number.NaN, l0: l0 ?? Number.NaN },
        deadFeatures: dead,
        deadWindowTokens: Math.min(deadWindow, tokens),
      };
    });
    if (o.evalWindows && o.evalWindows.length > 0) {
      const ev = await evaluateSaes(model, saes, o.evalWindows, {
        batchWindows: o.evalBatchWindows ?? 4,
        skipPositions: skip,
        onProgress: (done, total) =>
          o.onProgress?.({ phase: 'eval', done, total, tokens, elapsedS: elapsed(), etaS: 0 }),
      });
      for (const [i, m] of metrics.entries()) metrics[i] = { ...m, eval: ev[i]! };
    }
    return { saes, metrics, state, seconds: elapsed() };
  } finally {
    for (const t of trainers) t.dispose();
  }
}

/** Mean next-token cross-entropy of logits [B, T, V] for tokens [B, T] (positions 0..T−2 predict 1..T−1). */
function nextTokenCe(logits: tf.Tensor3D, tokens: tf.Tensor2D): { sum: number; count: number } {
  return tf.tidy(() => {
    const [b, t, v] = logits.shape;
    const lp = tf.logSoftmax(tf.reshape(tf.slice(logits, [0, 0, 0], [b, t - 1, v]), [-1, v]));
    const targets = tf.reshape(tf.slice(tokens, [0, 1], [b, t - 1]), [-1]);
    const idx = tf.add(
      tf.mul(tf.range(0, b * (t - 1), 1, 'int32'), tf.scalar(v, 'int32')),
      tf.cast(targets, 'int32'),
    );
    const picked = tf.gather(tf.reshape(lp, [-1]), idx);
    return { sum: -tf.sum(picked).dataSync()[0]!, count: b * (t - 1) };
  });
}

/**
 * Held-out metrics of SAEs on a model: explained variance, MSE (site units) and L0 at positions ≥ skipPositions,
 * and next-token cross-entropy clean, with each SAE's reconstruction spliced in at its site (positions ≥ skip),
 * and with the site zero-ablated there: CE loss recovered = (CE_zero − CE_spliced) / (CE_zero − CE_clean).
 */
export async function evaluateSaes(
  model: LanguageModel,
  saes: readonly SparseAutoencoder[],
  windows: readonly Int32Array[],
  options: {
    batchWindows?: number;
    skipPositions?: number;
    onProgress?: (done: number, total: number) => void;
  } = {},
): Promise<NonNullable<SaeMetrics['eval']>[]> {
  const B = options.batchWindows ?? 4;
  const skip = options.skipPositions ?? 1;
  const T = windows[0]!.length;
  const keys = saes.map((s) => siteKey(s.hookPoint.site, s.hookPoint.layer));
  const acc = saes.map(() => ({ sq: 0, sumSq: 0, l0: 0, n: 0, spliced: 0, zero: 0 }));
  const sums = saes.map((s) => new Float64Array(s.dIn));
  let clean = 0;
  let count = 0;
  const nBatches = Math.ceil(windows.length / B);
  const mask = tf.tidy(() => tf.reshape(tf.greaterEqual(tf.range(0, T, 1, 'int32'), skip), [1, T, 1]));
  try {
    for (let bi = 0; bi < nBatches; bi++) {
      const ws = windows.slice(bi * B, bi * B + B);
      const data = new Int32Array(ws.length * T);
      for (const [i, w] of ws.entries()) data.set(w, i * T);
      const toks = tf.tensor2d(data, [ws.length, T], 'int32');
      try {
        const ctx = new RunContext({ cache: keys });
        const logits = model.forward({ tokens: toks }, ctx);
        const cache = ctx.takeCache();
        const ce = nextTokenCe(logits, toks);
        logits.dispose();
        clean += ce.sum;
        count += ce.count;
        for (const [i, sae] of saes.entries()) {
          const a = cache.get(keys[i]!)!;
          const [sq, l0, colSum, sumSq, n] = tf.tidy(() => {
            const x = tf.reshape(tf.slice(a, [0, skip, 0], [ws.length, T - skip, sae.dIn]), [-1, sae.dIn]);
            const f = sae.encode(x);
            const xhat = sae.decode(f);
            return [
              tf.sum(tf.square(tf.sub(xhat, x))).dataSync()[0]!,
              tf.sum(tf.cast(tf.greater(f, 0), 'float32')).dataSync()[0]!,
              tf.sum(x, 0).dataSync(),
              tf.sum(tf.square(x)).dataSync()[0]!,
              x.shape[0],
            ] as const;
          });
          const s = acc[i]!;
          s.sq += sq;
          s.l0 += l0;
          s.sumSq += sumSq;
          s.n += n;
          for (let j = 0; j < colSum.length; j++) sums[i]![j]! += colSum[j]!;
          for (const mode of ['spliced', 'zero'] as const) {
            const hook: SiteHook = (x) =>
              tf.where(
                tf.broadcastTo(mask, x.shape as number[]),
                mode === 'spliced' ? sae.reconstruct(x) : tf.zerosLike(x),
                x,
              );
            const hctx = new RunContext({ hooks: new Map([[keys[i]!, [hook]]]) });
            const lg = model.forward({ tokens: toks }, hctx);
            s[mode] += nextTokenCe(lg, toks).sum;
            lg.dispose();
          }
        }
        tf.dispose([...cache.values()]);
      } finally {
        toks.dispose();
      }
      options.onProgress?.(bi + 1, nBatches);
    }
  } finally {
    mask.dispose();
  }
  return saes.map((_, i) => {
    const s = acc[i]!;
    let meanSq = 0;
    for (const v of sums[i]!) meanSq += (v / s.n) ** 2;
    const totalVar = s.sumSq - s.n * meanSq;
    const ceClean = clean / count;
    const ceSpliced = s.spliced / count;
    const ceZero = s.zero / count;
    return {
      tokens: s.n,
      mse: s.sq / s.n,
      explainedVariance: 1 - s.sq / totalVar,
      l0: s.l0 / s.n,
      ceClean,
      ceSpliced,
      ceZeroAblated: ceZero,
      ceLossRecovered: (ceZero - ceSpliced) / (ceZero - ceClean),
    };
  });
}

/** Parses "resid_post.3" into a hook point. */
export function parseSiteKey(s: string): SaeHookPoint {
  const m = /^([a-z_]+)\.(\d+)$/.exec(s.trim());
  if (!m) throw badInput(`site "${s}" is not <site>.<layer>, e.g. resid_post.6`);
  return { site: m[1] as SiteName, layer: Number(m[2]) };
}

/** The SAEs of a checkpoint as they stood then (new tensors the caller disposes). */
export function saesFromState(state: TrainerState): SparseAutoencoder[] {
  return state.saes.map((s) => {
    const t = (name: string) => {
      const x = s.tensors[name];
      if (!x) throw badInput(`checkpoint of ${s.key} lacks ${name}`);
      return tf.tensor(x.data, x.shape, 'float32');
    };
    return new SparseAutoencoder(
      {
        wEnc: t('wEnc') as tf.Tensor2D,
        bEnc: t('bEnc') as tf.Tensor1D,
        wDec: t('wDec') as tf.Tensor2D,
        bDec: t('bDec') as tf.Tensor1D,
      },
      {
        hookPoint: s.spec.hookPoint,
        activation: s.spec.arch.kind === 'topk' ? { kind: 'topk', k: s.spec.arch.k } : { kind: 'relu' },
        applyBDecToInput: true,
        inputScale: s.inputScale,
        provenance: { format: 'relp-train', steps: s.step, checkpoint: true },
      },
    );
  });
}
