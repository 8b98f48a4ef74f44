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
import { GEMMA3_MODEL_TYPES, type Gemma3Config, parseGemma3Config } from './config.js';

/** Construction options: `transposedCopies` (core's `DecoderModelOptions`). */
export type Gemma3ModelOptions = DecoderModelOptions;

/** Where the text model's weights live: Gemma3ForCausalLM, or the language model inside Gemma3ForConditionalGeneration. */
const PREFIXES = [
  { body: 'model.', head: 'lm_head.weight' },
  { body: 'model.language_model.', head: 'lm_head.weight' },
  { body: 'language_model.model.', head: 'language_model.lm_head.weight' },
] as const;

/** Gemma3RMSNorm multiplies by (1 + w): the norm weights are stored so. */
const onePlus = (w: number) => 1 + w;

function gemmaWeights(c: Gemma3Config, weights: WeightMap, options: Gemma3ModelOptions) {
  const { vocabSize: V, dModel: d, nHeads: H, nKvHeads: Hkv, dHead: dh, dMlp: m } = c;
  const where =
    PREFIXES.find((p) => weights.get(`${p.body}embed_tokens.weight`) !== undefined) ?? PREFIXES[0];
  const r = new WeightReader(weights, { prefixes: [where.body], transposedCopies: options.transposedCopies });
  return {
    embed: r.tensor<tf.Rank.R2>('embed_tokens.weight', [V, d]),
    finalNorm: r.vector('norm.weight', d, onePlus),
    lmHead: c.tieWordEmbeddings ? undefined : r.tensor<tf.Rank.R2>(where.head, [V, d], { root: true }),
    layers: Array.from({ length: c.nLayers }, (_, l) => {
      const p = `layers.${l}.`;
      const norm = (name: string, n: number) => r.vector(`${p}${name}.weight`, n, onePlus);
      const attn = (name: string, i: number, o: number) =>
        r.linear(`${p}self_attn.${name}.weight`, i, o, {
          bias: c.attentionBias ? `${p}self_attn.${name}.bias` : undefined,
        });
      const mlp = (name: string, i: number, o: number) => r.linear(`${p}mlp.${name}.weight`, i, o);
      return {
        inputNorm: norm('input_layernorm', d),
        postAttnNorm: norm('post_attention_layernorm', d),
        preFfNorm: norm('pre_feedforward_layernorm', d),
        postFfNorm: norm('post_feedforward_layernorm', d),
        qNorm: norm('self_attn.q_norm', dh),
        kNorm: norm('self_attn.k_norm', dh),
        q: attn('q_proj', d, H * dh),
        k: attn('k_proj', d, Hkv * dh),
        v: attn('v_proj', d, Hkv * dh),
        o: attn('o_proj', H * dh, d),
        gate: mlp('gate_proj', d, m),
        up: mlp('up_proj', d, m),
        down: mlp('down_proj', m, d),
      };
    }),
  };
}

type Plan = ReturnType<typeof gemmaWeights>;

function gemmaSpec(c: Gemma3Config, weights: WeightMap, options: Gemma3ModelOptions): DecoderSpec<Plan> {
  return {
    architecture: 'gemma3_text',
    dims: decoderDims(c),
    sites: ALL_SITES,
    nonlinearities: [
      { slot: 'normalize', kind: 'rmsnorm' },
      { slot: 'activation', kind: c.activation },
      { slot: 'gate_product', kind: 'gated_mlp' },
      { slot: 'attention_softmax', kind: 'softmax' },
      // cap·tanh(logits/cap) is an element-wise nonlinearity outside the rule slots: declaring it makes every rule
      // set that has no rule for it stop with MISSING_RULE instead of silently using the plain gradient.
      ...(c.finalLogitSoftcapping != null
        ? [{ slot: 'activation' as const, kind: 'final_logit_softcap' }]
        : []),
    ],
    attention: c.slidingLayers.map((sliding) =>
      sliding ? { slidingWindow: c.slidingWindow, rope: c.ropeLocal } : { rope: c.ropeGlobal },
    ),
    weights: gemmaWeights(c, weights, options),
  };
}

/**
 * Gemma 3 text decoder as transformers' Gemma3ForCausalLM: embeddings scaled by √d (rounded to float32, as HF
 * does in the model's dtype), RMSNorm with (1 + w), four norms per block (input, post-attention, pre- and
 * post-feedforward), q/k norms on each head, rotary embeddings with a global and a local base, local
 * sliding-window and global layers, scores scaled by query_pre_attn_scalar^−½, optional final logit soft-capping
 * (attn_logit_softcapping is ignored, as transformers ignores it for Gemma 3), GELU-tanh gated MLP. attn_out and
 * mlp_out are what the sub-blocks add to the residual (after the post-attention and post-feedforward norms).
 * Every norm goes through the normalize slot; the post-norms, q_norm and k_norm have no scale site.
 */
export class Gemma3Model extends DecoderModel<Plan> {
  readonly config: Gemma3Config;
  private readonly embedScale: number;

  constructor(config: Gemma3Config, weights: WeightMap, options: Gemma3ModelOptions = {}) {
    super(gemmaSpec(config, weights, options));
    this.config = config;
    this.embedScale = Math.fround(Math.sqrt(config.dModel));
  }

  /** Scaled embeddings: embed_tokens(tokens) · √d. */
  protected embedTokens(tokens: tf.Tensor2D): tf.Tensor3D {
    return tf.mul(
      tf.gather(this.weights.embed, tokens),
      tf.scalar(this.embedScale, 'float32'),
    ) as tf.Tensor3D;
  }

  protected block(ctx: RunContext, l: number, residIn: tf.Tensor3D, attention: BlockAttention): tf.Tensor3D {
    const w = this.weights.layers[l]!;
    const eps = this.config.rmsNormEps;
    const { cos, sin } = attention.rope!;
    const resid = ctx.site(Site.ResidPre, l, residIn);
    const norm1 = (x: tf.Tensor, scaleSite?: SiteName) =>
      rmsNorm(ctx, x, w.inputNorm, eps, scaleSite, l, 'ln1');
    const inputs = attentionInputs(ctx, l, resid as tf.Tensor3D, norm1, w, this.dims);
    const qn = rmsNorm(ctx, inputs.q, w.qNorm, eps, undefined, l, 'q_norm') as tf.Tensor4D;
    const kn = rmsNorm(ctx, inputs.k, w.kNorm, eps, undefined, l, 'k_norm') as tf.Tensor4D;
    const q = ctx.site(Site.Q, l, applyRotary(qn, cos, sin)) as tf.Tensor4D;
    const k = ctx.site(Site.K, l, applyRotary(kn, cos, sin)) as tf.Tensor4D;
    const v = ctx.site(Site.V, l, inputs.v) as tf.Tensor4D;
    // transformers' Gemma3Attention stores attn_logit_softcapping but never passes it to the attention function
    // (Gemma 3 replaced Gemma 2's soft-capping with q/k norms), so neither does relp.
    const z = groupedQueryAttention(ctx, l, q, k, v, {
      scale: this.config.queryPreAttnScalar ** -0.5,
      maskBias: attention.mask,
      prefix: attention.prefix,
    });
    const post = { weight: w.postAttnNorm, eps };
    const attn = ctx.site(Site.AttnOut, l, attentionOutput(ctx, l, z, w.o, post));
    const mid = ctx.site(Site.ResidMid, l, tf.add(resid, attn)) as tf.Tensor3D;
    const x2 = rmsNorm(ctx, mlpInput(ctx, l, mid), w.preFfNorm, eps, Site.Ln2Scale, l, 'ln2');
    const gate = ctx.site(Site.MlpPre, l, linear(x2, w.gate));
    const up = linear(x2, w.up);
    const hidden = ctx.site(
      Site.MlpPost,
      l,
      ctx.gateProduct(ctx.activation(this.config.activation, gate), up),
    );
    const mlp = ctx.site(
      Site.MlpOut,
      l,
      rmsNorm(ctx, linear(hidden, w.down), w.postFfNorm, eps, undefined, l, 'post_feedforward_norm'),
    );
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
    const logits = unembedLogits(x as tf.Tensor3D, this.weights.lmHead ?? this.weights.embed, vocab);
    const cap = this.config.finalLogitSoftcapping;
    return cap === undefined ? logits : (tf.mul(tf.tanh(tf.div(logits, cap)), cap) as tf.Tensor3D);
  }
}

/** Gemma 3 text models (Gemma3ForCausalLM; the text part of Gemma3ForConditionalGeneration checkpoints). */
export const gemma3Family: ModelFamily = {
  name: 'gemma3',
  modelTypes: GEMMA3_MODEL_TYPES,
  fromHfConfig(config: HfConfig, weights: WeightMap): Gemma3Model {
    return new Gemma3Model(parseGemma3Config(config), weights);
  },
};
