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
  linear as linearLayer,
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
import { LLAMA_MODEL_TYPES, type LlamaConfig, parseLlamaConfig } from './config.js';

interface LlamaLayerWeights {
  readonly ln1: tf.Tensor1D;
  readonly ln2: tf.Tensor1D;
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
  readonly bGate?: tf.Tensor1D;
  readonly bUp?: tf.Tensor1D;
  readonly bDown?: tf.Tensor1D;
}

/**
 * A Llama-family decoder (Llama, SmolLM2, Qwen2, Mistral) as in Hugging Face transformers: RMSNorm, rotary
 * embeddings, grouped-query attention (optionally sliding-window per layer), SwiGLU-style gated MLP
 * down(act(gate(x)) · up(x)), tied or untied unembedding. Weights are named as in HF checkpoints.
 */
export class LlamaModel implements LanguageModel {
  readonly architecture: string;
  readonly dims: ModelDims;
  readonly sites: readonly SiteName[] = ALL_SITES;
  readonly nonlinearities: readonly Nonlinearity[];
  readonly config: LlamaConfig;
  private readonly embedTable: tf.Tensor2D;
  /** lm_head [V, d] as HF stores it (see core's `unembed`); undefined when tied (the embedding table is used). */
  private readonly lmHead: tf.Tensor2D | undefined;
  private readonly finalNorm: tf.Tensor1D;
  private readonly layers: LlamaLayerWeights[] = [];
  private readonly invFreq: Float32Array;
  private disposed = false;

  constructor(config: LlamaConfig, weights: WeightMap) {
    this.config = config;
    this.architecture = config.modelType;
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
    ];
    this.invFreq = ropeInverseFrequencies(config.rope);
    const created: tf.Tensor[] = [];
    const keep = <T extends tf.Tensor>(t: T): T => {
      created.push(t);
      return t;
    };
    try {
      this.embedTable = keep(weightTensor(weights, 'model.embed_tokens.weight', [V, d]) as tf.Tensor2D);
      this.finalNorm = keep(vectorWeight(weights, 'model.norm.weight', d));
      this.lmHead = config.tieWordEmbeddings
        ? undefined
        : keep(weightTensor(weights, 'lm_head.weight', [V, d]) as tf.Tensor2D);
      for (let l = 0; l < config.nLayers; l++) {
        const p = `model.layers.${l}.`;
        const lin = (name: string, i: number, o: number) => keep(linearWeight(weights, p + name, i, o));
        const vec = (name: string, n: number, present: boolean) =>
          present ? keep(vectorWeight(weights, p + name, n)) : undefined;
        const { qkvBias, oBias, mlpBias } = config;
        const layer: LlamaLayerWeights = {
          ln1: keep(vectorWeight(weights, `${p}input_layernorm.weight`, d)),
          ln2: keep(vectorWeight(weights, `${p}post_attention_layernorm.weight`, d)),
          wq: lin('self_attn.q_proj.weight', d, H * dh),
          wk: lin('self_attn.k_proj.weight', d, Hkv * dh),
          wv: lin('self_attn.v_proj.weight', d, Hkv * dh),
          wo: lin('self_attn.o_proj.weight', H * dh, d),
          wGate: lin('mlp.gate_proj.weight', d, m),
          wUp: lin('mlp.up_proj.weight', d, m),
          wDown: lin('mlp.down_proj.weight', m, d),
          ...optional('bq', vec('self_attn.q_proj.bias', H * dh, qkvBias)),
          ...optional('bk', vec('self_attn.k_proj.bias', Hkv * dh, qkvBias)),
          ...optional('bv', vec('self_attn.v_proj.bias', Hkv * dh, qkvBias)),
          ...optional('bo', vec('self_attn.o_proj.bias', d, oBias)),
          ...optional('bGate', vec('mlp.gate_proj.bias', m, mlpBias)),
          ...optional('bUp', vec('mlp.up_proj.bias', m, mlpBias)),
          ...optional('bDown', vec('mlp.down_proj.bias', d, mlpBias)),
        };
        this.layers.push(layer);
      }
    } catch (e) {
      tf.dispose(created);
      throw e;
    }
  }

  embed(tokens: tf.Tensor2D): tf.Tensor3D {
    this.assertLive();
    checkTokens(tokens, this.dims.vocabSize, this.dims.contextLength);
    return this.embedChecked(tokens);
  }

  private embedChecked(tokens: tf.Tensor2D): tf.Tensor3D {
    return tf.gather(this.embedTable, tokens) as unknown as tf.Tensor3D;
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
      const { cos, sin } = rotaryTables(this.invFreq, seq, 1, offset);
      const masks = new Map<number | undefined, tf.Tensor2D>();
      const maskFor = (w: number | undefined) => {
        let m = masks.get(w);
        if (m === undefined) {
          m = attentionMaskBias(seq, w, offset);
          masks.set(w, m);
        }
        return m;
      };
      for (let l = start; l < this.dims.nLayers; l++) {
        const kv = prefixAt(prefix, l);
        resid = joinRows(input, l, resid);
        const x = resid;
        const mask = maskFor(this.config.slidingWindows[l]);
        // Each block's intermediates are freed when it ends (the tape keeps what a gradient needs).
        resid = tf.tidy(() => this.block(ctx, l, x, cos, sin, mask, kv));
        ctx.checkAborted();
      }
      if (readout) resid = selectPositions(resid, readout);
      const x = rmsNorm(ctx, resid, this.finalNorm, this.config.rmsNormEps, Site.LnFinalScale, 0);
      const [b, t] = x.shape as [number, number, number];
      const x2d = tf.reshape(x, [b * t, this.dims.dModel]) as tf.Tensor2D;
      const full = this.lmHead ?? this.embedTable;
      const table = options.vocab ? tf.gather(full, vocabIds(options.vocab, this.dims.vocabSize)) : full;
      const logits = unembed(x2d, table);
      return tf.reshape(logits, [b, t, table.shape[0]]) as tf.Tensor3D;
    });
  }

  private block(
    ctx: RunContext,
    l: number,
    residIn: tf.Tensor,
    cos: tf.Tensor2D,
    sin: tf.Tensor2D,
    maskBias: tf.Tensor2D,
    prefix: { k: tf.Tensor4D; v: tf.Tensor4D } | undefined,
  ): tf.Tensor {
    const w = this.layers[l]!;
    const { nHeads: H, nKvHeads: Hkv, dHead: dh } = this.dims;
    const eps = this.config.rmsNormEps;
    const resid = ctx.site(Site.ResidPre, l, residIn);
    const [b, t] = resid.shape as [number, number, number];
    const x = rmsNorm(ctx, resid, w.ln1, eps, Site.Ln1Scale, l);
    const heads = (y: tf.Tensor, n: number) => tf.reshape(y, [b, t, n, dh]) as tf.Tensor4D;
    let q = applyRotary(heads(linearLayer(x, w.wq, w.bq), H), cos, sin);
    let k = applyRotary(heads(linearLayer(x, w.wk, w.bk), Hkv), cos, sin);
    let v = heads(linearLayer(x, w.wv, w.bv), Hkv);
    q = ctx.site(Site.Q, l, q) as tf.Tensor4D;
    k = ctx.site(Site.K, l, k) as tf.Tensor4D;
    v = ctx.site(Site.V, l, v) as tf.Tensor4D;
    const z = groupedQueryAttention(ctx, l, q, k, v, { scale: dh ** -0.5, maskBias, prefix });
    const attn = ctx.site(Site.AttnOut, l, attentionOutput(ctx, l, z, w.wo, w.bo));
    const mid = ctx.site(Site.ResidMid, l, tf.add(resid, attn));
    const x2 = rmsNorm(ctx, mid, w.ln2, eps, Site.Ln2Scale, l);
    const gate = ctx.site(Site.MlpPre, l, linearLayer(x2, w.wGate, w.bGate));
    const up = linearLayer(x2, w.wUp, w.bUp);
    const post = ctx.site(Site.MlpPost, l, ctx.gateProduct(ctx.activation(this.config.activation, gate), up));
    const mlp = ctx.site(Site.MlpOut, l, linearLayer(post, w.wDown, w.bDown));
    return ctx.site(Site.ResidPost, l, tf.add(mid, mlp));
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const all: tf.Tensor[] = [this.embedTable, this.finalNorm];
    if (this.lmHead) all.push(this.lmHead);
    for (const layer of this.layers) {
      for (const t of Object.values(layer)) if (t) all.push(t as tf.Tensor);
    }
    tf.dispose(all);
  }

  private assertLive(): void {
    if (this.disposed) throw new RelpError(ErrorCodes.BadInput, 'this model has been disposed');
  }
}

function optional<K extends string, T>(key: K, value: T | undefined): { [P in K]?: T } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: T };
}

/** The Llama family: Llama, SmolLM2, Qwen2 and Mistral checkpoints. */
export const llamaFamily: ModelFamily = {
  name: 'llama',
  modelTypes: LLAMA_MODEL_TYPES,
  fromHfConfig(config: HfConfig, weights: WeightMap): LlamaModel {
    return new LlamaModel(parseLlamaConfig(config), weights);
  },
};
