import { Site, type SiteRequest } from '@relp/core';
import { describeEachBackend, installLeakGuard } from '@relp/testing';
import { it } from 'vitest';
import { llamaFamily } from '../src/index.js';
import { buildModel, loadFixture } from './parity-helper.js';
import {
  expectBadPrefixRefused,
  expectFastPatchingEqualsNaive,
  expectJoinedRunMatchesFullRun,
  expectPrefixRunMatchesFullRun,
} from './prefix-helper.js';

/**
 * Prefix runs (cached keys/values of earlier positions, see core's KvPrefix) on grouped-query attention
 * (llama-gqa: 4 heads, 2 KV heads) and a sliding window smaller than the sequence (qwen2-bias: window 4 on its
 * second layer, 9 tokens), and fast activation patching against the naive way on both.
 */
installLeakGuard();

const tokenIds = [
  [3, 17, 5, 40, 22, 9, 31, 2, 11],
  [8, 1, 44, 19, 6, 27, 13, 50, 4],
];

const sites: SiteRequest[] = [
  { site: Site.ResidPre },
  { site: Site.AttnOut },
  { site: Site.MlpOut },
  { site: Site.ResidMid },
  { site: Site.Z, granularity: 'head' },
  { site: Site.MlpPost, granularity: 'neuron', layers: [1] },
  { site: Site.K, granularity: 'head' },
  { site: Site.V },
  { site: Site.Q },
  { site: Site.Pattern, granularity: 'head' },
  { site: Site.Ln1Scale },
  { site: Site.Ln2Scale },
  { site: Site.LnFinalScale },
];

describeEachBackend('llama prefix runs', () => {
  for (const name of ['llama-gqa', 'qwen2-bias'] as const) {
    it(`${name}: a prefix run equals the full run at positions ≥ offset`, () => {
      const model = buildModel(llamaFamily, loadFixture(name));
      try {
        for (const [start, offset] of [
          [0, 1],
          [0, 6],
          [1, 3],
          [1, 8],
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

    it(`${name}: fast activation patching equals the naive way`, { timeout: 300_000 }, async () => {
      const model = buildModel(llamaFamily, loadFixture(name));
      try {
        await expectFastPatchingEqualsNaive(model, sites);
      } finally {
        model.dispose();
      }
    });
  }
});
