import { type ActivationKind, CONFIG_LIMITS, ErrorCodes, RelpError } from '@relp/core';

/** A GPT-NeoX / Pythia configuration, resolved from config.json with Hugging Face's defaults. */
export interface PythiaConfig {
  readonly vocabSize: number;
  readonly dModel: number;
  readonly nLayers: number;
  readonly nHeads: number;
  readonly dMlp: number;
  /** max_position_embeddings: the longest sequence accepted. */
  readonly contextLength: number;
  readonly layerNormEps: number;
  /** The MLP activation as relp names it (config `hidden_act` "gelu" → exact GELU). */
  readonly activation: ActivationKind;
  /** Parallel residual (Pythia): both sub-blocks read resid_pre; sequential has resid_mid. */
  readonly parallelResidual: boolean;
  /** Fraction of each head's dimensions that rotary embeddings rotate (rotary_pct / partial_rotary_factor). */
  readonly rotaryPct: number;
  /** Rotary base θ (rotary_emb_base / rope_theta). */
  readonly rotaryBase: number;
  /** Biases on query_key_value and dense (attention_bias). */
  readonly attentionBias: boolean;
  /** Unembedding tied to embed_in (tie_word_embeddings; false for Pythia). */
  readonly tiedEmbeddings: boolean;
}

/** HF hidden_act → relp activation. Exact GELU is "gelu"; the tanh approximation has two HF spellings. */
const HF_ACTIVATIONS: Readonly<Record<string, ActivationKind>> = {
  gelu: 'gelu',
  gelu_new: 'gelu_new',
  gelu_pytorch_tanh: 'gelu_tanh',
  relu: 'relu',
  silu: 'silu',
  swish: 'silu',
};

type Json = Readonly<Record<string, unknown>>;

function bad(field: string, why: string): RelpError {
  return new RelpError(ErrorCodes.BadModelFile, `config.json: ${field} ${why}`, { details: { field } });
}

function posInt(c: Json, field: string, max: number, dflt?: number): number {
  const v = c[field] ?? dflt;
  if (v === undefined) throw bad(field, 'is missing');
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw bad(field, `must be a positive integer, got ${JSON.stringify(v)}`);
  }
  if (v > max) throw bad(field, `is ${v}, more than the largest supported (${max})`);
  return v;
}

function posNum(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw bad(field, `must be a positive number, got ${JSON.stringify(v)}`);
  }
  return v;
}

function bool(c: Json, field: string, dflt: boolean): boolean {
  const v = c[field] ?? dflt;
  if (typeof v !== 'boolean') throw bad(field, `must be a boolean, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * Parses a GPT-NeoX config.json (model_type "gpt_neox") with the defaults of transformers' GPTNeoXConfig.
 * Rotary settings are read in both spellings, with transformers 5.24's precedence: `rope_parameters` (or a
 * legacy `rope_scaling` dict) first, then the checkpoint keys `rotary_pct` / `rotary_emb_base`, then 0.25 /
 * 10000. (Top-level `partial_rotary_factor` / `rope_theta` keys are ignored by transformers for this model
 * type, and so here.) Missing or invalid fields → BAD_MODEL_FILE naming the field; options relp does not
 * implement (other rope types, activations, head_dim ≠ hidden/heads) → UNSUPPORTED.
 */
export function parsePythiaConfig(config: Json): PythiaConfig {
  if (config === null || typeof config !== 'object') throw bad('(root)', 'is not an object');
  const modelType = config.model_type;
  if (modelType !== undefined && modelType !== 'gpt_neox') {
    throw new RelpError(ErrorCodes.Unsupported, `model_type '${String(modelType)}' is not gpt_neox`, {
      details: { field: 'model_type' },
    });
  }
  const vocabSize = posInt(config, 'vocab_size', CONFIG_LIMITS.vocab);
  const dModel = posInt(config, 'hidden_size', CONFIG_LIMITS.width);
  const nLayers = posInt(config, 'num_hidden_layers', CONFIG_LIMITS.layers);
  const nHeads = posInt(config, 'num_attention_heads', CONFIG_LIMITS.width);
  const dMlp = posInt(config, 'intermediate_size', CONFIG_LIMITS.width);
  const contextLength = posInt(config, 'max_position_embeddings', CONFIG_LIMITS.positions, 2048);
  const layerNormEps = posNum('layer_norm_eps', config.layer_norm_eps ?? 1e-5);
  if (dModel % nHeads !== 0) {
    throw bad('num_attention_heads', `(${nHeads}) must divide hidden_size (${dModel})`);
  }
  const headDim = config.head_dim;
  if (headDim !== undefined && headDim !== null && headDim !== dModel / nHeads) {
    throw new RelpError(
      ErrorCodes.Unsupported,
      `head_dim ${String(headDim)} differs from hidden_size / num_attention_heads (${dModel / nHeads})`,
      { details: { field: 'head_dim' } },
    );
  }

  const act = config.hidden_act ?? 'gelu';
  if (typeof act !== 'string') throw bad('hidden_act', `must be a string, got ${JSON.stringify(act)}`);
  const activation = HF_ACTIVATIONS[act];
  if (activation === undefined) {
    throw new RelpError(ErrorCodes.Unsupported, `hidden_act '${act}' is not supported`, {
      details: { field: 'hidden_act', supported: Object.keys(HF_ACTIVATIONS) },
    });
  }

  // Rotary parameters: rope_scaling (legacy) or rope_parameters, else the checkpoint spelling.
  const rpRaw = config.rope_scaling ?? config.rope_parameters ?? null;
  const rpField = config.rope_scaling != null ? 'rope_scaling' : 'rope_parameters';
  if (rpRaw !== null && (typeof rpRaw !== 'object' || Array.isArray(rpRaw))) {
    throw bad(rpField, 'must be an object');
  }
  const rp = (rpRaw ?? {}) as Json;
  const ropeType = rp.rope_type ?? rp.type ?? 'default';
  if (ropeType !== 'default') {
    throw new RelpError(
      ErrorCodes.Unsupported,
      `${rpField}.rope_type '${String(ropeType)}' is not supported`,
      {
        details: { field: `${rpField}.rope_type` },
      },
    );
  }
  const rotaryPct = rp.partial_rotary_factor ?? config.rotary_pct ?? 0.25;
  const rotaryPctField =
    rp.partial_rotary_factor !== undefined ? `${rpField}.partial_rotary_factor` : 'rotary_pct';
  if (typeof rotaryPct !== 'number' || !(rotaryPct > 0 && rotaryPct <= 1)) {
    throw bad(rotaryPctField, `must be in (0, 1], got ${JSON.stringify(rotaryPct)}`);
  }
  const rotaryBase = posNum(
    rp.rope_theta !== undefined ? `${rpField}.rope_theta` : 'rotary_emb_base',
    rp.rope_theta ?? config.rotary_emb_base ?? 10000,
  );

  return {
    vocabSize,
    dModel,
    nLayers,
    nHeads,
    dMlp,
    contextLength,
    layerNormEps,
    activation,
    parallelResidual: bool(config, 'use_parallel_residual', true),
    rotaryPct,
    rotaryBase,
    attentionBias: bool(config, 'attention_bias', true),
    tiedEmbeddings: bool(config, 'tie_word_embeddings', false),
  };
}

/** The config.json a PythiaConfig corresponds to (transformers 5 spelling), e.g. to save random models. */
export function pythiaConfigJson(c: PythiaConfig): Record<string, unknown> {
  const act = Object.entries(HF_ACTIVATIONS).find(([, v]) => v === c.activation)?.[0] ?? c.activation;
  return {
    architectures: ['GPTNeoXForCausalLM'],
    model_type: 'gpt_neox',
    vocab_size: c.vocabSize,
    hidden_size: c.dModel,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    intermediate_size: c.dMlp,
    max_position_embeddings: c.contextLength,
    layer_norm_eps: c.layerNormEps,
    hidden_act: act,
    use_parallel_residual: c.parallelResidual,
    rope_parameters: {
      rope_type: 'default',
      rope_theta: c.rotaryBase,
      partial_rotary_factor: c.rotaryPct,
    },
    attention_bias: c.attentionBias,
    tie_word_embeddings: c.tiedEmbeddings,
  };
}

const PYTHIA_COMMON = {
  vocabSize: 50304,
  contextLength: 2048,
  layerNormEps: 1e-5,
  activation: 'gelu',
  parallelResidual: true,
  rotaryPct: 0.25,
  rotaryBase: 10000,
  attentionBias: true,
  tiedEmbeddings: false,
} as const;

/** Standard shapes. `pythia-tiny` is a small test model (odd vocabulary, two layers). */
export const PYTHIA_PRESETS = {
  'pythia-70m': { ...PYTHIA_COMMON, dModel: 512, nLayers: 6, nHeads: 8, dMlp: 2048 },
  'pythia-160m': { ...PYTHIA_COMMON, dModel: 768, nLayers: 12, nHeads: 12, dMlp: 3072 },
  'pythia-tiny': {
    ...PYTHIA_COMMON,
    vocabSize: 97,
    contextLength: 64,
    dModel: 32,
    nLayers: 2,
    nHeads: 4,
    dMlp: 128,
  },
} as const satisfies Record<string, PythiaConfig>;

export type PythiaPresetName = keyof typeof PYTHIA_PRESETS;
