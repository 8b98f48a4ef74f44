import { badInput, type SiteName } from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';

/**
 * The encoder nonlinearity. ReLU: f = relu(pre). JumpReLU: f = relu(pre) where pre > θ (per feature), else 0.
 * TopK: the k largest entries of relu(pre) per token, the others 0.
 */
export type SaeActivation =
  | { readonly kind: 'relu' }
  | { readonly kind: 'jumprelu'; readonly threshold: tf.Tensor1D }
  | { readonly kind: 'topk'; readonly k: number };

/** Where the SAE reads and rewrites the model: a site at one layer (its hidden axis must be dIn wide). */
export interface SaeHookPoint {
  readonly site: SiteName;
  readonly layer: number;
}

export interface SaeParams {
  /** [dIn, dSae] */
  readonly wEnc: tf.Tensor2D;
  /** [dSae] */
  readonly bEnc: tf.Tensor1D;
  /** [dSae, dIn] */
  readonly wDec: tf.Tensor2D;
  /** [dIn] */
  readonly bDec: tf.Tensor1D;
}

export interface SaeOptions {
  readonly hookPoint: SaeHookPoint;
  readonly activation: SaeActivation;
  /** Subtract b_dec from the input before encoding (SAELens `apply_b_dec_to_input`, dictionary_learning). */
  readonly applyBDecToInput?: boolean;
  /**
   * Activations are multiplied by this before encoding and reconstructions divided by it after decoding
   * (SAELens `normalize_activations: expected_average_only_in` with its scaling factor). Default 1.
   */
  readonly inputScale?: number;
  /** Free text about where the SAE came from (format, file, training run). */
  readonly provenance?: Readonly<Record<string, unknown>>;
}

/**
 * A sparse autoencoder over one site's hidden axis: f = σ(((x·s) − b_dec)·W_enc + b_enc), x̂ = (f·W_dec + b_dec)/s.
 * Holds its weights (disposed by `dispose`) and nothing about runs; all methods are pure tensor functions that
 * accept any leading axes ([…, dIn] → […, dSae] and back).
 */
export class SparseAutoencoder {
  readonly dIn: number;
  readonly dSae: number;
  readonly hookPoint: SaeHookPoint;
  readonly activation: SaeActivation;
  readonly applyBDecToInput: boolean;
  readonly inputScale: number;
  readonly provenance: Readonly<Record<string, unknown>>;
  readonly params: SaeParams;

  constructor(params: SaeParams, options: SaeOptions) {
    const [dIn, dSae] = params.wEnc.shape;
    const expect = (name: string, t: tf.Tensor, shape: number[]) => {
      if (t.rank !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
        throw badInput(`SAE tensor ${name} has shape [${t.shape}], expected [${shape}]`, {
          tensor: name,
          shape: t.shape,
          expected: shape,
        });
      }
    };
    expect('W_dec', params.wDec, [dSae, dIn]);
    expect('b_enc', params.bEnc, [dSae]);
    expect('b_dec', params.bDec, [dIn]);
    if (options.activation.kind === 'jumprelu') expect('threshold', options.activation.threshold, [dSae]);
    if (options.activation.kind === 'topk') {
      const k = options.activation.k;
      if (!Number.isInteger(k) || k < 1 || k > dSae)
        throw badInput(`TopK SAE needs 1 ≤ k ≤ ${dSae} (got ${k})`);
    }
    const scale = options.inputScale ?? 1;
    if (!(Number.isFinite(scale) && scale > 0)) throw badInput(`SAE input scale must be > 0 (got ${scale})`);
    this.dIn = dIn;
    this.dSae = dSae;
    this.params = params;
    this.hookPoint = options.hookPoint;
    this.activation = options.activation;
    this.applyBDecToInput = options.applyBDecToInput ?? true;
    this.inputScale = scale;
    this.provenance = options.provenance ?? {};
  }

  /** Encoder pre-activations […, dSae]. */
  preActivations(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      this.checkWidth(x, this.dIn, 'input');
      let xin = this.inputScale === 1 ? x : tf.mul(x, this.inputScale);
      if (this.applyBDecToInput) xin = tf.sub(xin, this.params.bDec);
      const flat = tf.reshape(xin, [-1, this.dIn]);
      const pre = tf.add(tf.matMul(flat, this.params.wEnc), this.params.bEnc);
      return tf.reshape(pre, [...x.shape.slice(0, -1), this.dSae]);
    });
  }

  /** Feature activations […, dSae]. */
  encode(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.activate(this.preActivations(x)));
  }

  /** Feature activations from pre-activations (differentiable where the features are on). */
  activate(pre: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const act = this.activation;
      switch (act.kind) {
        case 'relu':
          return tf.relu(pre);
        case 'jumprelu':
          return tf.where(tf.greater(pre, act.threshold), tf.relu(pre), tf.zerosLike(pre));
        case 'topk': {
          // The k-th largest value per token, as a constant: entries at or above it stay (ties are measure-zero
          // for real-valued inputs), the rest are 0. The threshold is computed off the gradient tape.
          const kth = kthLargest(pre, act.k);
          return tf.where(tf.greaterEqual(pre, kth), tf.relu(pre), tf.zerosLike(pre));
        }
      }
    });
  }

  /** Reconstruction […, dIn] from features […, dSae]. */
  decode(f: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      this.checkWidth(f, this.dSae, 'features');
      const flat = tf.reshape(f, [-1, this.dSae]);
      let out = tf.add(tf.matMul(flat, this.params.wDec), this.params.bDec);
      if (this.inputScale !== 1) out = tf.div(out, this.inputScale);
      return tf.reshape(out, [...f.shape.slice(0, -1), this.dIn]);
    });
  }

  /** decode(encode(x)). */
  reconstruct(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.decode(this.encode(x)));
  }

  dispose(): void {
    this.params.wEnc.dispose();
    this.params.bEnc.dispose();
    this.params.wDec.dispose();
    this.params.bDec.dispose();
    if (this.activation.kind === 'jumprelu') this.activation.threshold.dispose();
  }

  private checkWidth(t: tf.Tensor, width: number, what: string): void {
    if (t.shape[t.rank - 1] !== width) {
      throw badInput(
        `SAE at ${this.hookPoint.site}.${this.hookPoint.layer} expects ${what} of width ${width}, got [${t.shape}]`,
        { expected: width, shape: t.shape },
      );
    }
  }
}

/** The k-th largest entry along the last axis, [..., 1], with no gradient (a constant of the run). */
function kthLargest(x: tf.Tensor, k: number): tf.Tensor {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor;
    const { values } = tf.topk(input, k, true);
    const last = tf.slice(
      values,
      [...Array(values.rank - 1).fill(0), k - 1],
      [...values.shape.slice(0, -1), 1],
    );
    return { value: last, gradFunc: () => tf.zerosLike(input) };
  });
  return f(x) as tf.Tensor;
}
