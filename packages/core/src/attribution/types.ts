import type { PairBatch } from '../data.js';
import type { Metric } from '../metrics.js';
import type { SiteName } from '../sites.js';
import type { RuleSet } from '../slots.js';

/**
 * The attribution methods (METHOD.md §1). `atp` with a rule set is RelP; the names `relp` / `relp-ah` are
 * resolved to `atp` + a preset by `@relp/lrp-rules`.
 */
export type MethodKind = 'activation-patching' | 'atp' | 'ig';

/** Denoising: clean values into the corrupt run (default). Noising: corrupt values into the clean run. */
export type Direction = 'denoising' | 'noising';

/**
 * What a score is computed for at a site: the whole [layer × position] cell summed over the hidden axis,
 * per head (sites with a head axis), or per neuron (the last axis: mlp_pre / mlp_post).
 */
export type Granularity = 'position' | 'head' | 'neuron';

export interface SiteRequest {
  readonly site: SiteName;
  readonly granularity?: Granularity;
  /** Layers to score (default: all). */
  readonly layers?: readonly number[];
}

export interface Progress {
  readonly phase: string;
  readonly done: number;
  readonly total: number;
}

export interface AttributeOptions {
  readonly method: MethodKind;
  /** Sites to score; strings mean position granularity. */
  readonly sites: readonly (SiteName | SiteRequest)[];
  /** Default: logit difference at the last position. */
  readonly metric?: Metric;
  /** Report scores of the normalised metric (m − m_corrupt)/(m_clean − m_corrupt). */
  readonly normalize?: boolean;
  readonly direction?: Direction;
  /** LRP rules for the backward pass of `atp` / `ig` (RelP); none by default. */
  readonly rules?: RuleSet;
  /** A label for the result (e.g. "relp"); defaults to the method, or "relp" style names from the rule set. */
  readonly label?: string;
  /** Integrated gradients: number of steps N (α_k = k/N, k = 1..N); default 10. */
  readonly igSteps?: number;
  /** Integrated gradients: interpolate the input embeddings (default) or each scored site itself. */
  readonly igInterpolate?: 'embeddings' | 'site';
  /**
   * Activation patching: bounds one forward pass (memory): a full pass holds at most this many patched rows, a
   * fast strategy's joined prefix run 3× as many token rows (rows × positions) at its last block. Default 64.
   */
  readonly maxBatchRows?: number;
  /** Activation patching: recompute only the blocks a patch can change (default true) or run naively. */
  readonly patchingStrategy?: 'fast' | 'naive';
  readonly onProgress?: (p: Progress) => void;
  readonly signal?: AbortSignal;
}

/** Scores per site: [layer][position], [layer][position][head] or [layer][position][neuron]. */
export type ScoreGrid = number[][] | number[][][];

export interface Cost {
  readonly forwardPasses: number;
  readonly backwardPasses: number;
  /** Forward passes counted in units of one full-model pass over the batch (partial passes are fractions). */
  readonly forwardEquivalents: number;
  readonly seconds: number;
  /** Largest tf.memory().numBytes sampled at every site and method step. */
  readonly peakTensorBytes: number;
}

export interface AttributionResult {
  readonly method: MethodKind;
  /** Human name: "activation-patching", "atp", "relp", "relp-ah", "ig", … */
  readonly label: string;
  readonly rules: string;
  readonly direction: Direction;
  readonly metric: {
    readonly name: string;
    readonly clean: number;
    readonly corrupt: number;
    readonly normalized: boolean;
  };
  readonly scores: Partial<Record<SiteName, ScoreGrid>>;
  readonly granularity: Partial<Record<SiteName, Granularity>>;
  readonly batchSize: number;
  readonly seqLen: number;
  readonly firstDiff: number;
  readonly cost: Cost;
  /** Integrated gradients only: Σ scores over resid_pre[0] vs m(clean) − m(corrupt) (completeness check). */
  readonly convergenceDelta?: number;
}

export type { PairBatch };
