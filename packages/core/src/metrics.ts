import * as tf from '@tensorflow/tfjs-core';
import type { PairBatch } from './data.js';
import { badInput, ErrorCodes, RelpError } from './errors.js';

/**
 * A scalar function of the logits. With `readout: 'last'` the model returns logits only at each prompt's
 * last position ([B,1,V]), which skips the unembedding everywhere else; with 'all' the logits are [B,T,V].
 * `compute` must be differentiable with respect to the logits and return a scalar.
 */
export interface Metric {
  readonly name: string;
  readonly readout: 'last' | 'all';
  /**
   * True when `compute` reads only the logits of each pair's `answer` and `wrong` tokens (and their column
   * order does not matter): it may then be given logits of only those columns with the ids renumbered
   * (`restrictToAnswers`), which the fast patching strategy does to skip most of the unembedding.
   */
  readonly answerTokensOnly?: boolean;
  compute(logits: tf.Tensor3D, batch: PairBatch): tf.Scalar;
}

/**
 * The answer and wrong tokens of a batch (sorted, distinct) and the batch with those ids renumbered to their
 * index in that list: logits restricted to the list's columns (ForwardOptions.vocab) then give an
 * `answerTokensOnly` metric the value it has on the full logits.
 */
export function restrictToAnswers(batch: PairBatch): { vocab: number[]; batch: PairBatch } {
  const vocab = [...new Set(batch.pairs.flatMap((p) => [p.answer, p.wrong]))].sort((a, b) => a - b);
  const index = new Map(vocab.map((t, i) => [t, i]));
  const pairs = batch.pairs.map((p) => ({ ...p, answer: index.get(p.answer)!, wrong: index.get(p.wrong)! }));
  return { vocab, batch: { ...batch, pairs } };
}

/**
 * m = mean_b( logit_b(answer_b) − logit_b(wrong_b) ) at each prompt's last position (docs/method.md §4).
 * Built from a ±1 one-hot matrix rather than gather, whose gradient some backends lack; the result is exact
 * (every other product is zero).
 */
export const logitDiff: Metric = {
  name: 'logit_diff',
  readout: 'last',
  answerTokensOnly: true,
  compute(logits, batch) {
    return tf.tidy(() => {
      const [b, , v] = logits.shape;
      if (b !== batch.size)
        throw new RelpError(ErrorCodes.Internal, `logits batch ${b} ≠ data batch ${batch.size}`);
      const answers = tf.tensor1d(
        batch.pairs.map((p) => p.answer),
        'int32',
      );
      const wrongs = tf.tensor1d(
        batch.pairs.map((p) => p.wrong),
        'int32',
      );
      const sign = tf.cast(tf.sub(tf.oneHot(answers, v), tf.oneHot(wrongs, v)), 'float32'); // [B,V]
      const last = tf.reshape(logits, [b, v]);
      return tf.mean(tf.sum(tf.mul(last, sign), 1)) as tf.Scalar;
    });
  },
};

/** (m − m_corrupt) / (m_clean − m_corrupt): 1 on the clean run, 0 on the corrupt run. */
export function normalizedMetric(base: Metric, mClean: number, mCorrupt: number): Metric {
  const span = mClean - mCorrupt;
  if (!Number.isFinite(span) || span === 0) {
    throw badInput(
      `cannot normalise ${base.name}: clean (${mClean}) and corrupt (${mCorrupt}) values ${span === 0 ? 'are equal' : 'are not finite'}`,
    );
  }
  return {
    name: `normalized_${base.name}`,
    readout: base.readout,
    ...(base.answerTokensOnly ? { answerTokensOnly: true } : {}),
    compute: (logits, batch) =>
      tf.tidy(() => tf.div(tf.sub(base.compute(logits, batch), mCorrupt), span) as tf.Scalar),
  };
}

/** A metric from any function of the logits (library users' own metrics). */
export function customMetric(
  name: string,
  compute: (logits: tf.Tensor3D, batch: PairBatch) => tf.Scalar,
  readout: 'last' | 'all' = 'all',
): Metric {
  return { name, readout, compute };
}

/** Reads a scalar and raises NonFiniteMetric for NaN or infinity. */
export async function readMetric(value: tf.Scalar, metric: Metric, where: string): Promise<number> {
  const v = (await value.data())[0]!;
  if (!Number.isFinite(v)) {
    throw new RelpError(ErrorCodes.NonFiniteMetric, `metric ${metric.name} is ${v} on the ${where} run`, {
      details: { where },
    });
  }
  return v;
}
