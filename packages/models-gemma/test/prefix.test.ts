import { Site, type SiteRequest } from '@relp/core';
import { describeEachBackend, installLeakGuard } from '@relp/testing';
import { it } from 'vitest';
import { buildModel, loadFixture } from '../../models-llama/test/parity-helper.js';
import {
  expectBadPrefixRefused,
  expectFastPatchingEqualsNaive,
  expectJoinedRunMatchesFullRun,
  expectPrefixRunMatchesFullRun,
} from '../../models-llama/test/prefix-helper.js';
import { gemma3Family } from '../src/index.js';

/**
 * Prefix runs (cached keys/values of earlier positions, see core's KvPrefix) on Gemma 3: sliding-window layers
 * with a window smaller than the sequence (gemma3-a: window 3, layers local/global/local; gemma3-legacy:
 * window 4), grouped-query attention (4:2 and 2:1 heads), q/k norms and two rotary bases; and fast activation
 * patching against the naive way on both.
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

describeEachBackend('gemma 3 prefix runs', () => {
  for (const name of ['gemma3-a', 'gemma3-legacy'] as const) {
    it(`${name}: a prefix run equals the full run at positions ≥ offset`, () => {
      const model = buildModel(gemma3Family, loadFixture(name));
      try {
        for (const [start, offset] of [
          [0, 1],
          [0, 6],
          [1, 3],
          [2, 5],
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
      const model = buildModel(gemma3Family, loadFixture(name));
      try {
        await expectFastPatchingEqualsNaive(model, sites);
      } finally {
        model.dispose();
      }
    });
  }
});
