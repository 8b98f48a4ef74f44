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
  configOptionalNumber,
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

export const GEMMA3_MODEL_TYPES = ['gemma3_text', 'gemma3'] as const;

/** A Gemma 3 text configuration (Gemma3TextConfig), parsed from config.json or GGUF metadata mapped to it. */
export interface Gemma3Config {
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
  /** Rotary settings of the global (full-attention) layers: rope_theta with its scaling. */
  readonly ropeGlobal: RopeSpec;
  /** Rotary settings of the local (sliding-window) layers: rope_local_base_freq. */
  readonly ropeLocal: RopeSpec;
  /** Attention scores are multiplied by query_pre_attn_scalar^−½. */
  readonly queryPreAttnScalar: number;
  readonly slidingWindow: number;
  /** Per layer: true for local sliding-window attention, false for global attention. */
  readonly slidingLayers: readonly boolean[];
  readonly finalLogitSoftcapping: number | undefined;
  /** Parsed but not applied: transformers' Gemma 3 attention ignores it (q/k norms replaced soft-capping). */
  readonly attnLogitSoftcapping: number | undefined;
  readonly attentionBias: boolean;
  readonly tieWordEmbeddings: boolean;
}

const unsupported = unsupportedField;

/**
 * One layer kind's rotary settings. partial_rotary_factor (that kind's, else the top level's, as transformers reads
 * it) must be 1: transformers' Gemma 3 rotates every dimension of a head.
 */
function ropeSpec(
  cfg: HfConfig,
  params: HfConfig | undefined,
  theta: number,
  dim: number,
  field: string,
): RopeSpec {
  const scaling = parseRopeScaling(params, field, ['default', 'linear'], 'Gemma 3');
  const own = params !== undefined && hasField(params, 'partial_rotary_factor');
  const partial = configNumberOr(own ? params : cfg, 'partial_rotary_factor', 1);
  if (partial !== 1) {
    throw unsupported(
      `partial rotary embeddings (partial_rotary_factor ${partial}) are not supported for Gemma 3`,
      own ? `${field}.partial_rotary_factor` : 'partial_rotary_factor',
      partial,
    );
  }
  return { theta, dim, scaling };
}

/**
 * Parses a Gemma 3 text config (model_type gemma3_text, or gemma3 with its text_config). Structural sizes are
 * required (BAD_MODEL_FILE naming the field); the rest default as in transformers' Gemma3TextConfig.
 */
export function parseGemma3Config(raw: HfConfig): Gemma3Config {
  const modelType = configStringOr(raw, 'model_type', 'gemma3_text');
  if (!(GEMMA3_MODEL_TYPES as readonly string[]).includes(modelType)) {
    throw unsupported(`model_type '${modelType}' is not Gemma 3`, 'model_type', modelType);
  }
  let cfg = raw;
  if (modelType === 'gemma3') {
    const text = configObject(raw, 'text_config');
    if (!text) {
      throw new RelpError(ErrorCodes.BadModelFile, "config field 'text_config' is missing", {
        details: { field: 'text_config' },
      });
    }
    cfg = text;
  }
  const { vocabSize, dModel, nLayers, nHeads, nKvHeads } = configDecoderSizes(cfg);
  const dHead = configIntOr(cfg, 'head_dim', 256, 1, CONFIG_LIMITS.width);
  const dMlp = configInt(cfg, 'intermediate_size', 1, CONFIG_LIMITS.width);
  const actField =
    cfg.hidden_activation !== undefined && cfg.hidden_activation !== null
      ? 'hidden_activation'
      : 'hidden_act';
  const activation = hfActivation(configStringOr(cfg, actField, 'gelu_pytorch_tanh'), actField);
  const contextLength = configIntOr(cfg, 'max_position_embeddings', 131072, 1, CONFIG_LIMITS.positions);
  const rmsNormEps = configNumberOr(cfg, 'rms_norm_eps', 1e-6);
  if (configBoolOr(cfg, 'use_bidirectional_attention', false)) {
    throw unsupported(
      'bidirectional attention (use_bidirectional_attention) is not supported',
      'use_bidirectional_attention',
      true,
    );
  }

  // Rope: transformers ≥ 5 writes rope_parameters per layer type; older configs rope_theta, rope_local_base_freq
  // and rope_scaling (which applies to the global layers only).
  const params = configObject(cfg, 'rope_parameters');
  const fullParams = params ? configObject(params, 'full_attention') : configObject(cfg, 'rope_scaling');
  const localParams = params ? configObject(params, 'sliding_attention') : undefined;
  const globalTheta =
    fullParams && params
      ? configNumberOr(fullParams, 'rope_theta', configNumberOr(cfg, 'rope_theta', 1_000_000))
      : configNumberOr(cfg, 'rope_theta', 1_000_000);
  const localTheta = localParams
    ? configNumberOr(localParams, 'rope_theta', configNumberOr(cfg, 'rope_local_base_freq', 10_000))
    : configNumberOr(cfg, 'rope_local_base_freq', 10_000);
  const ropeGlobal = ropeSpec(cfg, fullParams, globalTheta, dHead, 'rope_parameters.full_attention');
  const ropeLocal = ropeSpec(cfg, localParams, localTheta, dHead, 'rope_parameters.sliding_attention');

  const slidingWindow = configIntOr(cfg, 'sliding_window', 4096, 1, CONFIG_LIMITS.positions);
  const layerTypes = configLayerTypes(cfg, nLayers);
  let slidingLayers: boolean[];
  if (layerTypes) {
    for (const t of layerTypes) {
      if (t !== 'sliding_attention' && t !== 'full_attention') {
        throw unsupported(`layer type '${t}' is not supported`, 'layer_types', t);
      }
    }
    slidingLayers = layerTypes.map((t) => t === 'sliding_attention');
  } else {
    const pattern = configIntOr(cfg, 'sliding_window_pattern', 6);
    slidingLayers = Array.from({ length: nLayers }, (_, i) => (i + 1) % pattern !== 0);
  }

  return {
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
    ropeGlobal,
    ropeLocal,
    queryPreAttnScalar: configNumberOr(cfg, 'query_pre_attn_scalar', 256),
    slidingWindow,
    slidingLayers,
    finalLogitSoftcapping: configOptionalNumber(cfg, 'final_logit_softcapping'),
    attnLogitSoftcapping: configOptionalNumber(cfg, 'attn_logit_softcapping'),
    attentionBias: configBoolOr(cfg, 'attention_bias', false),
    tieWordEmbeddings: configBoolOr(
      raw,
      'tie_word_embeddings',
      configBoolOr(cfg, 'tie_word_embeddings', true),
    ),
  };
}
