import { badInput, type LanguageModel, type SiteName, siteKey } from '@relp/core';
import type { SaeHookPoint, SparseAutoencoder } from '../sae.js';
import type { TrainerState } from './state.js';

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

/** Refuses options no run can use (BAD_INPUT), before any tensor is made. */
export function validateTrainOptions(o: TrainOptions): void {
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
  const count = (name: string, v: number | undefined, min: number) => {
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= min))
      throw badInput(`${name} must be an integer ≥ ${min} (got ${v})`);
  };
  count('tokens', o.tokens, 1);
  count('batchWindows', o.batchWindows, 1);
  count('stepTokens', o.stepTokens, 1);
  count('evalBatchWindows', o.evalBatchWindows, 1);
  count('deadWindowTokens', o.deadWindowTokens, 1);
  count('checkpointEvery', o.checkpointEvery, 0);
  count('lrWarmupSteps', o.lrWarmupSteps, 0);
  count('skipPositions', o.skipPositions, 0);
  if (o.lr !== undefined && !(Number.isFinite(o.lr) && o.lr >= 0))
    throw badInput(`the learning rate must be a number ≥ 0 (got ${o.lr})`);
  if (o.windows.length === 0) throw badInput('no training windows');
  const T = o.windows[0]!.length;
  if ([...o.windows, ...(o.evalWindows ?? [])].some((w) => w.length !== T))
    throw badInput('training and held-out windows must all have the same length');
  const context = o.model.dims.contextLength;
  if (T > context)
    throw badInput(`windows of ${T} tokens are longer than the model's context of ${context} tokens`);
  if ((o.skipPositions ?? 1) >= T) throw badInput(`skipPositions must be below the window length ${T}`);
  const B = o.batchWindows ?? 8;
  if (o.windows.length < B)
    throw badInput(`${o.windows.length} training window(s) are fewer than one batch of ${B} windows`);
  for (const s of o.specs) {
    if (s.hookPoint.layer >= o.model.dims.nLayers)
      throw badInput(
        `site ${siteKey(s.hookPoint.site, s.hookPoint.layer)}: the model has ${o.model.dims.nLayers} layers`,
      );
  }
}

/** Parses "resid_post.3" into a hook point. */
export function parseHookPoint(s: string): SaeHookPoint {
  const m = /^([a-z_]+)\.(\d+)$/.exec(s.trim());
  if (!m) throw badInput(`site "${s}" is not <site>.<layer>, e.g. resid_post.6`);
  return { site: m[1] as SiteName, layer: Number(m[2]) };
}
