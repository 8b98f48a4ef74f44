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
  groupedQueryAttention,
  type HfConfig,
  linear,
  type ModelFamily,
  mlpInput,
  type RunContext,
  rmsNorm,
  Site,
  type SiteName,
  unembedLogits,
  type WeightMap,
  WeightReader,
} from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';
import { LLAMA_MODEL_TYPES, type LlamaConfig, parseLlamaConfig } from './config.js';

/** Construction options: `transposedCopies` (core's `DecoderModelOptions`). */
export type LlamaModelOptions = DecoderModelOptions;

/** The weights, named as in HF checkpoints (`model.layers.{l}.…`). */
function llamaWeights(c: LlamaConfig, r: WeightReader) {
  const { vocabSize: V, dModel: d, nHeads: H, nKvHeads: Hkv, dHead: dh, dMlp: m } = c;
  return {
    embed: r.tensor<tf.Rank.R2>('model.embed_tokens.weight', [V, d]),
    finalNorm: r.vector('model.norm.weight', d),
    /** lm_head [V, d] as HF stores it (see core's `unembed`); absent when tied (the embedding table is used). */
    lmHead: c.tieWordEmbeddings ? undefined : r.tensor<tf.Rank.R2>('lm_head.weight', [V, d]),
    layers: Array.from({ length: c.nLayers }, (_, l) => {
      const p = `model.layers.${l}.`;
      const lin = (name: string, i: number, o: number, bias: boolean) =>
        r.linear(`${p}${name}.weight`, i, o, { bias: bias ? `${p}${name}.bias` : undefined });
      return {
        ln1: r.vector(`${p}input_layernorm.weight`, d),
        ln2: r.vector(`${p}post_attention_layernorm.weight`, d),
        q: lin('self_attn.q_proj', d, H * dh, c.qkvBias),
        k: lin('self_attn.k_proj', d, Hkv * dh, c.qkvBias),
        v: lin('self_attn.v_proj', d, Hkv * dh, c.qkvBias),
        o: lin('self_attn.o_proj', H * dh, d, c.oBias),
        gate: lin('mlp.gate_proj', d, m, c.mlpBias),
        up: lin('mlp.up_proj', d, m, c.mlpBias),
        down: lin('mlp.down_proj', m, d, c.mlpBias),
      };
    }),
  };
}

type Plan = ReturnType<typeof llamaWeights>;

function llamaSpec(c: LlamaConfig, weights: WeightMap, options: LlamaModelOptions): DecoderSpec<Plan> {
  return {
    architecture: c.modelType,
    dims: decoderDims(c),
    sites: ALL_SITES,
    nonlinearities: [
      { slot: 'normalize', kind: 'rmsnorm' },
      { slot: 'activation', kind: c.activation },
      { slot: 'gate_product', kind: 'gated_mlp' },
      { slot: 'attention_softmax', kind: 'softmax' },
    ],
    attention: c.slidingWindows.map((slidingWindow) => ({ slidingWindow, rope: c.rope })),
    weights: llamaWeights(c, new WeightReader(weights, options)),
  };
}

/**
 * A Llama-family decoder (Llama, SmolLM2, Qwen2, Mistral) as in Hugging Face transformers: RMSNorm, rotary
 * embeddings, grouped-query attention (optionally sliding-window per layer), SwiGLU-style gated MLP
 * down(act(gate(x)) · up(x)), tied or untied unembedding.
 */
export class LlamaModel extends DecoderModel<Plan> {
  readonly config: LlamaConfig;

  constructor(config: LlamaConfig, weights: WeightMap, options: LlamaModelOptions = {}) {
    super(llamaSpec(config, weights, options));
    this.config = config;
  }

  protected embedTokens(tokens: tf.Tensor2D): tf.Tensor3D {
    return tf.gather(this.weights.embed, tokens) as unknown as tf.Tensor3D;
  }

  protected block(ctx: RunContext, l: number, residIn: tf.Tensor3D, attention: BlockAttention): tf.Tensor3D {
    const w = this.weights.layers[l]!;
    const { dHead: dh } = this.dims;
    const eps = this.config.rmsNormEps;
    const { cos, sin } = attention.rope!;
    const resid = ctx.site(Site.ResidPre, l, residIn);
    const norm1 = (x: tf.Tensor, scaleSite?: SiteName) => rmsNorm(ctx, x, w.ln1, eps, scaleSite, l, 'ln1');
    const inputs = attentionInputs(ctx, l, resid as tf.Tensor3D, norm1, w, this.dims);
    const q = ctx.site(Site.Q, l, applyRotary(inputs.q, cos, sin)) as tf.Tensor4D;
    const k = ctx.site(Site.K, l, applyRotary(inputs.k, cos, sin)) as tf.Tensor4D;
    const v = ctx.site(Site.V, l, inputs.v) as tf.Tensor4D;
    const z = groupedQueryAttention(ctx, l, q, k, v, {
      scale: dh ** -0.5,
      maskBias: attention.mask,
      prefix: attention.prefix,
    });
    const attn = ctx.site(Site.AttnOut, l, attentionOutput(ctx, l, z, w.o));
    const mid = ctx.site(Site.ResidMid, l, tf.add(resid, attn));
    const x2 = rmsNorm(ctx, mlpInput(ctx, l, mid as tf.Tensor3D), w.ln2, eps, Site.Ln2Scale, l, 'ln2');
    const gate = ctx.site(Site.MlpPre, l, linear(x2, w.gate));
    const up = linear(x2, w.up);
    const post = ctx.site(Site.MlpPost, l, ctx.gateProduct(ctx.activation(this.config.activation, gate), up));
    const mlp = ctx.site(Site.MlpOut, l, linear(post, w.down));
    return ctx.site(Site.ResidPost, l, tf.add(mid, mlp)) as tf.Tensor3D;
  }

  protected logits(ctx: RunContext, resid: tf.Tensor3D, vocab: tf.Tensor1D | undefined): tf.Tensor3D {
    const x = rmsNorm(
      ctx,
      resid,
      this.weights.finalNorm,
      this.config.rmsNormEps,
      Site.LnFinalScale,
      0,
      'final',
    );
    return unembedLogits(x as tf.Tensor3D, this.weights.lmHead ?? this.weights.embed, vocab);
  }
}

/** The Llama family: Llama, SmolLM2, Qwen2 and Mistral checkpoints. */
export const llamaFamily: ModelFamily = {
  name: 'llama',
  modelTypes: LLAMA_MODEL_TYPES,
  fromHfConfig(config: HfConfig, weights: WeightMap): LlamaModel {
    return new LlamaModel(parseLlamaConfig(config), weights);
  },
};
