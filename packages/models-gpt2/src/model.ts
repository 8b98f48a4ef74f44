import {
  attentionMaskBias,
  checkPrefix,
  ErrorCodes,
  type ForwardOptions,
  joinRows,
  type KvPrefix,
  type LanguageModel,
  type ModelDims,
  type ModelInput,
  type Nonlinearity,
  prependPrefix,
  RelpError,
  type RunContext,
  readoutRows,
  rowsAt,
  Site,
  type SiteName,
  vocabIds,
  type WeightMap,
  wantsTransposedWeightCopies,
} from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';
import type { Gpt2Config } from './config.js';
import { gpt2LayerWeightShapes, requireWeight } from './weights.js';

interface LayerWeights {
  readonly ln1g: tf.Tensor1D;
  readonly ln1b: tf.Tensor1D;
  /** c_attn [d, 3d] and its bias. */
  readonly wQkv: tf.Tensor2D;
  readonly bQkv: tf.Tensor1D;
  /** attn.c_proj [d, d] (rows grouped by head) and its bias. */
  readonly wO: tf.Tensor2D;
  readonly bO: tf.Tensor1D;
  readonly ln2g: tf.Tensor1D;
  readonly ln2b: tf.Tensor1D;
  /** mlp.c_fc [d, m], mlp.c_proj [m, d]. */
  readonly wIn: tf.Tensor2D;
  readonly bIn: tf.Tensor1D;
  readonly wOut: tf.Tensor2D;
  readonly bOut: tf.Tensor1D;
}

/** Construction options. */
export interface Gpt2ModelOptions {
  /**
   * Hold a transposed copy of every block matrix so the backward pass computes dx = dy·Wᵀ as a matmul
   * without transpose flags. On wasm that runs on XNNPACK: 6–15× faster than tfjs's transposeB loop at
   * GPT-2-small shapes (bench/backward-matmul.bench.ts), at the price of twice the block weights' memory.
   * Forward values do not change. Default: true when the model is built on the wasm backend
   * (`wantsTransposedWeightCopies`), false elsewhere, where the transpose flag costs nothing.
   */
  readonly transposedCopies?: boolean;
}

/** x·W whose gradient with respect to x uses a pre-transposed Wᵀ (no transpose flags). Exact either way. */
function matMulWithTransposedCopy(x: tf.Tensor2D, w: tf.Tensor2D, wT: tf.Tensor2D): tf.Tensor2D {
  const f = tf.customGrad((xx) => ({
    value: tf.matMul(xx as tf.Tensor2D, w),
    gradFunc: (dy: tf.Tensor) => tf.matMul(dy as tf.Tensor2D, wT),
  }));
  return f(x) as tf.Tensor2D;
}

/** What scores of masked (future) positions are set to before the softmax: exp underflows to exactly 0. */
const MASKED_SCORE = -1e9;

const GPT2_SITES: readonly SiteName[] = [
  Site.ResidPre,
  Site.ResidMid,
  Site.ResidPost,
  Site.AttnOut,
  Site.MlpOut,
  Site.Q,
  Site.K,
  Site.V,
  Site.Pattern,
  Site.Z,
  Site.Result,
  Site.MlpPre,
  Site.MlpPost,
  Site.Ln1Scale,
  Site.Ln2Scale,
  Site.LnFinalScale,
];

function toTensor(t: { readonly shape: readonly number[]; readonly data: Float32Array }): tf.Tensor {
  // tf.tensor copies the data, so the host arrays can be dropped afterwards.
  return tf.tensor(t.data, [...t.shape], 'float32');
}

function badTokens(message: string, details: Record<string, unknown> = {}): RelpError {
  return new RelpError(ErrorCodes.BadTokens, message, { details });
}

/**
 * GPT-2 exactly as Hugging Face's GPT2LMHeadModel computes it (eager attention, float32), as a function of
 * (weights, input, RunContext). Weights become tf tensors once, at construction, in the layout the kernels
 * want: Conv1D matrices stay [in, out] for `matMul(x2d, W)`, and the unembedding is held as [d, V] — on the
 * wasm backend a [d,V] matmul without transpose flags runs on XNNPACK, about 11× faster in the forward pass
 * and 1.6–3× faster forward + backward than the [V,d] table with transposeB (bench/unembed-layout.bench.ts,
 * GPT-2-small shapes). When the embeddings are tied, token embeddings are gathered from that same [d,V]
 * matrix (columns), so the table is held once.
 */
export class Gpt2Model implements LanguageModel {
  readonly architecture = 'gpt2';
  readonly dims: ModelDims;
  readonly sites: readonly SiteName[] = GPT2_SITES;
  readonly nonlinearities: readonly Nonlinearity[];
  readonly config: Gpt2Config;

  /** Token embedding; null when tied (then embeddings are columns of `unembed`). [V, d] */
  private readonly wte: tf.Tensor2D | null;
  /** Position embedding. [n_positions, d] */
  private readonly wpe: tf.Tensor2D;
  private readonly layers: readonly LayerWeights[];
  private readonly lnfG: tf.Tensor1D;
  private readonly lnfB: tf.Tensor1D;
  /** Unembedding, [d, V]. */
  private readonly unembed: tf.Tensor2D;
  /** Transposed copies of block matrices, for the backward pass (see Gpt2ModelOptions). */
  private readonly transposed = new Map<tf.Tensor2D, tf.Tensor2D>();
  private disposed = false;

  constructor(config: Gpt2Config, weights: WeightMap, options: Gpt2ModelOptions = {}) {
    this.config = config;
    const c = config;
    this.dims = {
      nLayers: c.nLayers,
      dModel: c.dModel,
      nHeads: c.nHeads,
      nKvHeads: c.nHeads,
      dHead: c.dHead,
      dMlp: c.dMlp,
      vocabSize: c.vocabSize,
      contextLength: c.contextLength,
    };
    this.nonlinearities = [
      { slot: 'normalize', kind: 'layernorm' },
      { slot: 'activation', kind: c.activation },
      { slot: 'attention_softmax', kind: 'softmax' },
    ];

    // Check every weight before allocating any tensor.
    const d = c.dModel;
    const wteHost = requireWeight(weights, 'transformer.wte.weight', [c.vocabSize, d]);
    const wpeHost = requireWeight(weights, 'transformer.wpe.weight', [c.contextLength, d]);
    const layerShapes = gpt2LayerWeightShapes(c);
    const layerHost = Array.from({ length: c.nLayers }, (_, l) => {
      const get = (n: string) => requireWeight(weights, `transformer.h.${l}.${n}`, layerShapes[n]!);
      return Object.fromEntries(Object.keys(layerShapes).map((n) => [n, get(n)]));
    });
    const lnfG = requireWeight(weights, 'transformer.ln_f.weight', [d]);
    const lnfB = requireWeight(weights, 'transformer.ln_f.bias', [d]);
    const lmHead = c.tieWordEmbeddings ? null : requireWeight(weights, 'lm_head.weight', [c.vocabSize, d]);

    // Tensors are created only after every check passed: a bad file leaks nothing.
    this.unembed = tf.tidy(() => tf.transpose(toTensor(lmHead ?? wteHost)) as tf.Tensor2D);
    this.wte = lmHead === null ? null : (toTensor(wteHost) as tf.Tensor2D);
    this.wpe = toTensor(wpeHost) as tf.Tensor2D;
    this.lnfG = toTensor(lnfG) as tf.Tensor1D;
    this.lnfB = toTensor(lnfB) as tf.Tensor1D;
    this.layers = layerHost.map((h) => {
      const t = <R extends tf.Rank>(n: string) => toTensor(h[n]!) as tf.Tensor<R>;
      return {
        ln1g: t<tf.Rank.R1>('ln_1.weight'),
        ln1b: t<tf.Rank.R1>('ln_1.bias'),
        wQkv: t<tf.Rank.R2>('attn.c_attn.weight'),
        bQkv: t<tf.Rank.R1>('attn.c_attn.bias'),
        wO: t<tf.Rank.R2>('attn.c_proj.weight'),
        bO: t<tf.Rank.R1>('attn.c_proj.bias'),
        ln2g: t<tf.Rank.R1>('ln_2.weight'),
        ln2b: t<tf.Rank.R1>('ln_2.bias'),
        wIn: t<tf.Rank.R2>('mlp.c_fc.weight'),
        bIn: t<tf.Rank.R1>('mlp.c_fc.bias'),
        wOut: t<tf.Rank.R2>('mlp.c_proj.weight'),
        bOut: t<tf.Rank.R1>('mlp.c_proj.bias'),
      };
    });
    if (options.transposedCopies ?? wantsTransposedWeightCopies()) {
      for (const lw of this.layers) {
        for (const w of [lw.wQkv, lw.wO, lw.wIn, lw.wOut]) this.transposed.set(w, tf.transpose(w));
      }
    }
  }

  /** Frees the weights. The model cannot run afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const all: tf.Tensor[] = [this.wpe, this.unembed, this.lnfG, this.lnfB];
    if (this.wte) all.push(this.wte);
    for (const lw of this.layers) all.push(...(Object.values(lw) as tf.Tensor[]));
    all.push(...this.transposed.values());
    this.transposed.clear();
    tf.dispose(all);
  }

  private assertLive(): void {
    if (this.disposed) throw new RelpError(ErrorCodes.BadInput, 'this GPT-2 model has been disposed');
  }

  /** Checks token ids on the host (cheap: one read of a [B,T] int32 tensor) before anything runs. */
  private checkTokens(tokens: tf.Tensor2D): void {
    if (!(tokens instanceof tf.Tensor) || tokens.rank !== 2) {
      throw badTokens(`tokens must be an int32 tensor [batch, seq], got rank ${tokens?.rank}`);
    }
    if (tokens.dtype !== 'int32') throw badTokens(`tokens must be int32, got ${tokens.dtype}`);
    const [b, t] = tokens.shape;
    if (b === 0 || t === 0) throw badTokens(`tokens must not be empty, got shape [${b}, ${t}]`);
    if (t > this.config.contextLength) {
      throw badTokens(`sequence length ${t} exceeds the context length ${this.config.contextLength}`, {
        seq: t,
        contextLength: this.config.contextLength,
      });
    }
    const ids = tokens.dataSync();
    const v = this.config.vocabSize;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (id < 0 || id >= v) {
        throw badTokens(
          `token id ${id} at [${Math.floor(i / t)}, ${i % t}] is outside the vocabulary [0, ${v})`,
          {
            token: id,
            batch: Math.floor(i / t),
            position: i % t,
            vocabSize: v,
          },
        );
      }
    }
  }

  embed(tokens: tf.Tensor2D): tf.Tensor3D {
    this.assertLive();
    this.checkTokens(tokens);
    return tf.tidy(() => this.embedChecked(tokens));
  }

  private embedChecked(tokens: tf.Tensor2D): tf.Tensor3D {
    const [b, t] = tokens.shape;
    const d = this.config.dModel;
    const ids = tf.reshape(tokens, [b * t]);
    const tok =
      this.wte === null
        ? tf.transpose(tf.gather(this.unembed, ids, 1)) // columns of [d, V]: exact copies
        : tf.gather(this.wte, ids, 0);
    const pos = tf.slice(this.wpe, [0, 0], [t, d]);
    return tf.add(tf.reshape(tok, [b, t, d]), pos) as tf.Tensor3D;
  }

  forward(input: ModelInput, ctx: RunContext, options: ForwardOptions = {}): tf.Tensor3D {
    this.assertLive();
    const c = this.config;
    let batch: number;
    let seq: number;
    let start: number;
    if ('tokens' in input) {
      this.checkTokens(input.tokens);
      [batch, seq] = input.tokens.shape;
      start = 0;
    } else {
      const { resid, layer } = input;
      if (!(resid instanceof tf.Tensor) || resid.rank !== 3 || resid.shape[2] !== c.dModel) {
        throw new RelpError(
          ErrorCodes.BadInput,
          `resid must be a float32 tensor [batch, seq, ${c.dModel}], got [${resid?.shape?.join(', ')}]`,
        );
      }
      if (!Number.isInteger(layer) || layer < 0 || layer > c.nLayers) {
        throw new RelpError(ErrorCodes.BadInput, `start layer ${layer} is outside [0, ${c.nLayers}]`, {
          details: { layer },
        });
      }
      [batch, seq] = resid.shape;
      if (batch === 0 || seq === 0) throw new RelpError(ErrorCodes.BadInput, 'resid must not be empty');
      if (seq > c.contextLength) {
        throw badTokens(`sequence length ${seq} exceeds the context length ${c.contextLength}`, {
          seq,
          contextLength: c.contextLength,
        });
      }
      start = layer;
    }
    const offset = checkPrefix(input, this.dims);
    const prefix: KvPrefix | undefined = 'resid' in input && offset > 0 ? input.prefix : undefined;
    // Rows joined on the way (ModelInput.joins) are part of the final batch.
    batch = rowsAt(input, c.nLayers);
    const readoutMask =
      options.readout === undefined
        ? null
        : this.readoutMask(readoutRows(options.readout, batch, seq, offset), batch, seq);

    return tf.tidy(() => {
      let resid: tf.Tensor = 'tokens' in input ? this.embedChecked(input.tokens) : input.resid;
      // A prefix run's queries (absolute positions offset..offset+T−1) see keys 0..offset+T−1: [T, offset+T].
      const causal =
        offset === 0 ? tf.tensor2d(causalBias(seq), [seq, seq]) : attentionMaskBias(seq, undefined, offset);
      for (let l = start; l < c.nLayers; l++) {
        ctx.checkAborted();
        resid = joinRows(input, l, resid);
        const x = resid;
        // Each block's intermediates are freed when it ends (the tape keeps what a gradient needs).
        resid = tf.tidy(() => this.block(l, x, causal, ctx, x.shape[0]!, seq, prefix));
      }
      ctx.checkAborted();

      let final = resid;
      let rows = seq;
      if (readoutMask !== null) {
        // An exact one-hot reduction over positions (x·1 + Σ x·0), differentiable on every backend.
        const mask = tf.tensor3d(readoutMask, [batch, seq, 1]);
        final = tf.sum(tf.mul(final, mask), 1, true);
        rows = 1;
      }
      const x = this.layerNorm(final, Site.LnFinalScale, 0, this.lnfG, this.lnfB, ctx);
      const table = options.vocab
        ? (tf.gather(this.unembed, vocabIds(options.vocab, c.vocabSize), 1) as tf.Tensor2D)
        : this.unembed;
      const logits = tf.matMul(tf.reshape(x, [batch * rows, c.dModel]) as tf.Tensor2D, table);
      return tf.reshape(logits, [batch, rows, table.shape[1]]) as tf.Tensor3D;
    });
  }

  private readoutMask(readout: readonly number[], batch: number, seq: number): Float32Array {
    if (readout.length !== batch) {
      throw new RelpError(
        ErrorCodes.BadInput,
        `readout gives ${readout.length} positions for a batch of ${batch} (one per row)`,
        { details: { readout: readout.length, batch } },
      );
    }
    const mask = new Float32Array(batch * seq);
    readout.forEach((p, b) => {
      if (!Number.isInteger(p) || p < 0 || p >= seq) {
        throw new RelpError(ErrorCodes.BadInput, `readout position ${p} of row ${b} is outside [0, ${seq})`, {
          details: { row: b, position: p },
        });
      }
      mask[b * seq + p] = 1;
    });
    return mask;
  }

  /** LayerNorm through the rule slot: xc = x − mean, scale = √(mean(xc²) + eps) (a site), normalize·γ + β. */
  private layerNorm(
    x: tf.Tensor,
    site: SiteName,
    layer: number,
    gain: tf.Tensor1D,
    bias: tf.Tensor1D,
    ctx: RunContext,
  ): tf.Tensor {
    const xc = tf.sub(x, tf.mean(x, -1, true));
    const scale = ctx.site(site, layer, ctx.normScale(xc, this.config.layerNormEps));
    return tf.add(tf.mul(ctx.normalize(xc, scale), gain), bias);
  }

  /** x2d·W + b for a [B,T,in] activation: a 2-D matmul without transpose flags (XNNPACK on wasm). */
  private linear(x: tf.Tensor, w: tf.Tensor2D, b: tf.Tensor1D, batch: number, seq: number): tf.Tensor {
    const [inDim, outDim] = w.shape;
    const x2d = tf.reshape(x, [batch * seq, inDim]) as tf.Tensor2D;
    const wT = this.transposed.get(w);
    const y = tf.add(wT === undefined ? tf.matMul(x2d, w) : matMulWithTransposedCopy(x2d, w, wT), b);
    return tf.reshape(y, [batch, seq, outDim]);
  }

  private block(
    l: number,
    residIn: tf.Tensor,
    causal: tf.Tensor2D,
    ctx: RunContext,
    batch: number,
    seq: number,
    prefix?: KvPrefix,
  ): tf.Tensor {
    const c = this.config;
    const w = this.layers[l]!;
    const [B, T, H, dh, d] = [batch, seq, c.nHeads, c.dHead, c.dModel];

    const resid = ctx.site(Site.ResidPre, l, residIn);
    const h1 = this.layerNorm(resid, Site.Ln1Scale, l, w.ln1g, w.ln1b, ctx);
    const qkv = this.linear(h1, w.wQkv, w.bQkv, B, T);
    const [q0, k0, v0] = tf.split(qkv, 3, 2) as [tf.Tensor, tf.Tensor, tf.Tensor];
    const q = ctx.site(Site.Q, l, tf.reshape(q0!, [B, T, H, dh]));
    const k = ctx.site(Site.K, l, tf.reshape(k0!, [B, T, H, dh]));
    const v = ctx.site(Site.V, l, tf.reshape(v0!, [B, T, H, dh]));
    const heads = (x: tf.Tensor) =>
      tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [B * H, x.shape[1]!, dh]) as tf.Tensor3D;
    // A prefix run also attends to the cached keys/values of the earlier positions: Tk = offset + T.
    const kAll = prependPrefix(k, prefix?.keys[l]);
    const vAll = prependPrefix(v, prefix?.values[l]);
    const Tk = kAll.shape[1]!;

    let scaling = c.scaleAttnWeights ? 1 / Math.sqrt(dh) : 1;
    if (c.scaleAttnByInverseLayerIdx) scaling /= l + 1;
    let scores = tf.reshape(tf.matMul(heads(q), heads(kAll), false, true), [B, H, T, Tk]);
    if (scaling !== 1) scores = tf.mul(scores, scaling);
    const pattern = ctx.site(Site.Pattern, l, ctx.attentionSoftmax(tf.add(scores, causal)));
    const zh = tf.matMul(tf.reshape(pattern, [B * H, T, Tk]) as tf.Tensor3D, heads(vAll)); // [BH, T, dh]
    const z = ctx.site(Site.Z, l, tf.transpose(tf.reshape(zh, [B, H, T, dh]), [0, 2, 1, 3]));

    let attn: tf.Tensor;
    if (ctx.wants(Site.Result, l)) {
      // result[b,t,h] = z[b,t,h] · W_O[h·dh:(h+1)·dh]; attn_out = Σ_h result + b_O.
      const zt = tf.transpose(tf.reshape(z, [B * T, H, dh]), [1, 0, 2]) as tf.Tensor3D; // [H, BT, dh]
      const perHead = tf.matMul(zt, tf.reshape(w.wO, [H, dh, d]) as tf.Tensor3D); // [H, BT, d]
      const result = ctx.site(Site.Result, l, tf.reshape(tf.transpose(perHead, [1, 0, 2]), [B, T, H, d]));
      attn = tf.add(tf.sum(result, 2), w.bO);
    } else {
      attn = this.linear(z, w.wO, w.bO, B, T);
    }
    attn = ctx.site(Site.AttnOut, l, attn);
    const mid = ctx.site(Site.ResidMid, l, tf.add(resid, attn));

    const h2 = this.layerNorm(mid, Site.Ln2Scale, l, w.ln2g, w.ln2b, ctx);
    const pre = ctx.site(Site.MlpPre, l, this.linear(h2, w.wIn, w.bIn, B, T));
    const post = ctx.site(Site.MlpPost, l, ctx.activation(c.activation, pre));
    const mlp = ctx.site(Site.MlpOut, l, this.linear(post, w.wOut, w.bOut, B, T));
    return ctx.site(Site.ResidPost, l, tf.add(mid, mlp));
  }
}

/** Additive causal mask [T,T]: 0 where key ≤ query, a large negative number above the diagonal. */
function causalBias(seq: number): Float32Array {
  const m = new Float32Array(seq * seq);
  for (let i = 0; i < seq; i++) for (let j = i + 1; j < seq; j++) m[i * seq + j] = MASKED_SCORE;
  return m;
}
