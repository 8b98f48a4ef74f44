import { Site, type SiteRequest } from '@relp/core';
import { randomGpt2Model } from '@relp/models-gpt2';
import { randomPythiaModel } from '@relp/models-pythia';
import { describeEachBackend, installLeakGuard } from '@relp/testing';
import {
  expectBadPrefixRefused,
  expectFastPatchingEqualsNaive,
  expectJoinedRunMatchesFullRun,
  expectPrefixRunMatchesFullRun,
} from '@relp/testing/models';
import { it } from 'vitest';

/**
 * Prefix runs (core's KvPrefix: the residual at positions ≥ offset plus the cached keys/values of the earlier
 * positions) on GPT-2 (absolute position embeddings, so nothing positional inside the blocks) and Pythia
 * (partial rotary at absolute positions, parallel residual), and fast activation patching (which uses them)
 * against the naive way for every site and granularity, incl. a padded row read out before patched positions.
 * The Llama/Qwen2 (GQA, sliding window) and Gemma 3 cases live in those packages' conformance tests.
 */
installLeakGuard();

const allSites: SiteRequest[] = [
  { site: Site.ResidPre },
  { site: Site.ResidMid },
  { site: Site.ResidPost, layers: [0] },
  { site: Site.AttnOut },
  { site: Site.MlpOut },
  { site: Site.Z, granularity: 'head' },
  { site: Site.Result, granularity: 'head', layers: [1] },
  { site: Site.Q, layers: [1] },
  { site: Site.K, granularity: 'head' },
  { site: Site.V, layers: [0] },
  { site: Site.Pattern, granularity: 'head' },
  { site: Site.MlpPre, granularity: 'neuron', layers: [0] },
  { site: Site.MlpPost, layers: [1] },
  { site: Site.Ln1Scale },
  { site: Site.Ln2Scale },
  { site: Site.LnFinalScale },
];

const tokenIds = [
  [3, 17, 5, 40, 22, 9, 31, 2, 11, 7],
  [8, 1, 44, 19, 6, 27, 13, 30, 4, 21],
];

describeEachBackend('prefix runs and fast patching', () => {
  for (const [name, make] of [
    ['gpt2', () => randomGpt2Model('tiny', 4, { initializerRange: 0.3, biasStd: 0.1 })],
    ['pythia', () => randomPythiaModel('pythia-tiny', 4, { std: 0.3, biasStd: 0.1 })],
  ] as const) {
    it(`${name}: a prefix run equals the full run at positions ≥ offset`, () => {
      const model = make();
      try {
        for (const [start, offset] of [
          [0, 1],
          [0, 7],
          [1, 4],
          [1, 9],
        ] as const) {
          expectPrefixRunMatchesFullRun(model, tokenIds, start, offset);
        }
        for (const [start, offset] of [
          [0, 0],
          [0, 4],
        ] as const) {
          expectJoinedRunMatchesFullRun(model, tokenIds, start, offset);
        }
        expectBadPrefixRefused(model);
      } finally {
        model.dispose();
      }
    });

    it(`${name}: fast patching equals the naive way at every site`, { timeout: 600_000 }, async () => {
      const model = make();
      try {
        await expectFastPatchingEqualsNaive(
          model,
          allSites.filter((s) => model.sites.includes(s.site)),
        );
      } finally {
        model.dispose();
      }
    });
  }
});
