import { RunContext, type SiteKey, siteKey } from '@relp/core';
import {
  describeEachBackend,
  expectBitIdentical,
  expectClose,
  installLeakGuard,
  maxAbsDiff,
} from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { FIXTURES, loadFixture, metricCoefficients, modelOf, tokensOf } from './fixtures.js';

installLeakGuard();

const NOT_SITES = new Set(['tokens', 'answer', 'wrong', 'metric', 'logits']);
const ATOL = 1e-4;
/** Largest errors seen, printed at the end for the report. */
const worst: Record<string, number> = {};
const note = (what: string, d: number): void => {
  worst[what] = Math.max(worst[what] ?? 0, d);
};

describeEachBackend('pythia parity with transformers', (backend) => {
  for (const name of FIXTURES) {
    it(`${name}: logits and every site within ${ATOL}`, () => {
      const f = loadFixture(name);
      const model = modelOf(f);
      const siteNames = f.expected.names().filter((n) => !NOT_SITES.has(n) && !n.startsWith('grad.'));
      // Every site the model declares is in the fixture, and vice versa.
      const declared = new Set<string>();
      for (const s of model.sites) {
        const layers = s === 'ln_final_scale' ? 1 : model.dims.nLayers;
        for (let l = 0; l < layers; l++) declared.add(siteKey(s, l));
      }
      expect(new Set(siteNames)).toEqual(declared);
      const ctx = new RunContext({ cache: siteNames as SiteKey[] });
      const tokens = tokensOf(f);
      const logits = model.forward({ tokens }, ctx);
      const cache = ctx.takeCache();
      expect(logits.shape).toEqual(f.expected.info('logits')!.shape);
      const dl = maxAbsDiff(logits.dataSync(), f.expected.get('logits')!.data);
      note(`${backend} logits`, dl);
      expect(dl, `logits max |Δ| ${dl}`).toBeLessThanOrEqual(ATOL);
      for (const key of siteNames) {
        const got = cache.get(key as SiteKey)!;
        const want = f.expected.get(key)!;
        expect(got.shape, key).toEqual([...want.shape]);
        const d = maxAbsDiff(got.dataSync(), want.data);
        note(`${backend} sites`, d);
        expect(d, `${name} ${key} max |Δ| ${d}`).toBeLessThanOrEqual(ATOL);
      }
      expect(ctx.slotCalls.normalize).toBe(2 * model.dims.nLayers + 1);
      expect(ctx.slotCalls.activation).toBe(model.dims.nLayers);
      expect(ctx.slotCalls.attention_softmax).toBe(model.dims.nLayers);
      for (const t of cache.values()) t.dispose();
      tf.dispose([logits, tokens]);
      model.dispose();
    });

    it(`${name}: site gradients match PyTorch's`, () => {
      const f = loadFixture(name);
      const model = modelOf(f);
      const gradNames = f.expected.names().filter((n) => n.startsWith('grad.'));
      expect(gradNames.length).toBeGreaterThanOrEqual(3 * model.dims.nLayers);
      const keys = gradNames.map((n) => n.slice('grad.'.length) as SiteKey);
      const deltas = keys.map((k) => tf.zeros(f.expected.info(`grad.${k}`)!.shape as number[]));
      const tokens = tokensOf(f);
      const coef = metricCoefficients(f, model.dims.vocabSize);
      const grads = tf.grads((...ds: tf.Tensor[]) => {
        const ctx = new RunContext({ deltas: new Map(keys.map((k, i) => [k, ds[i]!])) });
        return tf.sum(tf.mul(model.forward({ tokens }, ctx), coef));
      })(deltas);
      keys.forEach((k, i) => {
        const want = f.expected.get(`grad.${k}`)!.data;
        const scale = Math.max(...Array.from(want, Math.abs), 1e-12);
        const d = maxAbsDiff(grads[i]!.dataSync(), want) / scale;
        note(`${backend} gradients (relative)`, d);
        expect(d, `${name} grad ${k} relative max |Δ| ${d}`).toBeLessThanOrEqual(ATOL);
      });
      tf.dispose([...grads, ...deltas, tokens, coef]);
      model.dispose();
    });

    it(`${name}: a {resid, layer} start and readout reproduce the full run`, () => {
      const f = loadFixture(name);
      const model = modelOf(f);
      const L = model.dims.nLayers;
      const tokens = tokensOf(f);
      const ctx = new RunContext({ cache: [siteKey('resid_pre', 0), siteKey('resid_pre', L - 1)] });
      const full = model.forward({ tokens }, ctx);
      const cache = ctx.takeCache();
      // embed() is resid_pre.0.
      const emb = model.embed(tokens);
      expectBitIdentical(
        emb.dataSync() as Float32Array,
        cache.get('resid_pre.0')!.dataSync() as Float32Array,
      );
      for (const layer of [0, L - 1]) {
        const resid = cache.get(siteKey('resid_pre', layer)) as tf.Tensor3D;
        const again = model.forward({ resid, layer }, new RunContext());
        expectClose(again.dataSync(), full.dataSync(), 1e-6, `start at ${layer}`);
        again.dispose();
      }
      const readout = Array.from({ length: f.batch }, (_, b) => (b * 7 + 3) % f.seq);
      const rows = model.forward({ tokens }, new RunContext(), { readout });
      const V = model.dims.vocabSize;
      expect(rows.shape).toEqual([f.batch, 1, V]);
      const fullData = full.dataSync();
      const want = new Float32Array(f.batch * V);
      readout.forEach((p, b) => {
        want.set(fullData.subarray((b * f.seq + p) * V, (b * f.seq + p + 1) * V), b * V);
      });
      expectClose(rows.dataSync(), want, 1e-5, 'readout rows');
      for (const t of cache.values()) t.dispose();
      tf.dispose([full, rows, emb, tokens]);
      model.dispose();
    });
  }

  it('reports the largest errors', () => {
    console.log(`[${backend}] max errors vs transformers:`, JSON.stringify(worst));
  });
});
