import { type HostTensor, seededNormal, type WeightMap } from '@relp/core';
import type { PythiaConfig } from './config.js';

export interface RandomWeightOptions {
  /** Standard deviation of matrices and embeddings (transformers' initializer_range: 0.02). */
  readonly std?: number;
  /** Standard deviation of biases and LayerNorm offsets (transformers initialises them to 0). */
  readonly biasStd?: number;
  /** Standard deviation of LayerNorm gains around 1 (transformers: 0). */
  readonly lnStd?: number;
}

/**
 * Seeded random weights for a config, named as transformers names a GPTNeoXForCausalLM checkpoint
 * (`gpt_neox.…`, `embed_out.weight`), with transformers' initialisation by default (normal(0, 0.02) matrices
 * and embeddings, zero biases, unit LayerNorms). Pass larger `biasStd` / `lnStd` to exercise every parameter.
 */
export function randomPythiaWeights(
  config: PythiaConfig,
  seed: number,
  options: RandomWeightOptions = {},
): WeightMap {
  const std = options.std ?? 0.02;
  const biasStd = options.biasStd ?? 0;
  const lnStd = options.lnStd ?? 0;
  const normal = seededNormal(seed);
  const { dModel: d, dMlp: m, vocabSize: V, nLayers: L } = config;
  const out = new Map<string, HostTensor>();
  const put = (name: string, shape: number[], mean: number, sd: number): void => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (sd !== 0 || mean !== 0) for (let i = 0; i < data.length; i++) data[i] = mean + sd * normal();
    out.set(name, { shape, data });
  };
  put('gpt_neox.embed_in.weight', [V, d], 0, std);
  for (let l = 0; l < L; l++) {
    const p = `gpt_neox.layers.${l}.`;
    put(`${p}input_layernorm.weight`, [d], 1, lnStd);
    put(`${p}input_layernorm.bias`, [d], 0, biasStd);
    put(`${p}post_attention_layernorm.weight`, [d], 1, lnStd);
    put(`${p}post_attention_layernorm.bias`, [d], 0, biasStd);
    put(`${p}attention.query_key_value.weight`, [3 * d, d], 0, std);
    if (config.attentionBias) {
      put(`${p}attention.query_key_value.bias`, [3 * d], 0, biasStd);
      put(`${p}attention.dense.bias`, [d], 0, biasStd);
    }
    put(`${p}attention.dense.weight`, [d, d], 0, std);
    put(`${p}mlp.dense_h_to_4h.weight`, [m, d], 0, std);
    put(`${p}mlp.dense_h_to_4h.bias`, [m], 0, biasStd);
    put(`${p}mlp.dense_4h_to_h.weight`, [d, m], 0, std);
    put(`${p}mlp.dense_4h_to_h.bias`, [d], 0, biasStd);
  }
  put('gpt_neox.final_layer_norm.weight', [d], 1, lnStd);
  put('gpt_neox.final_layer_norm.bias', [d], 0, biasStd);
  if (!config.tiedEmbeddings) put('embed_out.weight', [V, d], 0, std);
  return { get: (name) => out.get(name), names: () => out.keys() };
}
