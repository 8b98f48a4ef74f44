import {
  type AttributionResult,
  attribute,
  badInput,
  type Cost,
  type Direction,
  type IgMethodOptions,
  type LanguageModel,
  type MethodOptions,
  type Metric,
  type PairBatch,
  type Progress,
  type SiteDef,
  type SiteKey,
  type SiteRequest,
} from '@relp/core';
import type { SparseAutoencoder } from './sae.js';
import { SaeSplice } from './splice.js';

export type FeatureMethod = 'activation-patching' | 'atp' | 'ig';

/** Scores summed over positions (one node per feature) or kept per position. */
export type PositionMode = 'sum' | 'each';

/**
 * A method and its knobs, as core's `attribute` takes them (a knob the method ignores is a type error); IG always
 * interpolates the SAE nodes themselves, so it has no `igInterpolate`.
 */
export type FeatureMethodOptions =
  | Exclude<MethodOptions, IgMethodOptions>
  | Omit<IgMethodOptions, 'igInterpolate'>;

export type FeatureAttributionOptions = FeatureMethodOptions & {
  /** Name for the result ("relp", "atp", …); default: the method, or the rule set's name for atp with rules. */
  readonly label?: string;
  /** Denoising (default): clean values into the corrupt run. Noising: corrupt values into the clean run. */
  readonly direction?: Direction;
  /** Scores of the normalised metric (m − m_corrupt)/(m_clean − m_corrupt). */
  readonly normalize?: boolean;
  /** Default: logit difference at the last position. */
  readonly metric?: Metric;
  /** One node per feature (summed over positions, default) or per (position, feature). */
  readonly positions?: PositionMode;
  readonly onProgress?: (p: Progress) => void;
  readonly signal?: AbortSignal;
};

/** One SAE site's scores: per feature ([dSae], or [T][dSae] per position) and for the error node. */
export interface SaeSiteScores {
  readonly key: SiteKey;
  readonly dSae: number;
  readonly features: number[] | number[][];
  readonly error: number | number[];
}

export interface FeatureAttributionResult {
  readonly method: FeatureMethod;
  readonly label: string;
  readonly rules: string;
  readonly direction: Direction;
  readonly metric: AttributionResult['metric'];
  readonly positions: PositionMode;
  readonly sites: SaeSiteScores[];
  readonly batchSize: number;
  readonly seqLen: number;
  readonly firstDiff: number;
  readonly cost: Cost;
}

/**
 * Attribution to SAE features and error terms (docs/method.md §15) with the SAEs spliced in at their sites, by core's
 * `attribute` on the SAEs' sites (see SaeSplice): activation patching (only nodes whose source and base values
 * differ are run), AtP (RelP with `rules`): Σ_batch (a_source − a_base)·∂m/∂a from one source run and one base run
 * with gradients at every SAE's features and error, and IG as in Marks et al.: per SAE, its features and error
 * interpolated together from base to source in N steps, the mean gradient times the difference. Positions are
 * summed here (`positions: 'sum'`), except for patching, where a node at every position is one patch.
 */
export async function attributeFeatures(
  model: LanguageModel,
  batch: PairBatch,
  saes: readonly SparseAutoencoder[],
  options: FeatureAttributionOptions,
): Promise<FeatureAttributionResult> {
  const positions = options.positions ?? 'sum';
  if (positions !== 'sum' && positions !== 'each') {
    throw badInput(`positions must be 'sum' or 'each' (got '${String(positions)}')`);
  }
  const splice = new SaeSplice(model, saes);
  const whole = options.method === 'activation-patching' && positions === 'sum';
  const sites: SiteRequest<SiteDef>[] = [...splice.sites.values()].flatMap((s) => [
    { site: s.features, granularity: 'feature' as const, ...(whole ? { positions: 'all' as const } : {}) },
    { site: s.error, ...(whole ? { positions: 'all' as const } : {}) },
  ]);
  const { positions: _, normalize: __, ...rest } = options;
  const r = await attribute(model, batch, {
    ...rest,
    ...(rest.method === 'ig' ? { igInterpolate: 'site' as const } : {}),
    sites,
    runs: splice.runs(),
  });
  const span = r.metric.clean - r.metric.corrupt;
  if (options.normalize && (span === 0 || !Number.isFinite(span))) {
    throw badInput(
      `cannot normalise: the metric is ${r.metric.clean} on clean and ${r.metric.corrupt} on corrupt prompts`,
    );
  }
  const scale = options.normalize ? 1 / span : 1;
  const T = batch.seqLen;
  return {
    method: r.method,
    label: r.label,
    rules: r.rules,
    direction: r.direction,
    metric: { ...r.metric, normalized: options.normalize === true },
    positions,
    sites: [...splice.sites.values()].map((s) => {
      let features = (r.scores[s.features.name] as number[][][])[0]!;
      let error = (r.scores[s.error.name] as number[][])[0]!;
      if (options.method === 'activation-patching') {
        // Float32, as the gradient methods' scores are (and as this function has always returned them).
        features = features.map((row) => row.map(Math.fround));
        error = error.map(Math.fround);
      }
      return toSiteScores(s.host, s.sae.dSae, features, error, positions, scale, T);
    }),
    batchSize: r.batchSize,
    seqLen: r.seqLen,
    firstDiff: r.firstDiff,
    cost: r.cost,
  };
}

/** One SAE's scores from its per-position grids ([T][dSae], [T]), positions summed in order when asked. */
function toSiteScores(
  key: SiteKey,
  dSae: number,
  perPosition: readonly (readonly number[])[],
  error: readonly number[],
  positions: PositionMode,
  scale: number,
  T: number,
): SaeSiteScores {
  if (positions === 'each') {
    return {
      key,
      dSae,
      features: perPosition.map((row) => row.map((v) => v * scale)),
      error: error.map((v) => v * scale),
    };
  }
  const features = new Array<number>(dSae).fill(0);
  for (let t = 0; t < T; t++) for (let i = 0; i < dSae; i++) features[i]! += perPosition[t]![i]!;
  let e = 0;
  for (let t = 0; t < T; t++) e += error[t]!;
  return { key, dSae, features: features.map((v) => v * scale), error: e * scale };
}
