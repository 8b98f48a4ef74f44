import { type ActivationKind, CONFIG_LIMITS, ErrorCodes, RelpError } from '@relp/core';

/** A GPT-2 configuration, read from Hugging Face's config.json (GPT2Config) and checked. */
export interface Gpt2Config {
  readonly vocabSize: number;
  /** `n_positions`: rows of the position embedding, the longest sequence the model accepts. */
  readonly contextLength: number;
  readonly dModel: number;
  readonly nLayers: number;
  readonly nHeads: number;
  readonly dHead: number;
  /** `n_inner`, or 4·d when null. */
  readonly dMlp: number;
  readonly activation: ActivationKind;
  readonly layerNormEps: number;
  /** Divide attention scores by √dh. */
  readonly scaleAttnWeights: boolean;
  /** Also divide attention scores of block l by l + 1. */
  readonly scaleAttnByInverseLayerIdx: boolean;
  /**
   * HF's mixed-precision attention path. In float32 it computes the same function (the scale multiplies
   * q·kᵀ either way), so it is accepted and needs nothing different here.
   */
  readonly reorderAndUpcastAttn: boolean;
  /** The unembedding is the token embedding (`lm_head.weight` tied to `wte.weight`). */
  readonly tieWordEmbeddings: boolean;
}

/** HF `activation_function` names GPT-2 configs use, mapped to relp's activation kinds. */
const ACTIVATION_NAMES: Readonly<Record<string, ActivationKind>> = {
  gelu_new: 'gelu_new',
  gelu_pytorch_tanh: 'gelu_tanh',
  gelu: 'gelu',
  relu: 'relu',
  silu: 'silu',
  swish: 'silu',
};

function bad(field: string, message: string, value: unknown): RelpError {
  return new RelpError(ErrorCodes.BadModelFile, `GPT-2 config.json: '${field}' ${message}`, {
    details: { field, value },
  });
}

/** The first of `names` present in the config (GPT2Config's attribute_map aliases). */
function pick(config: Readonly<Record<string, unknown>>, names: readonly string[]): [string, unknown] {
  for (const n of names) if (config[n] !== undefined) return [n, config[n]];
  return [names[0]!, undefined];
}

/** A positive integer no larger than `max` (core's CONFIG_LIMITS). */
function positiveInt(
  config: Readonly<Record<string, unknown>>,
  names: readonly string[],
  max: number,
): number {
  const [field, v] = pick(config, names);
  if (v === undefined || v === null) throw bad(field, 'is missing', v);
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw bad(field, `must be a positive integer, got ${JSON.stringify(v)}`, v);
  }
  if (v > max) throw bad(field, `is ${v}, more than the largest supported (${max})`, v);
  return v;
}

function bool(config: Readonly<Record<string, unknown>>, field: string, fallback: boolean): boolean {
  const v = config[field];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean') throw bad(field, `must be true or false, got ${JSON.stringify(v)}`, v);
  return v;
}

/**
 * Reads a GPT-2 config.json. Required: `vocab_size`, `n_positions`, `n_embd`, `n_layer`, `n_head` (or their
 * aliases `max_position_embeddings`, `hidden_size`, `num_hidden_layers`, `num_attention_heads`); the rest
 * default as in GPT2Config. Missing or malformed fields raise BAD_MODEL_FILE naming the field; options relp
 * cannot run (another model_type, an unknown activation) raise UNSUPPORTED.
 */
export function parseGpt2Config(config: Readonly<Record<string, unknown>>): Gpt2Config {
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    throw new RelpError(ErrorCodes.BadModelFile, 'GPT-2 config.json must be a JSON object');
  }
  const modelType = config.model_type;
  if (modelType !== undefined && modelType !== 'gpt2') {
    throw new RelpError(
      ErrorCodes.Unsupported,
      `model_type '${String(modelType)}' is not GPT-2 (expected 'gpt2')`,
      { details: { field: 'model_type', value: modelType } },
    );
  }
  const vocabSize = positiveInt(config, ['vocab_size'], CONFIG_LIMITS.vocab);
  const contextLength = positiveInt(
    config,
    ['n_positions', 'max_position_embeddings'],
    CONFIG_LIMITS.positions,
  );
  const dModel = positiveInt(config, ['n_embd', 'hidden_size'], CONFIG_LIMITS.width);
  const nLayers = positiveInt(config, ['n_layer', 'num_hidden_layers'], CONFIG_LIMITS.layers);
  const nHeads = positiveInt(config, ['n_head', 'num_attention_heads'], CONFIG_LIMITS.width);
  if (dModel % nHeads !== 0) {
    throw bad('n_head', `(${nHeads}) must divide n_embd (${dModel})`, nHeads);
  }
  const dMlp =
    config.n_inner === undefined || config.n_inner === null
      ? 4 * dModel
      : positiveInt(config, ['n_inner'], CONFIG_LIMITS.width);

  const actName = config.activation_function ?? 'gelu_new';
  if (typeof actName !== 'string') {
    throw bad('activation_function', `must be a string, got ${JSON.stringify(actName)}`, actName);
  }
  const activation = ACTIVATION_NAMES[actName];
  if (activation === undefined) {
    throw new RelpError(
      ErrorCodes.Unsupported,
      `GPT-2 activation_function '${actName}' is not supported (supported: ${Object.keys(ACTIVATION_NAMES).join(', ')})`,
      { details: { field: 'activation_function', value: actName } },
    );
  }

  const eps = config.layer_norm_epsilon ?? 1e-5;
  if (typeof eps !== 'number' || !Number.isFinite(eps) || eps < 0) {
    throw bad('layer_norm_epsilon', `must be a non-negative number, got ${JSON.stringify(eps)}`, eps);
  }

  return {
    vocabSize,
    contextLength,
    dModel,
    nLayers,
    nHeads,
    dHead: dModel / nHeads,
    dMlp,
    activation,
    layerNormEps: eps,
    scaleAttnWeights: bool(config, 'scale_attn_weights', true),
    scaleAttnByInverseLayerIdx: bool(config, 'scale_attn_by_inverse_layer_idx', false),
    reorderAndUpcastAttn: bool(config, 'reorder_and_upcast_attn', false),
    tieWordEmbeddings: bool(config, 'tie_word_embeddings', true),
  };
}

/** The config.json (HF keys) for a parsed config: the inverse of parseGpt2Config, for presets and tests. */
export function gpt2ConfigJson(c: Gpt2Config): Record<string, unknown> {
  const act = Object.entries(ACTIVATION_NAMES).find(([, k]) => k === c.activation)?.[0] ?? c.activation;
  return {
    model_type: 'gpt2',
    architectures: ['GPT2LMHeadModel'],
    vocab_size: c.vocabSize,
    n_positions: c.contextLength,
    n_embd: c.dModel,
    n_layer: c.nLayers,
    n_head: c.nHeads,
    n_inner: c.dMlp === 4 * c.dModel ? null : c.dMlp,
    activation_function: act,
    layer_norm_epsilon: c.layerNormEps,
    scale_attn_weights: c.scaleAttnWeights,
    scale_attn_by_inverse_layer_idx: c.scaleAttnByInverseLayerIdx,
    reorder_and_upcast_attn: c.reorderAndUpcastAttn,
    tie_word_embeddings: c.tieWordEmbeddings,
  };
}
