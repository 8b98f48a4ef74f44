import { modelFromFixture, PATCHING_SITES, runFamilyConformance } from '@relp/testing/models';
import { gemma3Family } from '../src/index.js';

// Parity with transformers on the fixtures of tools/oracles/gemma_fixtures.py — sliding-window layers with a
// window smaller than the sequence (gemma3-a: window 3, layers local/global/local; gemma3-legacy: window 4, the
// legacy config spelling), grouped-query attention (4:2 and 2:1 heads), q/k norms, two rotary bases and final
// soft-capping — and every check a model family must pass, prefix runs and fast activation patching included.
const FIXTURES = ['gemma3-a', 'gemma3-legacy'];

runFamilyConformance({
  name: 'Gemma 3',
  family: gemma3Family,
  fixtures: FIXTURES,
  models: FIXTURES.map((name) => ({
    name,
    load: () => modelFromFixture(gemma3Family, name),
    // gemma3-a soft-caps its logits, a step outside the rule slots (see the lrp-rules README).
    ...(name === 'gemma3-a' ? { uncoveredByPresets: ['final_logit_softcap'] } : {}),
  })),
  tokenIds: [
    [3, 17, 5, 40, 22, 9, 31, 2, 11],
    [8, 1, 44, 19, 6, 27, 13, 50, 4],
  ],
  // Input, q, k, post-attention, pre- and post-feedforward norms per block, plus the final norm.
  slotCalls: (L) => ({ normalize: 6 * L + 1, activation: L, gate_product: L, attention_softmax: L }),
  prefixRuns: [
    [0, 1],
    [0, 6],
    [1, 3],
    [2, 5],
    [1, 8],
  ],
  joinedRuns: [
    [0, 0],
    [0, 4],
  ],
  patching: {
    sites: PATCHING_SITES,
    timeout: 300_000,
  },
});
