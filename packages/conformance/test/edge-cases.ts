// The models and prompt pairs the edge tests share (edges.test.ts on all of them, edge-circuits.test.ts on some).
import { type LanguageModel, makePairBatch, type PairBatch } from '@relp/core';
import { gemma3Family } from '@relp/models-gemma';
import { randomGpt2Model } from '@relp/models-gpt2';
import { llamaFamily } from '@relp/models-llama';
import { pythiaFamily, randomPythiaModel } from '@relp/models-pythia';
import { modelFromFixture } from '@relp/testing/models';

export interface EdgeCase {
  readonly name: string;
  make(): LanguageModel;
  /** Gemma 3: a head's write is its result through the post-attention norm, so result's AtP is not its sum. */
  readonly postNorm?: boolean;
  /** Run on every backend (the others on cpu only, for time). */
  readonly everyBackend?: boolean;
}

export const EDGE_CASES: readonly EdgeCase[] = [
  {
    name: 'gpt2',
    make: () => randomGpt2Model('tiny', 7, { initializerRange: 0.3, biasStd: 0.1, layerNormStd: 0.1 }),
  },
  {
    name: 'pythia (parallel residual)',
    make: () => randomPythiaModel('pythia-tiny', 8, { std: 0.3, biasStd: 0.1, lnStd: 0.1 }),
  },
  { name: 'pythia (sequential)', make: () => modelFromFixture(pythiaFamily, 'pythia-sequential') },
  {
    name: 'llama (grouped-query attention)',
    make: () => modelFromFixture(llamaFamily, 'llama-gqa'),
    everyBackend: true,
  },
  { name: 'qwen2 (biases, sliding window)', make: () => modelFromFixture(llamaFamily, 'qwen2-bias') },
  {
    name: 'gemma3 (q/k norms, post-norms)',
    make: () => modelFromFixture(gemma3Family, 'gemma3-a', { final_logit_softcapping: null }),
    postNorm: true,
  },
];

/** Two pairs of different lengths, the difference at position 2. */
export function edgePairs(model: LanguageModel): PairBatch {
  return makePairBatch(
    [
      { clean: [3, 9, 14, 2, 30, 7, 1], corrupt: [3, 9, 17, 2, 30, 7, 1], answer: 10, wrong: 20 },
      { clean: [5, 11, 22, 8, 41, 6], corrupt: [5, 11, 25, 8, 40, 6], answer: 12, wrong: 33 },
    ],
    { dims: model.dims },
  );
}
