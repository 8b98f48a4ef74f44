import * as tf from '@tensorflow/tfjs-core';
import type { RunContext } from '../context.js';
import { disposeAll, valueAndGradsFreeingOnThrow } from '../memory.js';
import { readMetric } from '../metrics.js';
import type { ModelInput } from '../model.js';
import type { SiteKey } from '../sites.js';
import type { ScoredKey } from './plan.js';
import { type LayerScores, reduceToGranularity, toLayerScores } from './reduce.js';
import type { Job } from './run.js';

/**
 * One forward pass with zero deltas at `keys` and one backward pass: the metric and its gradient at every
 * key. `extraCache` keys are recorded (not differentiated). The run uses the job's rules.
 */
export async function metricAndSiteGrads(
  job: Job,
  input: ModelInput,
  keys: readonly SiteKey[],
  options: {
    copies?: number;
    fromLayer?: number;
    patches?: Parameters<Job['context']>[0]['patches'];
    cache?: readonly SiteKey[];
    rows?: number;
    computeMetric?: (logits: tf.Tensor3D) => tf.Scalar;
  } = {},
): Promise<{ m: number; grads: Map<SiteKey, tf.Tensor>; cache: Map<SiteKey, tf.Tensor> }> {
  const rows = options.rows ?? job.batch.size;
  const deltas = keys.map((k) => tf.zeros(job.shapeOf(k, rows)));
  let ctx: RunContext | undefined;
  try {
    const f = (...ds: tf.Tensor[]): tf.Scalar => {
      ctx = job.context({
        rules: job.rules,
        deltas: new Map(keys.map((k, i) => [k, ds[i]!])),
        cache: options.cache ?? [],
        ...(options.patches ? { patches: options.patches } : {}),
      });
      const logits = job.forward(input, ctx, options.copies ?? 1, options.fromLayer ?? 0);
      return options.computeMetric ? options.computeMetric(logits) : job.metric.compute(logits, job.batch);
    };
    const { value, grads } = valueAndGradsFreeingOnThrow(f, deltas);
    job.backwardPasses++;
    job.peak.sample();
    let m: number;
    try {
      m = await readMetric(value, job.metric, job.baseName);
    } catch (e) {
      disposeAll(grads); // a metric that is not finite: the gradients are the caller's only on success
      throw e;
    } finally {
      value.dispose();
    }
    return {
      m,
      grads: new Map(keys.map((k, i) => [k, grads[i]!])),
      cache: ctx ? ctx.takeCache() : new Map(),
    };
  } finally {
    ctx?.dispose();
    disposeAll(deltas);
  }
}

/**
 * Attribution patching, and relevance patching when the job has LRP rules (docs/method.md §8–§9): a source run
 * recording the sites, a base run recording them with gradients of the metric, then
 * score = Σ_batch Σ_hidden (a_source − a_base) · ∂m/∂a per position (and head or neuron).
 * Costs 2 forward passes and 1 backward pass whatever the number of sites.
 */
export async function gradientAttribution(
  job: Job,
  keys: readonly ScoredKey[],
): Promise<{ mSource: number; mBase: number; perKey: Map<SiteKey, LayerScores> }> {
  const siteKeys = keys.map((k) => k.key);
  job.progress('forward (source)', 0, 3);
  const source = await job.cachedRun('source', siteKeys);
  let base: Awaited<ReturnType<typeof metricAndSiteGrads>> | undefined;
  try {
    job.progress('forward + backward (base)', 1, 3);
    base = await metricAndSiteGrads(job, { tokens: job.baseTokens }, siteKeys, { cache: siteKeys });
    const perKey = new Map<SiteKey, LayerScores>();
    for (const k of keys) {
      const reduced = tf.tidy(() =>
        reduceToGranularity(
          tf.mul(tf.sub(source.cache.get(k.key)!, base!.cache.get(k.key)!), base!.grads.get(k.key)!),
          k,
          job.readoutLayout(),
        ),
      );
      perKey.set(k.key, await toLayerScores(reduced, job.batch.firstDiff));
      reduced.dispose();
    }
    job.progress('scores', 3, 3);
    return { mSource: source.m, mBase: base.m, perKey };
  } finally {
    disposeAll(source.cache);
    if (base) disposeAll(base.grads, base.cache);
  }
}
