import * as tf from '@tensorflow/tfjs-core';
import type { Patch } from '../context.js';
import { ErrorCodes, RelpError } from '../errors.js';
import { disposeAll } from '../memory.js';
import { Site, type SiteKey, siteKey } from '../sites.js';
import { metricAndSiteGrads } from './gradient.js';
import { addCopies, alphas, embeddingPathGradSums, interpolate, summedCopiesMetric } from './path.js';
import type { ScoredKey } from './plan.js';
import { type LayerScores, reduceToGranularity, toLayerScores } from './reduce.js';
import type { Job } from './run.js';

/**
 * Integrated gradients (docs/method.md §12): score = Σ (a_source − a_base) · mean_k ∂m/∂a at α_k = k/N on the
 * straight path from base to source. `embeddings`: the path interpolates the input embeddings and the
 * gradients are taken at every site of the interpolated runs. `site`: each scored site is itself interpolated
 * (the rest of the run is the base run) and differentiated there. Several path points share one forward pass
 * (stacked along the batch axis); every point costs one forward and one backward pass in the count.
 */
export async function integratedGradients(
  job: Job,
  keys: readonly ScoredKey[],
  steps: number,
  mode: 'embeddings' | 'site',
  maxRows: number,
): Promise<{ mSource: number; mBase: number; perKey: Map<SiteKey, LayerScores>; convergenceDelta?: number }> {
  if (!Number.isInteger(steps) || steps < 1) {
    throw new RelpError(
      ErrorCodes.BadInput,
      `integrated gradients needs a whole number of steps ≥ 1, got ${steps}`,
    );
  }
  const siteKeys = keys.map((k) => k.key);
  const resid0 = siteKey(Site.ResidPre, 0);
  const source = await job.cachedRun('source', siteKeys);
  // Site mode starts each interpolated run at the site's block (from tokens for a site after every block).
  const starts = keys.map((k) => k.def.block(k.layer)).filter((l): l is number => l !== null);
  const baseKeys = [...new Set([...siteKeys, ...starts.map((l) => siteKey(Site.ResidPre, l))])];
  let base: Awaited<ReturnType<Job['cachedRun']>> | undefined;
  const B = job.batch.size;
  const perChunk = Math.max(1, Math.floor(maxRows / B));
  const as = alphas(steps);
  try {
    base = await job.cachedRun('base', baseKeys);
    const perKey = new Map<SiteKey, LayerScores>();
    const score = async (k: ScoredKey, gradSum: tf.Tensor): Promise<void> => {
      const reduced = tf.tidy(() =>
        reduceToGranularity(
          tf.mul(tf.sub(source.cache.get(k.key)!, base!.cache.get(k.key)!), tf.div(gradSum, steps)),
          k,
          job.readoutLayout(),
        ),
      );
      perKey.set(k.key, await toLayerScores(reduced, job.batch.firstDiff));
      reduced.dispose();
    };
    let convergenceDelta: number | undefined;

    if (mode === 'embeddings') {
      const eBase = job.model.embed(job.baseTokens);
      const eSource = job.model.embed(job.sourceTokens);
      const gradKeys = [...new Set([...siteKeys, resid0])];
      const sums = new Map<SiteKey, tf.Tensor>(gradKeys.map((k) => [k, tf.zeros(job.shapeOf(k))]));
      try {
        await embeddingPathGradSums(job, eBase, eSource, gradKeys, sums, steps, perChunk);
        for (const k of keys) await score(k, sums.get(k.key)!);
        // Completeness: Σ over the embeddings' attributions should equal m(source) − m(base) as N grows.
        const total = tf.tidy(() => tf.sum(tf.mul(tf.sub(eSource, eBase), tf.div(sums.get(resid0)!, steps))));
        convergenceDelta = (await total.data())[0]! - (source.m - base.m);
        total.dispose();
      } finally {
        disposeAll(eBase, eSource, sums);
      }
    } else {
      // Sites of one group (SiteDef.group) share each path; any other site is a group of its own.
      const groups: ScoredKey[][] = [];
      const named = new Map<string, ScoredKey[]>();
      for (const k of keys) {
        const name = k.def.group;
        const list = name === undefined ? undefined : named.get(name);
        if (list) list.push(k);
        else {
          groups.push([k]);
          if (name !== undefined) named.set(name, groups.at(-1)!);
        }
      }
      let done = 0;
      const total = groups.length * steps;
      job.progress('integrated gradients', 0, total);
      for (const group of groups) {
        const startLayer = group[0]!.def.block(group[0]!.layer);
        if (group.some((k) => k.def.block(k.layer) !== startLayer)) {
          throw new RelpError(
            ErrorCodes.BadInput,
            `sites ${group.map((k) => k.key).join(', ')} of one group belong to different blocks`,
          );
        }
        const sums = new Map<SiteKey, tf.Tensor>(group.map((k) => [k.key, tf.zeros(job.shapeOf(k.key))]));
        try {
          for (let s = 0; s < as.length; s += perChunk) {
            job.checkAborted();
            const chunk = as.slice(s, s + perChunk);
            const n = chunk.length;
            const owned: tf.Tensor[] = [];
            try {
              const patches = new Map<SiteKey, Patch[]>();
              for (const k of group) {
                const value = interpolate(base.cache.get(k.key)!, source.cache.get(k.key)!, chunk);
                owned.push(value);
                const mask = tf.ones(value.shape, 'bool');
                owned.push(mask);
                patches.set(k.key, [{ mask, value }]);
              }
              const tiled =
                startLayer === null
                  ? tf.tile(job.baseTokens, [n, 1])
                  : tf.tile(base.cache.get(siteKey(Site.ResidPre, startLayer))!, [n, 1, 1]);
              owned.push(tiled);
              const { grads } = await metricAndSiteGrads(
                job,
                startLayer === null
                  ? { tokens: tiled as tf.Tensor2D }
                  : { resid: tiled as tf.Tensor3D, layer: startLayer },
                group.map((k) => k.key),
                {
                  copies: n,
                  rows: n * B,
                  fromLayer: startLayer ?? 0,
                  patches,
                  computeMetric: summedCopiesMetric(job, n),
                },
              );
              addCopies(job, sums, grads, n);
            } finally {
              disposeAll(owned);
            }
            done += n;
            job.progress('integrated gradients', done, total);
          }
          for (const k of group) await score(k, sums.get(k.key)!);
        } finally {
          disposeAll(sums);
        }
      }
    }
    return {
      mSource: source.m,
      mBase: base.m,
      perKey,
      ...(convergenceDelta !== undefined ? { convergenceDelta } : {}),
    };
  } finally {
    disposeAll(source.cache);
    if (base) disposeAll(base.cache);
  }
}
