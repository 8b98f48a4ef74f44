import { Site, type SiteRequest } from '@relp/core';
import { randomGpt2Model } from '@relp/models-gpt2';
import { randomPythiaModel } from '@relp/models-pythia';
import { describeEachBackend, installLeakGuard } from '@relp/testing';
import { expectFastPatchingEqualsNaive } from '@relp/testing/models';
import { it } from 'vitest';

/**
 * Fast exact patching (batched patches, restart at the patched block from cached residuals, positions before the
 * first difference skipped) must give the numbers of the literal way: one full forward pass per patch over every
 * position. Per position, head and neuron, on both families, on every backend (the family suites run it on cpu).
 */
installLeakGuard();

const sites: SiteRequest[] = [
  { site: Site.ResidPre },
  { site: Site.AttnOut },
  { site: Site.MlpOut },
  { site: Site.Z, granularity: 'head' },
  { site: Site.MlpPost, granularity: 'neuron', layers: [1] },
];

describeEachBackend('activation patching fast = naive', () => {
  for (const [name, make] of [
    ['gpt2', () => randomGpt2Model('tiny', 4, { initializerRange: 0.3, biasStd: 0.1 })],
    ['pythia', () => randomPythiaModel('pythia-tiny', 4, { std: 0.3, biasStd: 0.1 })],
  ] as const) {
    it(name, { timeout: 400_000 }, async () => {
      const model = make();
      try {
        await expectFastPatchingEqualsNaive(model, sites, 7, { naiveZeroBeforeFirstDiff: true });
      } finally {
        model.dispose();
      }
    });
  }
});
