import {
  type ActivationKind,
  CONFIG_LIMITS,
  configBoolOr,
  configDecoderSizes,
  configInt,
  configIntOr,
  configLayerTypes,
  configNumberOr,
  configObject,
  configStringOr,
  ErrorCodes,
  type HfConfig,
  hasField,
  hfActivation,
  parseRopeScaling,
  RelpError,
  type RopeSpec,
  unsupportedField,
} from '@relp/core';

/** The model types this package loads. Mistral is Llama with a sliding window on every layer. */
export const LLAMA_MODEL_TYPES = ['llama', 'qwen2', 'mistral'] as const;
export type LlamaModelType = (typeof LLAMA_MODEL_TYPES)[number];

/** A Llama-family configuration, parsed from config.json (or GGUF metadata mapped to the same keys). */
export interface LlamaConfig {
  readonly modelType: LlamaModelType;
  readonly vocabSize: number;
  readonly dModel: number;
  readonly nLayers: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly dHead: number;
  readonly dMlp: number;
  readonly activation: ActivationKind;
  readonly contextLength: number;
  readonly rmsNormEps: number;
  readonly rope: RopeSpec;
  readonly tieWordEmbeddings: boolean;
  /** Biases on q, k, v projections (Llama attention_bias, always for Qwen2). */
  readonly qkvBias: boolean;
  /** Bias on the output projection (Llama attention_bias; never for Qwen2). */
  readonly oBias: boolean;
  /** Biases on gate, up and down projections (Llama mlp_bias). */
  readonly mlpBias: boolean;
  /** Per layer: the sliding window (keys within the last w positions), or undefined for full attention. */
  readonly slidingWindows: readonly (number | undefined)[];
}

const unsupported = unsupportedField;

/**
 * Reads rope settings from `rope_parameters` (transformers ≥ 5) or the legacy `rope_theta` + `rope_scaling`.
 * Supports the types default, linear and llama3; others raise UNSUPPORTED naming the type.
 */
export function parseRope(
  cfg: HfConfig,
  params: HfConfig | undefined,
  headDim: number,
  defaultTheta: number,
  field = 'rope_parameters',
): RopeSpec {
  const scalingCfg = params ?? configObject(cfg, 'rope_scaling');
  const theta = params
    ? configNumberOr(params, 'rope_theta', configNumberOr(cfg, 'rope_theta', defaultTheta))
    : configNumberOr(cfg, 'rope_theta', defaultTheta);
  // transformers reads partial_rotary_factor from rope_parameters first, then from the top level.
  const partial = configNumberOr(
    params && hasField(params, 'partial_rotary_factor') ? params : cfg,
    'partial_rotary_factor',
    1,
  );
  const dim = Math.trunc(headDim * partial);
  const scaling = parseRopeScaling(scalingCfg, field, ['default', 'linear', 'llama3']);
  return { theta, dim, scaling };
}

/** Parses a Llama / Qwen2 / Mistral config.json. Missing or invalid fields → BAD_MODEL_FILE; unsupported → UNSUPPORTED. */
export function parseLlamaConfig(cfg: HfConfig): LlamaConfig {
  const modelType = configStringOr(cfg, 'model_type', 'llama');
  if (!(LLAMA_MODEL_TYPES as readonly string[]).includes(modelType)) {
    throw unsupported(`model_type '${modelType}' is not a Llama-family model`, 'model_type', modelType);
  }
  const type = modelType as LlamaModelType;
  const { vocabSize, dModel, nLayers, nHeads, nKvHeads } = configDecoderSizes(cfg);
  let dHead: number;
  if (hasField(cfg, 'head_dim')) dHead = configInt(cfg, 'head_dim', 1, CONFIG_LIMITS.width);
  else if (dModel % nHeads === 0) dHead = dModel / nHeads;
  else {
    throw new RelpError(
      ErrorCodes.BadModelFile,
      `config field 'head_dim' is missing and hidden_size ${dModel} is not a multiple of ${nHeads} heads`,
      { details: { field: 'head_dim' } },
    );
  }
  const dMlp = configInt(cfg, 'intermediate_size', 1, CONFIG_LIMITS.width);
  const activation = hfActivation(configStringOr(cfg, 'hidden_act', 'silu'));
  const contextLength = configInt(cfg, 'max_position_embeddings', 1, CONFIG_LIMITS.positions);
  const rmsNormEps = configNumberOr(cfg, 'rms_norm_eps', 1e-6);
  const rope = parseRope(cfg, configObject(cfg, 'rope_parameters'), dHead, 10000);
  if (rope.dim !== dHead) {
    // transformers' Llama, Qwen2 and Mistral rotate every dimension of a head (their default rope ignores the
    // factor; the scaled ropes would fail on the shapes), so a checkpoint that asks for fewer cannot be run as asked.
    throw unsupported(
      `partial rotary embeddings (partial_rotary_factor ${rope.dim / dHead}: ${rope.dim} of ${dHead} head dimensions) are not supported for Llama-family models`,
      'partial_rotary_factor',
      rope.dim / dHead,
    );
  }
  const tieWordEmbeddings = configBoolOr(cfg, 'tie_word_embeddings', false);
  const attentionBias = configBoolOr(cfg, 'attention_bias', false);
  const mlpBias = configBoolOr(cfg, 'mlp_bias', false);
  const qkvBias = type === 'qwen2' ? true : attentionBias;
  const oBias = type === 'qwen2' ? false : attentionBias;

  // Sliding windows: layer_types when given (transformers ≥ 5 writes it), else the family's rule.
  const layerTypes = configLayerTypes(cfg, nLayers);
  const window = hasField(cfg, 'sliding_window')
    ? configInt(cfg, 'sliding_window', 1, CONFIG_LIMITS.positions)
    : undefined;
  let sliding: boolean[];
  if (type === 'mistral') {
    sliding = Array.from({ length: nLayers }, () => window !== undefined);
  } else if (type === 'qwen2' && configBoolOr(cfg, 'use_sliding_window', false)) {
    const maxWindowLayers = configIntOr(cfg, 'max_window_layers', 0, 0);
    sliding = layerTypes
      ? layerTypes.map((t) => t === 'sliding_attention')
      : Array.from({ length: nLayers }, (_, i) => i >= maxWindowLayers);
  } else {
    sliding = Array.from({ length: nLayers }, () => false);
    if (layerTypes?.some((t) => t === 'sliding_attention') && type !== 'qwen2') {
      throw unsupported(
        `sliding-attention layers are not supported for model_type '${type}'`,
        'layer_types',
        layerTypes,
      );
    }
  }
  if (sliding.some((s) => s) && window === undefined) {
    throw new RelpError(ErrorCodes.BadModelFile, "config field 'sliding_window' is missing", {
      details: { field: 'sliding_window' },
    });
  }
  const slidingWindows = sliding.map((s) => (s ? window : undefined));

  return {
    modelType: type,
    vocabSize,
    dModel,
    nLayers,
    nHeads,
    nKvHeads,
    dHead,
    dMlp,
    activation,
    contextLength,
    rmsNormEps,
    rope,
    tieWordEmbeddings,
    qkvBias,
    oBias,
    mlpBias,
    slidingWindows,
  };
}
