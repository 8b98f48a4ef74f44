import {
  ALL_SITES,
  applyRotary,
  attentionInputs,
  attentionOutput,
  type BlockAttention,
  DecoderModel,
  type DecoderModelOptions,
  type DecoderSpec,
  decoderDims,
  ErrorCodes,
  groupedQueryAttention,
  layerNorm,
  linear,
  mlpInput,
  RelpError,
  type RopeSpec,
  type RunContext,
  Site,
  type SiteName,
  transposeHost,
  type WeightMap,
  WeightReader,
} from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';
import type { PythiaConfig } from './config.js';

/** Construction options: `transposedCopies` (core's `DecoderModelOptions`). */
export type PythiaModelOptions = DecoderModelOptions;

/**
 * query_key_value [3d, d] (+ bias [3d]) with HF's per-head row order (h, q|k|v, j) reordered to (q|k|v, h, j), as
 * the [d, 3d] matrix whose output splits into q | k | v.
 */
function qkvLayer(r: WeightReader, p: string, c: PythiaConfig, dh: number) {
  const { dModel: d, nHeads: H } = c;
  const src = r.host(`${p}attention.query_key_value.weight`, [3 * d, d]).data;
  const bias = c.attentionBias ? r.host(`${p}attention.query_key_value.bias`, [3 * d]).data : undefined;
  /** Row (h, s, j) of the file moves to row (s, h, j). */
  const reorder = (x: Float32Array, width: number): Float32Array => {
    const out = new Float32Array(x.length);
    for (let h = 0; h < H; h++) {
      for (let s = 0; s < 3; s++) {
        const from = (h * 3 + s) * dh * width;
        out.set(x.subarray(from, from + dh * width), (s * H + h) * dh * width);
      }
    }
    return out;
  };
  return r.linearOf(() => transposeHost(reorder(src, d), 3 * d, d), d, 3 * d, bias && reorder(bias, 1));
}

/** GPTNeoXForCausalLM's weights, with or without the `gpt_neox.` prefix. */
function pythiaWeights(c: PythiaConfig, r: WeightReader, dh: number) {
  const { dModel: d, dMlp: m, vocabSize: V } = c;
  const norm = (name: string) => ({ g: r.vector(`${name}.weight`, d), b: r.vector(`${name}.bias`, d) });
  const lin = (name: string, i: number, o: number, bias = true) =>
    r.linear(`${name}.weight`, i, o, { bias: bias ? `${name}.bias` : undefined });
  return {
    embed: r.tensor<tf.Rank.R2>('embed_in.weight', [V, d]),
    layers: Array.from({ length: c.nLayers }, (_, l) => {
      const p = `layers.${l}.`;
      return {
        ln1: norm(`${p}input_layernorm`),
        ln2: norm(`${p}post_attention_layernorm`),
        qkv: qkvLayer(r, p, c, dh),
        o: lin(`${p}attention.dense`, d, d, c.attentionBias),
        fc: lin(`${p}mlp.dense_h_to_4h`, d, m),
        proj: lin(`${p}mlp.dense_4h_to_h`, m, d),
      };
    }),
    lnF: norm('final_layer_norm'),
    /** The unembedding as [d, V]: measured faster than transposeB on wasm (see README). */
    unembed: c.tiedEmbeddings
      ? r.linear('embed_in.weight', d, V)
      : r.linear('embed_out.weight', d, V, { aliases: ['lm_head.weight'] }),
  };
}

type Plan = ReturnType<typeof pythiaWeights>;

/** Rotated dimensions: transformers' inv_freq has ceil(int(dh·pct)/2) entries; cos/sin are twice that. */
function rotarySpec(c: PythiaConfig, dh: number): RopeSpec {
  const frequencyDim = Math.floor(dh * c.rotaryPct);
  const dim = 2 * Math.ceil(frequencyDim / 2);
  if (dim > dh || dim === 0) {
    throw new RelpError(
      ErrorCodes.Unsupported,
      `rotary dimension ${dim} for head size ${dh} (rotary_pct ${c.rotaryPct})`,
    );
  }
  return { theta: c.rotaryBase, dim, frequencyDim, scaling: { type: 'default' } };
}

function pythiaSpec(c: PythiaConfig, weights: WeightMap, options: PythiaModelOptions): DecoderSpec<Plan> {
  const dh = c.dModel / c.nHeads;
  const rope = rotarySpec(c, dh);
  const r = new WeightReader(weights, {
    prefixes: ['', 'gpt_neox.'],
    transposedCopies: options.transposedCopies,
  });
  return {
    architecture: 'gpt_neox',
    dims: decoderDims(c),
    // A parallel-residual block has no resid_mid.
    sites: c.parallelResidual ? ALL_SITES.filter((s) => s !== Site.ResidMid) : ALL_SITES,
    nonlinearities: [
      { slot: 'normalize', kind: 'layernorm' },
      { slot: 'attention_softmax', kind: 'softmax' },
      { slot: 'activation', kind: c.activation },
    ],
    attention: Array.from({ length: c.nLayers }, () => ({ rope })),
    weights: pythiaWeights(c, r, dh),
  };
}

/** GPT-NeoX / Pythia exactly as transformers' GPTNeoXForCausalLM (eager attention). */
export class PythiaModel extends DecoderModel<Plan> {
  readonly config: PythiaConfig;
  /** Dimensions of each head that rotary embeddings rotate (even, ≤ dh). */
  readonly rotaryDim: number;

  constructor(config: PythiaConfig, weights: WeightMap, options: PythiaModelOptions = {}) {
    const spec = pythiaSpec(config, weights, options);
    super(spec);
    this.config = config;
    this.rotaryDim = spec.attention[0]?.rope?.dim ?? 0;
  }

  protected embedTokens(tokens: tf.Tensor2D): tf.Tensor3D {
    const [B, T] = tokens.shape;
    return tf.reshape(tf.gather(this.weights.embed, tf.reshape(tokens, [B * T])), [B, T, this.dims.dModel]);
  }

  protected block(ctx: RunContext, l: number, residIn: tf.Tensor3D, attention: BlockAttention): tf.Tensor3D {
    const { dHead: dh } = this.dims;
    const w = this.weights.layers[l]!;
    const eps = this.config.layerNormEps;
    const { cos, sin } = attention.rope!;
    const resid = ctx.site(Site.ResidPre, l, residIn) as tf.Tensor3D;

    const norm1 = (x: tf.Tensor, scaleSite?: SiteName) =>
      layerNorm(ctx, x, w.ln1.g, w.ln1.b, eps, scaleSite, l, 'ln1');
    const inputs = attentionInputs(ctx, l, resid, norm1, { qkv: w.qkv }, this.dims);
    const q = ctx.site(Site.Q, l, applyRotary(inputs.q, cos, sin)) as tf.Tensor4D;
    const k = ctx.site(Site.K, l, applyRotary(inputs.k, cos, sin)) as tf.Tensor4D;
    const v = ctx.site(Site.V, l, inputs.v) as tf.Tensor4D;
    const z = groupedQueryAttention(ctx, l, q, k, v, {
      scale: 1 / Math.sqrt(dh),
      maskBias: attention.mask,
      prefix: attention.prefix,
    });
    const attn = ctx.site(Site.AttnOut, l, attentionOutput(ctx, l, z, w.o));

    // The MLP reads resid_pre (parallel residual) or resid_mid (sequential).
    const mid = this.config.parallelResidual ? undefined : ctx.site(Site.ResidMid, l, tf.add(attn, resid));
    const b = layerNorm(
      ctx,
      mlpInput(ctx, l, (mid ?? resid) as tf.Tensor3D),
      w.ln2.g,
      w.ln2.b,
      eps,
      Site.Ln2Scale,
      l,
      'ln2',
    );
    const pre = ctx.site(Site.MlpPre, l, linear(b, w.fc));
    const post = ctx.site(Site.MlpPost, l, ctx.activation(this.config.activation, pre));
    const mlp = ctx.site(Site.MlpOut, l, linear(post, w.proj));
    // Same summation order as transformers: (mlp + attn) + resid, or mlp + (attn + resid).
    const out = mid === undefined ? tf.add(tf.add(mlp, attn), resid) : tf.add(mlp, mid);
    return ctx.site(Site.ResidPost, l, out) as tf.Tensor3D;
  }

  protected logits(ctx: RunContext, resid: tf.Tensor3D, vocab: tf.Tensor1D | undefined): tf.Tensor3D {
    const { lnF, unembed } = this.weights;
    const h = layerNorm(ctx, resid, lnF.g, lnF.b, this.config.layerNormEps, Site.LnFinalScale, 0, 'final');
    const table = vocab ? { w: tf.gather(unembed.w, vocab, 1) as tf.Tensor2D } : unembed;
    return linear(h, table) as tf.Tensor3D;
  }
}
