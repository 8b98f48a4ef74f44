import {
  attribute,
  ErrorCodes,
  isRelpError,
  RunContext,
  Site,
  type SiteKey,
  siteKey,
  withLeakGuard,
} from '@relp/core';
import { describeEachBackend, expectBitIdentical, installLeakGuard } from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { attributeFeatures, checkSaes } from '../src/index.js';
import { type NodeOptions, spliceContext, TINY_MODELS, tinyBatch, tinySae } from './helpers.js';

installLeakGuard();

describeEachBackend('SAE splice', () => {
  for (const [name, make] of TINY_MODELS) {
    it(`${name}: the forward is bit-identical with SAEs spliced in (cached, zero deltas, no-op patches)`, () => {
      const model = make();
      const d = model.dims.dModel;
      const saes = [
        tinySae(d, 24, Site.ResidPre, 0, 1),
        tinySae(d, 16, Site.AttnOut, 0, 2, { kind: 'topk', k: 4 }, 2.5),
        tinySae(d, 16, Site.MlpOut, 1, 3),
        tinySae(d, 12, Site.ResidPost, 1, 4),
      ];
      const batch = tinyBatch(model);
      const tokens = tf.tensor2d(
        batch.pairs.map((p) => [...p.clean, ...new Array(batch.seqLen - p.clean.length).fill(0)]),
        [batch.size, batch.seqLen],
        'int32',
      );
      try {
        const bySite = checkSaes(model, saes);
        const plain = tf.tidy(() => model.forward({ tokens }, new RunContext()).dataSync() as Float32Array);
        for (const variant of ['cache', 'deltas', 'patches'] as const) {
          const owned: tf.Tensor[] = [];
          const nodes = new Map<SiteKey, NodeOptions>();
          for (const [k, sae] of bySite) {
            if (variant === 'cache') nodes.set(k, { cache: true });
            else if (variant === 'deltas') {
              const fd = tf.zeros([batch.size, batch.seqLen, sae.dSae]);
              const ed = tf.zeros([batch.size, batch.seqLen, sae.dIn]);
              owned.push(fd, ed);
              nodes.set(k, { featureDelta: fd, errorDelta: ed, cache: true });
            } else {
              // An all-false mask: where() keeps every feature, but the splice takes its patched path.
              const mask = tf.zeros([1, 1, sae.dSae], 'bool');
              const value = tf.ones([1, 1, sae.dSae]);
              owned.push(mask, value);
              nodes.set(k, { featurePatches: [{ mask, value }] });
            }
          }
          const { ctx, acts } = spliceContext(model, saes, nodes);
          const spliced = tf.tidy(() => model.forward({ tokens }, ctx).dataSync() as Float32Array);
          ctx.assertAllVisited();
          expectBitIdentical(spliced, plain, `${name} ${variant}`);
          const cache = acts();
          if (variant !== 'patches') {
            expect(cache.size).toBe(saes.length);
            // Features really are the SAE's: decode(f) + err is the site's activation.
            const { features, error } = cache.get(siteKey(Site.MlpOut, 1))!;
            const ref = new RunContext({ cache: [siteKey(Site.MlpOut, 1)] });
            tf.tidy(() => {
              model.forward({ tokens }, ref);
            });
            const x = ref.takeCache().get(siteKey(Site.MlpOut, 1))!;
            const back = tf.tidy(() => tf.add(saes[2]!.decode(features), error));
            const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(back, x))).dataSync()[0]!);
            expect(diff).toBeLessThan(1e-4);
            const fRef = tf.tidy(() => saes[2]!.encode(x).dataSync());
            expectBitIdentical(features.dataSync() as Float32Array, fRef as Float32Array, 'features');
            tf.dispose([back, x]);
          }
          for (const a of cache.values()) tf.dispose([a.features, a.error]);
          tf.dispose(owned);
        }
      } finally {
        tokens.dispose();
        for (const s of saes) s.dispose();
        model.dispose();
      }
    });
  }

  it('an SAE whose width does not match its site, or a site that does not exist, is a clear error', () => {
    const [, make] = TINY_MODELS[0]!;
    const model = make();
    const wrong = tinySae(model.dims.dModel + 3, 8, Site.ResidPre, 1, 5);
    const deep = tinySae(model.dims.dModel, 8, Site.ResidPre, model.dims.nLayers + 2, 6);
    const twice = [
      tinySae(model.dims.dModel, 8, Site.AttnOut, 0, 7),
      tinySae(model.dims.dModel, 8, Site.AttnOut, 0, 8),
    ];
    try {
      const catchIt = (f: () => unknown): Error => {
        try {
          f();
        } catch (e) {
          return e as Error;
        }
        throw new Error('did not throw');
      };
      const e1 = catchIt(() => checkSaes(model, [wrong]));
      expect(isRelpError(e1) && (e1 as { code: string }).code).toBe(ErrorCodes.BadInput);
      expect(e1.message).toMatch(/d_in 35 but .*resid_pre is 32 wide/);
      expect(catchIt(() => checkSaes(model, [deep])).message).toMatch(/layer outside/);
      expect(catchIt(() => checkSaes(model, twice)).message).toMatch(/two SAEs at attn_out\.0/);
      expect(catchIt(() => checkSaes(model, [])).message).toMatch(/no SAEs/);
    } finally {
      for (const s of [wrong, deep, ...twice]) s.dispose();
      model.dispose();
    }
  });

  it('a run that throws leaves no hooks, no tensors, and the next run unchanged', async () => {
    const [, make] = TINY_MODELS[0]!;
    const model = make();
    const d = model.dims.dModel;
    const saes = [tinySae(d, 16, Site.ResidPre, 1, 1), tinySae(d, 16, Site.MlpOut, 0, 2)];
    const batch = tinyBatch(model);
    try {
      const before = await attributeFeatures(model, batch, saes, { method: 'atp' });
      const site = await attribute(model, batch, { method: 'atp', sites: [Site.ResidPre] });
      for (const method of ['atp', 'ig', 'activation-patching'] as const) {
        const controller = new AbortController();
        let calls = 0;
        await withLeakGuard(async () => {
          await expect(
            attributeFeatures(model, batch, saes, {
              method,
              signal: controller.signal,
              onProgress: () => {
                if (++calls === 2) controller.abort();
              },
            }),
          ).rejects.toMatchObject({ code: ErrorCodes.Aborted });
        });
        // A metric that throws inside the backward-recorded forward.
        await withLeakGuard(async () => {
          await expect(
            attributeFeatures(model, batch, saes, {
              method,
              metric: {
                name: 'broken',
                readout: 'last',
                compute: () => {
                  throw new Error('metric failed');
                },
              },
            }),
          ).rejects.toThrow(/metric failed/);
        });
      }
      const after = await attributeFeatures(model, batch, saes, { method: 'atp' });
      expect(after.sites).toEqual(before.sites);
      expect(after.metric).toEqual(before.metric);
      const siteAfter = await attribute(model, batch, { method: 'atp', sites: [Site.ResidPre] });
      expect(siteAfter.scores).toEqual(site.scores);
    } finally {
      for (const s of saes) s.dispose();
      model.dispose();
    }
  });
});
