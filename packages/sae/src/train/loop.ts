import { badInput, ErrorCodes, RelpError, siteKey } from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';
import { collectActivations } from './activations.js';
import { evaluateSaes } from './evaluate.js';
import { EPS_NORM } from './ops.js';
import { learningRateSchedule } from './schedule.js';
import { type SaeMetrics, type TrainOptions, type TrainResult, validateTrainOptions } from './spec.js';
import type { TrainerState } from './state.js';
import { type SaeTrainer, seededTrainer } from './trainer.js';

/**
 * Trains SAEs at several sites of a model from one activation stream: each model batch (batchWindows windows)
 * runs one forward pass that caches every site and stops after the deepest; each SAE then takes Adam steps of
 * stepTokens rows. Decoder rows stay unit norm (gradient projected, rows renormalised after each step); b_dec
 * starts at the geometric median (or mean) of the first batch; inputs are scaled to mean norm √dIn. Seeded and
 * deterministic: a run resumed from a checkpoint ends with the same weights as one that was never interrupted.
 */
export async function trainSaes(o: TrainOptions): Promise<TrainResult> {
  validateTrainOptions(o);
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
  const lrAt = learningRateSchedule(lr, totalSteps, o.lrWarmupSteps ?? 0, o.lrDecayFraction ?? 0.2);
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
    const recentWindow = Math.max(1, Math.ceil(totalBatches / 10));
    for (const [i, spec] of o.specs.entries())
      trainers.push(seededTrainer(model, spec, i, seed, recentWindow));
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
          tf.tidy(() =>
            tr.fitInputs(rows(acts.get(tr.key)!), o.normalizeInput ?? true, o.bDecInit ?? 'geometric_median'),
          );
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
              const dead = tr.deadMask(tokens + r0, deadWindow);
              const res = tr.trainStep(xb, { lr: lrAt(tr.step), beta1, beta2, eps, dead });
              const [e, l, fired] = await Promise.all([res.sqErr.data(), res.l0.data(), res.fired.data()]);
              tf.dispose([xb, dead, res.sqErr, res.l0, res.fired]);
              sq += e[0]!;
              l0 += l[0]!;
              tr.recordFiring(fired, tokens + r0 + n);
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
    const metrics: SaeMetrics[] = trainers.map((tr) => tr.metrics(dIn, tokens, deadWindow));
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
