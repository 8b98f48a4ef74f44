/**
 * Slow literal references for the rules, in plain JavaScript (float64) loops over the arrays, written from
 * docs/method.md §10 and not from the code under test.
 */
import type { ActivationKind } from '@relp/core';
import { expect } from 'vitest';

/** erf(x) from Numerical Recipes' erfc (Chebyshev fit, fractional error below 1.2e-7 everywhere). */
export function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const ans =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t *
                  (0.09678418 +
                    t *
                      (-0.18628806 +
                        t *
                          (0.27886807 +
                            t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? 1 - ans : ans - 1;
}

export function act64(kind: ActivationKind, x: number): number {
  switch (kind) {
    case 'gelu_new':
    case 'gelu_tanh':
      return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
    case 'gelu':
      return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case 'silu':
      return x / (1 + Math.exp(-x));
    case 'relu':
      return Math.max(0, x);
  }
}

/** x̃ = x + (sign(x) + [x = 0])·1e-6, literally. */
export function stabilized64(x: number): number {
  const sign = x > 0 ? 1 : x < 0 ? -1 : 0;
  const isZero = x === 0 ? 1 : 0;
  return x + (sign + isZero) * 1e-6;
}

/** Identity-rule: dx = dy · act(x)/x̃. */
export function identityGradRef(kind: ActivationKind, x: ArrayLike<number>, dy: ArrayLike<number>): number[] {
  const out: number[] = [];
  for (let i = 0; i < x.length; i++) out.push((dy[i]! * act64(kind, x[i]!)) / stabilized64(x[i]!));
  return out;
}

/** LN-rule: dxc = dy/scale (scale one value per row of length d), dscale = 0. */
export function lnGradRef(
  dy: ArrayLike<number>,
  scale: ArrayLike<number>,
  d: number,
): { dxc: number[]; dscale: number[] } {
  const dxc: number[] = [];
  for (let r = 0; r < scale.length; r++) {
    for (let j = 0; j < d; j++) dxc.push(dy[r * d + j]! / scale[r]!);
  }
  const dscale: number[] = [];
  for (let r = 0; r < scale.length; r++) dscale.push(0);
  return { dxc, dscale };
}

/** Half-rule for equal shapes: da = ½·dy·up, dup = ½·dy·a. */
export function halfGradRef(
  a: ArrayLike<number>,
  up: ArrayLike<number>,
  dy: ArrayLike<number>,
): { da: number[]; dup: number[] } {
  const da: number[] = [];
  const dup: number[] = [];
  for (let i = 0; i < dy.length; i++) {
    da.push(0.5 * dy[i]! * up[i]!);
    dup.push(0.5 * dy[i]! * a[i]!);
  }
  return { da, dup };
}

export function dot64(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/** |actual − expected| ≤ atol + rtol·|expected|, elementwise, with the worst element in the message. */
export function expectAllClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  rtol: number,
  atol: number,
  what = '',
): void {
  expect(actual.length, `${what} length`).toBe(expected.length);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const excess = Math.abs(actual[i]! - expected[i]!) - (atol + rtol * Math.abs(expected[i]!));
    if (!(excess <= 0) && (worst < 0 || !(excess <= worstExcess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  expect(worst, `${what}: element ${worst} is ${actual[worst]} but the reference is ${expected[worst]}`).toBe(
    -1,
  );
}

/** Standard normal samples from a uniform PRNG (Box–Muller). */
export function normals(rand: () => number, n: number, scale = 1): number[] {
  const out: number[] = [];
  while (out.length < n) {
    const u = Math.max(rand(), 1e-12);
    const v = rand();
    const r = Math.sqrt(-2 * Math.log(u));
    out.push(r * Math.cos(2 * Math.PI * v) * scale, r * Math.sin(2 * Math.PI * v) * scale);
  }
  return out.slice(0, n);
}
