import { type LanguageModel, RunContext, type SiteHook, siteKey } from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';
import type { SparseAutoencoder } from '../sae.js';
import type { SaeMetrics } from './spec.js';

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
