import {
  badInput,
  type Cost,
  checkRulesCover,
  type Direction,
  disposeAll,
  ErrorCodes,
  Job,
  type LanguageModel,
  logitDiff,
  type Metric,
  type ModelInput,
  NO_RULES,
  type PairBatch,
  type Progress,
  RelpError,
  type RuleSet,
  readMetric,
  Site,
  type SiteKey,
  siteKey,
  valueAndGradsFreeingOnThrow,
} from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';
import type { SparseAutoencoder } from './sae.js';
import { checkSaes, type SaeActs, type SaeNodeOptions, SaeSplice } from './splice.js';

export type FeatureMethod = 'activation-patching' | 'atp' | 'ig';

/** Scores summed over positions (one node per feature) or kept per position. */
export type PositionMode = 'sum' | 'each';

export interface FeatureAttributionOptions {
  /** `atp` with `rules` is RelP. */
  readonly method: FeatureMethod;
  readonly rules?: RuleSet;
  /** Name for the result ("relp", "atp", …); default: the method, or the rule set's name for atp with rules. */
  readonly label?: string;
  /** Denoising (default): clean values into the corrupt run. Noising: corrupt values into the clean run. */
  readonly direction?: Direction;
  /** Scores of the normalised metric (m − m_corrupt)/(m_clean − m_corrupt). */
  readonly normalize?: boolean;
  /** Default: logit difference at the last position. */
  readonly metric?: Metric;
  /** Integrated gradients: steps N (α_k = k/N, k = 1..N); default 10. */
  readonly igSteps?: number;
  /** One node per feature (summed over positions, default) or per (position, feature). */
  readonly positions?: PositionMode;
  /** Activation patching and IG: the most batch rows one forward pass stacks (default 64). */
  readonly maxBatchRows?: number;
  readonly onProgress?: (p: Progress) => void;
  readonly signal?: AbortSignal;
}

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
  readonly metric: {
    readonly name: string;
    readonly clean: number;
    readonly corrupt: number;
    readonly normalized: boolean;
  };
  readonly positions: PositionMode;
  readonly sites: SaeSiteScores[];
  readonly batchSize: number;
  readonly seqLen: number;
  readonly firstDiff: number;
  readonly cost: Cost;
}

const METHODS: readonly FeatureMethod[] = ['activation-patching', 'atp', 'ig'];

/**
 * Attribution to SAE features and error terms (METHOD.md §1, §6) with the SAEs spliced in at their sites:
 * activation patching (one patched node per stacked copy of the batch, only nodes whose source and base values
 * differ), AtP (RelP with `rules`): Σ_batch (a_source − a_base)·∂m/∂a from one source run and one base run with
 * gradients at every SAE's features and error, and IG as in Marks et al.: per SAE site, the features and error
 * interpolated from base to source in N steps, the mean gradient times the difference.
 */
export async function attributeFeatures(
  model: LanguageModel,
  batch: PairBatch,
  saes: readonly SparseAutoencoder[],
  options: FeatureAttributionOptions,
): Promise<FeatureAttributionResult> {
  if (!METHODS.includes(options.method)) {
    throw badInput(`unknown method '${String(options.method)}'; choose one of ${METHODS.join(', ')}`);
  }
  const rules = options.rules ?? NO_RULES;
  if (options.method === 'activation-patching' && rules !== NO_RULES) {
    throw badInput('activation patching runs forward passes only: LRP rules do not apply');
  }
  checkRulesCover(rules, model.nonlinearities, model.architecture);
  const direction = options.direction ?? 'denoising';
  if (direction !== 'denoising' && direction !== 'noising') {
    throw badInput(`unknown direction '${String(direction)}'`);
  }
  const positions = options.positions ?? 'sum';
  if (positions !== 'sum' && positions !== 'each') {
    throw badInput(`positions must be 'sum' or 'each' (got '${String(positions)}')`);
  }
  const steps = options.igSteps ?? 10;
  if (options.method === 'ig' && (!Number.isInteger(steps) || steps < 1)) {
    throw badInput(`integrated gradients needs a whole number of steps ≥ 1, got ${steps}`);
  }
  const bySite = checkSaes(model, saes);
  const metric = options.metric ?? logitDiff;
  const maxRows = options.maxBatchRows ?? 64;
  const job = new Job(model, batch, metric, direction, rules, options.signal, options.onProgress);
  try {
    let out: { mSource: number; mBase: number; raw: Map<SiteKey, RawScores> };
    if (options.method === 'atp') out = await gradientScores(job, bySite);
    else if (options.method === 'ig') out = await igScores(job, bySite, steps, maxRows);
    else out = await patchingScores(job, bySite, positions, maxRows);
    const mClean = direction === 'denoising' ? out.mSource : out.mBase;
    const mCorrupt = direction === 'denoising' ? out.mBase : out.mSource;
    const span = mClean - mCorrupt;
    if (options.normalize && (span === 0 || !Number.isFinite(span))) {
      throw badInput(`cannot normalise: the metric is ${mClean} on clean and ${mCorrupt} on corrupt prompts`);
    }
    const scale = options.normalize ? 1 / span : 1;
    const sites: SaeSiteScores[] = [];
    for (const [key, sae] of bySite) {
      sites.push(toSiteScores(key, sae.dSae, out.raw.get(key)!, positions, scale, batch.seqLen));
    }
    const label =
      options.label ?? (options.method === 'atp' && rules !== NO_RULES ? rules.name : options.method);
    return {
      method: options.method,
      label,
      rules: rules.name,
      direction,
      metric: { name: metric.name, clean: mClean, corrupt: mCorrupt, normalized: options.normalize === true },
      positions,
      sites,
      batchSize: batch.size,
      seqLen: batch.seqLen,
      firstDiff: batch.firstDiff,
      cost: job.cost(),
    };
  } finally {
    job.dispose();
  }
}

/**
 * Raw per-position scores of one SAE site: features [T·dSae] and error [T] (row-major), positions before the first
 * difference exactly 0. Positions are summed afterwards when asked.
 */
interface RawScores {
  readonly features: Float32Array;
  readonly error: Float32Array;
}

function toSiteScores(
  key: SiteKey,
  dSae: number,
  raw: RawScores,
  positions: PositionMode,
  scale: number,
  T: number,
): SaeSiteScores {
  if (positions === 'each') {
    const features: number[][] = [];
    for (let t = 0; t < T; t++) {
      features.push(Array.from(raw.features.subarray(t * dSae, (t + 1) * dSae), (v) => v * scale));
    }
    return { key, dSae, features, error: Array.from(raw.error, (v) => v * scale) };
  }
  const features = new Array<number>(dSae).fill(0);
  for (let t = 0; t < T; t++) for (let i = 0; i < dSae; i++) features[i]! += raw.features[t * dSae + i]!;
  let error = 0;
  for (let t = 0; t < T; t++) error += raw.error[t]!;
  return { key, dSae, features: features.map((v) => v * scale), error: error * scale };
}

/** A run of the job's base or source tokens with every SAE spliced in, recording features and errors. */
export async function splicedCachedRun(
  job: Job,
  which: 'base' | 'source',
  saes: ReadonlyMap<SiteKey, SparseAutoencoder>,
  extraCache: readonly SiteKey[] = [],
): Promise<{ m: number; acts: Map<SiteKey, SaeActs>; cache: Map<SiteKey, tf.Tensor> }> {
  const splice = new SaeSplice(saes, new Map([...saes.keys()].map((k) => [k, { cache: true }])));
  const ctx = job.context({ hooks: splice.hooks(), cache: extraCache });
  try {
    const value = tf.tidy(() =>
      job.metric.compute(
        job.forward({ tokens: which === 'base' ? job.baseTokens : job.sourceTokens }, ctx),
        job.batch,
      ),
    );
    ctx.assertAllVisited();
    splice.assertAllVisited();
    const m = await readMetric(value, job.metric, which === 'base' ? job.baseName : job.sourceName).finally(
      () => value.dispose(),
    );
    return { m, acts: splice.takeCache(), cache: ctx.takeCache() };
  } finally {
    ctx.dispose();
    splice.dispose();
  }
}

/** [1,T,1] float mask: 1 at positions ≥ firstDiff. */
function positionMask(job: Job): tf.Tensor {
  const T = job.batch.seqLen;
  return tf.tensor3d(
    Array.from({ length: T }, (_, t) => (t >= job.batch.firstDiff ? 1 : 0)),
    [1, T, 1],
  );
}

/** (a_source − a_base) · g summed over the batch (and the hidden axis for the error): features [T·dSae], error [T]. */
async function reduceScores(
  job: Job,
  source: SaeActs,
  base: SaeActs,
  gFeatures: tf.Tensor,
  gError: tf.Tensor,
): Promise<RawScores> {
  const [f, e] = tf.tidy(() => {
    const pm = positionMask(job);
    const pf = tf.mul(tf.mul(tf.sub(source.features, base.features), gFeatures), pm);
    const pe = tf.mul(tf.mul(tf.sub(source.error, base.error), gError), pm);
    return [tf.sum(pf, 0), tf.sum(pe, [0, 2])];
  });
  try {
    return { features: (await f!.data()) as Float32Array, error: (await e!.data()) as Float32Array };
  } finally {
    disposeAll(f, e);
  }
}

/** The metric and its gradients at every SAE's features and error (zero deltas), with the nodes recorded. */
async function metricAndNodeGrads(
  job: Job,
  input: ModelInput,
  saes: ReadonlyMap<SiteKey, SparseAutoencoder>,
  options: {
    rows: number;
    copies?: number;
    fromLayer?: number;
    nodes?: ReadonlyMap<SiteKey, SaeNodeOptions>;
    cache?: boolean;
    computeMetric?: (logits: tf.Tensor3D) => tf.Scalar;
  },
): Promise<{
  m: number;
  grads: Map<SiteKey, { features: tf.Tensor; error: tf.Tensor }>;
  acts: Map<SiteKey, SaeActs>;
}> {
  const T = job.batch.seqLen;
  const keys = [...saes.keys()];
  const deltas: tf.Tensor[] = [];
  for (const k of keys) {
    const sae = saes.get(k)!;
    deltas.push(tf.zeros([options.rows, T, sae.dSae]), tf.zeros([options.rows, T, sae.dIn]));
  }
  let splice: SaeSplice | undefined;
  let ctx: ReturnType<Job['context']> | undefined;
  try {
    const f = (...ds: tf.Tensor[]): tf.Scalar => {
      const nodes = new Map<SiteKey, SaeNodeOptions>();
      keys.forEach((k, i) => {
        nodes.set(k, {
          ...(options.nodes?.get(k) ?? {}),
          featureDelta: ds[2 * i]!,
          errorDelta: ds[2 * i + 1]!,
          cache: options.cache ?? false,
        });
      });
      splice = new SaeSplice(saes, nodes);
      ctx = job.context({ rules: job.rules, hooks: splice.hooks() });
      const logits = job.forward(input, ctx, options.copies ?? 1, options.fromLayer ?? 0);
      return options.computeMetric ? options.computeMetric(logits) : job.metric.compute(logits, job.batch);
    };
    const { value, grads } = valueAndGradsFreeingOnThrow(f, deltas);
    job.backwardPasses++;
    job.peak.sample();
    splice?.assertAllVisited();
    const m = await readMetric(value, job.metric, job.baseName).finally(() => value.dispose());
    const out = new Map<SiteKey, { features: tf.Tensor; error: tf.Tensor }>();
    keys.forEach((k, i) => {
      out.set(k, { features: grads[2 * i]!, error: grads[2 * i + 1]! });
    });
    return { m, grads: out, acts: splice ? splice.takeCache() : new Map() };
  } finally {
    ctx?.dispose();
    splice?.dispose();
    disposeAll(deltas);
  }
}

function disposeActs(...maps: (ReadonlyMap<SiteKey, SaeActs> | undefined)[]): void {
  for (const m of maps) if (m) for (const a of m.values()) tf.dispose([a.features, a.error]);
}

/** AtP / RelP: 2 forward passes and 1 backward pass for every SAE site at once. */
async function gradientScores(
  job: Job,
  saes: ReadonlyMap<SiteKey, SparseAutoencoder>,
): Promise<{ mSource: number; mBase: number; raw: Map<SiteKey, RawScores> }> {
  job.progress('forward (source)', 0, 3);
  const source = await splicedCachedRun(job, 'source', saes);
  let base: Awaited<ReturnType<typeof metricAndNodeGrads>> | undefined;
  try {
    job.progress('forward + backward (base)', 1, 3);
    base = await metricAndNodeGrads(job, { tokens: job.baseTokens }, saes, {
      rows: job.batch.size,
      cache: true,
    });
    const raw = new Map<SiteKey, RawScores>();
    for (const k of saes.keys()) {
      const g = base.grads.get(k)!;
      raw.set(k, await reduceScores(job, source.acts.get(k)!, base.acts.get(k)!, g.features, g.error));
    }
    job.progress('scores', 3, 3);
    return { mSource: source.m, mBase: base.m, raw };
  } finally {
    disposeActs(source.acts);
    disposeAll(source.cache);
    if (base) {
      disposeActs(base.acts);
      for (const g of base.grads.values()) tf.dispose([g.features, g.error]);
    }
  }
}

/** Where a run that only changes an SAE at this site can start: its block, from the base run's residual. */
function startLayer(sae: SparseAutoencoder): number {
  return sae.hookPoint.layer;
}

/** The sum over copies of the metric of each stacked copy of the batch. */
function summedCopiesMetric(job: Job, copies: number): (logits: tf.Tensor3D) => tf.Scalar {
  const B = job.batch.size;
  return (logits) =>
    tf.tidy(() =>
      tf.addN(
        Array.from({ length: copies }, (_, c) =>
          job.metric.compute(tf.slice(logits, [c * B, 0, 0], [B, -1, -1]) as tf.Tensor3D, job.batch),
        ),
      ),
    ) as tf.Scalar;
}

function tileRows(x: tf.Tensor, copies: number): tf.Tensor {
  return copies === 1 ? tf.clone(x) : tf.tile(x, [copies, ...new Array<number>(x.rank - 1).fill(1)]);
}

/**
 * IG (Marks et al.): for each SAE site on its own, the features and error are set to base + α_k (source − base),
 * α_k = k/N, the rest of the run being the base run; score = (source − base) · mean_k ∂m/∂(node). Several path
 * points share a forward pass as stacked copies; each point counts as one forward and one backward pass.
 */
async function igScores(
  job: Job,
  saes: ReadonlyMap<SiteKey, SparseAutoencoder>,
  steps: number,
  maxRows: number,
): Promise<{ mSource: number; mBase: number; raw: Map<SiteKey, RawScores> }> {
  const residKeys = [...new Set([...saes.values()].map((s) => siteKey(Site.ResidPre, startLayer(s))))];
  const source = await splicedCachedRun(job, 'source', saes);
  let base: Awaited<ReturnType<typeof splicedCachedRun>> | undefined;
  const B = job.batch.size;
  const perChunk = Math.max(1, Math.floor(maxRows / B));
  const as = Array.from({ length: steps }, (_, i) => (i + 1) / steps);
  try {
    base = await splicedCachedRun(job, 'base', saes, residKeys);
    const raw = new Map<SiteKey, RawScores>();
    const total = saes.size * steps;
    let done = 0;
    job.progress('integrated gradients', 0, total);
    for (const [key, sae] of saes) {
      const s = source.acts.get(key)!;
      const b = base.acts.get(key)!;
      const l = startLayer(sae);
      let sumF = tf.zerosLike(b.features);
      let sumE = tf.zerosLike(b.error);
      try {
        for (let i = 0; i < as.length; i += perChunk) {
          job.checkAborted();
          const chunk = as.slice(i, i + perChunk);
          const n = chunk.length;
          const owned: tf.Tensor[] = [];
          try {
            const interp = (x0: tf.Tensor, x1: tf.Tensor) =>
              tf.tidy(() => {
                const d = tf.sub(x1, x0);
                return tf.concat(
                  chunk.map((a) => tf.add(x0, tf.mul(d, a))),
                  0,
                );
              });
            const fVal = interp(b.features, s.features);
            const eVal = interp(b.error, s.error);
            const all = tf.ones([1, 1, 1], 'bool');
            const resid = tileRows(base.cache.get(siteKey(Site.ResidPre, l))!, n);
            owned.push(fVal, eVal, all, resid);
            const one = new Map([[key, sae]]);
            const { grads } = await metricAndNodeGrads(job, { resid: resid as tf.Tensor3D, layer: l }, one, {
              rows: n * B,
              copies: n,
              fromLayer: l,
              nodes: new Map([
                [
                  key,
                  {
                    featurePatches: [{ mask: all, value: fVal }],
                    errorPatches: [{ mask: all, value: eVal }],
                  },
                ],
              ]),
              computeMetric: summedCopiesMetric(job, n),
            });
            job.forwardPasses += n - 1;
            job.backwardPasses += n - 1;
            const g = grads.get(key)!;
            const sumCopies = (x: tf.Tensor) => tf.sum(tf.reshape(x, [n, B, ...x.shape.slice(1)]), 0);
            const [nf, ne] = tf.tidy(() => [
              tf.add(sumF, sumCopies(g.features)),
              tf.add(sumE, sumCopies(g.error)),
            ]);
            tf.dispose([sumF, sumE, g.features, g.error]);
            sumF = nf!;
            sumE = ne!;
          } finally {
            disposeAll(owned);
          }
          done += n;
          job.progress('integrated gradients', done, total);
        }
        const [mf, me] = tf.tidy(() => [tf.div(sumF, steps), tf.div(sumE, steps)]);
        try {
          raw.set(key, await reduceScores(job, s, b, mf!, me!));
        } finally {
          disposeAll(mf, me);
        }
      } finally {
        tf.dispose([sumF, sumE]);
      }
    }
    return { mSource: source.m, mBase: base.m, raw };
  } finally {
    disposeActs(source.acts, base?.acts);
    disposeAll(source.cache);
    if (base) disposeAll(base.cache);
  }
}

/** A patch unit at one SAE site: a feature (at a position, or every position) or the error (idem). */
interface PatchUnit {
  readonly kind: 'feature' | 'error';
  readonly index: number;
  /** undefined: every position. */
  readonly position?: number;
}

/**
 * Which nodes differ between source and base at positions ≥ firstDiff (others score exactly 0 and cost nothing).
 */
async function differingUnits(
  job: Job,
  s: SaeActs,
  b: SaeActs,
  positions: PositionMode,
): Promise<PatchUnit[]> {
  const T = job.batch.seqLen;
  const [fd, ed] = tf.tidy(() => {
    const f = tf.any(tf.notEqual(s.features, b.features), 0); // [T, dSae]
    const e = tf.any(tf.notEqual(s.error, b.error), [0, 2]); // [T]
    return [tf.cast(f, 'int32'), tf.cast(e, 'int32')];
  });
  const fData = await fd!.data();
  const eData = await ed!.data();
  disposeAll(fd, ed);
  const dSae = s.features.shape[2]!;
  const out: PatchUnit[] = [];
  if (positions === 'each') {
    for (let t = job.batch.firstDiff; t < T; t++) {
      for (let i = 0; i < dSae; i++)
        if (fData[t * dSae + i]) out.push({ kind: 'feature', index: i, position: t });
      if (eData[t]) out.push({ kind: 'error', index: 0, position: t });
    }
  } else {
    for (let i = 0; i < dSae; i++) {
      let any = false;
      for (let t = job.batch.firstDiff; t < T && !any; t++) any = fData[t * dSae + i] !== 0;
      if (any) out.push({ kind: 'feature', index: i });
    }
    let anyE = false;
    for (let t = job.batch.firstDiff; t < T && !anyE; t++) anyE = eData[t] !== 0;
    if (anyE) out.push({ kind: 'error', index: 0 });
  }
  return out;
}

/**
 * Activation patching: m(base run with one node set to its source value) − m(base), many nodes per forward pass
 * (one per stacked copy), each pass starting at the SAE's block from the base run's residual.
 */
async function patchingScores(
  job: Job,
  saes: ReadonlyMap<SiteKey, SparseAutoencoder>,
  positions: PositionMode,
  maxRows: number,
): Promise<{ mSource: number; mBase: number; raw: Map<SiteKey, RawScores> }> {
  const residKeys = [...new Set([...saes.values()].map((s) => siteKey(Site.ResidPre, startLayer(s))))];
  const source = await splicedCachedRun(job, 'source', saes);
  let base: Awaited<ReturnType<typeof splicedCachedRun>> | undefined;
  const B = job.batch.size;
  const T = job.batch.seqLen;
  const copies = Math.max(1, Math.floor(maxRows / B));
  try {
    base = await splicedCachedRun(job, 'base', saes, residKeys);
    const plan: { key: SiteKey; sae: SparseAutoencoder; units: PatchUnit[] }[] = [];
    for (const [key, sae] of saes) {
      plan.push({
        key,
        sae,
        units: await differingUnits(job, source.acts.get(key)!, base.acts.get(key)!, positions),
      });
    }
    const total = plan.reduce((a, p) => a + p.units.length, 0);
    let done = 0;
    job.progress('activation patching', 0, total);
    const raw = new Map<SiteKey, RawScores>();
    for (const { key, sae, units } of plan) {
      const features = new Float32Array(T * sae.dSae);
      const error = new Float32Array(T);
      const s = source.acts.get(key)!;
      const l = startLayer(sae);
      // 'sum' units stand for every position; their score is reported at the first differing position.
      const at = (u: PatchUnit) => u.position ?? job.batch.firstDiff;
      for (let start = 0; start < units.length; start += copies) {
        job.checkAborted();
        const chunk = units.slice(start, start + copies);
        const n = chunk.length;
        const tPos = positions === 'each' ? T : 1;
        const fMask = new Uint8Array(n * B * tPos * sae.dSae);
        const eMask = new Uint8Array(n * B * tPos);
        chunk.forEach((u, c) => {
          for (let b = 0; b < B; b++) {
            const row = c * B + b;
            const t = positions === 'each' ? u.position! : 0;
            if (u.kind === 'feature') fMask[(row * tPos + t) * sae.dSae + u.index] = 1;
            else eMask[row * tPos + t] = 1;
          }
        });
        const owned: tf.Tensor[] = [];
        let splice: SaeSplice | undefined;
        let ctx: ReturnType<Job['context']> | undefined;
        try {
          const fm = tf.tensor3d(fMask, [n * B, tPos, sae.dSae], 'bool');
          const em = tf.tensor3d(eMask, [n * B, tPos, 1], 'bool');
          const fv = tileRows(s.features, n);
          const ev = tileRows(s.error, n);
          const resid = tileRows(base.cache.get(siteKey(Site.ResidPre, l))!, n);
          owned.push(fm, em, fv, ev, resid);
          splice = new SaeSplice(
            new Map([[key, sae]]),
            new Map([
              [key, { featurePatches: [{ mask: fm, value: fv }], errorPatches: [{ mask: em, value: ev }] }],
            ]),
          );
          ctx = job.context({ hooks: splice.hooks() });
          const metric = summedCopiesMetricPerCopy(job, n);
          const values = tf.tidy(() =>
            metric(job.forward({ resid: resid as tf.Tensor3D, layer: l }, ctx!, n, l)),
          );
          const ms = await values.data();
          values.dispose();
          chunk.forEach((u, c) => {
            const v = ms[c]!;
            if (!Number.isFinite(v)) {
              throw new RelpError(
                ErrorCodes.NonFiniteMetric,
                `metric ${job.metric.name} is ${v} on a patched run`,
              );
            }
            const d = v - base!.m;
            if (u.kind === 'feature') features[at(u) * sae.dSae + u.index] = d;
            else error[at(u)] = d;
          });
        } finally {
          ctx?.dispose();
          splice?.dispose();
          disposeAll(owned);
        }
        done += n;
        job.progress('activation patching', done, total);
      }
      raw.set(key, { features, error });
    }
    return { mSource: source.m, mBase: base.m, raw };
  } finally {
    disposeActs(source.acts, base?.acts);
    disposeAll(source.cache);
    if (base) disposeAll(base.cache);
  }
}

/** The metric of each stacked copy, as a [copies] tensor. */
function summedCopiesMetricPerCopy(job: Job, copies: number): (logits: tf.Tensor3D) => tf.Tensor1D {
  const B = job.batch.size;
  return (logits) =>
    tf.stack(
      Array.from({ length: copies }, (_, c) =>
        job.metric.compute(tf.slice(logits, [c * B, 0, 0], [B, -1, -1]) as tf.Tensor3D, job.batch),
      ),
    ) as tf.Tensor1D;
}
