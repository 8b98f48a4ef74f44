import { badInput } from './errors.js';

/** A grid flattened in row-major order ([layer][position] → one list). */
export function flatten(grid: readonly (readonly number[] | readonly (readonly number[])[])[]): number[] {
  const out: number[] = [];
  const walk = (x: unknown): void => {
    if (Array.isArray(x)) for (const y of x) walk(y);
    else out.push(x as number);
  };
  walk(grid);
  return out;
}

function checkPaired(a: readonly number[], b: readonly number[]): void {
  if (a.length !== b.length) throw badInput(`grids differ in size: ${a.length} vs ${b.length} cells`);
  if (a.length < 2) throw badInput('a correlation needs at least two cells');
}

/** Pearson correlation; NaN when either side is constant. */
export function pearson(a: readonly number[], b: readonly number[]): number {
  checkPaired(a, b);
  const n = a.length;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i]!;
    mb += b[i]!;
  }
  ma /= n;
  mb /= n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    const da = a[i]! - ma;
    const db = b[i]! - mb;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  return saa === 0 || sbb === 0 ? Number.NaN : sab / Math.sqrt(saa * sbb);
}

/** Ranks starting at 1, ties sharing their average rank (as scipy.stats.rankdata). */
export function ranks(a: readonly number[]): number[] {
  const idx = a.map((_, i) => i).sort((i, j) => a[i]! - a[j]!);
  const r = new Array<number>(a.length);
  let i = 0;
  while (i < idx.length) {
    let j = i;
    while (j + 1 < idx.length && a[idx[j + 1]!] === a[idx[i]!]) j++;
    const avg = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) r[idx[k]!] = avg;
    i = j + 1;
  }
  return r;
}

/**
 * Values within float noise of zero, relative to the largest |value| of the same grid: |x| ≤ ZERO_TIE_TOLERANCE ·
 * max|x| (docs/method.md §13). About 8 float32 ulps at the grid's largest value: a cell that one backend gives as
 * exactly 0 and another as 1e-6 of the maximum is the same zero, not a rank of its own.
 */
export const ZERO_TIE_TOLERANCE = 1e-6;

/** The values with every one within float noise of zero (ZERO_TIE_TOLERANCE · max|x|) set to exactly 0. */
export function snapNoiseToZero(a: readonly number[], tolerance = ZERO_TIE_TOLERANCE): number[] {
  let maxAbs = 0;
  for (const x of a) if (Math.abs(x) > maxAbs) maxAbs = Math.abs(x);
  const eps = tolerance * maxAbs;
  return a.map((x) => (Math.abs(x) <= eps ? 0 : x));
}

/** Spearman correlation: Pearson of the ranks, values within float noise of zero tied at 0 (snapNoiseToZero). */
export function spearman(a: readonly number[], b: readonly number[]): number {
  checkPaired(a, b);
  return pearson(ranks(snapNoiseToZero(a)), ranks(snapNoiseToZero(b)));
}

/** Indices of the k largest |values| (ties broken by index; values within float noise of zero tie at 0). */
export function topKIndices(a: readonly number[], k: number): number[] {
  return snapNoiseToZero(a)
    .map((v, i) => [Math.abs(v), i] as const)
    .sort((x, y) => y[0] - x[0] || x[1] - y[1])
    .slice(0, k)
    .map(([, i]) => i);
}

/** |top-k(a) ∩ top-k(b)| / k by absolute value. */
export function topKAgreement(a: readonly number[], b: readonly number[], k: number): number {
  checkPaired(a, b);
  const kk = Math.min(k, a.length);
  const ta = new Set(topKIndices(a, kk));
  return topKIndices(b, kk).filter((i) => ta.has(i)).length / kk;
}

/**
 * Fraction of cells where the estimate has the sign of the reference, over the cells whose reference
 * magnitude exceeds `tolerance` × the largest reference magnitude (cells that are exactly or nearly zero in
 * the reference carry no sign). NaN when no cell qualifies.
 */
export function signAgreement(
  estimate: readonly number[],
  reference: readonly number[],
  tolerance = 1e-3,
): number {
  checkPaired(estimate, reference);
  const maxAbs = Math.max(...reference.map(Math.abs));
  let n = 0;
  let agree = 0;
  for (let i = 0; i < reference.length; i++) {
    const r = reference[i]!;
    if (Math.abs(r) <= tolerance * maxAbs) continue;
    n++;
    if (Math.sign(estimate[i]!) === Math.sign(r)) agree++;
  }
  return n === 0 ? Number.NaN : agree / n;
}

export interface Agreement {
  readonly pearson: number;
  readonly spearman: number;
  readonly topK: number;
  readonly k: number;
  readonly sign: number;
  readonly cells: number;
}

/** Every agreement statistic of an estimate grid against a reference grid (activation patching). */
export function compareGrids(
  estimate: Parameters<typeof flatten>[0],
  reference: Parameters<typeof flatten>[0],
  k = 10,
): Agreement {
  const a = flatten(estimate);
  const b = flatten(reference);
  return {
    pearson: pearson(a, b),
    spearman: spearman(a, b),
    topK: topKAgreement(a, b, k),
    k: Math.min(k, a.length),
    sign: signAgreement(a, b),
    cells: a.length,
  };
}
