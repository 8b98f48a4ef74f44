/**
 * A tiny hand-written transformer for the model-level tests, calling the run context's sites and rule slots the
 * way the real families do (docs/architecture.md). Its options cover the four shapes of block relp has to treat:
 * GPT-2 (LayerNorm, gelu_new, sequential), Pythia (LayerNorm, gelu, parallel residual), Llama (RMSNorm, gated
 * SiLU) and Gemma 3 (RMSNorm with (1 + w), gated gelu_tanh, sandwich norms around both sub-blocks and
 * RMSNorm on queries and keys).
 */
import {
  type ActivationKind,
  causalMaskBias,
  type ForwardOptions,
  type LanguageModel,
  layerNorm,
  type ModelDims,
  type ModelInput,
  type Nonlinearity,
  type RunContext,
  rmsNorm,
  Site,
  type SiteName,
  selectPositions,
} from '@relp/core';
import { seededRandom } from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { normals } from './reference.js';

export interface ToyConfig {
  readonly architecture: string;
  readonly norm: 'layernorm' | 'rmsnorm';
  readonly activation: ActivationKind;
  readonly gated: boolean;
  readonly parallel: boolean;
  /** Gemma 3: RMSNorm after each sub-block too, and RMSNorm on q and k per head. */
  readonly gemma?: boolean;
}

export const TOY_FAMILIES: readonly ToyConfig[] = [
  { architecture: 'toy-gpt2', norm: 'layernorm', activation: 'gelu_new', gated: false, parallel: false },
  { architecture: 'toy-pythia', norm: 'layernorm', activation: 'gelu', gated: false, parallel: true },
  { architecture: 'toy-llama', norm: 'rmsnorm', activation: 'silu', gated: true, parallel: false },
  {
    architecture: 'toy-gemma3',
    norm: 'rmsnorm',
    activation: 'gelu_tanh',
    gated: true,
    parallel: false,
    gemma: true,
  },
  { architecture: 'toy-relu', norm: 'layernorm', activation: 'relu', gated: false, parallel: false },
];

const DIMS: ModelDims = {
  nLayers: 2,
  dModel: 16,
  nHeads: 2,
  nKvHeads: 2,
  dHead: 8,
  dMlp: 32,
  vocabSize: 23,
  contextLength: 16,
};
const EPS = 1e-5;

interface Block {
  readonly ln1g: tf.Tensor;
  readonly ln1b: tf.Tensor;
  readonly ln2g: tf.Tensor;
  readonly ln2b: tf.Tensor;
  readonly wq: tf.Tensor2D;
  readonly wk: tf.Tensor2D;
  readonly wv: tf.Tensor2D;
  readonly bqkv: tf.Tensor;
  readonly wo: tf.Tensor2D;
  readonly bo: tf.Tensor;
  readonly win: tf.Tensor2D;
  readonly bin: tf.Tensor;
  readonly wup: tf.Tensor2D;
  readonly wout: tf.Tensor2D;
  readonly bout: tf.Tensor;
  readonly postAttnG: tf.Tensor;
  readonly postMlpG: tf.Tensor;
  readonly qNormG: tf.Tensor;
  readonly kNormG: tf.Tensor;
}

export class ToyModel implements LanguageModel {
  readonly architecture: string;
  readonly dims = DIMS;
  readonly sites: readonly SiteName[];
  readonly nonlinearities: readonly Nonlinearity[];
  private readonly cfg: ToyConfig;
  private readonly wte: tf.Tensor2D;
  private readonly wpe: tf.Tensor2D;
  private readonly blocks: Block[] = [];
  private readonly lnfG: tf.Tensor;
  private readonly lnfB: tf.Tensor;
  private readonly wu: tf.Tensor2D;

  /** `biases: false` builds every bias and norm offset as 0 (for the conservation tests). */
  constructor(cfg: ToyConfig, seed: number, options: { biases: boolean } = { biases: true }) {
    this.cfg = cfg;
    this.architecture = cfg.architecture;
    const rand = seededRandom(seed);
    const { dModel: d, dMlp: m, vocabSize: V, contextLength: C, nLayers: L } = DIMS;
    const mat = (r: number, c: number, sd: number) => tf.tensor2d(normals(rand, r * c, sd), [r, c]);
    const vec = (n: number, mean: number, sd: number) =>
      tf.tensor1d(normals(rand, n, sd).map((v) => (options.biases || mean !== 0 ? mean + v : 0)));
    const gain = (n: number) => tf.tensor1d(normals(rand, n, 0.2).map((v) => 1 + v));
    this.wte = mat(V, d, 1);
    this.wpe = mat(C, d, 0.5);
    for (let l = 0; l < L; l++) {
      this.blocks.push({
        ln1g: gain(d),
        ln1b: vec(d, 0, 0.1),
        ln2g: gain(d),
        ln2b: vec(d, 0, 0.1),
        wq: mat(d, d, 0.5),
        wk: mat(d, d, 0.5),
        wv: mat(d, d, 0.3),
        bqkv: vec(3 * d, 0, 0.1),
        wo: mat(d, d, 0.3),
        bo: vec(d, 0, 0.1),
        win: mat(d, m, 0.4),
        bin: vec(m, 0, 0.1),
        wup: mat(d, m, 0.4),
        wout: mat(m, d, 0.2),
        bout: vec(d, 0, 0.1),
        postAttnG: gain(d),
        postMlpG: gain(d),
        qNormG: gain(DIMS.dHead),
        kNormG: gain(DIMS.dHead),
      });
    }
    this.lnfG = gain(d);
    this.lnfB = vec(d, 0, 0.1);
    this.wu = mat(d, V, 0.5);
    const sites: SiteName[] = [
      Site.ResidPre,
      Site.ResidPost,
      Site.AttnOut,
      Site.MlpOut,
      Site.Z,
      Site.Q,
      Site.K,
      Site.V,
      Site.Pattern,
      Site.MlpPre,
      Site.MlpPost,
      Site.Ln1Scale,
      Site.Ln2Scale,
      Site.LnFinalScale,
    ];
    if (!cfg.parallel) sites.push(Site.ResidMid);
    this.sites = sites;
    const nl: Nonlinearity[] = [
      { slot: 'normalize', kind: cfg.norm },
      { slot: 'activation', kind: cfg.activation },
      { slot: 'attention_softmax', kind: 'softmax' },
    ];
    if (cfg.gated) nl.push({ slot: 'gate_product', kind: 'gated_mlp' });
    this.nonlinearities = nl;
  }

  embed(tokens: tf.Tensor2D): tf.Tensor3D {
    return tf.tidy(() => {
      const T = tokens.shape[1];
      const e = tf.gather(this.wte, tokens);
      const pos = tf.slice(this.wpe, [0, 0], [T, DIMS.dModel]);
      return tf.add(e, pos) as tf.Tensor3D;
    });
  }

  private norm(
    ctx: RunContext,
    x: tf.Tensor,
    g: tf.Tensor,
    b: tf.Tensor,
    site: SiteName | undefined,
    l: number,
  ): tf.Tensor {
    if (this.cfg.norm === 'layernorm') return layerNorm(ctx, x, g, b, EPS, site ?? Site.Ln1Scale, l);
    return rmsNorm(ctx, x, g, EPS, site, l);
  }

  private mm(x: tf.Tensor, w: tf.Tensor2D, b?: tf.Tensor): tf.Tensor {
    const shape = x.shape;
    const y = tf.matMul(tf.reshape(x, [-1, shape[shape.length - 1]!]), w);
    const out = tf.reshape(y, [...shape.slice(0, -1), w.shape[1]]);
    return b === undefined ? out : tf.add(out, b);
  }

  forward(input: ModelInput, ctx: RunContext, options: ForwardOptions = {}): tf.Tensor3D {
    return tf.tidy(() => {
      let resid: tf.Tensor = 'tokens' in input ? this.embed(input.tokens) : input.resid;
      const start = 'tokens' in input ? 0 : input.layer;
      const [B, T] = resid.shape as [number, number, number];
      const mask = causalMaskBias(T);
      for (let l = start; l < DIMS.nLayers; l++) {
        resid = this.block(ctx, l, resid, mask, B, T);
        ctx.checkAborted();
      }
      if (options.readout) resid = selectPositions(resid, options.readout);
      const h = this.norm(ctx, resid, this.lnfG, this.lnfB, Site.LnFinalScale, 0);
      return this.mm(h, this.wu) as tf.Tensor3D;
    });
  }

  private block(ctx: RunContext, l: number, residIn: tf.Tensor, mask: tf.Tensor, B: number, T: number) {
    const w = this.blocks[l]!;
    const { dModel: d, nHeads: H, dHead: dh } = DIMS;
    const resid = ctx.site(Site.ResidPre, l, residIn);
    const a = this.norm(ctx, resid, w.ln1g, w.ln1b, Site.Ln1Scale, l);
    const [bq, bk, bv] = tf.split(w.bqkv, 3) as [tf.Tensor, tf.Tensor, tf.Tensor];
    let q = tf.reshape(this.mm(a, w.wq, bq), [B, T, H, dh]);
    let k = tf.reshape(this.mm(a, w.wk, bk), [B, T, H, dh]);
    if (this.cfg.gemma) {
      q = rmsNorm(ctx, q, w.qNormG, EPS);
      k = rmsNorm(ctx, k, w.kNormG, EPS);
    }
    q = ctx.site(Site.Q, l, q);
    k = ctx.site(Site.K, l, k);
    const v = ctx.site(Site.V, l, tf.reshape(this.mm(a, w.wv, bv), [B, T, H, dh]));
    const qh = tf.transpose(q, [0, 2, 1, 3]);
    const kh = tf.transpose(k, [0, 2, 1, 3]);
    const vh = tf.transpose(v, [0, 2, 1, 3]);
    const scores = tf.add(tf.mul(tf.matMul(qh, kh, false, true), 1 / Math.sqrt(dh)), mask);
    const pattern = ctx.site(Site.Pattern, l, ctx.attentionSoftmax(scores));
    const z = ctx.site(Site.Z, l, tf.transpose(tf.matMul(pattern, vh), [0, 2, 1, 3]));
    let attn = this.mm(tf.reshape(z, [B, T, d]), w.wo, w.bo);
    if (this.cfg.gemma) attn = rmsNorm(ctx, attn, w.postAttnG, EPS);
    attn = ctx.site(Site.AttnOut, l, attn);

    const mlpIn = this.cfg.parallel ? resid : ctx.site(Site.ResidMid, l, tf.add(resid, attn));
    const b = this.norm(ctx, mlpIn, w.ln2g, w.ln2b, Site.Ln2Scale, l);
    const pre = ctx.site(Site.MlpPre, l, this.mm(b, w.win, w.bin));
    const act = ctx.activation(this.cfg.activation, pre);
    const post = ctx.site(Site.MlpPost, l, this.cfg.gated ? ctx.gateProduct(act, this.mm(b, w.wup)) : act);
    let mlp = this.mm(post, w.wout, w.bout);
    if (this.cfg.gemma) mlp = rmsNorm(ctx, mlp, w.postMlpG, EPS);
    mlp = ctx.site(Site.MlpOut, l, mlp);
    const out = this.cfg.parallel ? tf.add(tf.add(resid, attn), mlp) : tf.add(mlpIn, mlp);
    return ctx.site(Site.ResidPost, l, out);
  }

  dispose(): void {
    const all: tf.Tensor[] = [this.wte, this.wpe, this.lnfG, this.lnfB, this.wu];
    for (const b of this.blocks) all.push(...Object.values(b));
    tf.dispose(all);
  }
}
