import type { ModelFamily, WeightMap } from '@relp/core';
import { type Gpt2Config, parseGpt2Config } from './config.js';
import { Gpt2Model, type Gpt2ModelOptions } from './model.js';
import { type RandomGpt2Options, randomGpt2Weights } from './weights.js';

/** config.json of GPT-2 small (openai-community/gpt2): 12 layers, d 768, 12 heads, vocab 50257, context 1024. */
export const GPT2_SMALL_CONFIG: Readonly<Record<string, unknown>> = Object.freeze({
  model_type: 'gpt2',
  architectures: ['GPT2LMHeadModel'],
  vocab_size: 50257,
  n_positions: 1024,
  n_embd: 768,
  n_layer: 12,
  n_head: 12,
  n_inner: null,
  activation_function: 'gelu_new',
  layer_norm_epsilon: 1e-5,
  scale_attn_weights: true,
  scale_attn_by_inverse_layer_idx: false,
  reorder_and_upcast_attn: false,
  tie_word_embeddings: true,
});

/** GPT-2 medium: 24 layers, d 1024, 16 heads. */
export const GPT2_MEDIUM_CONFIG: Readonly<Record<string, unknown>> = Object.freeze({
  ...GPT2_SMALL_CONFIG,
  n_embd: 1024,
  n_layer: 24,
  n_head: 16,
});

/** A tiny GPT-2 for tests: 2 layers, d 32, 4 heads, MLP 128, vocab 97, context 32. */
export const GPT2_TINY_CONFIG: Readonly<Record<string, unknown>> = Object.freeze({
  ...GPT2_SMALL_CONFIG,
  vocab_size: 97,
  n_positions: 32,
  n_embd: 32,
  n_layer: 2,
  n_head: 4,
});

export const GPT2_PRESETS = {
  tiny: GPT2_TINY_CONFIG,
  small: GPT2_SMALL_CONFIG,
  medium: GPT2_MEDIUM_CONFIG,
} as const;

export type Gpt2PresetName = keyof typeof GPT2_PRESETS;

/** The GPT-2 model family: HF model_type "gpt2". */
export const gpt2Family = {
  name: 'gpt2',
  modelTypes: ['gpt2'] as readonly string[],
  fromHfConfig(config: Readonly<Record<string, unknown>>, weights: WeightMap): Gpt2Model {
    return new Gpt2Model(parseGpt2Config(config), weights);
  },
} satisfies ModelFamily;

/**
 * A GPT-2 with seeded random weights: a preset name or a config.json object. Default scales are HF's
 * (std 0.02, zero biases); pass `options` for larger ones (and `transposedCopies: false` to save memory).
 */
export function randomGpt2Model(
  config: Gpt2PresetName | Readonly<Record<string, unknown>>,
  seed: number,
  options?: RandomGpt2Options & Gpt2ModelOptions,
): Gpt2Model {
  const parsed: Gpt2Config = parseGpt2Config(typeof config === 'string' ? GPT2_PRESETS[config] : config);
  return new Gpt2Model(parsed, randomGpt2Weights(parsed, seed, options), options);
}
