import { modelFromFixture, PATCHING_SITES, runFamilyConformance } from '@relp/testing/models';
import { llamaFamily } from '../src/index.js';

// Parity with transformers on the fixtures of tools/oracles/llama_fixtures.py — grouped-query attention
// (llama-gqa: 4 heads, 2 KV heads), tied embeddings (llama-tied), Qwen2's q/k/v biases and a sliding window
// smaller than the sequence (qwen2-bias: window 4 on its second layer) — and every check a model family must
// pass, prefix runs and fast activation patching included, on each of them.
const FIXTURES = ['llama-gqa', 'llama-tied', 'qwen2-bias'];

runFamilyConformance({
  name: 'Llama',
  family: llamaFamily,
  fixtures: FIXTURES,
  models: FIXTURES.map((name) => ({ name, load: () => modelFromFixture(llamaFamily, name) })),
  tokenIds: [
    [3, 17, 5, 40, 22, 9, 31, 2, 11],
    [8, 1, 44, 19, 6, 27, 13, 50, 4],
  ],
  slotCalls: (L) => ({ normalize: 2 * L + 1, activation: L, gate_product: L, attention_softmax: L }),
  prefixRuns: [
    [0, 1],
    [0, 6],
    [1, 3],
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
