import * as tf from '@tensorflow/tfjs-core';
import { badInput, ErrorCodes, RelpError } from './errors.js';
import type { ModelDims } from './model.js';

/** One clean/corrupt pair as token ids, with the metric's answer and wrong tokens. */
export interface TokenPair {
  readonly clean: readonly number[];
  readonly corrupt: readonly number[];
  readonly answer: number;
  readonly wrong: number;
}

/**
 * A batch of pairs ready to run: right-padded to the longest pair (padding after a prompt's end cannot affect
 * its positions in a causal model, so every result is exact), with each prompt's last position.
 */
export interface PairBatch {
  readonly pairs: readonly TokenPair[];
  readonly size: number;
  /** Padded sequence length. */
  readonly seqLen: number;
  /** Index of each prompt's last real token. */
  readonly lastPositions: readonly number[];
  /** First position where any pair's clean and corrupt differ: every estimator is exactly 0 before it. */
  readonly firstDiff: number;
  readonly padId: number;
}

export interface MakeBatchOptions {
  readonly dims: Pick<ModelDims, 'vocabSize' | 'contextLength'>;
  /** Token used for right padding (any valid id; it never influences the real positions). */
  readonly padId?: number;
}

/** Validates pairs against the model and builds a batch. Errors name the pair index. */
export function makePairBatch(pairs: readonly TokenPair[], options: MakeBatchOptions): PairBatch {
  const { vocabSize, contextLength } = options.dims;
  if (pairs.length === 0) throw badInput('no prompt pairs: the data set is empty');
  const padId = options.padId ?? 0;
  let seqLen = 0;
  let firstDiff = Number.POSITIVE_INFINITY;
  const lastPositions: number[] = [];
  pairs.forEach((p, i) => {
    if (p.clean.length === 0) throw badInput(`pair ${i}: the clean prompt is empty`, { pair: i });
    if (p.clean.length !== p.corrupt.length) {
      throw badInput(
        `pair ${i}: clean and corrupt have different token lengths (${p.clean.length} vs ${p.corrupt.length}); ` +
          'patching needs positions that correspond one to one',
        { pair: i, clean: p.clean.length, corrupt: p.corrupt.length },
      );
    }
    if (p.clean.length > contextLength) {
      throw new RelpError(
        ErrorCodes.BadTokens,
        `pair ${i}: ${p.clean.length} tokens exceed the model's context of ${contextLength}`,
        { details: { pair: i } },
      );
    }
    for (const [what, ids] of [
      ['clean', p.clean],
      ['corrupt', p.corrupt],
      ['answer', [p.answer]],
      ['wrong', [p.wrong]],
    ] as const) {
      for (const id of ids) {
        if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
          throw new RelpError(
            ErrorCodes.BadTokens,
            `pair ${i}: ${what} token id ${id} is outside the vocabulary [0, ${vocabSize})`,
            { details: { pair: i, id } },
          );
        }
      }
    }
    seqLen = Math.max(seqLen, p.clean.length);
    lastPositions.push(p.clean.length - 1);
    const d = p.clean.findIndex((t, j) => t !== p.corrupt[j]);
    if (d >= 0) firstDiff = Math.min(firstDiff, d);
  });
  if (!Number.isFinite(firstDiff)) {
    throw badInput('clean and corrupt prompts are identical in every pair: there is nothing to attribute');
  }
  if (!Number.isInteger(padId) || padId < 0 || padId >= vocabSize) {
    throw badInput(`pad id ${padId} is outside the vocabulary`);
  }
  return { pairs, size: pairs.length, seqLen, lastPositions, firstDiff, padId };
}

/** Token ids [B, T] (int32) of the clean or corrupt prompts, right-padded. */
export function batchTokens(batch: PairBatch, which: 'clean' | 'corrupt'): tf.Tensor2D {
  const ids = new Int32Array(batch.size * batch.seqLen).fill(batch.padId);
  batch.pairs.forEach((p, b) => {
    ids.set(p[which], b * batch.seqLen);
  });
  return tf.tensor2d(ids, [batch.size, batch.seqLen], 'int32');
}
