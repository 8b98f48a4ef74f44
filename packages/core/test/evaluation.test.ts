import { describe, expect, it } from 'vitest';
import {
  compareGrids,
  snapNoiseToZero,
  spearman,
  topKAgreement,
  ZERO_TIE_TOLERANCE,
} from '../src/evaluation.js';

describe('rank statistics tie values within float noise of zero', () => {
  // A reference with many exact zeros (cells a patch cannot reach), and the same estimate as two backends give it:
  // exactly 0 on one, a few float32 ulps of the largest value on the other.
  const reference = [0, 0, 0, 0, 0, 0, 0.3, -0.2, 1.5, 0.8, 0, 0];
  const exact = [0, 0, 0, 0, 0, 0, 0.25, -0.1, 1.4, 0.9, 0, 0];
  const noisy = exact.map((x, i) => (x === 0 ? (i % 2 ? 1 : -1) * 1e-7 * 1.4 * (1 + i / 10) : x));

  it('gives the same Spearman for exact zeros and noise-scaled zeros', () => {
    expect(noisy).not.toEqual(exact);
    expect(spearman(noisy, reference)).toBe(spearman(exact, reference));
    const [n, e] = [compareGrids([noisy], [reference], 8), compareGrids([exact], [reference], 8)];
    expect([n.spearman, n.topK, n.sign]).toEqual([e.spearman, e.topK, e.sign]);
  });

  it('keeps values above the threshold as ranks of their own', () => {
    const above = exact.map((x, i) => (x === 0 ? i * 1e-4 : x));
    expect(spearman(above, reference)).not.toBe(spearman(exact, reference));
  });

  it('snaps relative to the largest |value|, to exactly 0', () => {
    expect(snapNoiseToZero([1000, 1e-4, -1e-3, 0.5])).toEqual([1000, 0, 0, 0.5]);
    expect(snapNoiseToZero([1e-9, -2e-15, 1e-16])).toEqual([1e-9, -2e-15, 0]);
    expect(Object.is(snapNoiseToZero([-0, 1])[0], 0)).toBe(true);
    expect(ZERO_TIE_TOLERANCE).toBe(1e-6);
  });

  it('breaks top-k ties among noise by index, as among exact zeros', () => {
    expect(topKAgreement(noisy, reference, 8)).toBe(topKAgreement(exact, reference, 8));
  });
});
