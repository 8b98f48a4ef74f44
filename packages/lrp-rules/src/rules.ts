import {
  ACTIVATIONS,
  type ActivationKind,
  applyActivation,
  ErrorCodes,
  isActivationKind,
  type Nonlinearity,
  type NormName,
  plainSlots,
  RelpError,
  type SlotFunctions,
  SlotKind,
} from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';

/**
 * One LRP propagation rule (docs/method.md §10): the rule slot it replaces, which nonlinearities of a model it
 * treats, and the slot function. Every slot function is a local `tf.customGrad` whose forward calls the plain slot
 * implementation from `@relp/core` (so the forward output is bit-identical) and whose gradFunc implements the
 * rule. Rules never use `registerGradient` (global), so they change nothing outside the call sites that use them.
 */
export interface LrpRule {
  /** Short name: 'ln', 'identity', 'half', 'ah', 'plain-softmax'. */
  readonly name: string;
  /** The one slot the rule is for. A rule set holds at most one rule per slot. */
  readonly slot: SlotKind;
  /** One line for docs and `--help`. */
  readonly description: string;
  /** Whether the rule treats this nonlinearity (same slot, and a kind it knows). */
  covers(n: Nonlinearity): boolean;
  /** The slot override (empty for a 0-rule: the plain slot stays). */
  readonly slots: Partial<SlotFunctions>;
  /**
   * A normalize rule that treats only these norm instances (`lnRuleFor`); the others keep the plain gradient.
   * Absent: every norm the slot is called for.
   */
  readonly norms?: readonly NormName[];
}

/** Whether a rule leaves its slot plain on purpose (a 0-rule: no slot function of its own). */
export function isZeroRule(rule: LrpRule): boolean {
  return Object.keys(rule.slots).length === 0;
}

/** The Identity-rule's stabiliser: x̃ = x + (sign(x) + [x = 0])·ε. */
export const IDENTITY_EPS = 1e-6;

const NORM_KINDS: readonly string[] = ['layernorm', 'rmsnorm'];

/**
 * Sums a gradient over the axes its input was broadcast along, so a gradFunc returns one gradient of each
 * input's own shape (what tfjs's own gradients do for broadcasting binary ops).
 */
function sumToShape(g: tf.Tensor, shape: readonly number[]): tf.Tensor {
  if (tf.util.arraysEqual(g.shape, shape as number[])) return g;
  const axes = tf.backend_util.getReductionAxes(shape as number[], g.shape);
  return tf.reshape(axes.length > 0 ? tf.sum(g, axes) : g, shape as number[]);
}

// ---------------------------------------------------------------------------------------------------------------
// LN-rule

const lnNormalize = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const xc = args[0] as tf.Tensor;
  const scale = args[1] as tf.Tensor;
  const save = args[2] as tf.GradSaveFunc;
  save([scale]);
  return {
    value: plainSlots.normalize(xc, scale),
    // The normaliser is a constant: d(xc/scale)/dxc = 1/scale, and no gradient reaches the scale.
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const s = saved[0]!;
      return [sumToShape(tf.div(dy, s), xc.shape), tf.zerosLike(s)];
    },
  };
});

/**
 * The normaliser computed with no gradient (as `.detach()` in the PyTorch reference): the plain slot's forward
 * (the same bits), and a zero gradient for xc, so that a backward pass skips the scale's chain of kernels (the
 * rule's normalize passes it only zeros).
 */
const detachedNormScale = (xc: tf.Tensor, eps: number): tf.Tensor =>
  tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor;
    const shape = input.shape;
    return { value: plainSlots.normScale(input, eps), gradFunc: () => tf.zeros(shape) };
  })(xc);

/**
 * LN-rule (Ali et al. 2022): in LayerNorm and RMSNorm the normaliser `sqrt(mean(x_c²)+eps)` is a constant in the
 * backward pass: dxc = dy/scale, dscale = 0, and the normaliser itself is computed with no gradient. The mean
 * subtraction before the slot stays ordinary autograd.
 */
export const lnRule: LrpRule = {
  name: 'ln',
  slot: SlotKind.Normalize,
  description:
    'LayerNorm/RMSNorm: the normaliser is a constant in the backward pass (dxc = dy/scale, dscale = 0)',
  covers: (n) => n.slot === SlotKind.Normalize && NORM_KINDS.includes(n.kind),
  slots: { normScale: detachedNormScale, normalize: (xc, scale) => lnNormalize(xc, scale) },
};

/** The norm instance a normalize-slot call names; a call that names none cannot be placed in a subset. */
function namedNorm(norm: NormName | undefined, rule: string): NormName {
  if (norm === undefined) {
    throw new RelpError(
      ErrorCodes.MissingRule,
      `the rule '${rule}' treats only some norms, but a normalize call did not say which norm it is`,
      { details: { slot: SlotKind.Normalize, rule } },
    );
  }
  return norm;
}

/**
 * The LN-rule on some norm instances only (docs/method.md §10.6): the named norms ('ln1', 'ln2', 'final', 'q_norm',
 * …) get the LN-rule, every other norm keeps its plain gradient (scale included). The forward is the plain one
 * either way. Its name lists the norms: `ln[ln1,ln2]`.
 */
export function lnRuleFor(norms: readonly NormName[]): LrpRule {
  if (norms.length === 0) throw badNorms('the norm-subset LN-rule needs at least one norm');
  const treated = new Set(norms);
  const name = `ln[${[...treated].join(',')}]`;
  return {
    name,
    slot: SlotKind.Normalize,
    description: `the LN-rule on ${[...treated].join(', ')} only; other norms keep the plain gradient`,
    covers: lnRule.covers,
    norms: Object.freeze([...treated]),
    slots: {
      normScale: (xc, eps, norm) =>
        treated.has(namedNorm(norm, name)) ? detachedNormScale(xc, eps) : plainSlots.normScale(xc, eps),
      normalize: (xc, scale, norm) =>
        treated.has(namedNorm(norm, name)) ? lnNormalize(xc, scale) : plainSlots.normalize(xc, scale),
    },
  };
}

function badNorms(message: string): RelpError {
  return new RelpError(ErrorCodes.BadInput, message, { details: { slot: SlotKind.Normalize } });
}

// ---------------------------------------------------------------------------------------------------------------
// Identity-rule

/**
 * x̃ = x + (sign(x) + [x = 0])·ε, elementwise (used inside gradFuncs only: comparisons have no gradient).
 * sign(x) + [x = 0] is +1 for x ≥ 0 and −1 for x < 0, so x̃ = x + where(x ≥ 0, ε, −ε). Built from a comparison
 * rather than `tf.sign`, whose wasm kernel (tfjs 4.22) returns 0 for small non-zero inputs such as 1e-7.
 */
export function stabilizedDenominator(x: tf.Tensor, eps: number = IDENTITY_EPS): tf.Tensor {
  return tf.tidy(() => {
    const offset = tf.where(tf.greaterEqual(x, 0), tf.scalar(eps, x.dtype), tf.scalar(-eps, x.dtype));
    return tf.add(x, offset);
  });
}

function identityActivation(kind: ActivationKind, x: tf.Tensor): tf.Tensor {
  if (!isActivationKind(kind)) {
    // Reachable only from untyped callers: a model handing the slot an activation no rule exists for.
    throw new RelpError(
      ErrorCodes.MissingRule,
      `the Identity-rule has no rule for activation '${String(kind)}' (known: ${ACTIVATIONS.join(', ')})`,
      { details: { slot: SlotKind.Activation, kind: String(kind) } },
    );
  }
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor;
    const save = args[1] as tf.GradSaveFunc;
    const y = applyActivation(kind, input);
    save([input, y]);
    return {
      value: y,
      // The local derivative is replaced by the ratio act(x)/x̃: dx = dy · act(x)/x̃.
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sy] = saved as [tf.Tensor, tf.Tensor];
        return tf.mul(dy, tf.div(sy, stabilizedDenominator(sx)));
      },
    };
  });
  return f(x);
}

/**
 * Identity-rule (Jafari et al. 2024 MambaLRP; Achtibat et al. 2024 AttnLRP): the element-wise activation passes
 * relevance on as if it were the identity: its local derivative becomes act(x)/x̃ with
 * x̃ = x + (sign(x) + [x = 0])·1e-6. Knows every activation in core's ACTIVATIONS.
 */
export const identityRule: LrpRule = {
  name: 'identity',
  slot: SlotKind.Activation,
  description: 'element-wise activations: the local derivative is act(x)/x̃, x̃ = x + (sign(x) + [x=0])·1e-6',
  covers: (n) => n.slot === SlotKind.Activation && isActivationKind(n.kind),
  slots: { activation: identityActivation },
};

// ---------------------------------------------------------------------------------------------------------------
// Half-rule

const halfGateProduct = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const a = args[0] as tf.Tensor;
  const up = args[1] as tf.Tensor;
  const save = args[2] as tf.GradSaveFunc;
  save([a, up]);
  return {
    value: plainSlots.gateProduct(a, up),
    // The ordinary product gradient, halved for each factor: da = ½·dy·up, dup = ½·dy·a.
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sa, su] = saved as [tf.Tensor, tf.Tensor];
      const half = tf.mul(dy, 0.5);
      return [sumToShape(tf.mul(half, su), sa.shape), sumToShape(tf.mul(half, sa), su.shape)];
    },
  };
});

/**
 * Half-rule (Jafari et al. 2024 MambaLRP; AttnLRP's uniform rule for products): in a gated product act(gate)·up
 * the gradient reaching each factor is halved, so each factor receives half the relevance.
 */
export const halfRule: LrpRule = {
  name: 'half',
  slot: SlotKind.GateProduct,
  description: 'gated products act(gate)·up: the gradient reaching each factor is halved',
  covers: (n) => n.slot === SlotKind.GateProduct && n.kind === 'gated_mlp',
  slots: { gateProduct: (a, up) => halfGateProduct(a, up) },
};

const cpGateProduct = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const a = args[0] as tf.Tensor;
  const up = args[1] as tf.Tensor;
  const save = args[2] as tf.GradSaveFunc;
  save([a]);
  return {
    value: plainSlots.gateProduct(a, up),
    // The activated gate is a constant: dup = dy·a, and nothing reaches the gate branch.
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const sa = saved[0]!;
      return [tf.zeros(a.shape, dy.dtype), sumToShape(tf.mul(dy, sa), up.shape)];
    },
  };
});

/**
 * CP gate rule (the gate rule of conservative propagation, as LRP for gated recurrent units treats gates, Arras
 * et al. 2017): in act(gate)·up the activated gate is a constant, so the product's whole gradient (and relevance)
 * goes to `up` and none to the gate branch.
 */
export const cpGateRule: LrpRule = {
  name: 'cp-gate',
  slot: SlotKind.GateProduct,
  description: 'gated products act(gate)·up: the gate is a constant, all of the gradient goes to up',
  covers: (n) => n.slot === SlotKind.GateProduct && n.kind === 'gated_mlp',
  slots: { gateProduct: (a, up) => cpGateProduct(a, up) },
};

// ---------------------------------------------------------------------------------------------------------------
// AH-rule and the explicit plain softmax

const ahSoftmax = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const scores = args[0] as tf.Tensor;
  return {
    value: plainSlots.attentionSoftmax(scores),
    // The pattern is a constant: nothing flows back into the scores (hence into queries and keys).
    gradFunc: (dy: tf.Tensor) => tf.zeros(scores.shape, dy.dtype),
  };
});

/**
 * AH-rule (Ali et al. 2022, opt-in): the attention pattern is a constant in the backward pass; relevance flows
 * only through the values.
 */
export const ahRule: LrpRule = {
  name: 'ah',
  slot: SlotKind.AttentionSoftmax,
  description: 'attention softmax: the pattern is a constant, relevance flows only through the values',
  covers: (n) => n.slot === SlotKind.AttentionSoftmax && n.kind === 'softmax',
  slots: { attentionSoftmax: (scores) => ahSoftmax(scores) },
};

/**
 * The 0-rule for the attention softmax, stated on purpose: ordinary gradients through the softmax. The `relp`
 * preset uses it (the paper's IOI setting), so a rule set that leaves the softmax plain says so explicitly,
 * instead of every uncovered slot passing silently.
 */
export const plainSoftmaxRule: LrpRule = {
  name: 'plain-softmax',
  slot: SlotKind.AttentionSoftmax,
  description: 'attention softmax: ordinary gradients (0-rule, on purpose)',
  covers: (n) => n.slot === SlotKind.AttentionSoftmax && n.kind === 'softmax',
  slots: {},
};

// ---------------------------------------------------------------------------------------------------------------
// AttnLRP's uniform rule on the attention's two matrix products

const uniformScores = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const q = args[0] as tf.Tensor3D;
  const k = args[1] as tf.Tensor3D;
  const save = args[2] as tf.GradSaveFunc;
  save([q, k]);
  return {
    value: plainSlots.attentionScores(q, k),
    // The product's gradient halved for each factor: dq = ½·dy·k, dk = ½·dyᵀ·q.
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sq, sk] = saved as [tf.Tensor3D, tf.Tensor3D];
      const half = tf.mul(dy, 0.5) as tf.Tensor3D;
      return [tf.matMul(half, sk), tf.matMul(half, sq, true, false)];
    },
  };
});

const uniformValues = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const p = args[0] as tf.Tensor3D;
  const v = args[1] as tf.Tensor3D;
  const save = args[2] as tf.GradSaveFunc;
  save([p, v]);
  return {
    value: plainSlots.attentionValues(p, v),
    // dpattern = ½·dy·vᵀ, dv = ½·patternᵀ·dy.
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sp, sv] = saved as [tf.Tensor3D, tf.Tensor3D];
      const half = tf.mul(dy, 0.5) as tf.Tensor3D;
      return [tf.matMul(half, sv, false, true), tf.matMul(sp, half, true, false)];
    },
  };
});

/**
 * AttnLRP's uniform rule on q·kᵀ (Achtibat et al. 2024): the gradient reaching the queries and the keys is halved.
 * Behind the softmax (kept plain) and the halved pattern·v product, q and k receive a quarter of it.
 */
export const uniformScoresRule: LrpRule = {
  name: 'uniform-qk',
  slot: SlotKind.AttentionScores,
  description: 'attention scores q·kᵀ: the gradient reaching q and k is halved',
  covers: (n) => (n.slot as string) === SlotKind.AttentionScores,
  slots: { attentionScores: (q, k) => uniformScores(q, k) as tf.Tensor3D },
};

/** AttnLRP's uniform rule on pattern·v: the gradient reaching the pattern and the values is halved. */
export const uniformValuesRule: LrpRule = {
  name: 'uniform-pv',
  slot: SlotKind.AttentionValues,
  description: 'attention output pattern·v: the gradient reaching the pattern and v is halved',
  covers: (n) => (n.slot as string) === SlotKind.AttentionValues,
  slots: { attentionValues: (p, v) => uniformValues(p, v) as tf.Tensor3D },
};

/** The 0-rule for norms, stated on purpose: the plain normaliser gradient (the rule ladders start with it). */
export const plainNormRule: LrpRule = {
  name: 'plain-norm',
  slot: SlotKind.Normalize,
  description: 'LayerNorm/RMSNorm: ordinary gradients (0-rule, on purpose)',
  covers: lnRule.covers,
  slots: {},
};

/**
 * The 0-rule for activations, stated on purpose (the rule ladders of `relp rules audit` leave it plain). It covers
 * every activation kind, known or not: leaving one plain is what it says.
 */
export const plainActivationRule: LrpRule = {
  name: 'plain-activation',
  slot: SlotKind.Activation,
  description: 'element-wise activations: ordinary gradients (0-rule, on purpose)',
  covers: (n) => n.slot === SlotKind.Activation,
  slots: {},
};

/** The 0-rule for gated products, stated on purpose. */
export const plainGateRule: LrpRule = {
  name: 'plain-gate',
  slot: SlotKind.GateProduct,
  description: 'gated products: ordinary gradients (0-rule, on purpose)',
  covers: halfRule.covers,
  slots: {},
};

/** Every rule this package defines, by name. */
export const RULES = {
  ln: lnRule,
  identity: identityRule,
  half: halfRule,
  ah: ahRule,
  'cp-gate': cpGateRule,
  'uniform-qk': uniformScoresRule,
  'uniform-pv': uniformValuesRule,
  'plain-softmax': plainSoftmaxRule,
  'plain-norm': plainNormRule,
  'plain-activation': plainActivationRule,
  'plain-gate': plainGateRule,
} as const satisfies Record<string, LrpRule>;
