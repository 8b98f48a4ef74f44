import type { ModelFamily, WeightMap } from '@relp/core';
import { PYTHIA_PRESETS, type PythiaConfig, type PythiaPresetName, parsePythiaConfig } from './config.js';
import { PythiaModel, type PythiaModelOptions } from './model.js';
import { type RandomWeightOptions, randomPythiaWeights } from './random.js';

export {
  PYTHIA_PRESETS,
  type PythiaConfig,
  type PythiaPresetName,
  parsePythiaConfig,
  pythiaConfigJson,
} from './config.js';
export { PythiaModel, type PythiaModelOptions } from './model.js';
export { type RandomWeightOptions, randomPythiaWeights } from './random.js';

/** The GPT-NeoX family (Pythia and other `gpt_neox` checkpoints) for the loader. */
export const pythiaFamily: ModelFamily = {
  name: 'gpt_neox',
  modelTypes: ['gpt_neox'],
  fromHfConfig: (config, weights: WeightMap) => new PythiaModel(parsePythiaConfig(config), weights),
};

/** A model with seeded random weights for a preset name or a config (tests, benchmarks). */
export function randomPythiaModel(
  config: PythiaConfig | PythiaPresetName,
  seed: number,
  options?: RandomWeightOptions,
  modelOptions?: PythiaModelOptions,
): PythiaModel {
  const c = typeof config === 'string' ? PYTHIA_PRESETS[config] : config;
  return new PythiaModel(c, randomPythiaWeights(c, seed, options), modelOptions);
}
