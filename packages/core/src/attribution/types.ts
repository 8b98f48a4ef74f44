import type { PairBatch } from '../data.js';
import type { Metric } from '../metrics.js';
import type { Granularity, SiteDef, SiteName } from '../sites.js';
import type { RuleSet } from '../slots.js';
import type { JobRuns } from './run.js';

/**
 * The attribution methods (docs/method.md §7–§12). `atp` with a rule set is RelP; the names `relp` / `relp-ah` are
 * resolved to `atp` + a preset by `@relp/lrp-rules`.
 */
export type MethodKind = 'activation-patching' | 'atp' | 'ig';

/** Denoising: clean values into the corrupt run (default). Noising: corrupt values into the clean run. */
export type Direction = 'denoising' | 'noising';

/** A site to score; `SiteRequest<SiteName | SiteDef>` also takes a run-time site's definition (e.g. SAE features). */
export interface SiteRequest<S extends SiteName | SiteDef = SiteName> {
  readonly site: S;
  readonly granularity?: Granularity;
  /** Layers to score (default: all). */
  readonly layers?: readonly number[];
  /**
   * Activation patching: a unit at each position (default), or one unit patched at every position at once (its
   * score is reported at the first differing position; the gradient methods score per position either way).
   */
  readonly positions?: 'each' | 'all';
}

export interface Progress {
  readonly phase: string;
  readonly done: number;
  readonly total: number;
}

/** What every method takes: the sites, the metric and its direction, and what every run of the job carries. */
export interface CommonAttributeOptions {
  /** Sites to score; names and bare definitions mean position granularity. */
  readonly sites: readonly (SiteName | SiteDef | SiteRequest<SiteName | SiteDef>)[];
  /** Default: logit difference at the last position. */
  readonly metric?: Metric;
  /** Report scores of the normalised metric (m − m_corrupt)/(m_clean − m_corrupt). */
  readonly normalize?: boolean;
  readonly direction?: Direction;
  /** A label for the result (e.g. "relp"); defaults to the method, or "relp" style names from the rule set. */
  readonly label?: string;
  /** What every run of the job carries: run-time sites and the hooks that visit them (e.g. an SAE splice). */
  readonly runs?: JobRuns;
  readonly onProgress?: (p: Progress) => void;
  readonly signal?: AbortSignal;
}

/** Activation patching (docs/method.md §7): forward passes only, so no rules. */
export interface PatchingMethodOptions {
  readonly method: 'activation-patching';
  /**
   * Bounds one forward pass (memory): a full pass holds at most this many patched rows, a fast strategy's joined
   * prefix run 3× as many token rows (rows × positions) at its last block. Default 64.
   */
  readonly maxBatchRows?: number;
  /** Recompute only the blocks a patch can change (default 'fast') or run every patch through the whole model. */
  readonly patchingStrategy?: 'fast' | 'naive';
  readonly rules?: never;
}

/** Attribution patching (docs/method.md §8): AtP, or RelP when `rules` are given. */
export interface AtpMethodOptions {
  readonly method: 'atp';
  /** LRP rules for the backward pass (RelP); none by default. */
  readonly rules?: RuleSet;
}

/** Integrated gradients (docs/method.md §12). */
export interface IgMethodOptions {
  readonly method: 'ig';
  /** LRP rules for the backward pass of every step; none by default. */
  readonly rules?: RuleSet;
  /** Number of steps N (α_k = k/N, k = 1..N); default 10. */
  readonly igSteps?: number;
  /** Interpolate the input embeddings (default) or each scored site itself. */
  readonly igInterpolate?: 'embeddings' | 'site';
  /** The most batch rows one forward pass stacks (the steps are batched); default 64. */
  readonly maxBatchRows?: number;
}

/** A method and the knobs it takes: a knob another method would ignore is a type error (and BAD_INPUT at run time). */
export type MethodOptions = PatchingMethodOptions | AtpMethodOptions | IgMethodOptions;

/** The knobs (options beyond the method and the common ones) of each method. */
export const METHOD_KNOBS: { readonly [K in MethodKind]: readonly string[] } = {
  'activation-patching': ['maxBatchRows', 'patchingStrategy'],
  atp: ['rules'],
  ig: ['rules', 'igSteps', 'igInterpolate', 'maxBatchRows'],
};

export type AttributeOptions = MethodOptions & CommonAttributeOptions;

/** Scores per site: [layer][position], or [layer][position][unit] (head, neuron or feature). */
export type ScoreGrid = number[][] | number[][][];

/** Score grids by site name. */
export type SiteScores = Partial<Record<string, ScoreGrid>>;

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
  /** By site name (a model site's, or a run-time site's). */
  readonly scores: SiteScores;
  readonly granularity: Partial<Record<string, Granularity>>;
  readonly batchSize: number;
  readonly seqLen: number;
  readonly firstDiff: number;
  readonly cost: Cost;
  /** Integrated gradients only: Σ scores over resid_pre[0] vs m(clean) − m(corrupt) (completeness check). */
  readonly convergenceDelta?: number;
}

export type { PairBatch };
