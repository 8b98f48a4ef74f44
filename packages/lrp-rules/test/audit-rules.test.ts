import { type NormName, plainSlots, type RuleSet, RunContext, rmsNorm, type SlotFunctions } from '@relp/core';
import { describeEachBackend, expectBitIdentical, installLeakGuard, seededRandom } from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import {
  ATTNLRP,
  cpGateRule,
  halfRule,
  identityRule,
  lnRule,
  lnRuleFor,
  PRESET_NAMES,
  presetByName,
  RELP_CP,
  uniformScoresRule,
  uniformValuesRule,
} from '../src/index.js';
import { act64, dot64, expectAllClose, normals } from './reference.js';

installLeakGuard();

/** Gradients of Σ f(inputs)·dy with respect to every input, read back as arrays; disposes everything. */
function vjp(f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[], dy: tf.Tensor): Float32Array[] {
  const grads = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(...xs), dy)))(inputs);
  const out = grads.map((g) => new Float32Array(g.dataSync()));
  tf.dispose(grads);
  return out;
}

function forward(f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[]): Float32Array {
  const y = tf.tidy(() => f(...inputs));
  const out = new Float32Array(y.dataSync());
  y.dispose();
  return out;
}

/** Row-major [n,k]·[k,m] in float64. */
function matmul64(a: ArrayLike<number>, b: ArrayLike<number>, n: number, k: number, m: number): number[] {
  const out = new Array<number>(n * m).fill(0);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p]! * b[p * m + j]!;
      out[i * m + j] = s;
    }
  return out;
}

function transpose64(a: ArrayLike<number>, n: number, m: number): number[] {
  const out: number[] = [];
  for (let j = 0; j < m; j++) for (let i = 0; i < n; i++) out.push(a[i * m + j]!);
  return out;
}

describeEachBackend('CP gate rule', () => {
  const rule = (a: tf.Tensor, up: tf.Tensor) => cpGateRule.slots.gateProduct!(a, up);
  const plain = (a: tf.Tensor, up: tf.Tensor) => plainSlots.gateProduct(a, up);
  const SHAPE = [2, 3, 8];
  const N = 48;

  it('forward is bit-identical to the plain gate product', () => {
    const rand = seededRandom(40);
    const a = tf.tensor(normals(rand, N), SHAPE);
    const up = tf.tensor(normals(rand, N), SHAPE);
    expectBitIdentical(forward(rule, [a, up]), forward(plain, [a, up]));
    tf.dispose([a, up]);
  });

  it('backward is da = 0, dup = dy·a (literal reference); the gate branch gets nothing, unlike Half and plain', () => {
    const rand = seededRandom(41);
    const as = normals(rand, N);
    const ups = normals(rand, N);
    const dys = normals(rand, N);
    const [a, up, dy] = [tf.tensor(as, SHAPE), tf.tensor(ups, SHAPE), tf.tensor(dys, SHAPE)];
    const [da, dup] = vjp(rule, [a, up], dy);
    expect(Array.from(da!)).toEqual(new Array(N).fill(0));
    expectAllClose(
      dup!,
      dys.map((d, i) => d * as[i]!),
      1e-6,
      1e-7,
      'dup',
    );
    const [halfDa] = vjp((x, y) => halfRule.slots.gateProduct!(x, y), [a, up], dy);
    expect(Math.max(...Array.from(halfDa!, Math.abs)), 'the Half-rule does reach the gate').toBeGreaterThan(
      1e-2,
    );
    tf.dispose([a, up, dy]);
  });

  // A tiny bias-free gated MLP, out = (act(x·Wg) ⊙ x·Wu)·Wd, f = Σ out·c, with the Identity-rule on act and the
  // CP gate rule on the product: the rule's input gradient by hand in float64, and Σ x·dx = f exactly.
  for (const kind of ['silu', 'gelu_tanh'] as const) {
    it(`gated MLP (${kind}) with zero biases: dx equals the float64 chain, and Σ x·dx = f`, () => {
      const [n, d, h] = [3, 4, 5];
      const rand = seededRandom(42);
      const xs = normals(rand, n * d);
      const wg = normals(rand, d * h, 0.7);
      const wu = normals(rand, d * h, 0.7);
      const wd = normals(rand, h * d, 0.7);
      const cs = normals(rand, n * d);
      const x = tf.tensor2d(xs, [n, d]);
      const [tWg, tWu, tWd, c] = [
        tf.tensor2d(wg, [d, h]),
        tf.tensor2d(wu, [d, h]),
        tf.tensor2d(wd, [h, d]),
        tf.tensor2d(cs, [n, d]),
      ];
      const mlp = (t: tf.Tensor) => {
        const gate = tf.matMul(t as tf.Tensor2D, tWg);
        const up = tf.matMul(t as tf.Tensor2D, tWu);
        const hidden = cpGateRule.slots.gateProduct!(identityRule.slots.activation!(kind, gate), up);
        return tf.sum(tf.mul(tf.matMul(hidden as tf.Tensor2D, tWd), c));
      };
      const { value, grad } = tf.tidy(() => tf.valueAndGrad(mlp)(x));
      const dx = new Float32Array(grad.dataSync());
      const f = value.dataSync()[0]!;
      // Reference: g_h = c·Wdᵀ, dup = g_h ⊙ act(gate), dgate = 0, dx = dup·Wuᵀ.
      const gate = matmul64(xs, wg, n, d, h);
      const gh = matmul64(cs, transpose64(wd, h, d), n, d, h);
      const dup = gh.map((g, i) => g * act64(kind, gate[i]!));
      const ref = matmul64(dup, transpose64(wu, d, h), n, h, d);
      expectAllClose(dx, ref, 1e-4, 1e-6, 'dx');
      // Conservation: the Identity-rule's stabiliser never enters (the gate gets no gradient), so Σ x·dx = f.
      expect(Math.abs(dot64(xs, dx) - f), `Σ x·dx = ${dot64(xs, dx)}, f = ${f}`).toBeLessThanOrEqual(
        1e-5 * (1 + Math.abs(f)),
      );
      tf.dispose([x, tWg, tWu, tWd, c, value, grad]);
    });
  }

  it('is the relp-cp preset’s gate rule, with LN and Identity', () => {
    expect(RELP_CP.rules.map((r) => r.name)).toEqual(['ln', 'identity', 'cp-gate', 'plain-softmax']);
    expect(PRESET_NAMES).toContain('relp-cp');
    expect(presetByName('relp-cp')).toBe(RELP_CP);
  });
});

describeEachBackend('LN-rule on a subset of norms', () => {
  const EPS = 1e-5;
  const [rows, d] = [3, 6];

  /**
   * x → rmsNorm 'ln1' → ·W, + x (a residual, so the chain is not scale-invariant in x) → rmsNorm 'final' → Σ ·c,
   * through a run context with these rules.
   */
  function chain(rules: RuleSet | undefined, x: tf.Tensor, w: tf.Tensor2D, c: tf.Tensor) {
    const ctx = new RunContext(rules ? { rules } : {});
    const n1 = rmsNorm(ctx, x, undefined, EPS, undefined, 0, 'ln1');
    const z = tf.add(tf.matMul(n1 as tf.Tensor2D, w), x);
    const n2 = rmsNorm(ctx, z, undefined, EPS, undefined, 0, 'final');
    return tf.sum(tf.mul(n2, c));
  }

  /** The input gradient of a weightless RMSNorm, plain (dx = dy/s − x·Σ(dy·x)/(d·s³)) or under the LN-rule (dy/s). */
  function rmsBack(x: number[], dy: number[], ln: boolean): { y: number[]; dx: number[] } {
    const y: number[] = [];
    const dx: number[] = [];
    for (let r = 0; r < rows; r++) {
      const xr = x.slice(r * d, r * d + d);
      const dyr = dy.slice(r * d, r * d + d);
      const s = Math.sqrt(xr.reduce((a, v) => a + v * v, 0) / d + EPS);
      const dot = xr.reduce((a, v, j) => a + v * dyr[j]!, 0);
      for (let j = 0; j < d; j++) {
        y.push(xr[j]! / s);
        dx.push(dyr[j]! / s - (ln ? 0 : (xr[j]! * dot) / (d * s * s * s)));
      }
    }
    return { y, dx };
  }

  /** The chain's input gradient in float64 with the LN-rule on the named norms only. */
  function reference(xs: number[], ws: number[], cs: number[], lnOn: readonly NormName[]): number[] {
    const n1 = rmsBack(xs, new Array(rows * d).fill(0), false).y;
    const z = matmul64(n1, ws, rows, d, d).map((v, i) => v + xs[i]!);
    const dz = rmsBack(z, cs, lnOn.includes('final')).dx;
    const dn1 = matmul64(dz, transpose64(ws, d, d), rows, d, d);
    return rmsBack(xs, dn1, lnOn.includes('ln1')).dx.map((v, i) => v + dz[i]!);
  }

  const cases: { rules: RuleSet | undefined; lnOn: NormName[]; what: string }[] = [
    { rules: undefined, lnOn: [], what: 'no rules' },
    {
      rules: { name: 'ln[ln1]', slots: lnRuleFor(['ln1']).slots, missingRuleFor: () => null },
      lnOn: ['ln1'],
      what: 'ln1 only',
    },
    {
      rules: { name: 'ln[final]', slots: lnRuleFor(['final']).slots, missingRuleFor: () => null },
      lnOn: ['final'],
      what: 'final only',
    },
    {
      rules: { name: 'ln', slots: lnRule.slots, missingRuleFor: () => null },
      lnOn: ['ln1', 'final'],
      what: 'every norm',
    },
  ];

  it('treats the named norms with the LN-rule and leaves the others plain (float64 chain)', () => {
    const rand = seededRandom(50);
    const xs = normals(rand, rows * d);
    const ws = normals(rand, d * d, 0.8);
    const cs = normals(rand, rows * d);
    const [x, w, c] = [tf.tensor2d(xs, [rows, d]), tf.tensor2d(ws, [d, d]), tf.tensor2d(cs, [rows, d])];
    const grads: Float32Array[] = [];
    const plainT = tf.tidy(() => chain(undefined, x, w, c));
    const plainOut = plainT.dataSync()[0]!;
    plainT.dispose();
    for (const k of cases) {
      const { value, grad } = tf.tidy(() =>
        tf.valueAndGrad((t: tf.Tensor) => chain(k.rules, t, w, c) as tf.Scalar)(x),
      );
      expect(value.dataSync()[0], `${k.what}: the forward is unchanged`).toBe(plainOut);
      const g = new Float32Array(grad.dataSync());
      expectAllClose(g, reference(xs, ws, cs, k.lnOn), 1e-4, 1e-6, k.what);
      grads.push(g);
      tf.dispose([value, grad]);
    }
    // The four gradients differ pairwise: each norm's treatment is visible in the input gradient.
    for (let i = 0; i < grads.length; i++)
      for (let j = i + 1; j < grads.length; j++) {
        const diff = Math.max(...grads[i]!.map((v, m) => Math.abs(v - grads[j]![m]!)));
        expect(diff, `${cases[i]!.what} vs ${cases[j]!.what}`).toBeGreaterThan(1e-4);
      }
    tf.dispose([x, w, c]);
  });

  it('refuses a normalize call that does not say which norm it is (MISSING_RULE), and an empty subset', () => {
    const x = tf.ones([2, 4]);
    const slots = lnRuleFor(['ln1']).slots as SlotFunctions;
    expect(() => slots.normalize(x, x)).toThrow(/did not say which norm/);
    try {
      slots.normScale(x, 1e-5);
    } catch (e) {
      expect((e as { code?: string }).code).toBe('MISSING_RULE');
    }
    expect(() => lnRuleFor([])).toThrow(/at least one norm/);
    x.dispose();
  });
});

describeEachBackend('AttnLRP uniform rules on the attention products', () => {
  const [n, tq, tk, dh] = [2, 3, 4, 5];
  const scoresRule = (q: tf.Tensor, k: tf.Tensor) =>
    uniformScoresRule.slots.attentionScores!(q as tf.Tensor3D, k as tf.Tensor3D);
  const valuesRule = (p: tf.Tensor, v: tf.Tensor) =>
    uniformValuesRule.slots.attentionValues!(p as tf.Tensor3D, v as tf.Tensor3D);
  const plainScores = (q: tf.Tensor, k: tf.Tensor) =>
    plainSlots.attentionScores(q as tf.Tensor3D, k as tf.Tensor3D);
  const plainValues = (p: tf.Tensor, v: tf.Tensor) =>
    plainSlots.attentionValues(p as tf.Tensor3D, v as tf.Tensor3D);

  /** Row-major batched [n,a,b]·[n,b,c] (transposing the second factor's last two axes when `tb`). */
  function bmm64(a: number[], b: number[], dims: [number, number, number], tb = false): number[] {
    const [ra, inner, cb] = dims;
    const out: number[] = [];
    for (let m = 0; m < n; m++)
      for (let i = 0; i < ra; i++)
        for (let j = 0; j < cb; j++) {
          let s = 0;
          for (let p = 0; p < inner; p++) {
            const bv = tb ? b[m * cb * inner + j * inner + p]! : b[m * inner * cb + p * cb + j]!;
            s += a[m * ra * inner + i * inner + p]! * bv;
          }
          out.push(s);
        }
    return out;
  }

  function transposeLast(a: number[], rows: number, cols: number): number[] {
    const out: number[] = [];
    for (let m = 0; m < n; m++)
      out.push(...transpose64(a.slice(m * rows * cols, (m + 1) * rows * cols), rows, cols));
    return out;
  }

  it('forwards are bit-identical to the plain products; the gradients are half the product rule (float64)', () => {
    const rand = seededRandom(60);
    const qs = normals(rand, n * tq * dh);
    const ks = normals(rand, n * tk * dh);
    const ps = normals(rand, n * tq * tk);
    const vs = normals(rand, n * tk * dh);
    const dS = normals(rand, n * tq * tk);
    const dZ = normals(rand, n * tq * dh);
    const [q, k, p, v] = [
      tf.tensor3d(qs, [n, tq, dh]),
      tf.tensor3d(ks, [n, tk, dh]),
      tf.tensor3d(ps, [n, tq, tk]),
      tf.tensor3d(vs, [n, tk, dh]),
    ];
    const [dyS, dyZ] = [tf.tensor3d(dS, [n, tq, tk]), tf.tensor3d(dZ, [n, tq, dh])];
    expectBitIdentical(forward(scoresRule, [q, k]), forward(plainScores, [q, k]), 'q·kᵀ');
    expectBitIdentical(forward(valuesRule, [p, v]), forward(plainValues, [p, v]), 'pattern·v');
    const [dq, dk] = vjp(scoresRule, [q, k], dyS);
    // dq = ½·dS·k, dk = ½·dSᵀ·q
    expectAllClose(
      dq!,
      bmm64(dS, ks, [tq, tk, dh]).map((x) => x / 2),
      1e-5,
      1e-6,
      'dq',
    );
    expectAllClose(
      dk!,
      bmm64(transposeLast(dS, tq, tk), qs, [tk, tq, dh]).map((x) => x / 2),
      1e-5,
      1e-6,
      'dk',
    );
    const [dp, dv] = vjp(valuesRule, [p, v], dyZ);
    // dpattern = ½·dZ·vᵀ, dv = ½·patternᵀ·dZ
    expectAllClose(
      dp!,
      bmm64(dZ, vs, [tq, dh, tk], true).map((x) => x / 2),
      1e-5,
      1e-6,
      'dpattern',
    );
    expectAllClose(
      dv!,
      bmm64(transposeLast(ps, tq, tk), dZ, [tk, tq, dh]).map((x) => x / 2),
      1e-5,
      1e-6,
      'dv',
    );
    tf.dispose([q, k, p, v, dyS, dyZ]);
  });

  it('through softmax(q·kᵀ)·v with the plain softmax: v gets ½ and q, k get ¼ of the plain gradient', () => {
    const rand = seededRandom(61);
    const q = tf.tensor3d(normals(rand, n * tq * dh), [n, tq, dh]);
    const k = tf.tensor3d(normals(rand, n * tk * dh), [n, tk, dh]);
    const v = tf.tensor3d(normals(rand, n * tk * dh), [n, tk, dh]);
    const c = tf.tensor3d(normals(rand, n * tq * dh), [n, tq, dh]);
    const attention = (rules: boolean) => (a: tf.Tensor, b: tf.Tensor, w: tf.Tensor) => {
      const s = rules ? scoresRule(a, b) : plainScores(a, b);
      const pattern = tf.softmax(s, -1);
      return tf.mul(rules ? valuesRule(pattern, w) : plainValues(pattern, w), c);
    };
    const ones = tf.onesLike(c);
    const ruled = vjp(attention(true), [q, k, v], ones);
    const plain = vjp(attention(false), [q, k, v], ones);
    const scale = [0.25, 0.25, 0.5];
    ruled.forEach((g, i) => {
      expectAllClose(
        g,
        Array.from(plain[i]!, (x) => x * scale[i]!),
        1e-6,
        1e-9,
        ['q', 'k', 'v'][i],
      );
      expect(Math.max(...Array.from(plain[i]!, Math.abs))).toBeGreaterThan(1e-3);
    });
    expect(ATTNLRP.rules.map((r) => r.name)).toEqual([
      'ln',
      'identity',
      'half',
      'plain-softmax',
      'uniform-qk',
      'uniform-pv',
    ]);
    expect(presetByName('attnlrp')).toBe(ATTNLRP);
    tf.dispose([q, k, v, c, ones]);
  });
});
