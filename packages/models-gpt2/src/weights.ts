import { type HostTensor, seededNormal, type WeightMap } from '@relp/core';
import type { Gpt2Config } from './config.js';

/** Per-block weight names, relative to `transformer.h.{l}.` (Conv1D weights are stored [in, out]). */
export function gpt2LayerWeightShapes(c: Gpt2Config): Readonly<Record<string, readonly number[]>> {
  const d = c.dModel;
  const m = c.dMlp;
  return {
    'ln_1.weight': [d],
    'ln_1.bias': [d],
    'attn.c_attn.weight': [d, 3 * d],
    'attn.c_attn.bias': [3 * d],
    'attn.c_proj.weight': [d, d],
    'attn.c_proj.bias': [d],
    'ln_2.weight': [d],
    'ln_2.bias': [d],
    'mlp.c_fc.weight': [d, m],
    'mlp.c_fc.bias': [m],
    'mlp.c_proj.weight': [m, d],
    'mlp.c_proj.bias': [d],
  };
}

/** Every tensor a GPT-2 checkpoint must hold, named as GPT2LMHeadModel saves them (with `transformer.`). */
export function gpt2WeightShapes(c: Gpt2Config): Map<string, readonly number[]> {
  const out = new Map<string, readonly number[]>();
  out.set('transformer.wte.weight', [c.vocabSize, c.dModel]);
  out.set('transformer.wpe.weight', [c.contextLength, c.dModel]);
  for (let l = 0; l < c.nLayers; l++) {
    for (const [n, s] of Object.entries(gpt2LayerWeightShapes(c))) out.set(`transformer.h.${l}.${n}`, s);
  }
  out.set('transformer.ln_f.weight', [c.dModel]);
  out.set('transformer.ln_f.bias', [c.dModel]);
  if (!c.tieWordEmbeddings) out.set('lm_head.weight', [c.vocabSize, c.dModel]);
  return out;
}

/** Initialisation scales for random weights; defaults follow GPT2PreTrainedModel._init_weights. */
export interface RandomGpt2Options {
  /** Std of embeddings and Conv1D weights (HF: initializer_range = 0.02). */
  readonly initializerRange?: number;
  /** Std of every bias (HF: 0, biases start at zero). */
  readonly biasStd?: number;
  /** Std of LayerNorm gains around 1 and of LayerNorm biases around 0 (HF: 0). */
  readonly layerNormStd?: number;
  /** Name weights without the `transformer.` prefix (as the original gpt2 checkpoints do). */
  readonly bareNames?: boolean;
}

export { seededNormal };

/**
 * Random GPT-2 weights, named as GPT2LMHeadModel saves them, with HF's initialisation: embeddings and Conv1D
 * weights N(0, 0.02), output projections (attn.c_proj, mlp.c_proj) N(0, 0.02/√(2L)), biases 0, LayerNorm
 * gain 1 and bias 0. `options` raises the scales (e.g. to exercise nonlinearities in tests). The same seed
 * gives the same weights.
 */
export function randomGpt2Weights(
  config: Gpt2Config,
  seed: number,
  options: RandomGpt2Options = {},
): WeightMap {
  const std = options.initializerRange ?? 0.02;
  const biasStd = options.biasStd ?? 0;
  const lnStd = options.layerNormStd ?? 0;
  const projStd = std / Math.sqrt(2 * config.nLayers);
  const normal = seededNormal(seed);
  const record = new Map<string, HostTensor>();
  for (const [name, shape] of gpt2WeightShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    let mean = 0;
    let sd: number;
    if (/\.(ln_1|ln_2|ln_f)\.weight$/.test(name)) {
      mean = 1;
      sd = lnStd;
    } else if (/\.(ln_1|ln_2|ln_f)\.bias$/.test(name)) sd = lnStd;
    else if (name.endsWith('.bias')) sd = biasStd;
    else if (name.endsWith('c_proj.weight')) sd = projStd;
    else sd = std;
    if (sd === 0) data.fill(mean);
    else for (let i = 0; i < n; i++) data[i] = mean + sd * normal();
    const key = options.bareNames ? name.replace(/^transformer\./, '') : name;
    record.set(key, { shape: [...shape], data });
  }
  return { get: (name) => record.get(name), names: () => record.keys() };
}
