/**
 * The model families the model-level tests run on: the real GPT-2 and Pythia packages with seeded random
 * weights, and toy blocks standing in for the families that have no package yet (Llama, Gemma 3).
 */
import type { LanguageModel } from '@relp/core';
import { randomGpt2Model } from '@relp/models-gpt2';
import { randomPythiaModel } from '@relp/models-pythia';
import { TOY_FAMILIES, ToyModel } from './toy-model.js';

export interface FamilyCase {
  readonly name: string;
  /** `biases: false`: every bias and norm offset exactly 0 (the conservation tests). */
  make(biases: boolean): LanguageModel;
}

export const FAMILIES: readonly FamilyCase[] = [
  {
    name: 'gpt2 (tiny, random weights)',
    make: (biases) =>
      randomGpt2Model('tiny', 7, {
        initializerRange: 0.3,
        biasStd: biases ? 0.1 : 0,
        layerNormStd: biases ? 0.1 : 0,
      }),
  },
  {
    name: 'pythia (tiny, random weights)',
    make: (biases) =>
      randomPythiaModel('pythia-tiny', 8, { std: 0.3, biasStd: biases ? 0.1 : 0, lnStd: 0.1 }),
  },
  ...TOY_FAMILIES.map(
    (cfg, i): FamilyCase => ({
      name: cfg.architecture,
      make: (biases) => new ToyModel(cfg, 100 + i, { biases }),
    }),
  ),
];
