// Parity with Hugging Face's GPT2LMHeadModel (transformers 5.24, eager attention, float32) on the fixtures
// written by tools/oracles/gpt2_fixtures.py: logits, every site, and gradients of a logit difference with
// respect to site deltas, on every backend.
import { RunContext, Site, type SiteKey, type SiteName, siteKey } from '@relp/core';
import { describeEachBackend, installLeakGuard, maxAbsDiff, useBackend } from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type Gpt2Model, gpt2Family } from '../src/index.js';
import { expectedF32, expectedI32, GPT2_FIXTURES, type Gpt2Fixture, loadFixture } from './fixtures.js';

installLeakGuard();

const ATOL = 1e-4;
const LAYER_SITES: readonly SiteName[] = [
  Site.ResidPre,
  Site.ResidMid,
  Site.ResidPost,
  Site.AttnOut,
  Site.MlpOut,
  Site.Q,
  Site.K,
  Site.V,
  Site.Pattern,
  Site.Z,
  Site.Result,
  Site.MlpPre,
  Site.MlpPost,
  Site.Ln1Scale,
  Site.Ln2Scale,
];
const GRAD_SITES: readonly SiteName[] = [
  Site.ResidPre,
  Site.AttnOut,
  Site.MlpOut,
  Site.Q,
  Site.K,
  Site.V,
  Site.Z,
  Site.MlpPre,
  Site.MlpPost,
];

/** Largest errors seen, per fixture and backend, printed at the end (for the report). */
const worst = new Map<string, { act: number; logits: number; grad: number }>();

function allSiteKeys(model: Gpt2Model): SiteKey[] {
  const keys: SiteKey[] = [siteKey(Site.LnFinalScale, 0)];
  for (let l = 0; l < model.dims.nLayers; l++) for (const s of LAYER_SITES) keys.push(siteKey(s, l));
  return keys;
}

for (const name of GPT2_FIXTURES) {
  describeEachBackend(`GPT-2 parity with HF: ${name}`, (backend) => {
    let fx: Gpt2Fixture;
    let model: Gpt2Model;
    let tokens: tf.Tensor2D;
    const record = (kind: 'act' | 'logits' | 'grad', err: number) => {
      const k = `${name} [${backend}]`;
      const w = worst.get(k) ?? { act: 0, logits: 0, grad: 0 };
      w[kind] = Math.max(w[kind], err);
      worst.set(k, w);
    };

    beforeAll(async () => {
      await useBackend(backend);
      fx = loadFixture(name);
      const t = expectedI32(fx, 'tokens');
      model = gpt2Family.fromHfConfig(fx.config, fx.weights);
      tokens = tf.tensor2d(t.data, t.shape as [number, number], 'int32');
    });
    afterAll(() => {
      model?.dispose();
      tokens?.dispose();
    });

    it('logits match without hooks', () => {
      const logits = model.forward({ tokens }, new RunContext());
      const exp = expectedF32(fx, 'logits');
      expect(logits.shape).toEqual(exp.shape);
      const err = maxAbsDiff(logits.dataSync(), exp.data);
      record('logits', err);
      expect(err, 'logits').toBeLessThanOrEqual(ATOL);
      logits.dispose();
    });

    it('every site and the logits match with every site recorded (per-head results on)', () => {
      const keys = allSiteKeys(model);
      const ctx = new RunContext({ cache: keys });
      const logits = model.forward({ tokens }, ctx);
      ctx.assertAllVisited();
      const cache = ctx.takeCache();
      try {
        expect(maxAbsDiff(logits.dataSync(), expectedF32(fx, 'logits').data)).toBeLessThanOrEqual(ATOL);
        for (const key of keys) {
          const got = cache.get(key)!;
          const exp = expectedF32(fx, key);
          expect(got.shape, key).toEqual(exp.shape);
          const err = maxAbsDiff(got.dataSync(), exp.data);
          record('act', err);
          expect(err, `${key} max |Δ|`).toBeLessThanOrEqual(ATOL);
        }
      } finally {
        tf.dispose([logits, ...cache.values()]);
      }
    });

    it('site gradients of the logit difference match PyTorch', () => {
      const [B, T] = tokens.shape;
      const answer = expectedI32(fx, 'metric_answer').data;
      const wrong = expectedI32(fx, 'metric_wrong').data;
      const V = model.dims.vocabSize;
      const sel = new Float32Array(B * V);
      for (let b = 0; b < B; b++) {
        sel[b * V + answer[b]!] = 1 / B;
        sel[b * V + wrong[b]!] = -1 / B; // answer ≠ wrong
      }
      const selector = tf.tensor3d(sel, [B, 1, V]);
      const keys: SiteKey[] = [];
      const deltas: tf.Tensor[] = [];
      for (let l = 0; l < model.dims.nLayers; l++) {
        for (const s of GRAD_SITES) {
          const key = siteKey(s, l);
          keys.push(key);
          deltas.push(tf.zeros(expectedF32(fx, `grad.${key}`).shape as number[]));
        }
      }
      const { value, grads } = tf.valueAndGrads((...ds: tf.Tensor[]) => {
        const ctx = new RunContext({ deltas: new Map(keys.map((k, i) => [k, ds[i]!])) });
        const logits = model.forward({ tokens }, ctx, { readout: new Array(B).fill(T - 1) });
        return tf.sum(tf.mul(logits, selector)) as tf.Scalar;
      })(deltas);
      try {
        const metric = expectedF32(fx, 'metric').data[0]!;
        expect(Math.abs(value.dataSync()[0]! - metric)).toBeLessThanOrEqual(ATOL);
        let largest = 0;
        for (const k of keys)
          for (const g of expectedF32(fx, `grad.${k}`).data) largest = Math.max(largest, Math.abs(g));
        keys.forEach((key, i) => {
          const err = maxAbsDiff(grads[i]!.dataSync(), expectedF32(fx, `grad.${key}`).data) / largest;
          record('grad', err);
          expect(err, `grad.${key} max |Δ| / max |g|`).toBeLessThanOrEqual(ATOL);
        });
      } finally {
        tf.dispose([value, ...grads, ...deltas, selector]);
      }
    });
  });
}

afterAll(() => {
  for (const [k, w] of worst) {
    console.log(
      `parity ${k}: logits ${w.logits.toExponential(2)}, sites ${w.act.toExponential(2)}, grads (rel. to max) ${w.grad.toExponential(2)}`,
    );
  }
});
