import { installLeakGuard, useBackend } from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { valueAndGradsFreeingOnThrow } from '../src/index.js';

installLeakGuard();

class Boom extends Error {}

/** x·w with a customGrad that saves its inputs (as the LRP rules do) and whose backward may throw. */
function savingProduct(failInBackward: boolean) {
  return tf.customGrad((x, w, save) => {
    (save as tf.GradSaveFunc)([x as tf.Tensor, w as tf.Tensor]);
    return {
      value: tf.mul(x as tf.Tensor, w as tf.Tensor),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        if (failInBackward) throw new Boom('backward');
        return [tf.mul(dy, saved[1]!), tf.mul(dy, saved[0]!)];
      },
    };
  });
}

describe('valueAndGradsFreeingOnThrow', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  it('equals tf.valueAndGrads when nothing throws', () => {
    const x = tf.tensor1d([1, 2, 3]);
    const w = tf.tensor1d([4, 5, 6]);
    const f = (a: tf.Tensor) => tf.sum(tf.square(savingProduct(false)(a, w) as tf.Tensor)) as tf.Scalar;
    const ours = valueAndGradsFreeingOnThrow(f, [x]);
    const theirs = tf.valueAndGrads(f)([x]);
    expect(ours.value.dataSync()[0]).toBe(theirs.value.dataSync()[0]);
    expect(Array.from(ours.grads[0]!.dataSync())).toEqual(Array.from(theirs.grads[0]!.dataSync()));
    tf.dispose([x, w, ours.value, theirs.value, ...ours.grads, ...theirs.grads]);
  });

  for (const where of ['forward', 'backward'] as const) {
    it(`frees what tfjs saved for the backward pass when the ${where} pass throws`, () => {
      const x = tf.tensor1d([1, 2, 3]);
      const w = tf.tensor1d([4, 5, 6]);
      const live = tf.memory().numTensors;
      const f = (a: tf.Tensor): tf.Scalar => {
        const y = tf.exp(savingProduct(where === 'backward')(a, w) as tf.Tensor);
        if (where === 'forward') throw new Boom('forward');
        return tf.sum(y) as tf.Scalar;
      };
      expect(() => valueAndGradsFreeingOnThrow(f, [x])).toThrow(Boom);
      expect(tf.memory().numTensors, 'tensors left by the failed run').toBe(live);
      expect(x.isDisposed || w.isDisposed, 'the inputs belong to the caller').toBe(false);
      // The engine is usable afterwards: a plain gradient works and leaves nothing behind.
      const g = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(a, a)))(x);
      expect(Array.from(g.dataSync())).toEqual([2, 4, 6]);
      tf.dispose([x, w, g]);
    });
  }
});
