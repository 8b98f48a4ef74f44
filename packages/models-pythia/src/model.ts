import {
  applyRotary,
  attentionMaskBias,
  causalMaskBias,
  checkPrefix,
  checkRequestedSites,
  checkTokens,
  ErrorCodes,
  type ForwardOptions,
  type HostTensor,
  joinRows,
  type KvPrefix,
  type LanguageModel,
  layerNorm,
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
  selectPositions,
  vocabIds,
  type WeightMap,
  wantsTransposedWeightCopies,
} from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';
import type { PythiaConfig } from './config.js';

/**
 * A weight matrix as [in, out] for the forward `matMul(x, w)` and, optionally, a pre-transposed copy [out, in]
 * for the backward: on wasm only matmuls without transpose flags reach XNNPACK, so the ordinary gradient
 * `dy·wᵀ` (a transposeB matmul) is 10–20× slower than `matMul(dy, wT)` (see README).
 */
interface Linear {
  readonly w: tf.Tensor2D;
  readonly wT: tf.Tensor2D | undefined;
}

/** x2d [N, in] · W → [N, out]; with a pre-transposed copy, a customGrad whose backward is matMul(dy, wT). */
function linear(x: tf.Tensor, lin: Linear): tf.Tensor2D {
  const { w, wT } = lin;
  if (wT === undefined) return tf.matMul(x as tf.Tensor2D, w);
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
    value: tf.matMul(args[0] as tf.Tensor2D, w),
    gradFunc: (dy: tf.Tensor) => tf.matMul(dy as tf.Tensor2D, wT),
  }));
  return f(x) as tf.Tensor2D;
}

export interface PythiaModelOptions {
  /**
   * Keep a transposed copy of every weight matrix so backward passes run without transpose flags: much faster
   * gradients on wasm, at twice the weight memory. Default: true when built on the wasm backend
   * (`wantsTransposedWeightCopies`), false elsewhere, where the transpose flag costs nothing.
   */
  readonly backwardCopies?: boolean;
}

interface Block {
  ln1g: tf.Tensor1D;
  ln1b: tf.Tensor1D;
  ln2g: tf.Tensor1D;
  ln2b: tf.Tensor1D;
  /** query_key_value as [d, 3d], columns reordered from HF's per-head [H,3,dh] to [3,H,dh] (q | k | v). */
  wQkv: Linear;
  bQkv: tf.Tensor1D | undefined;
  /** dense (W_O) as [d, d] ([in, out]) and, for per-head results, the same data as [H, dh, d]. */
  wO: Linear;
  wOHeads: tf.Tensor3D;
  bO: tf.Tensor1D | undefined;
  /** dense_h_to_4h [d, m], dense_4h_to_h [m, d]. */
  wIn: Linear;
  bIn: tf.Tensor1D;
  wOut: Linear;
  bOut: tf.Tensor1D;
}

const PREFIX = 'gpt_neox.';

/** Reads HF weights by name, with or without the `gpt_neox.` prefix, checking shapes. */
class WeightReader {
  constructor(private readonly weights: WeightMap) {}

  find(names: readonly string[]): { name: string; t: HostTensor } | undefined {
    for (const name of names) {
      const t = this.weights.get(name) ?? this.weights.get(PREFIX + name);
      if (t !== undefined) return { name, t };
    }
    return undefined;
  }

  host(name: string, shape: readonly number[], aliases: readonly string[] = []): HostTensor {
    const found = this.find([name, ...aliases]);
    if (found === undefined) {
      throw new RelpError(ErrorCodes.BadModelFile, `missing weight ${PREFIX}${name}`, {
        details: { weight: name },
      });
    }
    const { t } = found;
    const ok = t.shape.length === shape.length && t.shape.every((s, i) => s === shape[i]);
    if (!ok || t.data.length !== shape.reduce((a, b) => a * b, 1)) {
      throw new RelpError(
        ErrorCodes.BadModelFile,
        `weight ${found.name} has shape [${t.shape}], expected [${shape}]`,
        { details: { weight: found.name, expected: [...shape], actual: [...t.shape] } },
      );
    }
    return t;
  }

  vector(name: string, n: number): tf.Tensor1D {
    return tf.tensor1d(this.host(name, [n]).data, 'float32');
  }

  /** An nn.Linear weight [out, in] as the [in, out] matrix `tf.matMul(x2d, W)` wants. */
  linear(name: string, out: number, inp: number, aliases: readonly string[] = []): tf.Tensor2D {
    const t = this.host(name, [out, inp], aliases);
    return tf.tidy(() => tf.transpose(tf.tensor2d(t.data, [out, inp], 'float32')));
  }
}

const NONLINEARITIES_BASE: readonly Nonlinearity[] = [
  { slot: 'normalize', kind: 'layernorm' },
  { slot: 'attention_softmax', kind: 'softmax' },
];

/**
 * GPT-NeoX / Pythia exactly as transformers' GPTNeoXForCausalLM (eager attention), as a function of its weights,
 * the input and a RunContext. Holds weights and the rotary tables (constants), nothing about runs.
 */
export class PythiaModel implements LanguageModel {
  readonly architecture = 'gpt_neox';
  readonly dims: ModelDims;
  readonly sites: readonly SiteName[];
  readonly nonlinearities: readonly Nonlinearity[];
  readonly config: PythiaConfig;
  /** Dimensions of each head that rotary embeddings rotate (even, ≤ dh). */
  readonly rotaryDim: number;

  private readonly wE: tf.Tensor2D;
  private readonly blocks: Block[];
  private readonly lnFg: tf.Tensor1D;
  private readonly lnFb: tf.Tensor1D;
  /** Unembedding as [d, V]: measured faster than transposeB on wasm (see README). */
  private readonly wU: Linear;
  /** cos and sign-folded sin for every position, [contextLength, rotaryDim]. */
  private readonly rotCos: tf.Tensor2D;
  private readonly rotSin: tf.Tensor2D;
  private disposed = false;

  constructor(config: PythiaConfig, weights: WeightMap, options: PythiaModelOptions = {}) {
    this.config = config;
    const { dModel: d, nHeads: H, dMlp: m, vocabSize: V, nLayers: L } = config;
    const dh = d / H;
    this.dims = {
      nLayers: L,
      dModel: d,
      nHeads: H,
      nKvHeads: H,
      dHead: dh,
      dMlp: m,
      vocabSize: V,
      contextLength: config.contextLength,
    };
    // transformers: inv_freq has ceil(int(dh·pct)/2) entries; cos/sin (and so the rotated slice) are twice that.
    this.rotaryDim = 2 * Math.ceil(Math.floor(dh * config.rotaryPct) / 2);
    if (this.rotaryDim > dh || this.rotaryDim === 0) {
      throw new RelpError(
        ErrorCodes.Unsupported,
        `rotary dimension ${this.rotaryDim} for head size ${dh} (rotary_pct ${config.rotaryPct})`,
      );
    }
    const sites: SiteName[] = [
      Site.ResidPre,
      Site.Ln1Scale,
      Site.Q,
      Site.K,
      Site.V,
      Site.Pattern,
      Site.Z,
      Site.Result,
      Site.AttnOut,
    ];
    if (!config.parallelResidual) sites.push(Site.ResidMid);
    sites.push(Site.Ln2Scale, Site.MlpPre, Site.MlpPost, Site.MlpOut, Site.ResidPost, Site.LnFinalScale);
    this.sites = sites;
    this.nonlinearities = [...NONLINEARITIES_BASE, { slot: 'activation', kind: config.activation }];

    const r = new WeightReader(weights);
    const owned: tf.Tensor[] = [];
    const own = <T extends tf.Tensor>(t: T): T => {
      owned.push(t);
      return t;
    };
    const copies = options.backwardCopies ?? wantsTransposedWeightCopies();
    const lin = (w: tf.Tensor2D): Linear => ({
      w: own(w),
      wT: copies ? own(tf.transpose(w)) : undefined,
    });
    try {
      this.wE = own(tf.tensor2d(r.host('embed_in.weight', [V, d]).data, [V, d], 'float32'));
      this.blocks = [];
      for (let l = 0; l < L; l++) {
        const p = `layers.${l}.`;
        const qkvHost = r.host(`${p}attention.query_key_value.weight`, [3 * d, d]);
        const wQkv = lin(
          tf.tidy(() => {
            const w = tf.reshape(tf.tensor2d(qkvHost.data, [3 * d, d], 'float32'), [H, 3, dh, d]);
            return tf.transpose(tf.reshape(tf.transpose(w, [1, 0, 2, 3]), [3 * d, d])) as tf.Tensor2D;
          }),
        );
        let bQkv: tf.Tensor1D | undefined;
        let bO: tf.Tensor1D | undefined;
        if (config.attentionBias) {
          const bh = r.host(`${p}attention.query_key_value.bias`, [3 * d]);
          bQkv = own(
            tf.tidy(
              () =>
                tf.reshape(tf.transpose(tf.tensor3d(bh.data, [H, 3, dh], 'float32'), [1, 0, 2]), [
                  3 * d,
                ]) as tf.Tensor1D,
            ),
          );
          bO = own(r.vector(`${p}attention.dense.bias`, d));
        }
        const wO = lin(r.linear(`${p}attention.dense.weight`, d, d));
        this.blocks.push({
          ln1g: own(r.vector(`${p}input_layernorm.weight`, d)),
          ln1b: own(r.vector(`${p}input_layernorm.bias`, d)),
          ln2g: own(r.vector(`${p}post_attention_layernorm.weight`, d)),
          ln2b: own(r.vector(`${p}post_attention_layernorm.bias`, d)),
          wQkv,
          bQkv,
          wO,
          wOHeads: own(tf.reshape(wO.w, [H, dh, d])),
          bO,
          wIn: lin(r.linear(`${p}mlp.dense_h_to_4h.weight`, m, d)),
          bIn: own(r.vector(`${p}mlp.dense_h_to_4h.bias`, m)),
          wOut: lin(r.linear(`${p}mlp.dense_4h_to_h.weight`, d, m)),
          bOut: own(r.vector(`${p}mlp.dense_4h_to_h.bias`, d)),
        });
      }
      this.lnFg = own(r.vector('final_layer_norm.weight', d));
      this.lnFb = own(r.vector('final_layer_norm.bias', d));
      if (config.tiedEmbeddings) {
        this.wU = lin(tf.transpose(this.wE));
      } else {
        this.wU = lin(r.linear('embed_out.weight', V, d, ['lm_head.weight']));
      }
      const { cos, sin } = rotaryTables(
        config.contextLength,
        this.rotaryDim,
        config.rotaryBase,
        Math.floor(dh * config.rotaryPct),
      );
      this.rotCos = own(tf.tensor2d(cos, [config.contextLength, this.rotaryDim]));
      this.rotSin = own(tf.tensor2d(sin, [config.contextLength, this.rotaryDim]));
    } catch (e) {
      for (const t of owned) t.dispose();
      throw e;
    }
  }

  embed(tokens: tf.Tensor2D): tf.Tensor3D {
    this.assertLive();
    checkTokens(tokens, this.dims.vocabSize, this.dims.contextLength);
    return tf.tidy(() => this.embedUnchecked(tokens));
  }

  private embedUnchecked(tokens: tf.Tensor2D): tf.Tensor3D {
    const [B, T] = tokens.shape;
    return tf.reshape(tf.gather(this.wE, tf.reshape(tokens, [B * T])), [B, T, this.dims.dModel]);
  }

  forward(input: ModelInput, ctx: RunContext, options: ForwardOptions = {}): tf.Tensor3D {
    this.assertLive();
    const { nLayers: L, dModel: d, contextLength } = this.dims;
    let start = 0;
    let B: number;
    let T: number;
    if ('tokens' in input) {
      checkTokens(input.tokens, this.dims.vocabSize, contextLength);
      [B, T] = input.tokens.shape;
    } else {
      const { resid, layer } = input;
      if (!Number.isInteger(layer) || layer < 0 || layer > L) {
        throw new RelpError(ErrorCodes.BadInput, `start layer ${layer} outside [0, ${L}]`);
      }
      if (resid.rank !== 3 || resid.shape[2] !== d || resid.dtype !== 'float32') {
        throw new RelpError(
          ErrorCodes.BadInput,
          `resid must be float32 [batch, seq, ${d}], got ${resid.dtype} [${resid.shape}]`,
        );
      }
      [B, T] = resid.shape;
      if (T > contextLength) {
        throw new RelpError(
          ErrorCodes.BadTokens,
          `${T} positions exceed the context length ${contextLength}`,
        );
      }
      start = layer;
    }
    const offset = checkPrefix(input, this.dims);
    const prefix: KvPrefix | undefined = 'resid' in input && offset > 0 ? input.prefix : undefined;
    // Rows joined on the way (ModelInput.joins) are part of the final batch.
    B = rowsAt(input, L);
    const readout = options.readout && readoutRows(options.readout, B, T, offset);
    checkRequestedSites(ctx, this.sites, L);

    return tf.tidy(() => {
      let x: tf.Tensor = 'tokens' in input ? this.embedUnchecked(input.tokens) : input.resid;
      // Queries at absolute positions offset..offset+T−1 against keys 0..offset+T−1 (a prefix run), or [T,T].
      const mask = offset === 0 ? causalMaskBias(T) : attentionMaskBias(T, undefined, offset);
      const rd = this.rotaryDim;
      const cos = tf.slice(this.rotCos, [offset, 0], [T, rd]);
      const sin = tf.slice(this.rotSin, [offset, 0], [T, rd]);
      for (let l = start; l < L; l++) {
        x = joinRows(input, l, x);
        const h = x;
        // Each block's intermediates are freed when it ends (the tape keeps what a gradient needs).
        x = tf.tidy(() => this.block(l, h, ctx, h.shape[0]!, T, mask, cos, sin, prefix));
        ctx.checkAborted();
      }
      if (readout !== undefined) {
        x = selectPositions(x, readout);
      }
      const Tout = x.shape[1]!;
      const h = layerNorm(ctx, x, this.lnFg, this.lnFb, this.config.layerNormEps, Site.LnFinalScale, 0);
      const logits = options.vocab
        ? tf.matMul(
            tf.reshape(h, [B * Tout, d]) as tf.Tensor2D,
            tf.gather(this.wU.w, vocabIds(options.vocab, this.dims.vocabSize), 1) as tf.Tensor2D,
          )
        : linear(tf.reshape(h, [B * Tout, d]), this.wU);
      return tf.reshape(logits, [B, Tout, logits.shape[1]!]) as tf.Tensor3D;
    });
  }

  private block(
    l: number,
    residIn: tf.Tensor,
    ctx: RunContext,
    B: number,
    T: number,
    mask: tf.Tensor,
    cos: tf.Tensor2D,
    sin: tf.Tensor2D,
    prefix: KvPrefix | undefined,
  ): tf.Tensor {
    const { dModel: d, nHeads: H, dHead: dh, dMlp: m } = this.dims;
    const w = this.blocks[l]!;
    const eps = this.config.layerNormEps;
    const BT = B * T;

    const resid = ctx.site(Site.ResidPre, l, residIn);

    // Attention.
    const a = layerNorm(ctx, resid, w.ln1g, w.ln1b, eps, Site.Ln1Scale, l);
    let qkv = linear(tf.reshape(a, [BT, d]), w.wQkv);
    if (w.bQkv) qkv = tf.add(qkv, w.bQkv);
    const [q0, k0, v0] = tf.split(qkv, 3, 1) as [tf.Tensor, tf.Tensor, tf.Tensor];
    const q = ctx.site(Site.Q, l, applyRotary(tf.reshape(q0!, [B, T, H, dh]) as tf.Tensor4D, cos, sin));
    const k = ctx.site(Site.K, l, applyRotary(tf.reshape(k0!, [B, T, H, dh]) as tf.Tensor4D, cos, sin));
    const v = ctx.site(Site.V, l, tf.reshape(v0!, [B, T, H, dh]));
    const qh = tf.transpose(q, [0, 2, 1, 3]); // [B,H,T,dh]
    // A prefix run attends to the cached keys/values of the earlier positions too: [B,H,offset+T,dh].
    const kh = tf.transpose(prependPrefix(k, prefix?.keys[l]), [0, 2, 1, 3]);
    const vh = tf.transpose(prependPrefix(v, prefix?.values[l]), [0, 2, 1, 3]);
    const scores = tf.add(tf.mul(tf.matMul(qh, kh, false, true), 1 / Math.sqrt(dh)), mask);
    const pattern = ctx.site(Site.Pattern, l, ctx.attentionSoftmax(scores));
    const z = ctx.site(Site.Z, l, tf.transpose(tf.matMul(pattern, vh), [0, 2, 1, 3])); // [B,T,H,dh]
    let attn: tf.Tensor;
    if (ctx.wants(Site.Result, l)) {
      const zHeads = tf.transpose(tf.reshape(z, [BT, H, dh]), [1, 0, 2]); // [H,BT,dh]
      const perHead = tf.transpose(tf.matMul(zHeads, w.wOHeads), [1, 0, 2]); // [BT,H,d]
      const result = ctx.site(Site.Result, l, tf.reshape(perHead, [B, T, H, d]));
      attn = tf.sum(result, 2);
    } else {
      attn = tf.reshape(linear(tf.reshape(z, [BT, d]), w.wO), [B, T, d]);
    }
    if (w.bO) attn = tf.add(attn, w.bO);
    attn = ctx.site(Site.AttnOut, l, attn);

    // MLP: reads resid_pre (parallel) or resid_mid (sequential).
    let mlpIn = resid;
    let mid: tf.Tensor | undefined;
    if (!this.config.parallelResidual) {
      mid = ctx.site(Site.ResidMid, l, tf.add(attn, resid));
      mlpIn = mid;
    }
    const b = layerNorm(ctx, mlpIn, w.ln2g, w.ln2b, eps, Site.Ln2Scale, l);
    const pre = ctx.site(
      Site.MlpPre,
      l,
      tf.reshape(tf.add(linear(tf.reshape(b, [BT, d]), w.wIn), w.bIn), [B, T, m]),
    );
    const post = ctx.site(Site.MlpPost, l, ctx.activation(this.config.activation, pre));
    const mlp = ctx.site(
      Site.MlpOut,
      l,
      tf.reshape(tf.add(linear(tf.reshape(post, [BT, m]), w.wOut), w.bOut), [B, T, d]),
    );
    // Same summation order as transformers: (mlp + attn) + resid, or mlp + (attn + resid).
    const out = mid === undefined ? tf.add(tf.add(mlp, attn), resid) : tf.add(mlp, mid);
    return ctx.site(Site.ResidPost, l, out);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const all: (tf.Tensor | undefined)[] = [this.wE, this.lnFg, this.lnFb, this.rotCos, this.rotSin];
    const lins: Linear[] = [this.wU];
    for (const b of this.blocks) {
      all.push(b.ln1g, b.ln1b, b.ln2g, b.ln2b, b.wOHeads, b.bIn, b.bOut, b.bQkv, b.bO);
      lins.push(b.wQkv, b.wO, b.wIn, b.wOut);
    }
    for (const l of lins) all.push(l.w, l.wT);
    for (const t of all) t?.dispose();
  }

  private assertLive(): void {
    if (this.disposed) throw new RelpError(ErrorCodes.BadInput, 'this model has been disposed');
  }
}

/**
 * Rotary tables for positions 0..n−1, float32 as transformers computes them: inv_freq = 1 / θ^(2i/rd),
 * angle = pos · inv_freq, emb = [angle, angle]; returns cos(emb) and the sign-folded sin [−sin, sin].
 * Every step is rounded to float32 as torch does.
 */
export function rotaryTables(
  n: number,
  rotaryDim: number,
  base: number,
  /** transformers divides by int(dh · fraction), which is odd when rotaryDim was rounded up. */
  frequencyDim: number = rotaryDim,
): { cos: Float32Array; sin: Float32Array } {
  const half = rotaryDim / 2;
  const f = Math.fround;
  const invFreq = new Float32Array(half);
  for (let i = 0; i < half; i++) invFreq[i] = f(1 / f(base ** f((2 * i) / frequencyDim)));
  const cos = new Float32Array(n * rotaryDim);
  const sin = new Float32Array(n * rotaryDim);
  for (let p = 0; p < n; p++) {
    for (let i = 0; i < half; i++) {
      const angle = f(p * invFreq[i]!);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      cos[p * rotaryDim + i] = c;
      cos[p * rotaryDim + half + i] = c;
      sin[p * rotaryDim + i] = -s;
      sin[p * rotaryDim + half + i] = s;
    }
  }
  return { cos, sin };
}
