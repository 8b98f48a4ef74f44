import { describeEachBackend, installLeakGuard } from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { RunContext, Site, siteKey } from '../src/index.js';

installLeakGuard();

describeEachBackend('RunContext', () => {
  it('patches exactly the masked positions and records the patched value', () => {
    const x = tf.tensor3d([1, 2, 3, 4, 5, 6], [1, 3, 2]);
    const value = tf.fill([1, 3, 2], 9);
    const mask = tf.tensor3d([false, true, false], [1, 3, 1], 'bool');
    const key = siteKey(Site.AttnOut, 0);
    const ctx = new RunContext({ cache: [key], patches: new Map([[key, [{ mask, value }]]]) });
    const out = tf.tidy(() => ctx.site(Site.AttnOut, 0, x));
    expect(Array.from(out.dataSync())).toEqual([1, 2, 9, 9, 5, 6]);
    const cache = ctx.takeCache();
    expect(Array.from(cache.get(key)!.dataSync())).toEqual([1, 2, 9, 9, 5, 6]);
    ctx.assertAllVisited();
    tf.dispose([x, value, mask, out, ...cache.values()]);
  });

  it('gives the gradient at a site through a zero delta', () => {
    const x = tf.tensor3d([1, 2, 3, 4], [1, 2, 2]);
    const delta = tf.zeros([1, 2, 2]);
    const key = siteKey(Site.ResidPre, 1);
    const f = (d: tf.Tensor) => {
      const ctx = new RunContext({ deltas: new Map([[key, d]]) });
      const y = ctx.site(Site.ResidPre, 1, x);
      return tf.sum(tf.mul(y, y)) as tf.Scalar;
    };
    const g = tf.grad(f)(delta);
    expect(Array.from(g.dataSync())).toEqual([2, 4, 6, 8]);
    tf.dispose([x, delta, g]);
  });

  it('reports a requested site the model never reached', () => {
    const ctx = new RunContext({ cache: [siteKey(Site.MlpOut, 7)] });
    expect(() => ctx.assertAllVisited()).toThrow(/mlp_out\.7/);
  });
});
