import { describeEachBackend, expectBitIdentical, installLeakGuard, seededRandom } from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import {
  applyRotary,
  attentionMaskBias,
  groupedQueryAttention,
  RunContext,
  ropeInverseFrequencies,
  rotaryTables,
} from '../src/index.js';

installLeakGuard();

function randomTensor(shape: number[], seed: number): tf.Tensor {
  const r = seededRandom(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(
    Float32Array.from({ length: n }, () => 2 * r() - 1),
    shape,
  );
}

/** HF's apply_rotary_pos_emb on the first rd dims, literally: x·cos + rotate_half(x)·sin with the plain sin. */
function literalRotary(x: tf.Tensor4D, cos: tf.Tensor2D, plainSin: tf.Tensor2D): tf.Tensor {
  const [b, t, h, dh] = x.shape;
  const rd = cos.shape[1];
  const half = rd / 2;
  const xr = tf.slice(x, [0, 0, 0, 0], [b, t, h, rd]);
  const x1 = tf.slice(xr, [0, 0, 0, 0], [b, t, h, half]);
  const x2 = tf.slice(xr, [0, 0, 0, half], [b, t, h, half]);
  const rotated = tf.concat([tf.neg(x2), x1], 3);
  const c = tf.reshape(cos, [1, t, 1, rd]);
  const s = tf.reshape(plainSin, [1, t, 1, rd]);
  const out = tf.add(tf.mul(xr, c), tf.mul(rotated, s));
  return rd === dh ? out : tf.concat([out, tf.slice(x, [0, 0, 0, rd], [b, t, h, dh - rd])], 3);
}

/** HF's repeat_kv then per-head attention, literally: every query head against its own copy of K and V. */
function literalAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor2D, scale: number) {
  const [b, t, h, dh] = q.shape;
  const rep = h / k.shape[2];
  const repeat = (x: tf.Tensor4D) =>
    tf.concat(
      Array.from({ length: h }, (_, i) => tf.slice(x, [0, 0, Math.floor(i / rep), 0], [b, t, 1, dh])),
      2,
    );
  const heads = (x: tf.Tensor) => tf.transpose(x, [0, 2, 1, 3]) as tf.Tensor4D; // [B,H,T,dh]
  const scores = tf.add(tf.mul(tf.matMul(heads(q), heads(repeat(k)), false, true), Math.fround(scale)), mask);
  return tf.transpose(tf.matMul(tf.softmax(scores), heads(repeat(v))), [0, 2, 1, 3]);
}

describeEachBackend('rotary embeddings', () => {
  for (const [name, dh, rd] of [
    ['full', 8, 8],
    ['partial', 8, 4],
  ] as const) {
    it(`${name} rotation equals HF's formula bit for bit, and its custom gradient equals autodiff of it`, () =>
      tf.tidy(() => {
        const inv = ropeInverseFrequencies({ theta: 10000, dim: rd, scaling: { type: 'default' } });
        const { cos, sin } = rotaryTables(inv, 5, 1, 3);
        // The signed table is [−sin, sin]: its halves are exact negatives of each other.
        const [first, second] = tf.split(sin, 2, 1);
        const plainSin = tf.concat([tf.neg(first!), second!], 1) as tf.Tensor2D;
        expectBitIdentical(
          tf.neg(first!).dataSync() as Float32Array,
          second!.dataSync() as Float32Array,
          'sin halves',
        );
        const x = randomTensor([2, 5, 3, dh], 7) as tf.Tensor4D;
        const dy = randomTensor([2, 5, 3, dh], 8);
        const ours = applyRotary(x, cos, sin);
        const theirs = literalRotary(x, cos, plainSin);
        expectBitIdentical(ours.dataSync() as Float32Array, theirs.dataSync() as Float32Array, 'forward');
        const g1 = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(applyRotary(a as tf.Tensor4D, cos, sin), dy)))(x);
        const g2 = tf.grad((a: tf.Tensor) =>
          tf.sum(tf.mul(literalRotary(a as tf.Tensor4D, cos, plainSin), dy)),
        )(x);
        expectBitIdentical(g1.dataSync() as Float32Array, g2.dataSync() as Float32Array, 'gradient');
      }));
  }
});

describeEachBackend('grouped-query attention', () => {
  for (const [h, hkv] of [
    [6, 2],
    [4, 4],
    [3, 1],
  ] as const) {
    it(`${h} query / ${hkv} KV heads equal per-head attention on repeated K and V, values and gradients`, () =>
      tf.tidy(() => {
        const [b, t, dh] = [2, 5, 4];
        const q = randomTensor([b, t, h, dh], 1) as tf.Tensor4D;
        const k = randomTensor([b, t, hkv, dh], 2) as tf.Tensor4D;
        const v = randomTensor([b, t, hkv, dh], 3) as tf.Tensor4D;
        const dz = randomTensor([b, t, h, dh], 4);
        const mask = attentionMaskBias(t);
        const ctx = new RunContext({});
        const ours = (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) =>
          groupedQueryAttention(ctx, 0, qq as tf.Tensor4D, kk as tf.Tensor4D, vv as tf.Tensor4D, {
            scale: dh ** -0.5,
            maskBias: mask,
          });
        const theirs = (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) =>
          literalAttention(qq as tf.Tensor4D, kk as tf.Tensor4D, vv as tf.Tensor4D, mask, dh ** -0.5);
        const z1 = ours(q, k, v);
        const z2 = theirs(q, k, v);
        expect(z1.shape).toEqual([b, t, h, dh]);
        expect(Math.max(...tf.abs(tf.sub(z1, z2)).dataSync())).toBeLessThan(1e-6);
        const g1 = tf.grads((a, c, d) => tf.sum(tf.mul(ours(a!, c!, d!), dz)))([q, k, v]);
        const g2 = tf.grads((a, c, d) => tf.sum(tf.mul(theirs(a!, c!, d!), dz)))([q, k, v]);
        for (let i = 0; i < 3; i++) {
          expect(g1[i]!.shape).toEqual(g2[i]!.shape);
          expect(Math.max(...tf.abs(tf.sub(g1[i]!, g2[i]!)).dataSync())).toBeLessThan(1e-5);
        }
        ctx.dispose();
      }));
  }
});
