import { describeEachBackend, installLeakGuard } from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { SparseAutoencoder } from '../src/index.js';

installLeakGuard();

describeEachBackend('SparseAutoencoder', () => {
  it('TopK keeps exactly the k largest positive pre-activations and passes gradients through them', () => {
    const d = 4;
    const F = 6;
    const wEnc = tf.tensor2d(
      Array.from({ length: d * F }, (_, i) => Math.sin(i * 1.7)),
      [d, F],
    );
    const sae = new SparseAutoencoder(
      { wEnc, bEnc: tf.zeros([F]), wDec: tf.transpose(wEnc) as tf.Tensor2D, bDec: tf.zeros([d]) },
      { hookPoint: { site: 'resid_pre', layer: 0 }, activation: { kind: 'topk', k: 2 } },
    );
    const x = tf.tensor2d([
      [1, -0.5, 0.3, 2],
      [0.1, 0.2, -1, 0.4],
    ]);
    const pre = tf.tidy(() => sae.preActivations(x).arraySync() as number[][]);
    const f = tf.tidy(() => sae.encode(x).arraySync() as number[][]);
    pre.forEach((row, r) => {
      const top = [...row].sort((a, b) => b - a).slice(0, 2);
      const want = row.map((v) => (v >= top[1]! && v > 0 ? v : 0));
      expect(f[r]).toEqual(want);
    });
    const g = tf.grad((xx: tf.Tensor) => tf.sum(sae.encode(xx)))(x);
    expect(g.shape).toEqual([2, d]);
    expect(Math.max(...tf.tidy(() => g.abs().dataSync()))).toBeGreaterThan(0);
    tf.dispose([x, g]);
    sae.dispose();
  });
});
