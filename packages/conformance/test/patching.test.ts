import { attribute, makePairBatch, Site, type SiteRequest } from '@relp/core';
import { randomGpt2Model } from '@relp/models-gpt2';
import { randomPythiaModel } from '@relp/models-pythia';
import { describeEachBackend, installLeakGuard } from '@relp/testing';
import { expect, it } from 'vitest';

/**
 * Fast exact patching (batched patches, restart at the patched block from cached residuals, positions before the
 * first difference skipped) must give the numbers of the literal way: one full forward pass per patch over every
 * position. Per position, head and neuron, on both families.
 */
installLeakGuard();

const sites: SiteRequest[] = [
  { site: Site.ResidPre },
  { site: Site.AttnOut },
  { site: Site.MlpOut },
  { site: Site.Z, granularity: 'head' },
  { site: Site.MlpPost, granularity: 'neuron', layers: [1] },
];

function flat(g: unknown): number[] {
  return Array.isArray(g) ? g.flatMap(flat) : [g as number];
}

describeEachBackend('activation patching fast = naive', () => {
  for (const [name, make] of [
    ['gpt2', () => randomGpt2Model('tiny', 4, { initializerRange: 0.3, biasStd: 0.1 })],
    ['pythia', () => randomPythiaModel('pythia-tiny', 4, { std: 0.3, biasStd: 0.1 })],
  ] as const) {
    it(name, { timeout: 400_000 }, async () => {
      const model = make();
      try {
        const V = model.dims.vocabSize;
        const pairs = [0, 1, 2].map((b) => {
          const clean = Array.from({ length: 7 }, (_, i) => (i * 13 + b * 5 + 1) % V);
          const corrupt = [...clean];
          corrupt[3 + (b % 2)] = (corrupt[3 + (b % 2)]! + 7) % V;
          return { clean, corrupt, answer: (b + 2) % V, wrong: (b + 9) % V };
        });
        const batch = makePairBatch(pairs, { dims: model.dims });
        for (const direction of ['denoising', 'noising'] as const) {
          const fast = await attribute(model, batch, {
            method: 'activation-patching',
            sites,
            direction,
            maxBatchRows: 12,
          });
          const naive = await attribute(model, batch, {
            method: 'activation-patching',
            sites,
            direction,
            patchingStrategy: 'naive',
          });
          expect(fast.cost.forwardPasses).toBeLessThan(naive.cost.forwardPasses);
          for (const s of sites) {
            const f = flat(fast.scores[s.site]);
            const n = flat(naive.scores[s.site]);
            const scale = Math.max(...n.map(Math.abs));
            expect(scale, `${s.site} has effects`).toBeGreaterThan(0);
            const worst = Math.max(...f.map((v, i) => Math.abs(v - n[i]!)));
            expect(worst / scale, `${direction} ${s.site}`).toBeLessThanOrEqual(1e-5);
            // Before the first difference every effect is exactly zero, also the literal way.
            const T = batch.seqLen;
            const grid = naive.scores[s.site] as unknown[][];
            for (const row of grid)
              for (let p = 0; p < batch.firstDiff && p < T; p++)
                expect(flat(row[p])).toEqual(flat(row[p]).map(() => 0));
          }
        }
      } finally {
        model.dispose();
      }
    });
  }
});
