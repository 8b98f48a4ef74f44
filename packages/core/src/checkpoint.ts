import type { RopeScaling } from './decoder.js';
import { ErrorCodes, RelpError } from './errors.js';
import { type ActivationKind, isActivationKind } from './slots.js';

/**
 * Reading Hugging Face config.json fields with typed errors (missing or invalid → BAD_MODEL_FILE naming the
 * field; unsupported options → UNSUPPORTED). Weights are read by `WeightReader` (weight-reader.ts).
 */

export type HfConfig = Readonly<Record<string, unknown>>;

function badField(field: string, message: string, value?: unknown): RelpError {
  return new RelpError(ErrorCodes.BadModelFile, `config field '${field}' ${message}`, {
    details: { field, value },
  });
}

/** The field is present and not null. */
export function hasField(cfg: HfConfig, field: string): boolean {
  return cfg[field] !== undefined && cfg[field] !== null;
}

/**
 * The largest sizes a config may declare. They are far above any published model's and exist so that a config
 * that claims more than a file could hold (a width of 2^31, a billion layers) is refused before anything sized
 * by it is made: tfjs sizes tensors with int32, so no tensor may exceed 2^31 − 1 elements, and every per-layer
 * array is made from the layer count.
 */
export const CONFIG_LIMITS = {
  /** num_hidden_layers (the deepest published decoders have under 200). */
  layers: 4096,
  /** hidden_size, intermediate_size, head_dim, head counts, and heads × head_dim. */
  width: 1 << 20,
  vocab: 1 << 24,
  /** max_position_embeddings, sliding windows and other position counts. */
  positions: 1 << 28,
  /** Elements of one weight tensor (tfjs sizes are int32). */
  tensorElements: 2 ** 31 - 1,
  /** Any other integer field. */
  integer: 2 ** 31 - 1,
} as const;

/** A required integer field in [min, max]. */
export function configInt(
  cfg: HfConfig,
  field: string,
  min = 1,
  max: number = CONFIG_LIMITS.integer,
): number {
  const v = cfg[field];
  if (v === undefined || v === null) throw badField(field, 'is missing');
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw badField(field, `must be an integer ≥ ${min}, got ${JSON.stringify(v)}`, v);
  }
  if (v > max) throw badField(field, `is ${v}, more than the largest supported (${max})`, v);
  return v;
}

/** An optional integer field in [min, max] (absent or null → the fallback). */
export function configIntOr(
  cfg: HfConfig,
  field: string,
  fallback: number,
  min = 1,
  max: number = CONFIG_LIMITS.integer,
): number {
  return hasField(cfg, field) ? configInt(cfg, field, min, max) : fallback;
}

/** A required finite number, > 0 when `positive`. */
export function configNumber(cfg: HfConfig, field: string, positive = true): number {
  const v = cfg[field];
  if (v === undefined || v === null) throw badField(field, 'is missing');
  if (typeof v !== 'number' || !Number.isFinite(v) || (positive && v <= 0)) {
    throw badField(
      field,
      `must be a ${positive ? 'positive ' : ''}finite number, got ${JSON.stringify(v)}`,
      v,
    );
  }
  return v;
}

export function configNumberOr(cfg: HfConfig, field: string, fallback: number, positive = true): number {
  return hasField(cfg, field) ? configNumber(cfg, field, positive) : fallback;
}

/** An optional positive number; absent or null → undefined. */
export function configOptionalNumber(cfg: HfConfig, field: string): number | undefined {
  return hasField(cfg, field) ? configNumber(cfg, field) : undefined;
}

export function configBoolOr(cfg: HfConfig, field: string, fallback: boolean): boolean {
  const v = cfg[field];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean') throw badField(field, `must be true or false, got ${JSON.stringify(v)}`, v);
  return v;
}

export function configStringOr(cfg: HfConfig, field: string, fallback: string): string {
  const v = cfg[field];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'string') throw badField(field, `must be a string, got ${JSON.stringify(v)}`, v);
  return v;
}

/** An optional object field (absent or null → undefined). */
export function configObject(cfg: HfConfig, field: string): HfConfig | undefined {
  const v = cfg[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw badField(field, 'must be an object', v);
  return v as HfConfig;
}

/** An optional array of strings (absent or null → undefined). */
export function configStringArray(cfg: HfConfig, field: string): string[] | undefined {
  const v = cfg[field];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) {
    throw badField(field, 'must be an array of strings', v);
  }
  return v as string[];
}

/**
 * The sizes that Llama-lineage configs (Llama, Qwen2, Mistral, Gemma 3) name alike: vocab_size, hidden_size,
 * num_hidden_layers, num_attention_heads and num_key_value_heads (default: one per head), which must divide them.
 */
export function configDecoderSizes(cfg: HfConfig): {
  vocabSize: number;
  dModel: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
} {
  const vocabSize = configInt(cfg, 'vocab_size', 1, CONFIG_LIMITS.vocab);
  const dModel = configInt(cfg, 'hidden_size', 1, CONFIG_LIMITS.width);
  const nLayers = configInt(cfg, 'num_hidden_layers', 1, CONFIG_LIMITS.layers);
  const nHeads = configInt(cfg, 'num_attention_heads', 1, CONFIG_LIMITS.width);
  const nKvHeads = configIntOr(cfg, 'num_key_value_heads', nHeads, 1, CONFIG_LIMITS.width);
  if (nHeads % nKvHeads !== 0) {
    throw badField(
      'num_key_value_heads',
      `(${nKvHeads}) must divide num_attention_heads (${nHeads})`,
      nKvHeads,
    );
  }
  return { vocabSize, dModel, nLayers, nHeads, nKvHeads };
}

/** layer_types (transformers ≥ 5: one attention kind per layer), when given: one entry per layer. */
export function configLayerTypes(cfg: HfConfig, nLayers: number): string[] | undefined {
  const layerTypes = configStringArray(cfg, 'layer_types');
  if (layerTypes && layerTypes.length !== nLayers) {
    throw badField('layer_types', `has ${layerTypes.length} entries for ${nLayers} layers`);
  }
  return layerTypes;
}

/** HF activation names (hidden_act / hidden_activation) → relp's activation kinds; others → UNSUPPORTED. */
export function hfActivation(name: string, field = 'hidden_act'): ActivationKind {
  const map: Record<string, ActivationKind> = {
    silu: 'silu',
    swish: 'silu',
    gelu: 'gelu',
    gelu_new: 'gelu_new',
    gelu_pytorch_tanh: 'gelu_tanh',
    gelu_tanh: 'gelu_tanh',
    relu: 'relu',
  };
  const kind = map[name];
  if (kind === undefined || !isActivationKind(kind)) {
    throw new RelpError(
      ErrorCodes.Unsupported,
      `activation '${name}' (config field '${field}') is not supported`,
      {
        details: { field, value: name },
      },
    );
  }
  return kind;
}

/** UNSUPPORTED naming a config field and its value. */
export function unsupportedField(message: string, field: string, value: unknown): RelpError {
  return new RelpError(ErrorCodes.Unsupported, message, { details: { field, value } });
}

/**
 * RoPE frequency scaling from an HF `rope_parameters` / `rope_scaling` object (absent: default). `supported`
 * lists the types a family implements; any other raises UNSUPPORTED naming the type and `field`.
 */
export function parseRopeScaling(
  params: HfConfig | undefined,
  field: string,
  supported: readonly RopeScaling['type'][],
  family = '',
): RopeScaling {
  const typeName = params
    ? configStringOr(params, 'rope_type', configStringOr(params, 'type', 'default'))
    : 'default';
  if (!(supported as readonly string[]).includes(typeName)) {
    throw unsupportedField(
      `rope type '${typeName}' (${field}) is not supported${family ? ` for ${family}` : ''} (${supported.join(', ')} are)`,
      field,
      typeName,
    );
  }
  switch (typeName as RopeScaling['type']) {
    case 'linear':
      return { type: 'linear', factor: configNumber(params!, 'factor') };
    case 'llama3':
      return {
        type: 'llama3',
        factor: configNumber(params!, 'factor'),
        lowFreqFactor: configNumber(params!, 'low_freq_factor'),
        highFreqFactor: configNumber(params!, 'high_freq_factor'),
        originalMaxPositionEmbeddings: configInt(params!, 'original_max_position_embeddings'),
      };
    default:
      return { type: 'default' };
  }
}
