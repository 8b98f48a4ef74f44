import * as tf from '@tensorflow/tfjs-core';
import type { RunContext } from './context.js';
import { ErrorCodes, RelpError } from './errors.js';
import { checkTokens, MASKED_SCORE } from './layers.js';
import type { KvPrefix, ModelDims, ModelInput } from './model.js';
import { EDGE_SITES, Site, type SiteDef, type SiteName } from './sites.js';
import type { NormName } from './slots.js';

/**
 * Building blocks of decoder-only transformers with rotary embeddings (Llama, Qwen2, Mistral, Gemma, and the
 * rotary part of GPT-NeoX): RMSNorm through the rule slots, rotary tables and their application, causal and
 * sliding-window masks, a 2-D-matmul linear layer, grouped-query attention through the rule slots and sites, and
 * the output projection with optional per-head results. Functional tfjs only; cpu and wasm.
 */

/**
 * A linear layer's weights: W [in, out] (the transpose of nn.Linear's [out, in]; GPT-2's Conv1D layout), an
 * optional bias [out], and optionally Wᵀ [out, in] held for the backward pass. On wasm only matmuls without
 * transpose flags reach XNNPACK, so the ordinary gradient dy·Wᵀ (a transposeB matmul) is 6–20× slower than
 * matMul(dy, Wᵀ) with the copy, at twice the matrix's memory (`WeightReader`'s `transposedCopies`). Values are
 * the same either way.
 */
export interface Linear {
  readonly w: tf.Tensor2D;
  readonly b?: tf.Tensor1D | undefined;
  readonly wT?: tf.Tensor2D | undefined;
}

/**
 * A linear layer on the last axis: x [..., in] · W (+ b), computed as one 2-D matmul with no transpose flags
 * (the layout XNNPACK takes on wasm); with `wT`, the gradient is matMul(dy, wT) (see `Linear`).
 */
export function linear(x: tf.Tensor, layer: Linear): tf.Tensor {
  const { w, b, wT } = layer;
  const [inDim, outDim] = w.shape;
  const lead = x.shape.slice(0, -1);
  const rows = lead.reduce((a, c) => a * c, 1);
  const x2d = tf.reshape(x, [rows, inDim]) as tf.Tensor2D;
  let y: tf.Tensor = wT === undefined ? tf.matMul(x2d, w) : matMulTransposedGrad(x2d, w, wT);
  if (b !== undefined) y = tf.add(y, b);
  return tf.reshape(y, [...lead, outDim]);
}

/** x·W whose gradient with respect to x is matMul(dy, wT) (no transpose flags). Exact either way. */
function matMulTransposedGrad(x: tf.Tensor2D, w: tf.Tensor2D, wT: tf.Tensor2D): tf.Tensor2D {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
    value: tf.matMul(args[0] as tf.Tensor2D, w),
    gradFunc: (dy: tf.Tensor) => tf.matMul(dy as tf.Tensor2D, wT),
  }));
  return f(x) as tf.Tensor2D;
}

/**
 * RMSNorm through the rule slots: scale = sqrt(mean(x²) + eps) over the last axis (passed through `scaleSite`
 * at `layer` when given), out = normalize(x, scale) · weight. `weight` broadcasts against the last axis (Gemma's
 * (1 + w) is the caller's to precompute); omit it for a weightless norm. Every RMSNorm instance goes through
 * `ctx.normalize`, so the LN-rule covers it; `norm` names the instance for the slot.
 */
export function rmsNorm(
  ctx: RunContext,
  x: tf.Tensor,
  weight: tf.Tensor | undefined,
  eps: number,
  scaleSite?: SiteName,
  layer = 0,
  norm?: NormName,
): tf.Tensor {
  let scale = ctx.normScale(x, eps, norm);
  if (scaleSite !== undefined) scale = ctx.site(scaleSite, layer, scale);
  const y = ctx.normalize(x, scale, norm);
  return weight === undefined ? y : tf.mul(y, weight);
}

/** RoPE frequency scaling as Hugging Face's `rope_parameters` spells it (the types relp supports). */
export type RopeScaling =
  | { readonly type: 'default' }
  | { readonly type: 'linear'; readonly factor: number }
  | {
      readonly type: 'llama3';
      readonly factor: number;
      readonly lowFreqFactor: number;
      readonly highFreqFactor: number;
      readonly originalMaxPositionEmbeddings: number;
    };

export interface RopeSpec {
  /** rope_theta, the base wavelength. */
  readonly theta: number;
  /** Number of rotated dimensions of each head (head_dim × partial_rotary_factor), even. */
  readonly dim: number;
  /**
   * The divisor of the frequency exponent, when it is not `dim`: GPT-NeoX divides by int(head_dim · rotary_pct),
   * which is odd when `dim` was rounded up to an even number.
   */
  readonly frequencyDim?: number;
  readonly scaling: RopeScaling;
}

const f32 = Math.fround;

/**
 * The inverse frequencies [dim/2] as transformers computes them in float32:
 * 1 / theta^(arange(0, dim, 2) / frequencyDim) (frequencyDim = dim unless given), then the scaling type's
 * adjustment.
 */
export function ropeInverseFrequencies(spec: RopeSpec): Float32Array {
  const { theta, dim, scaling } = spec;
  const divisor = spec.frequencyDim ?? dim;
  if (!Number.isInteger(dim) || dim < 2 || dim % 2 !== 0) {
    throw new RelpError(ErrorCodes.BadModelFile, `rotary dimension ${dim} must be a positive even integer`);
  }
  const half = dim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = f32(1 / f32(theta ** f32((2 * i) / divisor)));
  switch (scaling.type) {
    case 'default':
      break;
    case 'linear':
      for (let i = 0; i < half; i++) inv[i] = f32(inv[i]! / scaling.factor);
      break;
    case 'llama3': {
      const { factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: old } = scaling;
      const lowWavelen = old / lowFreqFactor;
      const highWavelen = old / highFreqFactor;
      for (let i = 0; i < half; i++) {
        const f = inv[i]!;
        const wavelen = f32((2 * Math.PI) / f);
        const scaled = wavelen > lowWavelen ? f32(f / factor) : f;
        const smooth = f32((old / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor));
        const medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
        inv[i] = medium ? f32(f32(f32(f32(1 - smooth) * scaled) / factor) + f32(smooth * scaled)) : scaled;
      }
      break;
    }
    default: {
      const never: never = scaling;
      throw new RelpError(ErrorCodes.Unsupported, `rope scaling ${JSON.stringify(never)}`);
    }
  }
  return inv;
}

/**
 * Rotary tables [T, dim] for positions start..start+T−1: `cos` (each frequency twice, as HF's cat((freqs, freqs)))
 * and `sin` with rotate_half's sign folded in, [−sin, sin], both times `attentionScaling` (1 except for scaling
 * types that rescale the attention). Folding the sign is exact (negation commutes with float rounding) and spares
 * every rotation a negation. A row depends only on its absolute position, so a prefix run's tables equal the full
 * run's rows.
 */
export function rotaryTables(
  invFreq: Float32Array,
  seq: number,
  attentionScaling = 1,
  start = 0,
): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
  const half = invFreq.length;
  const dim = 2 * half;
  const cos = new Float32Array(seq * dim);
  const sin = new Float32Array(seq * dim);
  for (let t = 0; t < seq; t++) {
    for (let i = 0; i < half; i++) {
      const angle = f32((start + t) * invFreq[i]!);
      const c = f32(f32(Math.cos(angle)) * attentionScaling);
      const s = f32(f32(Math.sin(angle)) * attentionScaling);
      cos[t * dim + i] = c;
      cos[t * dim + half + i] = c;
      sin[t * dim + i] = -s;
      sin[t * dim + half + i] = s;
    }
  }
  return { cos: tf.tensor2d(cos, [seq, dim]), sin: tf.tensor2d(sin, [seq, dim]) };
}

/** Swaps the two halves of the last axis of x [B,T,H,2h]: concat(x₂, x₁). */
function swapHalves(x: tf.Tensor4D): tf.Tensor4D {
  const [b, t, h, d] = x.shape;
  const half = d / 2;
  return tf.concat(
    [tf.slice(x, [0, 0, 0, half], [b, t, h, half]), tf.slice(x, [0, 0, 0, 0], [b, t, h, half])],
    3,
  ) as tf.Tensor4D;
}

/**
 * Applies rotary embeddings to x [B,T,H,dh] (the first `cos.shape[1]` dimensions of each head; the rest pass
 * through) with `rotaryTables`' cos and signed sin [T, rd]: x·cos + swap(x)·sin, which is HF's
 * x·cos + rotate_half(x)·sin bit for bit (rotate_half(x) = concat(−x₂, x₁)). A custom gradient,
 * dx = dy·cos + swap(dy·sin) (the rotation's transpose), replaces tfjs's autodiff through slices, negation,
 * concat and pads: the same numbers (each element is one sum of two products either way) from a third of the
 * kernels, and nothing of x is kept for the backward pass.
 */
export function applyRotary(x: tf.Tensor4D, cos: tf.Tensor2D, sin: tf.Tensor2D): tf.Tensor4D {
  const [b, t, h, dh] = x.shape;
  const rd = cos.shape[1];
  const c = tf.reshape(cos, [1, t, 1, rd]);
  const s = tf.reshape(sin, [1, t, 1, rd]);
  const rotate = tf.customGrad((...inputs: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const xr = inputs[0] as tf.Tensor4D;
    // The tables outlive the forward pass's scope only as saved tensors.
    (inputs[1] as tf.GradSaveFunc)([c, s]);
    return {
      value: tf.add(tf.mul(xr, c), tf.mul(swapHalves(xr), s)),
      gradFunc: (dy: tf.Tensor, [cs, sn]: tf.Tensor[]) =>
        tf.add(tf.mul(dy, cs!), swapHalves(tf.mul(dy, sn!) as tf.Tensor4D)),
    };
  });
  if (rd === dh) return rotate(x) as tf.Tensor4D;
  const rotated = rotate(tf.slice(x, [0, 0, 0, 0], [b, t, h, rd]));
  return tf.concat([rotated, tf.slice(x, [0, 0, 0, rd], [b, t, h, dh - rd])], 3) as tf.Tensor4D;
}

/**
 * Additive attention mask [T, offset+T] for queries at absolute positions offset..offset+T−1 and keys at
 * 0..offset+T−1: 0 where the key may be seen (key ≤ query and, with a window w, key > query − w, as
 * transformers' sliding_window_overlay), MASKED_SCORE elsewhere. offset 0 (a full run): [T,T].
 */
export function attentionMaskBias(seq: number, slidingWindow?: number, offset = 0): tf.Tensor2D {
  const keys = offset + seq;
  const m = new Float32Array(seq * keys);
  for (let qi = 0; qi < seq; qi++) {
    const i = offset + qi;
    for (let j = 0; j < keys; j++) {
      const visible = j <= i && (slidingWindow === undefined || j > i - slidingWindow);
      if (!visible) m[qi * keys + j] = MASKED_SCORE;
    }
  }
  return tf.tensor2d(m, [seq, keys]);
}

/**
 * Keys or values of a prefix run's positions [B,T',Hkv,dh] with the cached earlier positions of this layer
 * prepended along the position axis: [B, offset+T', Hkv, dh]. No prefix (or an empty one): x itself.
 */
export function prependPrefix(x: tf.Tensor, cached: tf.Tensor | undefined): tf.Tensor {
  if (cached === undefined || cached.shape[1] === 0) return x;
  return tf.concat([cached, x], 1);
}

export interface AttentionOptions {
  /** Multiplies q·kᵀ (1/√dh, or query_pre_attn_scalar^−½ for Gemma). */
  readonly scale: number;
  /** Additive mask [T, offset+T] (attentionMaskBias). */
  readonly maskBias: tf.Tensor;
  /** Cached keys and values [B,offset,Hkv,dh] of the positions before this run (a prefix run), for this layer. */
  readonly prefix?: { readonly k: tf.Tensor4D; readonly v: tf.Tensor4D } | undefined;
  /** tanh soft-capping of the scores before the mask (Gemma 2/3 attn_logit_softcapping), when set. */
  readonly softcap?: number | undefined;
}

/**
 * Grouped-query scaled dot-product attention through the sites and the softmax slot. q [B,T,H,dh], k and v
 * [B,T,Hkv,dh] (already through their sites); H must be a multiple of Hkv. With `options.prefix` the cached keys
 * and values of earlier positions are prepended (pattern [B,H,T,offset+T]). Calls `pattern` and `z` sites at
 * `layer` and returns z [B,T,H,dh] (after its site).
 */
export function groupedQueryAttention(
  ctx: RunContext,
  layer: number,
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  options: AttentionOptions,
): tf.Tensor4D {
  const [b, t, h, dh] = q.shape;
  const hkv = k.shape[2];
  const rep = h / hkv;
  const kAll = prependPrefix(k, options.prefix?.k) as tf.Tensor4D;
  const vAll = prependPrefix(v, options.prefix?.v) as tf.Tensor4D;
  const tk = kAll.shape[1];
  // Query head i reads KV head ⌊i/rep⌋ (HF's repeat_kv). Heads first, the `rep` query heads of one KV head are
  // consecutive, so they stack into the rows of one [rep·T, dh] matrix against that KV head's [Tk, dh]: no copy
  // of K and V per query head (nor a gradient summing the copies back), and the scores [B·Hkv, rep·T, Tk] are
  // already [B,H,T,Tk] in memory.
  const kvHeads = (x: tf.Tensor4D) =>
    tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [b * hkv, tk, dh]) as tf.Tensor3D;
  const qh = tf.reshape(tf.transpose(q, [0, 2, 1, 3]), [b * hkv, rep * t, dh]) as tf.Tensor3D;
  let scores: tf.Tensor = tf.mul(ctx.attentionScores(qh, kvHeads(kAll)), f32(options.scale));
  if (options.softcap !== undefined) {
    scores = tf.mul(tf.tanh(tf.div(scores, options.softcap)), options.softcap);
  }
  scores = tf.add(tf.reshape(scores, [b, h, t, tk]), options.maskBias);
  const pattern = ctx.site(Site.Pattern, layer, ctx.attentionSoftmax(scores));
  const zh = ctx.attentionValues(tf.reshape(pattern, [b * hkv, rep * t, tk]) as tf.Tensor3D, kvHeads(vAll));
  const z = tf.transpose(tf.reshape(zh, [b, h, t, dh]), [0, 2, 1, 3]);
  return ctx.site(Site.Z, layer, z) as tf.Tensor4D;
}

/**
 * How a block normalises the residual before a sub-block (its norm, through the rule slots), over the last axis
 * of any shape; `scaleSite` is given on the plain path and absent for the per-reader copies of an edge run.
 */
export type ResidualNorm = (x: tf.Tensor, scaleSite?: SiteName) => tf.Tensor;

/** The query, key and value projections: three layers, or one fused layer with columns [q | k | v]. */
export type QkvWeights =
  | { readonly q: Linear; readonly k: Linear; readonly v: Linear }
  | { readonly qkv: Linear };

/** Head counts and width of the projections. */
export interface HeadShape {
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly dHead: number;
}

/** Whether a run asks for the per-reader inputs of block `layer`'s attention (an edge run; §17). */
export function wantsSplitAttention(ctx: RunContext, layer: number): boolean {
  return (
    ctx.wants(EDGE_SITES.q_input, layer) ||
    ctx.wants(EDGE_SITES.k_input, layer) ||
    ctx.wants(EDGE_SITES.v_input, layer)
  );
}

/**
 * The queries [B,T,H,dh] and keys and values [B,T,Hkv,dh] (before rotary embeddings, q/k norms and their sites)
 * from the residual entering the attention sub-block. Plain path: norm(resid) once (its scale through
 * `ln1_scale`), then the projections. Edge runs (docs/method.md §17), when the run asks for `q_input`, `k_input`
 * or `v_input` at this layer: every query head and every key/value head's key and value projection reads its own
 * copy of the residual through those sites, normalised on its own (no scale site) and projected by that head's
 * columns only — the same function, so gradients and patches at the sites are per head.
 */
export function attentionInputs(
  ctx: RunContext,
  layer: number,
  resid: tf.Tensor3D,
  norm: ResidualNorm,
  w: QkvWeights,
  heads: HeadShape,
): { q: tf.Tensor4D; k: tf.Tensor4D; v: tf.Tensor4D } {
  const { nHeads: H, nKvHeads: Hkv, dHead: dh } = heads;
  const [b, t, d] = resid.shape;
  const split = (n: number) => (y: tf.Tensor) => tf.reshape(y, [b, t, n, dh]) as tf.Tensor4D;
  if (!wantsSplitAttention(ctx, layer)) {
    const x = norm(resid, Site.Ln1Scale);
    if ('qkv' in w) {
      const [q, k, v] = tf.split(linear(x, w.qkv), [H * dh, Hkv * dh, Hkv * dh], 2);
      return { q: split(H)(q!), k: split(Hkv)(k!), v: split(Hkv)(v!) };
    }
    return { q: split(H)(linear(x, w.q)), k: split(Hkv)(linear(x, w.k)), v: split(Hkv)(linear(x, w.v)) };
  }
  const columns = (which: 0 | 1 | 2): Linear => {
    if (!('qkv' in w)) return [w.q, w.k, w.v][which]!;
    const start = [0, H * dh, (H + Hkv) * dh][which]!;
    const width = (which === 0 ? H : Hkv) * dh;
    const { w: m, b: bias } = w.qkv;
    return {
      w: tf.slice(m, [0, start], [d, width]) as tf.Tensor2D,
      b: bias === undefined ? undefined : (tf.slice(bias, [start], [width]) as tf.Tensor1D),
    };
  };
  const perReader = (site: SiteDef, n: number, which: 0 | 1 | 2) => {
    const copies = tf.tile(tf.expandDims(resid, 2), [1, 1, n, 1]);
    return headLinear(norm(ctx.site(site, layer, copies)), columns(which), n, dh);
  };
  return {
    q: perReader(EDGE_SITES.q_input, H, 0),
    k: perReader(EDGE_SITES.k_input, Hkv, 1),
    v: perReader(EDGE_SITES.v_input, Hkv, 2),
  };
}

/** Per-head projections: x [B,T,n,d] with head i's copy through columns i·dh … (i+1)·dh of W: [B,T,n,dh]. */
function headLinear(x: tf.Tensor, layer: Linear, n: number, dh: number): tf.Tensor4D {
  const [b, t, , d] = x.shape as [number, number, number, number];
  const xh = tf.reshape(tf.transpose(x, [2, 0, 1, 3]), [n, b * t, d]) as tf.Tensor3D;
  const wh = tf.transpose(tf.reshape(layer.w, [d, n, dh]), [1, 0, 2]) as tf.Tensor3D;
  let y: tf.Tensor = tf.matMul(xh, wh);
  if (layer.b !== undefined) y = tf.add(y, tf.reshape(layer.b, [n, 1, dh]));
  return tf.transpose(tf.reshape(y, [n, b, t, dh]), [1, 2, 0, 3]) as tf.Tensor4D;
}

/**
 * The residual as the MLP reads it: x itself, or in an edge run that asks for `mlp_input` at this layer, x through
 * that site (a copy only the MLP reads; the residual stream goes on with x).
 */
export function mlpInput(ctx: RunContext, layer: number, x: tf.Tensor3D): tf.Tensor3D {
  return ctx.wants(EDGE_SITES.mlp_input, layer)
    ? (ctx.site(EDGE_SITES.mlp_input, layer, x) as tf.Tensor3D)
    : x;
}

/** The normalize slot's name for the norm after the attention output. */
const POST_ATTN: NormName = 'post_attention_norm';

/** A norm after the attention output (Gemma 3's post-attention RMSNorm): weight (already 1 + w) and eps. */
export interface PostNorm {
  readonly weight: tf.Tensor;
  readonly eps: number;
}

/**
 * The attention output projection z·W_O (+ b_O), W_O [H·dh, d], then the post-attention RMSNorm when given.
 * When the context wants `result` or `head_out` at this layer, computes per-head results [B,T,H,d] (no bias),
 * passes them through `result`, and returns Σ_h result (+ b_O), so patches of heads flow into the output;
 * otherwise one 2-D matmul. With `head_out` wanted, each head's write goes through that site and the output is
 * their sum: without a post-norm head_out = result; with one (normaliser s of the whole Σ_h result + b_O),
 * head_out_h = normalize(result_h, s)·weight, and the bias's share normalize(b_O, s)·weight is added — the same
 * function as the post-norm of the sum (docs/method.md §17). The caller puts the output through attn_out.
 */
export function attentionOutput(
  ctx: RunContext,
  layer: number,
  z: tf.Tensor4D,
  wO: Linear,
  post?: PostNorm,
): tf.Tensor3D {
  const [b, t, h, dh] = z.shape;
  const d = wO.w.shape[1];
  const postNorm = (x: tf.Tensor): tf.Tensor3D =>
    (post === undefined
      ? x
      : rmsNorm(ctx, x, post.weight, post.eps, undefined, layer, POST_ATTN)) as tf.Tensor3D;
  const headOut = ctx.wants(EDGE_SITES.head_out, layer);
  if (!ctx.wants(Site.Result, layer) && !headOut) {
    return postNorm(linear(tf.reshape(z, [b, t, h * dh]), wO));
  }
  const zh = tf.reshape(tf.transpose(z, [2, 0, 1, 3]), [h, b * t, dh]) as tf.Tensor3D;
  const perHead = tf.matMul(zh, tf.reshape(wO.w, [h, dh, d]) as tf.Tensor3D);
  const result = ctx.site(Site.Result, layer, tf.transpose(tf.reshape(perHead, [h, b, t, d]), [1, 2, 0, 3]));
  const withBias = (x: tf.Tensor) => (wO.b === undefined ? x : tf.add(x, wO.b));
  if (!headOut) return postNorm(withBias(tf.sum(result, 2)));
  if (post === undefined)
    return withBias(tf.sum(ctx.site(EDGE_SITES.head_out, layer, result), 2)) as tf.Tensor3D;
  const scale = ctx.normScale(withBias(tf.sum(result, 2)), post.eps, POST_ATTN);
  const share = (x: tf.Tensor, s: tf.Tensor) => tf.mul(ctx.normalize(x, s, POST_ATTN), post.weight);
  const writes = ctx.site(EDGE_SITES.head_out, layer, share(result, tf.expandDims(scale, 2)));
  const out = tf.sum(writes, 2);
  return (wO.b === undefined ? out : tf.add(out, share(tf.reshape(wO.b, [1, 1, d]), scale))) as tf.Tensor3D;
}

/**
 * Validates a forward input against the model's dims and returns the first block to run: tokens as
 * `checkTokens` (BAD_TOKENS); a residual must be [B,T,d] with 1 ≤ T ≤ context and a start layer in [0, nLayers];
 * a prefix as `checkPrefix`.
 */
export function startLayerOf(input: ModelInput, dims: ModelDims): number {
  if ('tokens' in input) {
    checkTokens(input.tokens, dims.vocabSize, dims.contextLength);
    return 0;
  }
  const { resid, layer } = input;
  if (
    !(resid instanceof tf.Tensor) ||
    resid.rank !== 3 ||
    resid.dtype !== 'float32' ||
    resid.shape[2] !== dims.dModel ||
    resid.shape[0] < 1 ||
    resid.shape[1] < 1
  ) {
    throw new RelpError(
      ErrorCodes.BadInput,
      `resid must be float32 [batch, seq, ${dims.dModel}], got ${resid?.dtype} [${resid?.shape}]`,
    );
  }
  if (resid.shape[1] > dims.contextLength) {
    throw new RelpError(
      ErrorCodes.BadTokens,
      `${resid.shape[1]} positions exceed the context length ${dims.contextLength}`,
    );
  }
  if (!Number.isInteger(layer) || layer < 0 || layer > dims.nLayers) {
    throw new RelpError(ErrorCodes.BadInput, `start layer ${layer} outside [0, ${dims.nLayers}]`);
  }
  checkPrefix(input, dims);
  return layer;
}

/**
 * Validates a residual input's joins (BAD_INPUT): layers increasing, after the start layer and before nLayers,
 * each residual a float32 [rows ≥ 1, T', d] with the run's positions. Returns the final number of rows.
 */
export function checkJoins(input: ModelInput, dims: ModelDims): number {
  if (!('resid' in input)) return input.tokens.shape[0];
  const { resid, layer, joins = [] } = input;
  let previous = layer;
  for (const j of joins) {
    if (!Number.isInteger(j.layer) || j.layer <= previous || j.layer >= dims.nLayers) {
      throw new RelpError(
        ErrorCodes.BadInput,
        `a join at layer ${j.layer} must come after layer ${previous} and before ${dims.nLayers}`,
      );
    }
    const x = j.resid;
    if (
      !(x instanceof tf.Tensor) ||
      x.rank !== 3 ||
      x.dtype !== 'float32' ||
      x.shape[0] < 1 ||
      x.shape[1] !== resid.shape[1] ||
      x.shape[2] !== resid.shape[2]
    ) {
      throw new RelpError(
        ErrorCodes.BadInput,
        `rows joining at layer ${j.layer} must be float32 [rows, ${resid.shape[1]}, ${resid.shape[2]}], got ` +
          `${x?.dtype} [${x?.shape}]`,
      );
    }
    previous = j.layer;
  }
  return rowsAt(input, dims.nLayers);
}

/** The rows of a run at block `layer` (the final rows at nLayers): its input's plus those joined by then. */
export function rowsAt(input: ModelInput, layer: number): number {
  if (!('resid' in input)) return input.tokens.shape[0];
  let rows = input.resid.shape[0];
  for (const j of input.joins ?? []) if (j.layer <= layer) rows += j.resid.shape[0];
  return rows;
}

/** The residual entering block `layer` with the rows that join there appended (x itself when none do). */
export function joinRows(input: ModelInput, layer: number, x: tf.Tensor): tf.Tensor {
  if (!('resid' in input) || input.joins === undefined) return x;
  const j = input.joins.find((e) => e.layer === layer);
  return j === undefined ? x : tf.concat([x, j.resid], 0);
}

/**
 * Validates a `{resid, layer, prefix}` input's prefix (BAD_INPUT): an integer length ≥ 0 with length + T' within
 * the context (BAD_TOKENS), and for every block l from `layer` on keys and values [rows at l, length, nKvHeads,
 * dHead] (the rows joined by block l included). Returns the prefix's length (0 without one).
 */
export function checkPrefix(input: ModelInput, dims: ModelDims): number {
  checkJoins(input, dims);
  if (!('resid' in input) || input.prefix === undefined) return 0;
  const { resid, layer, prefix } = input;
  const n = prefix.length;
  if (!Number.isInteger(n) || n < 0) {
    throw new RelpError(ErrorCodes.BadInput, `prefix length ${n} must be an integer ≥ 0`);
  }
  const t = resid.shape[1];
  if (n + t > dims.contextLength) {
    throw new RelpError(
      ErrorCodes.BadTokens,
      `${n} prefix + ${t} positions exceed the context length ${dims.contextLength}`,
    );
  }
  if (n === 0) return 0;
  for (let l = layer; l < dims.nLayers; l++) {
    const want = [rowsAt(input, l), n, dims.nKvHeads, dims.dHead];
    for (const [what, x] of [
      ['keys', prefix.keys[l]],
      ['values', prefix.values[l]],
    ] as const) {
      if (x === undefined || x.rank !== 4 || x.shape.some((s, i) => s !== want[i])) {
        throw new RelpError(
          ErrorCodes.BadInput,
          `prefix ${what}[${l}] must be [${want}], got ${x === undefined ? 'none' : `[${x.shape}]`}`,
        );
      }
    }
  }
  return n;
}

/** The cached keys and values of one layer of a prefix (undefined without a prefix). */
export function prefixAt(
  prefix: KvPrefix | undefined,
  layer: number,
): { k: tf.Tensor4D; v: tf.Tensor4D } | undefined {
  if (prefix === undefined || prefix.length === 0) return undefined;
  return { k: prefix.keys[layer]!, v: prefix.values[layer]! };
}

/**
 * Logits x [N,d] · tableᵀ for an unembedding stored [V,d] (the embedding table when tied, or lm_head as HF stores
 * it), with a custom backward dx = (tableᵀ · dyᵀ)ᵀ that uses transpose flags. Both directions thereby avoid the wasm
 * backend's XNNPACK path, which packs (copies) the whole [V,d] matrix per call: for large vocabularies (Gemma 3:
 * 262144 × 640 floats) that copy runs out of wasm memory and XNNPACK then returns garbage silently. Only the
 * gradient with respect to x is defined (relp never differentiates weights).
 */
export function unembed(x: tf.Tensor2D, table: tf.Tensor2D): tf.Tensor2D {
  const f = tf.customGrad((...inputs: (tf.Tensor | tf.GradSaveFunc)[]) => {
    // Saved, so a table made inside the forward pass's scope (a vocabulary restriction's rows) outlives it.
    (inputs[1] as tf.GradSaveFunc)([table]);
    return {
      value: tf.matMul(inputs[0] as tf.Tensor2D, table, false, true),
      gradFunc: (dy: tf.Tensor, [t]: tf.Tensor[]) =>
        tf.transpose(tf.matMul(t!, dy as tf.Tensor2D, true, true)),
    };
  });
  return f(x) as tf.Tensor2D;
}

/**
 * Logits [B,T,V] of x [B,T,d] against an unembedding table [V,d] (`unembed`); with `vocab` ids only those rows of
 * the table, [B,T,V'].
 */
export function unembedLogits(x: tf.Tensor3D, table: tf.Tensor2D, vocab?: tf.Tensor1D): tf.Tensor3D {
  const [b, t, d] = x.shape;
  const rows = vocab === undefined ? table : (tf.gather(table, vocab) as tf.Tensor2D);
  const logits = unembed(tf.reshape(x, [b * t, d]) as tf.Tensor2D, rows);
  return tf.reshape(logits, [b, t, rows.shape[0]]) as tf.Tensor3D;
}
