import {
  type LanguageModel,
  makePairBatch,
  type PairBatch,
  type RuleSet,
  RunContext,
  Site,
  type SlotKind,
  siteKey,
} from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';

/** Two prompts of six tokens (ids valid in every test vocabulary), with answer/wrong tokens for the metric. */
export function testBatch(model: LanguageModel): PairBatch {
  return makePairBatch(
    [
      { clean: [3, 7, 1, 12, 5, 9], corrupt: [3, 7, 1, 14, 5, 9], answer: 4, wrong: 11 },
      { clean: [2, 8, 8, 6, 19, 0], corrupt: [2, 8, 8, 10, 19, 0], answer: 13, wrong: 2 },
    ],
    { dims: model.dims },
  );
}

export function tokensOf(batch: PairBatch): tf.Tensor2D {
  return tf.tensor2d(
    batch.pairs.map((p) => [...p.corrupt]),
    [batch.size, batch.seqLen],
    'int32',
  );
}

/**
 * m = mean_b(logit_b(answer_b) − logit_b(wrong_b)) with a float32 ±1 matrix. (Core's `logitDiff` multiplies the
 * float32 logits by an int32 one-hot, and under vitest the mixed-dtype cast fails when @relp/core is imported
 * before tfjs-core's main entry: see the package README's notes.)
 */
export function logitDiffMetric(logits: tf.Tensor, batch: PairBatch): tf.Scalar {
  return tf.tidy(() => {
    const v = logits.shape[logits.shape.length - 1]!;
    const sign = new Float32Array(batch.size * v);
    batch.pairs.forEach((p, b) => {
      sign[b * v + p.answer]! += 1;
      sign[b * v + p.wrong]! -= 1;
    });
    const last = tf.reshape(logits, [batch.size, v]);
    return tf.mean(tf.sum(tf.mul(last, tf.tensor2d(sign, [batch.size, v])), 1)) as tf.Scalar;
  });
}

export interface RunResult {
  readonly logits: Float32Array;
  readonly metric: number;
  /** ∂̃m/∂resid_pre[0] */
  readonly grad: Float32Array;
  /** resid_pre[0] itself (the embeddings). */
  readonly resid0: Float32Array;
  readonly slotCalls: Record<SlotKind, number>;
}

/**
 * One forward and backward pass on the batch's corrupt prompts: logits at the last positions, the logit
 * difference, and its gradient at resid_pre[0] through a zero delta. `rules` goes into the run context.
 */
export function runWithGrad(model: LanguageModel, batch: PairBatch, rules?: RuleSet): RunResult {
  const owned: tf.Tensor[] = [];
  const own = <T extends tf.Tensor>(t: T): T => {
    owned.push(t);
    return t;
  };
  try {
    const tokens = own(tokensOf(batch));
    const resid0 = own(model.embed(tokens));
    const delta = own(tf.zerosLike(resid0));
    const key = siteKey(Site.ResidPre, 0);
    let logitsT: tf.Tensor | undefined;
    let slotCalls: Record<SlotKind, number> | undefined;
    const f = (d: tf.Tensor): tf.Scalar => {
      const deltas = new Map([[key, d]]);
      const ctx = new RunContext(rules ? { deltas, rules } : { deltas });
      const logits = model.forward({ tokens }, ctx, { readout: batch.lastPositions });
      slotCalls = { ...ctx.slotCalls };
      logitsT = own(tf.keep(tf.clone(logits)));
      return logitDiffMetric(logits, batch);
    };
    const { value, grad } = tf.valueAndGrad(f)(delta);
    own(value);
    own(grad);
    return {
      logits: new Float32Array(logitsT!.dataSync()),
      metric: value.dataSync()[0]!,
      grad: new Float32Array(grad.dataSync()),
      resid0: new Float32Array(resid0.dataSync()),
      slotCalls: slotCalls!,
    };
  } finally {
    tf.dispose(owned);
  }
}

/** Logits of a forward pass with no gradient (the tape off). */
export function logitsOf(model: LanguageModel, batch: PairBatch, rules?: RuleSet): Float32Array {
  const tokens = tokensOf(batch);
  const ctx = new RunContext(rules ? { rules } : {});
  const logits = model.forward({ tokens }, ctx, { readout: batch.lastPositions });
  const out = new Float32Array(logits.dataSync());
  tf.dispose([tokens, logits]);
  return out;
}
