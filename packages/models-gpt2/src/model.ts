import {
  ALL_SITES,
  attentionInputs,
  attentionOutput,
  type BlockAttention,
  DecoderModel,
  type DecoderModelOptions,
  type DecoderSpec,
  decoderDims,
  groupedQueryAttention,
  layerNorm,
  linear,
  mlpInput,
  type RunContext,
  Site,
  type SiteName,
  type WeightMap,
  WeightReader,
} from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';
import type { Gpt2Config } from './config.js';

/** Construction options: `transposedCopies` (core's `DecoderModelOptions`). */
export type Gpt2ModelOptions = DecoderModelOptions;

/** GPT2LMHeadModel's weights (`transformer.` or bare GPT2Model names); Conv1D matrices are stored [in, out]. */
function gpt2Weights(c: Gpt2Config, r: WeightReader) {
  const { vocabSize: V, dModel: d, dMlp: m } = c;
  const norm = (name: string) => ({ g: r.vector(`${name}.weight`, d), b: r.vector(`${name}.bias`, d) });
  const conv = (name: string, i: number, o: number) =>
    r.linear(`${name}.weight`, i, o, { bias: `${name}.bias`, stored: 'in_out' });
  return {
    /** Token embedding [V, d]; absent when tied (then embeddings are columns of `unembed`). */
    wte: c.tieWordEmbeddings ? undefined : r.tensor<tf.Rank.R2>('wte.weight', [V, d]),
    wpe: r.tensor<tf.Rank.R2>('wpe.weight', [c.contextLength, d]),
    layers: Array.from({ length: c.nLayers }, (_, l) => ({
      ln1: norm(`h.${l}.ln_1`),
      qkv: conv(`h.${l}.attn.c_attn`, d, 3 * d),
      o: conv(`h.${l}.attn.c_proj`, d, d),
      ln2: norm(`h.${l}.ln_2`),
      fc: conv(`h.${l}.mlp.c_fc`, d, m),
      proj: conv(`h.${l}.mlp.c_proj`, m, d),
    })),
    lnF: norm('ln_f'),
    /** The unembedding as [d, V], without a transposed copy (see the class comment). */
    unembed: c.tieWordEmbeddings
      ? r.linear('wte.weight', d, V, { transposedCopy: false })
      : r.linear('lm_head.weight', d, V, { transposedCopy: false, root: true }),
  };
}

type Plan = ReturnType<typeof gpt2Weights>;

function gpt2Spec(c: Gpt2Config, weights: WeightMap, options: Gpt2ModelOptions): DecoderSpec<Plan> {
  const r = new WeightReader(weights, {
    prefixes: ['transformer.', ''],
    transposedCopies: options.transposedCopies,
  });
  return {
    architecture: 'gpt2',
    dims: decoderDims(c),
    sites: ALL_SITES,
    nonlinearities: [
      { slot: 'normalize', kind: 'layernorm' },
      { slot: 'activation', kind: c.activation },
      { slot: 'attention_softmax', kind: 'softmax' },
    ],
    attention: Array.from({ length: c.nLayers }, () => ({})),
    weights: gpt2Weights(c, r),
  };
}

/**
 * GPT-2 exactly as Hugging Face's GPT2LMHeadModel computes it (eager attention, float32). Conv1D matrices stay
 * [in, out] for `matMul(x2d, W)`, and the unembedding is held as [d, V] — on the wasm backend a [d,V] matmul
 * without transpose flags runs on XNNPACK, about 11× faster in the forward pass and 1.6–3× faster forward +
 * backward than the [V,d] table with transposeB (bench/unembed-layout.bench.ts, GPT-2-small shapes). When the
 * embeddings are tied, token embeddings are gathered from that same [d,V] matrix (columns), so the table is held
 * once.
 */
export class Gpt2Model extends DecoderModel<Plan> {
  readonly config: Gpt2Config;

  constructor(config: Gpt2Config, weights: WeightMap, options: Gpt2ModelOptions = {}) {
    super(gpt2Spec(config, weights, options));
    this.config = config;
  }

  protected embedTokens(tokens: tf.Tensor2D): tf.Tensor3D {
    const [b, t] = tokens.shape;
    const d = this.dims.dModel;
    const { wte, wpe, unembed } = this.weights;
    const ids = tf.reshape(tokens, [b * t]);
    const tok =
      wte === undefined
        ? tf.transpose(tf.gather(unembed.w, ids, 1)) // columns of [d, V]: exact copies
        : tf.gather(wte, ids, 0);
    return tf.add(tf.reshape(tok, [b, t, d]), tf.slice(wpe, [0, 0], [t, d])) as tf.Tensor3D;
  }

  protected block(ctx: RunContext, l: number, residIn: tf.Tensor3D, attention: BlockAttention): tf.Tensor3D {
    const c = this.config;
    const w = this.weights.layers[l]!;
    const resid = ctx.site(Site.ResidPre, l, residIn) as tf.Tensor3D;
    const norm1 = (x: tf.Tensor, scaleSite?: SiteName) =>
      layerNorm(ctx, x, w.ln1.g, w.ln1.b, c.layerNormEps, scaleSite, l, 'ln1');
    const inputs = attentionInputs(ctx, l, resid, norm1, { qkv: w.qkv }, this.dims);
    const q = ctx.site(Site.Q, l, inputs.q) as tf.Tensor4D;
    const k = ctx.site(Site.K, l, inputs.k) as tf.Tensor4D;
    const v = ctx.site(Site.V, l, inputs.v) as tf.Tensor4D;
    // HF multiplies the scores by 1/√dh (scale_attn_weights) and 1/(l+1) (scale_attn_by_inverse_layer_idx), as one
    // number; multiplying by exactly 1 when neither applies changes no bit.
    let scale = c.scaleAttnWeights ? 1 / Math.sqrt(c.dHead) : 1;
    if (c.scaleAttnByInverseLayerIdx) scale /= l + 1;
    const z = groupedQueryAttention(ctx, l, q, k, v, {
      scale,
      maskBias: attention.mask,
      prefix: attention.prefix,
    });
    const attn = ctx.site(Site.AttnOut, l, attentionOutput(ctx, l, z, w.o));
    const mid = ctx.site(Site.ResidMid, l, tf.add(resid, attn));
    const h2 = layerNorm(
      ctx,
      mlpInput(ctx, l, mid as tf.Tensor3D),
      w.ln2.g,
      w.ln2.b,
      c.layerNormEps,
      Site.Ln2Scale,
      l,
      'ln2',
    );
    const pre = ctx.site(Site.MlpPre, l, linear(h2, w.fc));
    const post = ctx.site(Site.MlpPost, l, ctx.activation(c.activation, pre));
    const mlp = ctx.site(Site.MlpOut, l, linear(post, w.proj));
    return ctx.site(Site.ResidPost, l, tf.add(mid, mlp)) as tf.Tensor3D;
  }

  protected logits(ctx: RunContext, resid: tf.Tensor3D, vocab: tf.Tensor1D | undefined): tf.Tensor3D {
    const { lnF, unembed } = this.weights;
    const x = layerNorm(ctx, resid, lnF.g, lnF.b, this.config.layerNormEps, Site.LnFinalScale, 0, 'final');
    const w = vocab ? (tf.gather(unembed.w, vocab, 1) as tf.Tensor2D) : unembed.w;
    return linear(x, { w }) as tf.Tensor3D;
  }
}
