import * as tf from '@tensorflow/tfjs-core';
import { disposeAll } from '../memory.js';
import type { SiteKey } from '../sites.js';
import { metricAndSiteGrads } from './gradient.js';
import type { Job } from './run.js';

// The straight-path machinery integrated gradients share, at sites and on edges: path points, stacked copies
// of a batch in one pass, and their gradients summed back per copy.

/**
 * The sum of `n` stacked copies' metrics: the gradient at each copy is that copy's gradient. Added pairwise,
 * not with one AddN: WebGPU's AddN binds every input as a storage buffer, and past the adapter's limit (8 on
 * many) it computes garbage.
 */
export function summedCopiesMetric(job: Job, n: number): (logits: tf.Tensor3D) => tf.Scalar {
  const B = job.batch.size;
  return (logits) =>
    tf.tidy(() =>
      Array.from({ length: n }, (_, c) =>
        job.metric.compute(tf.slice(logits, [c * B, 0, 0], [B, -1, -1]) as tf.Tensor3D, job.batch),
      ).reduce((a, b) => tf.add(a, b)),
    ) as tf.Scalar;
}

/**
 * Adds each key's gradient, summed over its `n` stacked copies, into `sums` (a key without a sum yet starts
 * one), frees the old sums and the gradients, and counts the copies beyond the first as the path points' own
 * forward and backward passes.
 */
export function addCopies(
  job: Job,
  sums: Map<SiteKey, tf.Tensor>,
  grads: ReadonlyMap<SiteKey, tf.Tensor>,
  n: number,
): void {
  job.backwardPasses += n - 1;
  job.forwardPasses += n - 1;
  for (const [k, g] of grads) {
    const old = sums.get(k);
    sums.set(
      k,
      tf.tidy(() => (old === undefined ? sumCopies(g, n) : tf.add(old, sumCopies(g, n)))),
    );
    old?.dispose();
  }
  disposeAll(grads);
}

/** Sum over the K stacked copies of a [K·B, …] tensor: [B, …]. */
function sumCopies(x: tf.Tensor, copies: number): tf.Tensor {
  return tf.tidy(() => tf.sum(tf.reshape(x, [copies, x.shape[0]! / copies, ...x.shape.slice(1)]), 0));
}

/** α_k = k/N for k = 1..N, the points of the straight path from base (α=0) to source (α=1). */
export function alphas(steps: number): number[] {
  return Array.from({ length: steps }, (_, i) => (i + 1) / steps);
}

/** base + α(source − base) for each α, stacked along the batch axis. */
export function interpolate(base: tf.Tensor, source: tf.Tensor, as: readonly number[]): tf.Tensor {
  return tf.tidy(() => {
    const diff = tf.sub(source, base);
    return tf.concat(
      as.map((a) => tf.add(base, tf.mul(diff, a))),
      0,
    );
  });
}

/**
 * Walks the straight path of the input embeddings from base to source in `steps` points (α_k = k/N), `perChunk`
 * points stacked in one pass, and adds each key's gradient, summed over the points, into `sums` (see
 * `addCopies`). Reports progress as `integrated gradients`, checks for an abort between passes.
 */
export async function embeddingPathGradSums(
  job: Job,
  eBase: tf.Tensor,
  eSource: tf.Tensor,
  keys: readonly SiteKey[],
  sums: Map<SiteKey, tf.Tensor>,
  steps: number,
  perChunk: number,
): Promise<void> {
  const B = job.batch.size;
  const as = alphas(steps);
  job.progress('integrated gradients', 0, steps);
  for (let s = 0; s < as.length; s += perChunk) {
    job.checkAborted();
    const chunk = as.slice(s, s + perChunk);
    const n = chunk.length;
    const resid = interpolate(eBase, eSource, chunk) as tf.Tensor3D;
    try {
      const { grads } = await metricAndSiteGrads(job, { resid, layer: 0 }, keys, {
        copies: n,
        rows: n * B,
        computeMetric: summedCopiesMetric(job, n),
      });
      addCopies(job, sums, grads, n);
    } finally {
      resid.dispose();
    }
    job.progress('integrated gradients', s + n, steps);
  }
}
