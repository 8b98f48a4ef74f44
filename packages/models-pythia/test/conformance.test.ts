import { modelFromFixture, runFamilyConformance } from '@relp/testing/models';
import { pythiaFamily } from '../src/index.js';

// Parity with transformers' GPTNeoXForCausalLM on the fixtures of tools/oracles/pythia_fixtures.py (partial and
// full rotary, one token, parallel and sequential blocks), and every check a model family must pass, on a
// parallel-residual and a sequential model. Fast patching on Pythia is checked by the conformance package.
runFamilyConformance({
  name: 'Pythia',
  family: pythiaFamily,
  fixtures: ['pythia-tiny-par', 'pythia-full-rotary', 'pythia-one-token', 'pythia-sequential'],
  models: [
    { name: 'pythia-tiny-par', load: () => modelFromFixture(pythiaFamily, 'pythia-tiny-par') },
    { name: 'pythia-sequential', load: () => modelFromFixture(pythiaFamily, 'pythia-sequential') },
  ],
  tokenIds: [
    [3, 17, 5, 40, 22, 9, 31, 2, 11, 7],
    [8, 1, 44, 19, 6, 27, 13, 30, 4, 21],
  ],
  slotCalls: (L) => ({ normalize: 2 * L + 1, activation: L, gate_product: 0, attention_softmax: L }),
  prefixRuns: [
    [0, 1],
    [0, 7],
    [1, 4],
    [1, 9],
  ],
  joinedRuns: [
    [0, 0],
    [0, 4],
  ],
});
