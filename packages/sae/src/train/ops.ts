import * as tf from '@tensorflow/tfjs-core';

/** Floor of norms and variances that are divided by. */
export const EPS_NORM = 1e-8;

/** Identity with no gradient (the AuxK target is a constant of the step). */
export const stopGradient = (x: tf.Tensor): tf.Tensor =>
  tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor;
    return {
      value: tf.clone(input),
      gradFunc: (dy: tf.Tensor | tf.Tensor[]) => tf.zerosLike(dy as tf.Tensor),
    };
  })(x) as tf.Tensor;

/** The k-th largest entry of each row [n, 1], a constant of the step (no gradient through tf.topk). */
export const kthLargestConst = (x: tf.Tensor, k: number): tf.Tensor =>
  tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor;
    const { values } = tf.topk(input, k, true);
    return {
      value: tf.slice(values, [0, k - 1], [input.shape[0]!, 1]),
      gradFunc: () => tf.zerosLike(input),
    };
  })(x) as tf.Tensor;

/** Geometric median of the rows of x [n, d] (Weiszfeld iterations from the mean). */
export function geometricMedian(x: tf.Tensor2D, iterations = 30): tf.Tensor1D {
  return tf.tidy(() => {
    let b = tf.mean(x, 0) as tf.Tensor1D;
    for (let i = 0; i < iterations; i++) {
      const next = tf.tidy(() => {
        const dist = tf.sqrt(tf.sum(tf.square(tf.sub(x, b)), 1, true));
        const w = tf.div(1, tf.maximum(dist, 1e-6));
        return tf.div(tf.sum(tf.mul(w, x), 0), tf.sum(w)) as tf.Tensor1D;
      });
      b.dispose();
      b = next;
    }
    return b;
  });
}

/** Rows of w scaled to unit L2 norm. */
export function unitRows(w: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.div(w, tf.maximum(tf.norm(w, 2, 1, true), EPS_NORM)) as tf.Tensor2D);
}
