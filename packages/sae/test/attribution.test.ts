import {
  attribute,
  batchTokens,
  Job,
  logitDiff,
  metricAndSiteGrads,
  Site,
  type SiteKey,
  siteKey,
} from '@relp/core';
import { presetByName } from '@relp/lrp-rules';
import { describeEachBackend, installLeakGuard } from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { attributeFeatures, checkSaes, type SparseAutoencoder } from '../src/index.js';
import { flat, type NodeOptions, spliceContext, TINY_MODELS, tinyBatch, tinySae } from './helpers.js';

installLeakGuard();

async function read(f: () => tf.Tensor): Promise<unknown> {
  const t = tf.tidy(f);
  const a = await t.array();
  t.dispose();
  return a;
}

const model = (name: string) => TINY_MODELS.find(([n]) => n === name)![1]();

function close(a: readonly number[], b: readonly number[], rel: number, what: string): void {
  expect(a.length, what).toBe(b.length);
  const scale = Math.max(1e-6, ...b.map(Math.abs));
  a.forEach((v, i) => {
    expect(Math.abs(v - b[i]!), `${what}[${i}]: ${v} vs ${b[i]}`).toBeLessThanOrEqual(rel * scale);
  });
}

/** The metric of one full forward pass over `tokens` with SAE nodes patched as given. */
async function metricWith(
  m: ReturnType<typeof model>,
  tokens: tf.Tensor2D,
  batch: ReturnType<typeof tinyBatch>,
  saes: ReadonlyMap<SiteKey, SparseAutoencoder>,
  nodes: ReadonlyMap<SiteKey, NodeOptions>,
): Promise<number> {
  const { ctx } = spliceContext(m, saes.values(), nodes);
  const v = tf.tidy(() =>
    logitDiff.compute(m.forward({ tokens }, ctx, { readout: [...batch.lastPositions] }), batch),
  );
  const out = (await v.data())[0]!;
  v.dispose();
  return out;
}

/** Features and error of every SAE on a plain run over `tokens`. */
function nodeValues(
  m: ReturnType<typeof model>,
  tokens: tf.Tensor2D,
  saes: ReadonlyMap<SiteKey, SparseAutoencoder>,
): Map<SiteKey, { features: tf.Tensor; error: tf.Tensor }> {
  const { ctx, acts } = spliceContext(
    m,
    saes.values(),
    new Map([...saes.keys()].map((k) => [k, { cache: true }])),
  );
  tf.tidy(() => {
    m.forward({ tokens }, ctx);
  });
  return acts();
}

describeEachBackend('feature attribution', () => {
  for (const name of ['gpt2', 'llama'] as const) {
    it(`${name}: Σ feature scores + error = the site-level AtP / RelP at that site, per position, both directions`, async () => {
      const m = model(name);
      const d = m.dims.dModel;
      const saes = [
        tinySae(d, 24, Site.ResidPre, 1, 1),
        tinySae(d, 16, Site.AttnOut, 0, 2, { kind: 'topk', k: 5 }, 1.7),
        tinySae(d, 16, Site.MlpOut, 1, 3),
      ];
      const batch = tinyBatch(m);
      try {
        for (const rules of [undefined, presetByName('relp')]) {
          for (const direction of ['denoising', 'noising'] as const) {
            const feat = await attributeFeatures(m, batch, saes, {
              method: 'atp',
              positions: 'each',
              rules,
              direction,
            });
            expect(feat.cost.forwardPasses).toBe(2);
            expect(feat.cost.backwardPasses).toBe(1);
            const site = await attribute(m, batch, {
              method: 'atp',
              rules,
              direction,
              sites: [
                { site: Site.ResidPre, layers: [1] },
                { site: Site.AttnOut, layers: [0] },
                { site: Site.MlpOut, layers: [1] },
              ],
            });
            expect(feat.metric.clean).toBeCloseTo(site.metric.clean, 5);
            expect(feat.metric.corrupt).toBeCloseTo(site.metric.corrupt, 5);
            for (const sae of saes) {
              const s = feat.sites.find((x) => x.key === siteKey(sae.hookPoint.site, sae.hookPoint.layer))!;
              const perPos = (s.features as number[][]).map(
                (row, t) => row.reduce((a, b) => a + b, 0) + (s.error as number[])[t]!,
              );
              const want = (site.scores[sae.hookPoint.site] as number[][])[sae.hookPoint.layer]!;
              close(perPos, want, 1e-4, `${name} ${rules?.name ?? 'atp'} ${direction} ${s.key}`);
              expect(Math.max(...want.map(Math.abs))).toBeGreaterThan(0);
              // The features carry part of it (not all in the error).
              expect(Math.max(...flat(s.features).map(Math.abs))).toBeGreaterThan(0);
            }
            // Summed positions are the per-position scores summed.
            const summed = await attributeFeatures(m, batch, saes, { method: 'atp', rules, direction });
            for (const [i, s] of summed.sites.entries()) {
              const each = feat.sites[i]!;
              const bySum = Array.from({ length: s.dSae }, (_, f) =>
                (each.features as number[][]).reduce((a, row) => a + row[f]!, 0),
              );
              close(s.features as number[], bySum, 1e-5, 'sum');
              expect(s.error).toBeCloseTo(
                (each.error as number[]).reduce((a, b) => a + b, 0),
                5,
              );
            }
          }
        }
      } finally {
        for (const s of saes) s.dispose();
        m.dispose();
      }
    });
  }

  it('hand-checked: feature AtP is Σ_b,t (f_clean − f_corrupt)_i · (W_dec ∂m/∂x)_i / scale, computed with loops', async () => {
    const m = model('gpt2');
    const d = m.dims.dModel;
    const F = 6;
    const scale = 2;
    const sae = tinySae(d, F, Site.AttnOut, 1, 9, { kind: 'relu' }, scale);
    const batch = tinyBatch(m);
    const key = siteKey(Site.AttnOut, 1);
    const job = new Job(m, batch, logitDiff, 'denoising');
    try {
      const feat = await attributeFeatures(m, batch, [sae], { method: 'atp', positions: 'each' });
      // Independent pieces: the site's activation on both runs and the site gradient on the corrupt run, from core.
      const clean = await job.cachedRun('source', [key]);
      const grad = await metricAndSiteGrads(job, { tokens: job.baseTokens }, [key], { cache: [key] });
      const xc = clean.cache.get(key)!;
      const xb = grad.cache.get(key)!;
      const fc = (await read(() => sae.encode(xc))) as number[][][];
      const fb = (await read(() => sae.encode(xb))) as number[][][];
      const g = (await grad.grads.get(key)!.array()) as number[][][];
      const wDec = (await sae.params.wDec.array()) as number[][];
      const T = batch.seqLen;
      const want: number[][] = Array.from({ length: T }, () => new Array<number>(F).fill(0));
      for (let b = 0; b < batch.size; b++) {
        for (let t = batch.firstDiff; t < T; t++) {
          for (let i = 0; i < F; i++) {
            let wg = 0;
            for (let j = 0; j < d; j++) wg += wDec[i]![j]! * g[b]![t]![j]!;
            want[t]![i]! += (fc[b]![t]![i]! - fb[b]![t]![i]!) * (wg / scale);
          }
        }
      }
      close(flat(feat.sites[0]!.features), flat(want), 1e-4, 'hand-checked features');
      expect(Math.max(...flat(want).map(Math.abs))).toBeGreaterThan(0);
      tf.dispose([...clean.cache.values(), ...grad.cache.values(), ...grad.grads.values()]);
      // Tiny literal case on a 2×3 SAE: f = relu(x·W_enc + b_enc); one position, the gradient through W_dec.
      const tiny = tinySae(3, 2, Site.AttnOut, 0, 1);
      const x = tf.tensor2d([[1, -2, 0.5]]);
      const f = flat(await read(() => tiny.encode(x)));
      const we = (await tiny.params.wEnc.array()) as number[][];
      const be = (await tiny.params.bEnc.data()) as Float32Array;
      const bd = (await tiny.params.bDec.data()) as Float32Array;
      const xin = [1 - bd[0]!, -2 - bd[1]!, 0.5 - bd[2]!];
      for (let i = 0; i < 2; i++) {
        const pre = xin[0]! * we[0]![i]! + xin[1]! * we[1]![i]! + xin[2]! * we[2]![i]! + be[i]!;
        expect(f[i]!).toBeCloseTo(Math.max(0, pre), 6);
      }
      x.dispose();
      tiny.dispose();
    } finally {
      job.dispose();
      sae.dispose();
      m.dispose();
    }
  });

  for (const name of ['gpt2', 'pythia'] as const) {
    it(`${name}: activation patching of features and errors equals one full forward pass per node`, async () => {
      const m = model(name);
      const d = m.dims.dModel;
      const saes = [
        tinySae(d, 10, Site.ResidPre, 1, 4),
        tinySae(d, 8, Site.MlpOut, 0, 5, { kind: 'topk', k: 3 }),
      ];
      const batch = tinyBatch(m);
      const bySite = checkSaes(m, saes);
      const corrupt = batchTokens(batch, 'corrupt');
      const clean = batchTokens(batch, 'clean');
      const src = nodeValues(m, clean, bySite);
      try {
        const mBase = await metricWith(m, corrupt, batch, bySite, new Map());
        for (const positions of ['sum', 'each'] as const) {
          const fast = await attributeFeatures(m, batch, saes, {
            method: 'activation-patching',
            positions,
            maxBatchRows: 3 * 4,
          });
          expect(fast.metric.corrupt).toBeCloseTo(mBase, 5);
          for (const s of fast.sites) {
            const sae = bySite.get(s.key)!;
            const v = src.get(s.key)!;
            const T = batch.seqLen;
            const positionsList = positions === 'sum' ? [undefined] : Array.from({ length: T }, (_, t) => t);
            const got: number[] = [];
            const want: number[] = [];
            for (const t of positionsList) {
              const posMask = (w: number) =>
                tf.tensor3d(
                  Array.from({ length: T * w }, (_, j) =>
                    t === undefined || Math.floor(j / w) === t ? 1 : 0,
                  ),
                  [1, T, w],
                  'bool',
                );
              for (let i = 0; i <= sae.dSae; i++) {
                const isError = i === sae.dSae;
                const mask = isError
                  ? posMask(1)
                  : tf.tidy(() =>
                      tf.logicalAnd(
                        posMask(sae.dSae),
                        tf.cast(
                          tf.reshape(tf.oneHot(tf.tensor1d([i], 'int32'), sae.dSae), [1, 1, sae.dSae]),
                          'bool',
                        ),
                      ),
                    );
                const nodes = new Map<SiteKey, NodeOptions>([
                  [
                    s.key,
                    isError
                      ? { errorPatches: [{ mask, value: v.error }] }
                      : { featurePatches: [{ mask, value: v.features }] },
                  ],
                ]);
                const effect = (await metricWith(m, corrupt, batch, bySite, nodes)) - mBase;
                mask.dispose();
                want.push(effect);
                if (positions === 'sum')
                  got.push(isError ? (s.error as number) : (s.features as number[])[i]!);
                else got.push(isError ? (s.error as number[])[t!]! : (s.features as number[][])[t!]![i]!);
              }
            }
            close(got, want, 1e-4, `${name} ${positions} ${s.key}`);
            expect(Math.max(...want.map(Math.abs))).toBeGreaterThan(0);
          }
        }
        // Fewer forward passes than nodes: nodes equal on both runs are skipped, the rest stacked.
        const ap = await attributeFeatures(m, batch, saes, {
          method: 'activation-patching',
          positions: 'each',
        });
        const nodes = saes.reduce((a, s) => a + (s.dSae + 1) * batch.seqLen, 0);
        expect(ap.cost.forwardPasses).toBeLessThan(nodes / 4);
      } finally {
        for (const a of src.values()) tf.dispose([a.features, a.error]);
        tf.dispose([corrupt, clean]);
        for (const s of saes) s.dispose();
        m.dispose();
      }
    });
  }

  it('IG with N steps equals the literal loop (one full forward + backward per step and SAE site)', async () => {
    const m = model('llama');
    const d = m.dims.dModel;
    const saes = [
      tinySae(d, 12, Site.ResidPost, 0, 6),
      tinySae(d, 10, Site.AttnOut, 1, 7, { kind: 'topk', k: 3 }),
    ];
    const batch = tinyBatch(m);
    const bySite = checkSaes(m, saes);
    const corrupt = batchTokens(batch, 'corrupt');
    const clean = batchTokens(batch, 'clean');
    const src = nodeValues(m, clean, bySite);
    const base = nodeValues(m, corrupt, bySite);
    const N = 4;
    try {
      for (const rules of [undefined, presetByName('relp')]) {
        const fast = await attributeFeatures(m, batch, saes, {
          method: 'ig',
          igSteps: N,
          rules,
          maxBatchRows: 2 * batch.size,
        });
        const job = new Job(m, batch, logitDiff, 'denoising', rules);
        try {
          for (const s of fast.sites) {
            const sae = bySite.get(s.key)!;
            const one = new Map([[s.key, sae]]);
            const sb = base.get(s.key)!;
            const ss = src.get(s.key)!;
            let gF = tf.zerosLike(sb.features);
            let gE = tf.zerosLike(sb.error);
            for (let k = 1; k <= N; k++) {
              const a = k / N;
              const fv = tf.tidy(() => tf.add(sb.features, tf.mul(tf.sub(ss.features, sb.features), a)));
              const ev = tf.tidy(() => tf.add(sb.error, tf.mul(tf.sub(ss.error, sb.error), a)));
              const all = tf.ones([1, 1, 1], 'bool');
              const fd = tf.zerosLike(sb.features);
              const ed = tf.zerosLike(sb.error);
              const { value, grads } = tf.valueAndGrads((x: tf.Tensor, y: tf.Tensor) => {
                const { ctx } = spliceContext(
                  m,
                  one.values(),
                  new Map([
                    [
                      s.key,
                      {
                        featurePatches: [{ mask: all, value: fv }],
                        errorPatches: [{ mask: all, value: ev }],
                        featureDelta: x,
                        errorDelta: y,
                      },
                    ],
                  ]),
                  rules ? { rules } : {},
                );
                return logitDiff.compute(
                  m.forward({ tokens: corrupt }, ctx, { readout: [...batch.lastPositions] }),
                  batch,
                );
              })([fd, ed]);
              const [nf, ne] = tf.tidy(() => [tf.add(gF, grads[0]!), tf.add(gE, grads[1]!)]);
              tf.dispose([value, gF, gE, fv, ev, all, fd, ed, ...grads]);
              gF = nf!;
              gE = ne!;
            }
            const wantF = tf.tidy(() =>
              tf.sum(tf.mul(tf.sub(ss.features, sb.features), tf.div(gF, N)), [0, 1]),
            );
            const wantE = tf.tidy(() => tf.sum(tf.mul(tf.sub(ss.error, sb.error), tf.div(gE, N))));
            close(s.features as number[], Array.from(await wantF.data()), 1e-4, `ig ${s.key}`);
            expect(s.error as number).toBeCloseTo((await wantE.data())[0]!, 4);
            expect(Math.max(...flat(s.features).map(Math.abs))).toBeGreaterThan(0);
            tf.dispose([gF, gE, wantF, wantE]);
          }
        } finally {
          job.dispose();
        }
        expect(fast.cost.forwardPasses).toBe(2 + saes.length * N);
        expect(fast.cost.backwardPasses).toBe(saes.length * N);
      }
    } finally {
      for (const a of [...src.values(), ...base.values()]) tf.dispose([a.features, a.error]);
      tf.dispose([corrupt, clean]);
      for (const s of saes) s.dispose();
      m.dispose();
    }
  });
});
