import { ACTIVATIONS, type ActivationKind, plainSlots } from '@relp/core';
import {
  describeEachBackend,
  expectBitIdentical,
  installLeakGuard,
  maxAbsDiff,
  seededRandom,
} from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { ahRule, halfRule, identityRule, lnRule, plainSoftmaxRule } from '../src/index.js';
import {
  act64,
  dot64,
  expectAllClose,
  halfGradRef,
  identityGradRef,
  lnGradRef,
  normals,
  stabilized64,
} from './reference.js';

installLeakGuard();

const SHAPE = [2, 3, 8];
const N = 48;

/** Pre-activations with the cases the stabiliser is about: exact zeros, ±1e-7, tiny and large values. */
function activationInputs(seed: number): Float32Array {
  const v = normals(seededRandom(seed), N, 2);
  const special = [0, 0, 1e-7, -1e-7, 3e-6, -3e-6, 1e-3, -1e-3, 4, -4, 8, -8];
  special.forEach((s, i) => {
    v[i * 4] = s;
  });
  return new Float32Array(v);
}

function data(t: tf.Tensor): Float32Array {
  return t.dataSync() as Float32Array;
}

/** Gradients of Σ f(inputs)·dy with respect to every input, read back as arrays; disposes everything. */
function vjp(f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[], dy: tf.Tensor): Float32Array[] {
  const grads = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(...xs), dy)))(inputs);
  const out = grads.map((g) => new Float32Array(data(g)));
  tf.dispose(grads);
  return out;
}

function forward(f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[]): Float32Array {
  const y = tf.tidy(() => f(...inputs));
  const out = new Float32Array(data(y));
  y.dispose();
  return out;
}

describeEachBackend('Identity-rule', () => {
  const rule = identityRule.slots.activation!;

  for (const kind of ACTIVATIONS) {
    describe(kind, () => {
      it('forward is bit-identical to the plain activation', () => {
        const x = tf.tensor(activationInputs(1), SHAPE);
        expectBitIdentical(
          forward((t) => rule(kind, t), [x]),
          forward((t) => plainSlots.activation(kind, t), [x]),
          kind,
        );
        x.dispose();
      });

      /** The rule's input gradient on seeded pre-activations and output gradient, with their arrays and tensors. */
      const ruleGradient = (xSeed: number, dySeed: number) => {
        const xs = activationInputs(xSeed);
        const dys = new Float32Array(normals(seededRandom(dySeed), N));
        const x = tf.tensor(xs, SHAPE);
        const dy = tf.tensor(dys, SHAPE);
        const [dx] = vjp((t) => rule(kind, t), [x], dy);
        return { xs, dys, x, dy, dx: dx! };
      };

      it('backward is dy·act(x)/x̃ (literal reference) and differs from the plain gradient', () => {
        const { xs, dys, x, dy, dx } = ruleGradient(2, 3);
        const [plain] = vjp((t) => plainSlots.activation(kind, t), [x], dy);
        expectAllClose(dx, identityGradRef(kind, xs, dys), 1e-4, 1e-6, `${kind} rule gradient`);
        expect(maxAbsDiff(dx, plain!), 'rule gradient vs plain gradient').toBeGreaterThan(1e-2);
        tf.dispose([x, dy]);
      });

      it('conserves Gradient×Input up to the stabiliser: Σ x·dx ≈ Σ y·dy', () => {
        const { xs, dys, x, dy, dx } = ruleGradient(4, 5);
        const ys = forward((t) => rule(kind, t), [x]);
        const lhs = dot64(xs, dx);
        const rhs = dot64(ys, dys);
        // Each term differs from y·dy by the factor x/x̃ = 1 − ε·(sign+[x=0])/x̃, plus float32 rounding.
        let bound = 0;
        for (let i = 0; i < N; i++) {
          const yi = act64(kind, xs[i]!);
          bound += Math.abs(yi * dys[i]!) * (Math.abs(1 - xs[i]! / stabilized64(xs[i]!)) + 1e-6);
        }
        expect(Math.abs(lhs - rhs), `Σx·dx=${lhs} Σy·dy=${rhs}`).toBeLessThanOrEqual(bound + 1e-7);
        tf.dispose([x, dy]);
      });
    });
  }

  it('raises MISSING_RULE for an activation it does not know', () => {
    const x = tf.tensor([1, 2]);
    expect(() => rule('softplus' as ActivationKind, x)).toThrow(/softplus/);
    try {
      rule('softplus' as ActivationKind, x);
    } catch (e) {
      expect((e as { code?: string }).code).toBe('MISSING_RULE');
    }
    x.dispose();
  });
});

describeEachBackend('LN-rule', () => {
  const ruleSlot = lnRule.slots.normalize!;
  const rule = (xc: tf.Tensor, scale: tf.Tensor) => ruleSlot(xc, scale);
  const plainNormalize = (xc: tf.Tensor, scale: tf.Tensor) => plainSlots.normalize(xc, scale);
  const d = 8;

  it('forward is bit-identical to the plain normalize slot', () => {
    const rand = seededRandom(10);
    const xc = tf.tensor(normals(rand, N), SHAPE);
    const scale = tf.tensor(
      normals(rand, 6).map((v) => 0.5 + Math.abs(v)),
      [2, 3, 1],
    );
    expectBitIdentical(forward(rule, [xc, scale]), forward(plainNormalize, [xc, scale]));
    tf.dispose([xc, scale]);
  });

  it('backward is dxc = dy/scale, dscale = 0 (literal reference) and differs from the plain gradient', () => {
    const rand = seededRandom(11);
    const scales = normals(rand, 6).map((v) => 0.5 + Math.abs(v));
    const dys = normals(rand, N);
    const xc = tf.tensor(normals(rand, N), SHAPE);
    const scale = tf.tensor(scales, [2, 3, 1]);
    const dy = tf.tensor(dys, SHAPE);
    const [dxc, dscale] = vjp(rule, [xc, scale], dy);
    const [, plainDscale] = vjp(plainNormalize, [xc, scale], dy);
    const ref = lnGradRef(dys, scales, d);
    expectAllClose(dxc!, ref.dxc, 1e-6, 0, 'dxc');
    expect(Array.from(dscale!)).toEqual(ref.dscale);
    expect(maxAbsDiff(dscale!, plainDscale!), 'the plain gradient reaches the scale').toBeGreaterThan(1e-2);
    tf.dispose([xc, scale, dy]);
  });

  for (const kind of ['layernorm', 'rmsnorm'] as const) {
    it(`${kind} with zero bias conserves Gradient×Input: Σ x·dx = Σ y·dy`, () => {
      const rand = seededRandom(kind === 'layernorm' ? 12 : 13);
      const xs = normals(rand, N).map((v) => v + 0.7); // a non-zero mean, so the mean subtraction matters
      const gamma = tf.tensor(
        normals(rand, d).map((v) => 1 + 0.3 * v),
        [d],
      );
      const dys = normals(rand, N);
      const x = tf.tensor(xs, SHAPE);
      const dy = tf.tensor(dys, SHAPE);
      // The norm as a model writes it: the mean subtraction and the scale are ordinary ops, the division is the slot.
      const norm = (t: tf.Tensor) => {
        const xc = kind === 'layernorm' ? tf.sub(t, tf.mean(t, -1, true)) : t;
        const scale = tf.sqrt(tf.add(tf.mean(tf.square(xc), -1, true), 1e-5));
        return tf.mul(rule(xc, scale), gamma);
      };
      const [dx] = vjp(norm, [x], dy);
      const ys = forward(norm, [x]);
      const lhs = dot64(xs, dx!);
      const rhs = dot64(ys, dys);
      expect(Math.abs(lhs - rhs), `Σx·dx=${lhs} Σy·dy=${rhs}`).toBeLessThanOrEqual(
        1e-5 * (1 + Math.abs(rhs)),
      );
      // The plain norm does not conserve (the scale's gradient takes its share).
      const plainNorm = (t: tf.Tensor) => {
        const xc = kind === 'layernorm' ? tf.sub(t, tf.mean(t, -1, true)) : t;
        const scale = tf.sqrt(tf.add(tf.mean(tf.square(xc), -1, true), 1e-5));
        return tf.mul(plainSlots.normalize(xc, scale), gamma);
      };
      const [plainDx] = vjp(plainNorm, [x], dy);
      expect(Math.abs(dot64(xs, plainDx!) - rhs)).toBeGreaterThan(1e-2);
      tf.dispose([x, dy, gamma]);
    });
  }
});

describeEachBackend('LN-rule normaliser (normScale)', () => {
  const rule = lnRule.slots.normScale!;
  const eps = 1e-5;

  it('forward is bit-identical to the plain slot; it passes no gradient', () => {
    const rand = seededRandom(14);
    const xc = tf.tensor(normals(rand, N), SHAPE);
    expectBitIdentical(
      forward((t) => rule(t, eps), [xc]),
      forward((t) => plainSlots.normScale(t, eps), [xc]),
    );
    const dy = tf.tensor(normals(rand, 6), [2, 3, 1]);
    const [dRule] = vjp((t) => rule(t, eps), [xc], dy);
    const [dPlain] = vjp((t) => plainSlots.normScale(t, eps), [xc], dy);
    expect(Array.from(dRule!)).toEqual(new Array(N).fill(0));
    expect(maxAbsDiff(dPlain!, dRule!), 'the plain slot has a gradient').toBeGreaterThan(1e-3);
    tf.dispose([xc, dy]);
  });

  for (const kind of ['layernorm', 'rmsnorm'] as const) {
    it(`a ${kind} under the LN-rule has the same input gradient with the detached or the plain normaliser`, () => {
      const rand = seededRandom(kind === 'layernorm' ? 15 : 16);
      const x = tf.tensor(
        normals(rand, N).map((v) => v + 0.4),
        SHAPE,
      );
      const dy = tf.tensor(normals(rand, N), SHAPE);
      const norm = (scaleOf: (xc: tf.Tensor, e: number) => tf.Tensor) => (t: tf.Tensor) => {
        const xc = kind === 'layernorm' ? tf.sub(t, tf.mean(t, -1, true)) : t;
        return lnRule.slots.normalize!(xc, scaleOf(xc, eps));
      };
      const [detached] = vjp(norm(rule), [x], dy);
      const [chained] = vjp(norm(plainSlots.normScale), [x], dy);
      // The plain chain only adds the zeros the rule's normalize gives the scale.
      expect(maxAbsDiff(detached!, chained!)).toBe(0);
      tf.dispose([x, dy]);
    });
  }
});

describeEachBackend('Half-rule', () => {
  const rule = halfRule.slots.gateProduct!;

  /** Seeded factors a (of shape `aShape`) and up, and an output gradient dy, as arrays and as tensors. */
  function gateInputs(seed: number, aShape: number[] = SHAPE) {
    const rand = seededRandom(seed);
    const as = normals(rand, tf.util.sizeFromShape(aShape));
    const ups = normals(rand, N);
    const dys = normals(rand, N);
    return { as, ups, dys, a: tf.tensor(as, aShape), up: tf.tensor(ups, SHAPE), dy: tf.tensor(dys, SHAPE) };
  }

  it('forward is bit-identical to the plain gate product', () => {
    const rand = seededRandom(20);
    const a = tf.tensor(normals(rand, N), SHAPE);
    const up = tf.tensor(normals(rand, N), SHAPE);
    expectBitIdentical(forward(rule, [a, up]), forward(plainSlots.gateProduct, [a, up]));
    tf.dispose([a, up]);
  });

  it('backward is da = ½·dy·up, dup = ½·dy·a (literal reference), half the plain gradient', () => {
    const { as, ups, dys, a, up, dy } = gateInputs(21);
    const [da, dup] = vjp(rule, [a, up], dy);
    const [pa, pup] = vjp(plainSlots.gateProduct, [a, up], dy);
    const ref = halfGradRef(as, ups, dys);
    expectAllClose(da!, ref.da, 1e-6, 1e-7, 'da');
    expectAllClose(dup!, ref.dup, 1e-6, 1e-7, 'dup');
    expect(maxAbsDiff(da!, pa!)).toBeGreaterThan(1e-2);
    expect(maxAbsDiff(dup!, pup!)).toBeGreaterThan(1e-2);
    tf.dispose([a, up, dy]);
  });

  it('reduces the gradient of a broadcast factor to its shape', () => {
    const { as, ups, dys, a, up, dy } = gateInputs(22, [8]);
    const [da, dup] = vjp(rule, [a, up], dy);
    const refDa = new Array<number>(8).fill(0);
    const refDup: number[] = [];
    for (let i = 0; i < N; i++) {
      refDa[i % 8]! += 0.5 * dys[i]! * ups[i]!;
      refDup.push(0.5 * dys[i]! * as[i % 8]!);
    }
    expectAllClose(da!, refDa, 1e-5, 1e-6, 'da');
    expectAllClose(dup!, refDup, 1e-6, 1e-7, 'dup');
    tf.dispose([a, up, dy]);
  });

  it('conserves Gradient×Input: Σ a·da + Σ up·dup = Σ y·dy', () => {
    const { as, ups, dys, a, up, dy } = gateInputs(23);
    const [da, dup] = vjp(rule, [a, up], dy);
    const ys = forward(rule, [a, up]);
    const lhs = dot64(as, da!) + dot64(ups, dup!);
    const rhs = dot64(ys, dys);
    expect(Math.abs(lhs - rhs), `${lhs} vs ${rhs}`).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(rhs)));
    tf.dispose([a, up, dy]);
  });

  // Llama/Qwen (silu) and Gemma (gelu_tanh) gated MLPs: act(gate)·up with the Identity-rule on the gate.
  for (const kind of ACTIVATIONS) {
    it(`gated MLP act=${kind}: Σ gate·dgate + Σ up·dup ≈ Σ y·dy with Identity + Half`, () => {
      const gates = activationInputs(24);
      const rand = seededRandom(25);
      const ups = normals(rand, N);
      const dys = normals(rand, N);
      const gate = tf.tensor(gates, SHAPE);
      const up = tf.tensor(ups, SHAPE);
      const dy = tf.tensor(dys, SHAPE);
      const mlp = (g: tf.Tensor, u: tf.Tensor) => rule(identityRule.slots.activation!(kind, g), u);
      const plainMlp = (g: tf.Tensor, u: tf.Tensor) =>
        plainSlots.gateProduct(plainSlots.activation(kind, g), u);
      expectBitIdentical(forward(mlp, [gate, up]), forward(plainMlp, [gate, up]), 'gated forward');
      const [dg, dup] = vjp(mlp, [gate, up], dy);
      const ys = forward(mlp, [gate, up]);
      // Reference: dgate = ½·dy·up·act(g)/g̃, dup = ½·dy·act(g).
      const refDg: number[] = [];
      const refDup: number[] = [];
      let bound = 0;
      for (let i = 0; i < N; i++) {
        const act = act64(kind, gates[i]!);
        refDg.push((0.5 * dys[i]! * ups[i]! * act) / stabilized64(gates[i]!));
        refDup.push(0.5 * dys[i]! * act);
        bound +=
          Math.abs(act * ups[i]! * dys[i]!) * (Math.abs(1 - gates[i]! / stabilized64(gates[i]!)) + 1e-6);
      }
      expectAllClose(dg!, refDg, 1e-4, 1e-6, 'dgate');
      expectAllClose(dup!, refDup, 1e-4, 1e-6, 'dup');
      const lhs = dot64(gates, dg!) + dot64(ups, dup!);
      const rhs = dot64(ys, dys);
      expect(Math.abs(lhs - rhs), `${lhs} vs ${rhs}`).toBeLessThanOrEqual(bound + 1e-6);
      tf.dispose([gate, up, dy]);
    });
  }
});

describeEachBackend('AH-rule', () => {
  const rule = ahRule.slots.attentionSoftmax!;
  const [B, H, T, dh] = [2, 2, 4, 3];

  /** Causally masked scores, as models hand them to the slot. */
  function scoresFrom(q: tf.Tensor, k: tf.Tensor): tf.Tensor {
    const s = tf.div(tf.matMul(q, k, false, true), Math.sqrt(dh));
    const mask = tf.tensor2d(
      Array.from({ length: T * T }, (_, i) => (i % T > Math.floor(i / T) ? -1e9 : 0)),
      [T, T],
    );
    return tf.add(s, mask);
  }

  it('forward is bit-identical to the plain softmax', () => {
    const rand = seededRandom(30);
    const q = tf.tensor(normals(rand, B * H * T * dh), [B, H, T, dh]);
    const k = tf.tensor(normals(rand, B * H * T * dh), [B, H, T, dh]);
    const s = tf.tidy(() => scoresFrom(q, k));
    expectBitIdentical(forward(rule, [s]), forward(plainSlots.attentionSoftmax, [s]));
    tf.dispose([q, k, s]);
  });

  it('backward is exactly zero into the scores, while the plain softmax gradient is not', () => {
    const rand = seededRandom(31);
    const s = tf.tensor(normals(rand, B * H * T * T), [B, H, T, T]);
    const dy = tf.tensor(normals(rand, B * H * T * T), [B, H, T, T]);
    const [ds] = vjp(rule, [s], dy);
    const [plain] = vjp(plainSlots.attentionSoftmax, [s], dy);
    expect(Array.from(ds!)).toEqual(new Array<number>(B * H * T * T).fill(0));
    expect(maxAbsDiff(ds!, plain!)).toBeGreaterThan(1e-2);
    tf.dispose([s, dy]);
  });

  it('conserves Gradient×Input through pattern·v: Σ v·dv = Σ z·dz, nothing reaches q and k', () => {
    const rand = seededRandom(32);
    const n = B * H * T * dh;
    const q = tf.tensor(normals(rand, n), [B, H, T, dh]);
    const k = tf.tensor(normals(rand, n), [B, H, T, dh]);
    const vs = normals(rand, n);
    const v = tf.tensor(vs, [B, H, T, dh]);
    const dzs = normals(rand, n);
    const dz = tf.tensor(dzs, [B, H, T, dh]);
    const attend = (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) => tf.matMul(rule(scoresFrom(qq, kk)), vv);
    const [dq, dk, dv] = vjp(attend, [q, k, v], dz);
    const zs = forward(attend, [q, k, v]);
    expect(maxAbsDiff(dq!, new Float32Array(n))).toBe(0);
    expect(maxAbsDiff(dk!, new Float32Array(n))).toBe(0);
    const lhs = dot64(vs, dv!);
    const rhs = dot64(zs, dzs);
    expect(Math.abs(lhs - rhs), `${lhs} vs ${rhs}`).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(rhs)));
    tf.dispose([q, k, v, dz]);
  });

  it('the plain-softmax 0-rule overrides nothing', () => {
    expect(Object.keys(plainSoftmaxRule.slots)).toEqual([]);
  });
});
