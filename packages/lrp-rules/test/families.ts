/**
 * The model families the model-level tests run on: the real GPT-2 and Pythia packages with seeded random
 * weights, and toy blocks standing in for the families that have no package yet (Llama, Gemma 3).
 */
import { readFileSync } from 'node:fs';
import type { LanguageModel, ModelFamily } from '@relp/core';
import { gemma3Family } from '@relp/models-gemma';
import { randomGpt2Model } from '@relp/models-gpt2';
import { llamaFamily } from '@relp/models-llama';
import { randomPythiaModel } from '@relp/models-pythia';
import { fixturePath } from '@relp/testing';
import { readSafetensors } from '@relp/weights';
import { TOY_FAMILIES, ToyModel } from './toy-model.js';

export interface FamilyCase {
  readonly name: string;
  /** `biases: false`: every bias and norm offset exactly 0 (the conservation tests). */
  make(biases: boolean): LanguageModel;
}

/**
 * A model from a committed parity fixture (fixtures/models/<name>: an HF config and random weights). These
 * families have no biases at all, so both variants are the same model. `config` overrides config.json fields.
 */
/** The gemma3-a fixture as it is, with final-logit soft-capping on. */
export function gemmaWithSoftcap(): LanguageModel {
  return fromFixture(gemma3Family, 'gemma3-a');
}

function fromFixture(family: ModelFamily, name: string, config: Record<string, unknown> = {}): LanguageModel {
  const json = JSON.parse(readFileSync(fixturePath('models', name, 'config.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  const weights = readSafetensors(readFileSync(fixturePath('models', name, 'model.safetensors')));
  return family.fromHfConfig({ ...json, ...config }, weights);
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
  { name: 'llama (llama-gqa fixture)', make: () => fromFixture(llamaFamily, 'llama-gqa') },
  {
    // The fixture sets final_logit_softcapping = 4 to exercise the code; real Gemma 3 checkpoints have none, and
    // the soft-cap is a nonlinearity outside the rule slots (see the README), so it is off here.
    name: 'gemma3 (gemma3-a fixture, no soft-capping)',
    make: () => fromFixture(gemma3Family, 'gemma3-a', { final_logit_softcapping: null }),
  },
  ...TOY_FAMILIES.map(
    (cfg, i): FamilyCase => ({
      name: cfg.architecture,
      make: (biases) => new ToyModel(cfg, 100 + i, { biases }),
    }),
  ),
];
