/**
 * From a GGUF file to what the models consume: an HF-style config (the keys of transformers' config.json) and a
 * WeightMap with HF tensor names, undoing llama.cpp's conversion conventions exactly as transformers' GGUF loader
 * does (transformers/modeling_gguf_pytorch_utils.py):
 *
 * - llama: llama.cpp permutes the rows of q and k so that rotary pairs are interleaved (convert_hf_to_gguf.py
 *   LlamaModel.permute); they are permuted back to HF's rotate-half order (q with the head count, k with the
 *   key/value head count). qwen2/qwen3/gemma3 files are not permuted (llama.cpp runs them with NEOX rotary).
 * - gemma3: llama.cpp stores every RMSNorm weight as 1 + w (HF's Gemma3RMSNorm computes x · (1 + w)); 1 is
 *   subtracted again from every tensor whose name contains "norm.weight" (in float32, as transformers does).
 * - Shapes are row-major (ggml's dims reversed): a ggml [in, out] matrix is an HF [out, in] weight; no data move.
 *
 * Tied embeddings: when the file has no `output.weight`, `tie_word_embeddings` is true and the map has no
 * `lm_head.weight` (use `model.embed_tokens.weight`), as in HF checkpoints.
 */
import type { HostTensor, WeightMap } from '@relp/core';
import { ErrorCodes, RelpError } from '@relp/core/errors';
import { badFile } from '../errors.js';
import { dequantize, requireDequantizable } from './dequant.js';
import { metaNumber, metaNumberArray, metaString, requireCount, requireNumber } from './metadata.js';
import { type GgufFile, type GgufParseOptions, type GgufTensorInfo, parseGguf } from './reader.js';
import { GgmlType } from './types.js';

/** Architectures (general.architecture) with a config and name mapping. */
export const GGUF_SUPPORTED_ARCHITECTURES = ['llama', 'qwen2', 'qwen3', 'gemma3'] as const;
export type GgufArchitecture = (typeof GGUF_SUPPORTED_ARCHITECTURES)[number];

/** The HF-style config (config.json keys) a GGUF file's metadata gives. Extra keys depend on the architecture. */
export interface GgufHfConfig {
  model_type: string;
  architectures: string[];
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  intermediate_size: number;
  head_dim: number;
  rms_norm_eps: number;
  rope_theta: number;
  vocab_size: number;
  max_position_embeddings: number;
  tie_word_embeddings: boolean;
  hidden_act: string;
  attention_bias: boolean;
  rope_scaling: Record<string, unknown> | null;
  bos_token_id?: number;
  eos_token_id?: number;
  pad_token_id?: number;
  [key: string]: unknown;
}

type FileInput = GgufFile | Uint8Array | ArrayBuffer;

function asFile(input: FileInput, options?: GgufParseOptions): GgufFile {
  return input instanceof Uint8Array || input instanceof ArrayBuffer ? parseGguf(input, options) : input;
}

/** general.architecture, checked to be one this package maps. */
export function ggufArchitecture(file: GgufFile): GgufArchitecture {
  const arch = metaString(file, 'general.architecture');
  if (arch === undefined) throw badFile('GGUF: metadata "general.architecture" is missing');
  if (!(GGUF_SUPPORTED_ARCHITECTURES as readonly string[]).includes(arch)) {
    throw new RelpError(ErrorCodes.Unsupported, `GGUF: architecture "${arch}" is not supported`, {
      details: { architecture: arch, supported: [...GGUF_SUPPORTED_ARCHITECTURES] },
    });
  }
  return arch as GgufArchitecture;
}

/** A per-layer count stored as one number or as an array that must be constant. */
function uniformCount(file: GgufFile, key: string): number | undefined {
  const entry = file.metadata.get(key);
  if (entry === undefined) return undefined;
  if (typeof entry.value === 'number' || typeof entry.value === 'bigint') return requireCount(file, key);
  const arr = metaNumberArray(file, key) ?? [];
  const first = arr[0];
  if (first === undefined || arr.some((x) => x !== first) || !Number.isInteger(first) || first < 1) {
    throw new RelpError(
      ErrorCodes.Unsupported,
      `GGUF: metadata "${key}" varies by layer (${arr.join(', ')})`,
      {
        details: { key },
      },
    );
  }
  return first;
}

function ropeScaling(file: GgufFile, arch: string): Record<string, unknown> | null {
  const type = metaString(file, `${arch}.rope.scaling.type`);
  if (type === undefined || type === 'none') return null;
  const factor = metaNumber(file, `${arch}.rope.scaling.factor`);
  const out: Record<string, unknown> = { rope_type: type, type };
  if (factor !== undefined) out.factor = factor;
  const orig = metaNumber(file, `${arch}.rope.scaling.original_context_length`);
  if (orig !== undefined) out.original_max_position_embeddings = orig;
  return out;
}

function tokenIds(file: GgufFile): Pick<GgufHfConfig, 'bos_token_id' | 'eos_token_id' | 'pad_token_id'> {
  const out: Pick<GgufHfConfig, 'bos_token_id' | 'eos_token_id' | 'pad_token_id'> = {};
  const bos = metaNumber(file, 'tokenizer.ggml.bos_token_id');
  const eos = metaNumber(file, 'tokenizer.ggml.eos_token_id');
  const pad = metaNumber(file, 'tokenizer.ggml.padding_token_id');
  if (bos !== undefined) out.bos_token_id = bos;
  if (eos !== undefined) out.eos_token_id = eos;
  if (pad !== undefined) out.pad_token_id = pad;
  return out;
}

/**
 * The HF-style config of a GGUF model (llama → "llama", qwen2 → "qwen2", qwen3 → "qwen3", gemma3 →
 * "gemma3_text"). Values absent from the metadata take llama.cpp's built-in values for the architecture (which
 * transformers' defaults match for the Gemma 3 sizes below 27B).
 */
export function ggufConfig(input: FileInput): GgufHfConfig {
  const file = asFile(input);
  const arch = ggufArchitecture(file);
  const k = (s: string) => `${arch}.${s}`;
  const hidden = requireCount(file, k('embedding_length'));
  const layers = requireCount(file, k('block_count'));
  // Checked before anything is made per block: a count the tensors do not back is a broken file.
  const blocks = ggufBlockCount(file);
  if (layers > blocks) {
    throw badFile(
      `GGUF: metadata "${k('block_count')}" says ${layers} blocks, but the file holds tensors for ${blocks}`,
      { key: k('block_count'), value: layers, blocks },
    );
  }
  const heads = uniformCount(file, k('attention.head_count'));
  if (heads === undefined) throw badFile(`GGUF: metadata "${k('attention.head_count')}" is missing`);
  const kvHeads = uniformCount(file, k('attention.head_count_kv')) ?? heads;
  const ff = uniformCount(file, k('feed_forward_length'));
  if (ff === undefined) throw badFile(`GGUF: metadata "${k('feed_forward_length')}" is missing`);
  const headDim = metaNumber(file, k('attention.key_length')) ?? hidden / heads;
  if (!Number.isInteger(headDim) || headDim < 1) {
    throw badFile(`GGUF: head dimension ${headDim} (hidden ${hidden} / ${heads} heads) is not an integer`);
  }
  if (heads % kvHeads !== 0)
    throw badFile(`GGUF: ${heads} heads are not a multiple of ${kvHeads} key/value heads`);
  const embd = file.tensor('token_embd.weight');
  const tokens = file.metadata.get('tokenizer.ggml.tokens')?.value;
  const vocab =
    metaNumber(file, k('vocab_size')) ?? embd?.dims[1] ?? (Array.isArray(tokens) ? tokens.length : undefined);
  if (vocab === undefined)
    throw badFile('GGUF: cannot tell the vocabulary size (no vocab_size, tokens or token_embd)');
  const tied = file.tensor('output.weight') === undefined;
  const eps = requireNumber(file, k('attention.layer_norm_rms_epsilon'));
  const ctx = metaNumber(file, k('context_length')) ?? 2048;

  const ropeDims = ropeDimensionCount(file, k('rope.dimension_count'), headDim);
  const common = {
    hidden_size: hidden,
    num_hidden_layers: layers,
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    intermediate_size: ff,
    head_dim: headDim,
    rms_norm_eps: eps,
    vocab_size: vocab,
    max_position_embeddings: ctx,
    tie_word_embeddings: tied,
    // llama.cpp rotates the first rope.dimension_count dimensions of each head: as transformers spells it.
    ...(ropeDims !== headDim ? { partial_rotary_factor: ropeDims / headDim } : {}),
    ...tokenIds(file),
  };

  if (arch === 'gemma3') {
    const theta = metaNumber(file, k('rope.freq_base')) ?? 1_000_000;
    const localTheta = metaNumber(file, k('rope.freq_base_swa')) ?? 10_000;
    const window = metaNumber(file, k('attention.sliding_window')) ?? 4096;
    const layerTypes = gemmaLayerTypes(file, k('attention.sliding_window_pattern'), layers);
    const scaling = ropeScaling(file, arch);
    const full: Record<string, unknown> = { rope_type: scaling?.rope_type ?? 'default', rope_theta: theta };
    if (scaling?.factor !== undefined) full.factor = scaling.factor;
    return {
      model_type: 'gemma3_text',
      architectures: ['Gemma3ForCausalLM'],
      ...common,
      rope_theta: theta,
      rope_local_base_freq: localTheta,
      rope_scaling: scaling,
      rope_parameters: {
        sliding_attention: { rope_type: 'default', rope_theta: localTheta },
        full_attention: full,
      },
      sliding_window: window,
      sliding_window_pattern: layerTypes.pattern,
      layer_types: layerTypes.types,
      // llama.cpp (src/llama-model.cpp, LLM_ARCH_GEMMA3): queries are scaled by 1/sqrt(head_dim), except for the
      // 27B model (62 layers), which uses 1/sqrt(hidden / heads).
      query_pre_attn_scalar: layers === 62 ? hidden / heads : headDim,
      final_logit_softcapping: metaNumber(file, k('final_logit_softcapping')) ?? null,
      attn_logit_softcapping: metaNumber(file, k('attn_logit_softcapping')) ?? null,
      hidden_act: 'gelu_pytorch_tanh',
      hidden_activation: 'gelu_pytorch_tanh',
      attention_bias: false,
      use_bidirectional_attention: false,
      /** Gemma multiplies the token embeddings by sqrt(hidden_size) (in the model's dtype). */
      embedding_multiplier: Math.sqrt(hidden),
    };
  }

  const theta = metaNumber(file, k('rope.freq_base')) ?? 10_000;
  const base = {
    ...common,
    rope_theta: theta,
    rope_scaling: ropeScaling(file, arch),
    rope_parameters: { rope_type: 'default', rope_theta: theta, ...(ropeScaling(file, arch) ?? {}) },
    hidden_act: 'silu',
    attention_bias: file.tensor('blk.0.attn_q.bias') !== undefined,
    mlp_bias: file.tensor('blk.0.ffn_up.bias') !== undefined,
  };
  if (arch === 'llama') return { model_type: 'llama', architectures: ['LlamaForCausalLM'], ...base };
  if (arch === 'qwen2') {
    return { model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'], ...base, attention_bias: true };
  }
  return { model_type: 'qwen3', architectures: ['Qwen3ForCausalLM'], ...base };
}

/** 1 + the largest block index among the tensor names (`blk.N.…`). */
function ggufBlockCount(file: GgufFile): number {
  let count = 0;
  for (const t of file.tensors) {
    const m = BLOCK_RE.exec(t.name);
    if (m !== null) count = Math.max(count, Number(m[1]) + 1);
  }
  return count;
}

/** rope.dimension_count (default: the head size): an even count from 2 to the head size. */
function ropeDimensionCount(file: GgufFile, key: string, headDim: number): number {
  const dims = metaNumber(file, key);
  if (dims === undefined) return headDim;
  if (!Number.isInteger(dims) || dims < 2 || dims % 2 !== 0 || dims > headDim) {
    throw badFile(
      `GGUF: metadata "${key}" = ${dims} is not a rotary dimension count for heads of ${headDim} (an even number from 2 to ${headDim})`,
      { key, value: dims, headDim },
    );
  }
  return dims;
}

/** The metadata key (after `<architecture>.`) each config field that `ggufConfig` reads from one key comes from. */
const CONFIG_FIELD_KEYS: Readonly<Record<string, string>> = {
  hidden_size: 'embedding_length',
  num_hidden_layers: 'block_count',
  num_attention_heads: 'attention.head_count',
  num_key_value_heads: 'attention.head_count_kv',
  intermediate_size: 'feed_forward_length',
  head_dim: 'attention.key_length',
  max_position_embeddings: 'context_length',
  vocab_size: 'vocab_size',
  sliding_window: 'attention.sliding_window',
  partial_rotary_factor: 'rope.dimension_count',
};

/** The GGUF metadata key behind a field of `ggufConfig`'s config (e.g. head_dim → llama.attention.key_length). */
export function ggufKeyOfConfigField(architecture: string, field: string): string | undefined {
  const key = CONFIG_FIELD_KEYS[field];
  return key === undefined ? undefined : `${architecture}.${key}`;
}

function gemmaLayerTypes(
  file: GgufFile,
  key: string,
  layers: number,
): { pattern: number | null; types: string[] } {
  const entry = file.metadata.get(key);
  if (entry !== undefined && Array.isArray(entry.value)) {
    // Per layer, true = sliding window (llama.cpp's swa_layers).
    const flags = metaNumberArray(file, key) ?? [];
    if (flags.length !== layers) {
      throw badFile(`GGUF: "${key}" has ${flags.length} entries for ${layers} layers`, { key });
    }
    return { pattern: null, types: flags.map((f) => (f ? 'sliding_attention' : 'full_attention')) };
  }
  // llama.cpp's default for gemma3: every 6th layer is global (set_swa_pattern(6)).
  const pattern = metaNumber(file, key) ?? 6;
  if (!Number.isInteger(pattern) || pattern < 0)
    throw badFile(`GGUF: "${key}" = ${pattern} is not a count`, { key });
  const types = Array.from({ length: layers }, (_, i) =>
    pattern > 0 && (i + 1) % pattern === 0 ? 'full_attention' : 'sliding_attention',
  );
  return { pattern, types };
}

// ---- tensor names ------------------------------------------------------------------------------------------------

const GLOBAL_NAMES: Readonly<Record<string, string>> = {
  token_embd: 'model.embed_tokens',
  output_norm: 'model.norm',
  output: 'lm_head',
};

function blockNames(arch: GgufArchitecture): Readonly<Record<string, string>> {
  return {
    attn_norm: 'input_layernorm',
    attn_q: 'self_attn.q_proj',
    attn_k: 'self_attn.k_proj',
    attn_v: 'self_attn.v_proj',
    attn_output: 'self_attn.o_proj',
    attn_q_norm: 'self_attn.q_norm',
    attn_k_norm: 'self_attn.k_norm',
    ffn_gate: 'mlp.gate_proj',
    ffn_up: 'mlp.up_proj',
    ffn_down: 'mlp.down_proj',
    ...(arch === 'gemma3'
      ? {
          ffn_norm: 'pre_feedforward_layernorm',
          post_attention_norm: 'post_attention_layernorm',
          post_ffw_norm: 'post_feedforward_layernorm',
        }
      : { ffn_norm: 'post_attention_layernorm' }),
  };
}

const BLOCK_RE = /^blk\.(\d+)\.([a-z0-9_]+)\.(weight|bias)$/;
const GLOBAL_RE = /^([a-z0-9_]+)\.(weight|bias)$/;

/** The HF name of a GGUF tensor name, or undefined when the architecture has no HF counterpart for it. */
export function ggufToHfName(ggufName: string, arch: GgufArchitecture): string | undefined {
  const b = BLOCK_RE.exec(ggufName);
  if (b !== null) {
    const part = blockNames(arch)[b[2]!];
    return part === undefined ? undefined : `model.layers.${Number(b[1])}.${part}.${b[3]}`;
  }
  const g = GLOBAL_RE.exec(ggufName);
  if (g !== null) {
    const part = GLOBAL_NAMES[g[1]!];
    return part === undefined ? undefined : `${part}.${g[2]}`;
  }
  return undefined;
}

/** The GGUF name of an HF tensor name (the inverse of ggufToHfName), or undefined. */
export function hfToGgufName(hfName: string, arch: GgufArchitecture): string | undefined {
  const m = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(hfName);
  if (m !== null) {
    for (const [g, h] of Object.entries(blockNames(arch)))
      if (h === m[2]) return `blk.${Number(m[1])}.${g}.${m[3]}`;
    return undefined;
  }
  const g = /^(.+)\.(weight|bias)$/.exec(hfName);
  if (g !== null) for (const [gg, h] of Object.entries(GLOBAL_NAMES)) if (h === g[1]) return `${gg}.${g[2]}`;
  return undefined;
}

/**
 * Undoes llama.cpp's rotary row permutation of a q or k weight (or bias) in place of a copy: rows grouped as
 * [heads, headDim/2, 2] become [heads, 2, headDim/2] (transformers' `_reverse_permute_weights`).
 */
export function unpermuteRotaryRows(
  data: Float32Array,
  rows: number,
  cols: number,
  heads: number,
): Float32Array {
  requirePermutableRows(rows, heads);
  const half = rows / heads / 2;
  const out = new Float32Array(data.length);
  for (let h = 0; h < heads; h++) {
    for (let d = 0; d < half; d++) {
      for (let t = 0; t < 2; t++) {
        const from = (h * 2 * half + d * 2 + t) * cols;
        const to = (h * 2 * half + t * half + d) * cols;
        out.set(data.subarray(from, from + cols), to);
      }
    }
  }
  return out;
}

function requirePermutableRows(rows: number, heads: number): void {
  if (rows % (2 * heads) !== 0) {
    throw badFile(`GGUF: cannot un-permute ${rows} rows into ${heads} heads of an even size`, {
      rows,
      heads,
    });
  }
}

/** ggml types that hold weights: floats and the quantised block types (not the integer types I8 … I64). */
const INTEGER_TYPES: ReadonlySet<number> = new Set([GgmlType.I8, GgmlType.I16, GgmlType.I32, GgmlType.I64]);

/** Refuses a tensor stored in an integer type where a model weight (float or quantised) is read. */
function requireWeightType(info: GgufTensorInfo, hfName: string): void {
  if (INTEGER_TYPES.has(info.type)) {
    throw badFile(
      `GGUF: tensor "${info.name}" (${hfName}) is stored as ${info.typeName}, an integer type; a model weight must be a float or quantised type`,
      { tensor: info.name, type: info.typeName },
    );
  }
}

/** Dequantises one tensor to float32 with its row-major shape, without any renaming or transformation. */
export function ggufTensorToHost(file: GgufFile, tensor: GgufTensorInfo | string): HostTensor {
  const info = typeof tensor === 'string' ? file.tensor(tensor) : tensor;
  if (info === undefined)
    throw badFile(`GGUF: no tensor named "${String(tensor)}"`, { tensor: String(tensor) });
  return { shape: info.shape, data: dequantize(info.type, file.tensorBytes(info), info.numElements) };
}

export interface GgufWeightMapOptions {
  /**
   * 'hf' (default): HF names and conventions (needs a supported architecture; tensors without an HF name keep
   * their GGUF name). 'gguf': GGUF names, data as stored (dequantised only).
   */
  names?: 'hf' | 'gguf';
  parse?: GgufParseOptions;
}

/**
 * A lazy WeightMap over a GGUF file: `get` dequantises one tensor on demand (tensor by tensor, so a model never
 * holds more than the float32 tensors it keeps), and `shape` tells a tensor's shape without reading it, having
 * checked everything `get` would refuse from the file alone (integer type, a type without a dequantiser, rows
 * that cannot be un-permuted), so core's `WeightReader` checks every weight first and dequantises each only when
 * the model builds it. Each `get` dequantises afresh and the map keeps nothing: not even weakly, since a WeakRef
 * keeps its target alive until the end of the synchronous job that made it (a whole model build), so a memo
 * would hold every host array at once.
 */
export function ggufToWeightMap(input: FileInput, options: GgufWeightMapOptions = {}): WeightMap {
  const file = asFile(input, options.parse);
  const mode = options.names ?? 'hf';
  interface Source {
    info: GgufTensorInfo;
    transform: (t: HostTensor) => HostTensor;
    /** Heads of a q/k tensor whose rows are un-permuted. */
    permutedHeads?: number;
  }
  const sources = new Map<string, Source>();
  const identity = (t: HostTensor) => t;
  if (mode === 'gguf') {
    for (const info of file.tensors) sources.set(info.name, { info, transform: identity });
  } else {
    const arch = ggufArchitecture(file);
    const cfg = arch === 'llama' ? ggufConfig(file) : undefined;
    for (const info of file.tensors) {
      const hf = ggufToHfName(info.name, arch) ?? info.name;
      if (sources.has(hf)) throw badFile(`GGUF: two tensors map to "${hf}"`, { tensor: info.name });
      if (cfg !== undefined && /\.attn_[qk]\.(weight|bias)$/.test(info.name)) {
        const heads = info.name.includes('.attn_q.') ? cfg.num_attention_heads : cfg.num_key_value_heads;
        const transform = (t: HostTensor) => {
          const rows = t.shape[0]!;
          const cols = t.shape.length > 1 ? t.data.length / rows : 1;
          return { shape: t.shape, data: unpermuteRotaryRows(t.data, rows, cols, heads) };
        };
        sources.set(hf, { info, transform, permutedHeads: heads });
      } else if (arch === 'gemma3' && info.name.endsWith('norm.weight')) {
        const transform = (t: HostTensor) => {
          const d = t.data;
          for (let i = 0; i < d.length; i++) d[i] = d[i]! - 1;
          return t;
        };
        sources.set(hf, { info, transform });
      } else {
        sources.set(hf, { info, transform: identity });
      }
    }
  }
  const readable = (src: Source, name: string): void => {
    if (mode === 'hf') requireWeightType(src.info, name);
    requireDequantizable(src.info.type);
    if (src.permutedHeads !== undefined) requirePermutableRows(src.info.shape[0] ?? 1, src.permutedHeads);
  };
  return {
    get(name: string): HostTensor | undefined {
      const src = sources.get(name);
      if (src === undefined) return undefined;
      readable(src, name);
      return src.transform(ggufTensorToHost(file, src.info));
    },
    shape(name: string): readonly number[] | undefined {
      const src = sources.get(name);
      if (src === undefined) return undefined;
      readable(src, name);
      return src.info.shape;
    },
    names: () => sources.keys(),
  };
}
