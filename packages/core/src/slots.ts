import * as tf from '@tensorflow/tfjs-core';
import { ErrorCodes, RelpError } from './errors.js';

/**
 * Rule slots: the few places in a transformer where an LRP rule changes the backward pass. Models never
 * compute these operations themselves; they call the slot through the run context, which uses the plain
 * implementation below or the rule installed for the run. Every rule must produce a forward output
 * bit-identical to the plain one (rules call these same functions inside their customGrad forwards).
 */
export const SlotKind = {
  /** x_c / scale for LayerNorm (x_c = x − mean) and RMSNorm (x_c = x). */
  Normalize: 'normalize',
  /** An element-wise nonlinearity. */
  Activation: 'activation',
  /** The product act(gate)·up of a gated MLP. */
  GateProduct: 'gate_product',
  /** The softmax that turns attention scores into the pattern. */
  AttentionSoftmax: 'attention_softmax',
  /** The bilinear product q·kᵀ of queries and keys (the scores before scale and mask). */
  AttentionScores: 'attention_scores',
  /** The product pattern·v of the attention pattern and the values. */
  AttentionValues: 'attention_values',
} as const;

export type SlotKind = (typeof SlotKind)[keyof typeof SlotKind];

/** Element-wise activations relp knows. `gelu_new` and `gelu_tanh` are the same function (tanh approximation). */
export const ACTIVATIONS = ['gelu_new', 'gelu_tanh', 'gelu', 'silu', 'relu'] as const;
export type ActivationKind = (typeof ACTIVATIONS)[number];

export function isActivationKind(s: string): s is ActivationKind {
  return (ACTIVATIONS as readonly string[]).includes(s);
}

/** A nonlinearity or gate a model contains, so a rule set can be checked against it before a run. */
export type Nonlinearity =
  | { readonly slot: typeof SlotKind.Normalize; readonly kind: 'layernorm' | 'rmsnorm' }
  | { readonly slot: typeof SlotKind.Activation; readonly kind: string }
  | { readonly slot: typeof SlotKind.GateProduct; readonly kind: 'gated_mlp' }
  | { readonly slot: typeof SlotKind.AttentionSoftmax; readonly kind: 'softmax' };

/**
 * Which norm instance a normalize-slot call is: 'ln1' (before attention), 'ln2' (before the MLP), 'final'
 * (before the unembedding), and Gemma 3's 'q_norm', 'k_norm', 'post_attention_norm', 'post_feedforward_norm'.
 * The plain slot ignores it; a rule that treats only some norms reads it.
 */
export type NormName = string;

/** The rule slots as functions. A RuleSet overrides some of them for one run. */
export interface SlotFunctions {
  /**
   * The normaliser of a LayerNorm or RMSNorm, sqrt(mean(xc²) + eps) over the last axis, [..., 1] (before its
   * site). Part of the normalize slot: a rule that makes the normaliser a constant (the LN-rule) computes it
   * with no gradient, so the backward pass does not carry the zeros its normalize returns for the scale
   * back through square, mean, add and sqrt.
   */
  normScale(xc: tf.Tensor, eps: number, norm?: NormName): tf.Tensor;
  /** xc / scale, scale [..., 1]: the normalisation of a LayerNorm or RMSNorm (`norm`: which one). */
  normalize(xc: tf.Tensor, scale: tf.Tensor, norm?: NormName): tf.Tensor;
  activation(kind: ActivationKind, x: tf.Tensor): tf.Tensor;
  gateProduct(activatedGate: tf.Tensor, up: tf.Tensor): tf.Tensor;
  /** Softmax over the last axis of already-masked scores. */
  attentionSoftmax(scores: tf.Tensor): tf.Tensor;
  /** q·kᵀ per batch row: q [n, Tq, dh], k [n, Tk, dh] → [n, Tq, Tk]. */
  attentionScores(q: tf.Tensor3D, k: tf.Tensor3D): tf.Tensor3D;
  /** pattern·v per batch row: pattern [n, Tq, Tk], v [n, Tk, dh] → [n, Tq, dh]. */
  attentionValues(pattern: tf.Tensor3D, v: tf.Tensor3D): tf.Tensor3D;
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** The plain forward of an activation, shared by models and rules so both compute the same bits. */
export function applyActivation(kind: ActivationKind, x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    switch (kind) {
      case 'gelu_new':
      case 'gelu_tanh': {
        // 0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x³))), as in HF's NewGELUActivation.
        const inner = tf.mul(SQRT_2_OVER_PI, tf.add(x, tf.mul(0.044715, tf.pow(x, 3))));
        return tf.mul(tf.mul(0.5, x), tf.add(1, tf.tanh(inner)));
      }
      case 'gelu':
        // Exact GELU: 0.5 x (1 + erf(x / √2)).
        return tf.mul(tf.mul(0.5, x), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
      case 'silu':
        return tf.mul(x, tf.sigmoid(x));
      case 'relu':
        return tf.relu(x);
      default: {
        const never: never = kind;
        throw new RelpError(ErrorCodes.Unsupported, `unknown activation '${String(never)}'`);
      }
    }
  });
}

export const plainSlots: SlotFunctions = {
  normScale: (xc, eps) => tf.sqrt(tf.add(tf.mean(tf.square(xc), -1, true), eps)),
  normalize: (xc, scale) => tf.div(xc, scale),
  activation: applyActivation,
  gateProduct: (a, b) => tf.mul(a, b),
  attentionSoftmax: (scores) => tf.softmax(scores, -1),
  attentionScores: (q, k) => tf.matMul(q, k, false, true),
  attentionValues: (pattern, v) => tf.matMul(pattern, v),
};

/**
 * A set of rules for one run: a name, the slot functions it replaces, and which nonlinearities it covers.
 * `covers` must answer false for anything the rule set would silently treat with the plain gradient although
 * a rule was meant for it (an activation with no Identity-rule, say): the run then stops with MissingRule.
 */
export interface RuleSet {
  readonly name: string;
  readonly slots: Partial<SlotFunctions>;
  /** Returns a reason string when the rule set has no rule for a nonlinearity it claims to treat, else null. */
  missingRuleFor(n: Nonlinearity): string | null;
}

/** No rules at all: ordinary gradients (attribution patching). */
export const NO_RULES: RuleSet = {
  name: 'none',
  slots: {},
  missingRuleFor: () => null,
};

/** Raises MissingRule if the rule set lacks a rule for any of the model's nonlinearities. */
export function checkRulesCover(
  rules: RuleSet,
  nonlinearities: readonly Nonlinearity[],
  model: string,
): void {
  for (const n of nonlinearities) {
    const reason = rules.missingRuleFor(n);
    if (reason !== null) {
      throw new RelpError(
        ErrorCodes.MissingRule,
        `rule set '${rules.name}' has no rule for ${n.slot} '${n.kind}' in model ${model}: ${reason}`,
        { details: { slot: n.slot, kind: n.kind, rules: rules.name } },
      );
    }
  }
}
