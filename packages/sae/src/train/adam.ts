import * as tf from '@tensorflow/tfjs-core';

/** Adam's hyper-parameters: learning rate, β1, β2, ε. */
export interface AdamHyperparameters {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
}

/** A trained variable with Adam's first (m) and second (v) moment estimates. */
export interface AdamSlot {
  readonly param: tf.Variable;
  readonly m: tf.Variable;
  readonly v: tf.Variable;
}

/** A slot over a new trainable variable holding `t`, with zero moments. `t` stays the caller's. */
export function adamSlot(t: tf.Tensor): AdamSlot {
  return {
    param: tf.variable(t, true),
    m: tf.tidy(() => tf.variable(tf.zerosLike(t), false)),
    v: tf.tidy(() => tf.variable(tf.zerosLike(t), false)),
  };
}

/**
 * Adam's step number `t` (from 1) on every slot, in order, with the bias corrections folded into the step size.
 * `grads` holds each slot's gradient under its variable's name. Call inside a tidy.
 */
export function adamStep(
  slots: Iterable<AdamSlot>,
  grads: tf.NamedTensorMap,
  t: number,
  o: AdamHyperparameters,
): void {
  const lrT = (o.lr * Math.sqrt(1 - o.beta2 ** t)) / (1 - o.beta1 ** t);
  for (const s of slots) {
    const g = grads[s.param.name]!;
    s.m.assign(tf.add(tf.mul(o.beta1, s.m), tf.mul(1 - o.beta1, g)));
    s.v.assign(tf.add(tf.mul(o.beta2, s.v), tf.mul(1 - o.beta2, tf.square(g))));
    s.param.assign(tf.sub(s.param, tf.mul(lrT, tf.div(s.m, tf.add(tf.sqrt(s.v), o.eps)))));
  }
}
