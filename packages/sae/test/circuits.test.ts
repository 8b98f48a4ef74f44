import {
  batchTokens,
  logitDiff,
  logThresholds,
  makePairBatch,
  RunContext,
  Site,
  type SiteKey,
} from '@relp/core';
import { describeEachBackend, installLeakGuard } from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import {
  attributeFeatures,
  checkSaes,
  FeatureCircuitEvaluator,
  featureCircuitToDot,
  featureNodeId,
  featureNodesFromResult,
  selectFeatureNodes,
  sweepFeatureCircuits,
  topActivatingContexts,
} from '../src/index.js';
import { spliceContext, TINY_MODELS, tinyBatch, tinySae } from './helpers.js';

installLeakGuard();

const gpt2 = () => TINY_MODELS[0]![1]();

describeEachBackend('sparse feature circuits', () => {
  it('empty and full circuits have faithfulness 0 and 1 (completeness 1 and 0); one ablated feature equals a literal mean ablation', async () => {
    const m = gpt2();
    const d = m.dims.dModel;
    const saes = [
      tinySae(d, 12, Site.ResidPre, 1, 1),
      tinySae(d, 10, Site.MlpOut, 0, 2, { kind: 'topk', k: 3 }),
    ];
    const discovery = tinyBatch(m, 4);
    const V = m.dims.vocabSize;
    const test = makePairBatch(
      [0, 1, 2].map((b) => {
        const clean = Array.from({ length: 6 + b }, (_, i) => (i * 7 + b * 11 + 3) % V);
        const corrupt = [...clean];
        corrupt[2] = (corrupt[2]! + 5) % V;
        return { clean, corrupt, answer: (b + 4) % V, wrong: (b + 12) % V };
      }),
      { dims: m.dims },
    );
    try {
      for (const positions of ['sum', 'each'] as const) {
        const attr = await attributeFeatures(m, discovery, saes, { method: 'atp', positions });
        const universe = featureNodesFromResult(attr).filter(
          (n) => n.position === undefined || n.position < test.seqLen,
        );
        const ev = await FeatureCircuitEvaluator.create(m, discovery, test, saes, { positions });
        try {
          expect(ev.mFull).not.toBeCloseTo(ev.mEmpty, 3);
          const empty = await ev.evaluate([]);
          expect(empty.faithfulness).toBe(0);
          expect(empty.completeness).toBe(1);
          const full = await ev.evaluate(ev.universe());
          expect(ev.universe().length).toBe((12 + 1 + 10 + 1) * (positions === 'each' ? test.seqLen : 1));
          expect(full.faithfulness).toBe(1);
          expect(full.completeness).toBe(0);
          // The full model is the model: the splice is exact.
          const plain = tf.tidy(() =>
            logitDiff.compute(
              m.forward({ tokens: batchTokens(test, 'clean') }, new RunContext(), {
                readout: [...test.lastPositions],
              }),
              test,
            ),
          );
          expect(ev.mFull).toBe((await plain.data())[0]);
          plain.dispose();
          if (positions === 'sum') {
            // Literal: ablate only the complement of {feature 3 at mlp_out.0} ... i.e. keep one node; compare with
            // a run that patches everything else to means computed here by loops.
            const keepNode = universe.find(
              (n) => n.key === 'mlp_out.0' && n.kind === 'feature' && n.index === 3,
            )!;
            const got = await ev.evaluate([keepNode]);
            const bySite = checkSaes(m, saes);
            const { ctx, acts: take } = spliceContext(
              m,
              saes,
              new Map([...bySite.keys()].map((k) => [k, { cache: true }])),
            );
            tf.tidy(() => {
              m.forward({ tokens: batchTokens(discovery, 'clean') }, ctx);
            });
            const acts = take();
            const owned: tf.Tensor[] = [];
            const nodes = new Map<SiteKey, object>();
            for (const [key, a] of acts) {
              const mean = async (x: tf.Tensor) => {
                const arr = (await x.array()) as number[][][];
                const w = x.shape[2]!;
                const out: number[][] = [];
                for (let t = 0; t < test.seqLen; t++) {
                  const row = new Array<number>(w).fill(0);
                  let count = 0;
                  const rows = discovery.lastPositions.map((lp, b) => [lp, b] as const);
                  const tt = t < discovery.seqLen ? t : -1;
                  for (const [lp, b] of rows) {
                    for (let s = 0; s <= lp; s++) {
                      if (tt >= 0 && s !== tt) continue;
                      count++;
                      for (let j = 0; j < w; j++) row[j]! += arr[b]![s]![j]!;
                    }
                  }
                  out.push(row.map((v) => v / count));
                }
                return tf.tensor3d([out]);
              };
              const fMean = await mean(a.features);
              const eMean = await mean(a.error);
              const F = a.features.shape[2]!;
              const fMask = tf.tensor3d(
                [[Array.from({ length: F }, (_, i) => !(key === 'mlp_out.0' && i === 3))]],
                [1, 1, F],
                'bool',
              );
              const eMask = tf.ones([1, 1, 1], 'bool');
              owned.push(fMean, eMean, fMask, eMask);
              nodes.set(key, {
                featurePatches: [{ mask: fMask, value: fMean }],
                errorPatches: [{ mask: eMask, value: eMean }],
              });
              tf.dispose([a.features, a.error]);
            }
            const { ctx: s2 } = spliceContext(m, saes, nodes as never);
            const v = tf.tidy(() =>
              logitDiff.compute(
                m.forward({ tokens: batchTokens(test, 'clean') }, s2, {
                  readout: [...test.lastPositions],
                }),
                test,
              ),
            );
            expect(got.mCircuit).toBeCloseTo((await v.data())[0]!, 4);
            tf.dispose([v, ...owned]);
            // A sweep: node counts grow as thresholds fall; the curve ends at the full circuit.
            const scored = featureNodesFromResult(
              await attributeFeatures(m, discovery, saes, { method: 'atp', normalize: true }),
            );
            const sweep = await sweepFeatureCircuits(ev, scored, [...logThresholds(1e-6, 10, 8), 0]);
            for (let i = 1; i < sweep.length; i++)
              expect(sweep[i]!.nodes).toBeGreaterThanOrEqual(sweep[i - 1]!.nodes);
            expect(sweep.at(-1)!.faithfulness).toBe(1);
            const topk = await sweepFeatureCircuits(ev, scored, [0, 1, 4], { mode: 'top-k' });
            expect(topk.map((p) => p.nodes)).toEqual([0, 1, 4]);
            expect(topk[0]!.faithfulness).toBe(0);
            const dot = featureCircuitToDot(selectFeatureNodes(scored, { mode: 'top-k', value: 5 }), {
              title: 't',
            });
            expect(dot).toMatch(/^digraph features \{/);
            expect(dot.match(/\[label=/g)!.length).toBe(5);
          }
        } finally {
          ev.dispose();
        }
      }
    } finally {
      for (const s of saes) s.dispose();
      m.dispose();
    }
  });

  it('top-activating contexts equal a brute-force scan', async () => {
    const m = gpt2();
    const d = m.dims.dModel;
    const sae = tinySae(d, 6, Site.ResidPost, 0, 3);
    const V = m.dims.vocabSize;
    const windows = Array.from({ length: 7 }, (_, w) =>
      Array.from({ length: 5 }, (_, i) => (w * 17 + i * 5 + 1) % V),
    );
    try {
      const top = await topActivatingContexts(m, [sae], windows, { topN: 3, batchSize: 3, skipPositions: 1 });
      const { ctx, acts } = spliceContext(m, [sae], new Map([['resid_post.0', { cache: true }]]));
      const tokens = tf.tensor2d(windows, [7, 5], 'int32');
      tf.tidy(() => {
        m.forward({ tokens }, ctx);
      });
      const a = acts().get('resid_post.0')!;
      const f = (await a.features.array()) as number[][][];
      tf.dispose([a.features, a.error, tokens]);
      for (let i = 0; i < 6; i++) {
        const best = f
          .map((row, w) => {
            let v = 0;
            let at = -1;
            for (let t = 1; t < 5; t++)
              if (row[t]![i]! > v) {
                v = row[t]![i]!;
                at = t;
              }
            return { window: w, position: at, activation: v };
          })
          .filter((x) => x.position >= 0)
          .sort((x, y) => y.activation - x.activation)
          .slice(0, 3);
        const got = top.get('resid_post.0')!.get(i)!;
        expect(got.map((x) => [x.window, x.position])).toEqual(best.map((x) => [x.window, x.position]));
        got.forEach((x, j) => {
          expect(x.activation).toBeCloseTo(best[j]!.activation, 5);
        });
      }
      expect(featureNodeId({ key: 'resid_post.0', kind: 'feature', index: 2, position: 4 })).toBe(
        'resid_post.0/f2@4',
      );
    } finally {
      sae.dispose();
      m.dispose();
    }
  });
});
