import { runFamilyConformance } from '@relp/testing/models';
import { gpt2Family, randomGpt2Model } from '../src/index.js';

// Parity with HF's GPT2LMHeadModel (eager attention, float32) on the fixtures of tools/oracles/gpt2_fixtures.py,
// and every check a model family must pass, on a tiny model with larger-than-HF scales (every nonlinearity does
// something). Fast patching on GPT-2 is checked by the conformance package.
runFamilyConformance({
  name: 'GPT-2',
  family: gpt2Family,
  fixtures: ['gpt2-a', 'gpt2-b', 'gpt2-c', 'gpt2-d'],
  models: [
    {
      name: 'tiny, random weights',
      load: () => randomGpt2Model('tiny', 1, { initializerRange: 0.3, biasStd: 0.1, layerNormStd: 0.2 }),
    },
  ],
  tokenIds: [
    [5, 61, 23, 90, 2, 47, 13],
    [70, 8, 33, 1, 96, 19, 54],
    [12, 40, 88, 7, 29, 64, 3],
  ],
  slotCalls: (L) => ({ normalize: 2 * L + 1, activation: L, gate_product: 0, attention_softmax: L }),
  prefixRuns: [
    [0, 1],
    [0, 5],
    [1, 3],
    [1, 6],
  ],
  joinedRuns: [
    [0, 0],
    [0, 4],
  ],
});
