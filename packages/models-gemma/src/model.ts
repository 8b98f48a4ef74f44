import {
  ALL_SITES,
  applyRotary,
  attentionMaskBias,
  attentionOutput,
  checkRequestedSites,
  checkTokens,
  ErrorCodes,
  type ForwardOptions,
  groupedQueryAttention,
  type HfConfig,
  joinRows,
  type LanguageModel,
  linear,
  linearWeight,
  type ModelDims,
  type ModelFamily,
  type ModelInput,
  type Nonlinearity,
  positionOffset,
  prefixAt,
  RelpError,
  type RunContext,
  readoutRows,
  rmsNorm,
  ropeInverseFrequencies,
  rotaryTables,
  rowsAt,
  Site,
  type SiteName,
  selectPositions,
  startLayerOf,
  unembed,
  vectorWeight,
  vocabIds,
  type WeightMap,
  weightTensor,
} from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';
import { GEMMA3_MODEL_TYPES, type Gemma3Config, parseGemma3Config } from './config.js';

interface GemmaLayerWeights {
  /** Norm weights stored as (1 + w), as Gemma3RMSNorm multiplies. */
  readonly inputNorm: tf.Tensor1D;
  readonly postAttnNorm: tf.Tensor1D;
  readonly preFfNorm: tf.Tensor1D;
  readonly postFfNorm: tf.Tensor1D;
  readonly qNorm: tf.Tensor1D;
  readonly kNorm: tf.Tensor1D;
  readonly wq: tf.Tensor2D;
  readonly wk: tf.Tensor2D;
  readonly wv: tf.Tensor2D;
  readonly wo: tf.Tensor2D;
  readonly bq?: tf.Tensor1D;
  readonly bk?: tf.Tensor1D;
  readonly bv?: tf.Tensor1D;
  readonly bo?: tf.Tensor1D;
  readonly wGate: tf.Tensor2D;
  readonly wUp: tf.Tensor2D;
  readonly wDown: tf.Tensor2D;
}

const onePlus = (w: number) => 1 + w;

/** Where the text model's weights live: Gemma3ForCausalLM, or the language model inside Gemma3ForConditionalGeneration. */
const PREFIXES = [
  { body: 'model.', head: 'lm_head.weight' },
  { body: 'model.language_model.', head: 'lm_head.weight' },
  { body: 'language_model.model.', head: 'language_model.lm_head.weight' },
] as const;

/**
 * Gemma 3 text decoder as transformers' Gemma3ForCausalLM: embeddings scaled by √d (rounded to float32, as HF
 * does in the model's dtype), RMSNorm with (1 + w), four norms per block (input, post-attention, pre- and
 * post-feedforward), q/k norms on each head, rotary embeddings with a global and a local base, local
 * sliding-window and global layers, scores scaled by query_pre_attn_scalar^−½, optional final logit soft-capping
 * (attn_logit_softcapping is ignored, as transformers ignores it for Gemma 3), GELU-tanh gated MLP. attn_out and mlp_out are what the sub-blocks add to the residual (after the
 * post-attention and post-feedforward norms). Every norm goes through the normalize slot; the post-norms, q_norm
 * and k_norm have no scale site.
 */
export class Gemma3Model implements LanguageModel {
  readonly architecture = 'gemma3_text';
  readonly dims: ModelDims;
  readonly sites: readonly SiteName[] = ALL_SITES;
  readonly nonlinearities: readonly Nonlinearity[];
  readonly config: Gemma3Config;
  private readonly embedTable: tf.Tensor2D;
  private readonly embedScale: number;
  private readonly lmHead: tf.Tensor2D | undefined;
  private readonly finalNorm: tf.Tensor1D;
  private readonly layers: GemmaLayerWeights[] = [];
  private readonly invFreqGlobal: Float32Array;
  private readonly invFreqLocal: Float32Array;
  private disposed = false;

  constructor(config: Gemma3Config, weights: WeightMap) {
    this.config = config;
    const { vocabSize: V, dModel: d, nHeads: H, nKvHeads: Hkv, dHead: dh, dMlp: m } = config;
    this.dims = {
      nLayers: config.nLayers,
      dModel: d,
      nHeads: H,
      nKvHeads: Hkv,
      dHead: dh,
      dMlp: m,
      vocabSize: V,
      contextLength: config.contextLength,
    };
    this.nonlinearities = [
      { slot: 'normalize', kind: 'rmsnorm' },
      { slot: 'activation', kind: config.activation },
      { slot: 'gate_product', kind: 'gated_mlp' },
      { slot: 'attention_softmax', kind: 'softmax' },
      // cap·tanh(logits/cap) is an element-wise nonlinearity outside the rule slots: declaring it makes every rule
      // set that has no rule for it stop with MISSING_RULE instead of silently using the plain gradient.
      ...(config.finalLogitSoftcapping != null
        ? [{ slot: 'activation' as const, kind: 'final_logit_softcap' }]
        : []),
    ];
    this.embedScale = Math.fround(Math.sqrt(d));
    this.invFreqGlobal = ropeInverseFrequencies(config.ropeGlobal);
    this.invFreqLocal = ropeInverseFrequencies(config.ropeLocal);
    const prefix =
      PREFIXES.find((p) => weights.get(`${p.body}embed_tokens.weight`) !== undefined) ?? PREFIXES[0];
    const created: tf.Tensor[] = [];
    const keep = <T extends tf.Tensor>(t: T): T => {
      created.push(t);
      return t;
    };
    try {
      this.embedTable = keep(
        weightTensor(weights, `${prefix.body}embed_tokens.weight`, [V, d]) as tf.Tensor2D,
      );
      this.finalNorm = keep(vectorWeight(weights, `${prefix.body}norm.weight`, d, onePlus));
      this.lmHead = config.tieWordEmbeddings
        ? undefined
        : keep(weightTensor(weights, prefix.head, [V, d]) as tf.Tensor2D);
      for (let l = 0; l < config.nLayers; l++) {
        const p = `${prefix.body}layers.${l}.`;
        const lin = (name: string, i: number, o: number) => keep(linearWeight(weights, p + name, i, o));
        const norm = (name: string, n: number) =>
          keep(vectorWeight(weights, `${p + name}.weight`, n, onePlus));
        const bias = (name: string, n: number) =>
          config.attentionBias
            ? { [name]: keep(vectorWeight(weights, `${p}self_attn.${name[1]}_proj.bias`, n)) }
            : {};
        this.layers.push({
          inputNorm: norm('input_layernorm', d),
          postAttnNorm: norm('post_attention_layernorm', d),
          preFfNorm: norm('pre_feedforward_layernorm', d),
          postFfNorm: norm('post_feedforward_layernorm', d),
          qNorm: norm('self_attn.q_norm', dh),
          kNorm: norm('self_attn.k_norm', dh),
          wq: lin('self_attn.q_proj.weight', d, H * dh),
          wk: lin('self_attn.k_proj.weight', d, Hkv * dh),
          wv: lin('self_attn.v_proj.weight', d, Hkv * dh),
          wo: lin('self_attn.o_proj.weight', H * dh, d),
          wGate: lin('mlp.gate_proj.weight', d, m),
          wUp: lin('mlp.up_proj.weight', d, m),
          wDown: lin('mlp.down_proj.weight', m, d),
          ...bias('bq', H * dh),
          ...bias('bk', Hkv * dh),
          ...bias('bv', Hkv * dh),
          ...bias('bo', d),
        });
      }
    } catch (e) {
      tf.dispose(created);
      throw e;
    }
  }

  /** Scaled embeddings: embed_tokens(tokens) · √d (the residual entering block 0). */
  embed(tokens: tf.Tensor2D): tf.Tensor3D {
    this.assertLive();
    checkTokens(tokens, this.dims.vocabSize, this.dims.contextLength);
    return tf.tidy(() => this.embedChecked(tokens));
  }

  private embedChecked(tokens: tf.Tensor2D): tf.Tensor3D {
    return tf.mul(tf.gather(this.embedTable, tokens), tf.scalar(this.embedScale, 'float32')) as tf.Tensor3D;
  }

  forward(input: ModelInput, ctx: RunContext, options: ForwardOptions = {}): tf.Tensor3D {
    this.assertLive();
    checkRequestedSites(ctx, this.sites, this.dims.nLayers);
    const start = startLayerOf(input, this.dims);
    const offset = positionOffset(input);
    const prefix = 'resid' in input ? input.prefix : undefined;
    return tf.tidy(() => {
      let resid: tf.Tensor = 'tokens' in input ? this.embedChecked(input.tokens) : input.resid;
      const seq = resid.shape[1]!;
      // Rows joined on the way (ModelInput.joins) are part of the final batch.
      const readout =
        options.readout && readoutRows(options.readout, rowsAt(input, this.dims.nLayers), seq, offset);
      const global = {
        ...rotaryTables(this.invFreqGlobal, seq, 1, offset),
        mask: attentionMaskBias(seq, undefined, offset),
      };
      const local = {
        ...rotaryTables(this.invFreqLocal, seq, 1, offset),
        mask: attentionMaskBias(seq, this.config.slidingWindow, offset),
      };
      for (let l = start; l < this.dims.nLayers; l++) {
        const kv = prefixAt(prefix, l);
        resid = joinRows(input, l, resid);
        const x = resid;
        // Each block's intermediates are freed when it ends (the tape keeps what a gradient needs).
        resid = tf.tidy(() => this.block(ctx, l, x, this.config.slidingLayers[l] ? local : global, kv));
        ctx.checkAborted();
      }
      if (readout) resid = selectPositions(resid, readout);
      const x = rmsNorm(ctx, resid, this.finalNorm, this.config.rmsNormEps, Site.LnFinalScale, 0);
      const [b, t] = x.shape as [number, number, number];
      const x2d = tf.reshape(x, [b * t, this.dims.dModel]) as tf.Tensor2D;
      const full = this.lmHead ?? this.embedTable;
      const table = options.vocab ? tf.gather(full, vocabIds(options.vocab, this.dims.vocabSize)) : full;
      let logits: tf.Tensor = unembed(x2d, table);
      const cap = this.config.finalLogitSoftcapping;
      if (cap !== undefined) logits = tf.mul(tf.tanh(tf.div(logits, cap)), cap);
      return tf.reshape(logits, [b, t, table.shape[0]]) as tf.Tensor3D;
    });
  }

  private block(
    ctx: RunContext,
    l: number,
    residIn: tf.Tensor,
    rope: { cos: tf.Tensor2D; sin: tf.Tensor2D; mask: tf.Tensor2D },
    prefix: { k: tf.Tensor4D; v: tf.Tensor4D } | undefined,
  ): tf.Tensor {
    const w = this.layers[l]!;
    const { nHeads: H, nKvHeads: Hkv, dHead: dh } = this.dims;
    const eps = this.config.rmsNormEps;
    const resid = ctx.site(Site.ResidPre, l, residIn);
    const [b, t] = resid.shape as [number, number, number];
    const x = rmsNorm(ctx, resid, w.inputNorm, eps, Site.Ln1Scale, l);
    const heads = (y: tf.Tensor, n: number) => tf.reshape(y, [b, t, n, dh]) as tf.Tensor4D;
    const qn = rmsNorm(ctx, heads(linear(x, w.wq, w.bq), H), w.qNorm, eps) as tf.Tensor4D;
    const kn = rmsNorm(ctx, heads(linear(x, w.wk, w.bk), Hkv), w.kNorm, eps) as tf.Tensor4D;
    const q = ctx.site(Site.Q, l, applyRotary(qn, rope.cos, rope.sin)) as tf.Tensor4D;
    const k = ctx.site(Site.K, l, applyRotary(kn, rope.cos, rope.sin)) as tf.Tensor4D;
    const v = ctx.site(Site.V, l, heads(linear(x, w.wv, w.bv), Hkv)) as tf.Tensor4D;
    const z = groupedQueryAttention(ctx, l, q, k, v, {
      scale: this.config.queryPreAttnScalar ** -0.5,
      maskBias: rope.mask,
      prefix,
      // transformers' Gemma3Attention stores attn_logit_softcapping but never passes it to the attention
      // function (Gemma 3 replaced Gemma 2's soft-capping with q/k norms), so neither does relp.
    });
    const attnRaw = attentionOutput(ctx, l, z, w.wo, w.bo);
    const attn = ctx.site(Site.AttnOut, l, rmsNorm(ctx, attnRaw, w.postAttnNorm, eps));
    const mid = ctx.site(Site.ResidMid, l, tf.add(resid, attn));
    const x2 = rmsNorm(ctx, mid, w.preFfNorm, eps, Site.Ln2Scale, l);
    const gate = ctx.site(Site.MlpPre, l, linear(x2, w.wGate));
    const up = linear(x2, w.wUp);
    const post = ctx.site(Site.MlpPost, l, ctx.gateProduct(ctx.activation(this.config.activation, gate), up));
    const mlp = ctx.site(Site.MlpOut, l, rmsNorm(ctx, linear(post, w.wDown), w.postFfNorm, eps));
    return ctx.site(Site.ResidPost, l, tf.add(mid, mlp));
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const all: tf.Tensor[] = [this.embedTable, this.finalNorm];
    if (this.lmHead) all.push(this.lmHead);
    for (const layer of this.layers) for (const t of Object.values(layer)) all.push(t as tf.Tensor);
    tf.dispose(all);
  }

  private assertLive(): void {
    if (this.disposed) throw new RelpError(ErrorCodes.BadInput, 'this model has been disposed');
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
