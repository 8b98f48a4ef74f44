import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addExact, exactValue, mergeExact } from '../src/exact-sum.js';

const sumOf = (xs: readonly number[]): number => {
  const p: number[] = [];
  for (const x of xs) addExact(p, x);
  return exactValue(p);
};

/** The exact sum of doubles as a rational with a power-of-two denominator, rounded to the nearest double. */
function referenceSum(xs: readonly number[]): number {
  const SHIFT = 1074n; // every finite double is an integer multiple of 2^-1074
  const buf = new DataView(new ArrayBuffer(8));
  let total = 0n;
  for (const x of xs) {
    buf.setFloat64(0, x);
    const bits = buf.getBigUint64(0);
    const sign = bits >> 63n ? -1n : 1n;
    const exp = Number((bits >> 52n) & 0x7ffn);
    const frac = bits & ((1n << 52n) - 1n);
    const mant = exp === 0 ? frac : frac | (1n << 52n);
    const e = BigInt(Math.max(exp, 1) - 1075) + SHIFT; // value = mant · 2^(e − SHIFT)
    total += sign * (mant << e);
  }
  // Round total · 2^-1074 to a double: Number() of a BigInt rounds to nearest (ties to even); scale down exactly
  // by keeping 64 significant bits and a sticky bit.
  const neg = total < 0n;
  let mag = neg ? -total : total;
  let scale = -1074;
  const bitsOf = (v: bigint) => v.toString(2).length;
  while (bitsOf(mag) > 64 && scale < 1024) {
    const sticky = mag & 1n;
    mag = (mag >> 1n) | sticky;
    scale++;
  }
  let v = Number(mag);
  // multiply by 2^scale in steps that stay exact
  while (scale > 0) {
    const k = Math.min(scale, 1000);
    v *= 2 ** k;
    scale -= k;
  }
  while (scale < 0) {
    const k = Math.min(-scale, 1000);
    v /= 2 ** k;
    scale += k;
  }
  return neg ? -v : v;
}

/** Sums compare as numbers: an exact zero may be −0 (IEEE: a sum of −0s) or +0, which JSON writes alike. */
const same = (x: number) => x + 0;

/** Doubles of every size, with large ones that cancel (where a float64 running sum loses the small ones). */
const doubles = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e300, max: 1e300 }),
  fc.double({ noNaN: true, min: -1, max: 1 }),
  fc.constantFrom(1e16, -1e16, 2 ** 60, -(2 ** 60), 3e-20),
);

describe('exact sums', () => {
  it('cancellation that a float64 running sum loses', () => {
    expect(1e16 + 1 - 1e16).toBe(0);
    expect(sumOf([1e16, 1, -1e16])).toBe(1);
    expect(sumOf([0.1, 0.2, 0.3, -0.6])).toBe(referenceSum([0.1, 0.2, 0.3, -0.6]));
  });

  it('equals the exactly rounded sum, whatever the order and grouping', () => {
    fc.assert(
      fc.property(fc.array(doubles, { maxLength: 40 }), fc.integer({ min: 0, max: 40 }), (xs, cut) => {
        const want = referenceSum(xs);
        expect(same(sumOf(xs))).toBe(want);
        expect(same(sumOf([...xs].reverse()))).toBe(want);
        // two halves summed apart, then merged (shards)
        const a: number[] = [];
        const b: number[] = [];
        for (const [i, x] of xs.entries()) addExact(i < cut ? a : b, x);
        mergeExact(b, a);
        expect(same(exactValue(b))).toBe(want);
      }),
      { numRuns: 300 },
    );
  });

  it('values of very different sizes (float32 scores times pair counts)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(fc.float({ noNaN: true, noDefaultInfinity: true }), fc.integer({ min: 1, max: 64 })),
          {
            maxLength: 60,
          },
        ),
        (xs) => {
          const terms = xs.map(([s, n]) => s * n);
          const shuffled = [...terms].sort((x, y) => Math.abs(x) - Math.abs(y));
          expect(same(sumOf(shuffled))).toBe(referenceSum(terms));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('NaN and infinities absorb the rest, in any order', () => {
    expect(sumOf([1, Number.POSITIVE_INFINITY, 2])).toBe(Number.POSITIVE_INFINITY);
    expect(sumOf([Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1])).toBeNaN();
    expect(sumOf([1, Number.NaN])).toBeNaN();
    expect(sumOf([1.7e308, 1.7e308])).toBe(Number.POSITIVE_INFINITY);
    expect(sumOf([])).toBe(0);
    expect(same(sumOf([-0, -0]))).toBe(0);
  });
});
