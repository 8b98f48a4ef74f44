import type { Rng } from './types.js';

/**
 * mulberry32: a small, fast, well-distributed seeded PRNG (same seed → same numbers on every platform). The one
 * seeded uniform stream of the library packages: task prompts, the SAE corpus shuffle and the benchmark workload
 * all draw from it.
 */
export function seededRng(seed: number): Rng {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[Math.floor(rng() * xs.length)]!;
}

/** k distinct elements, in random order. */
export function pickDistinct<T>(rng: Rng, xs: readonly T[], k: number, exclude: readonly T[] = []): T[] {
  const pool = xs.filter((x) => !exclude.includes(x));
  if (pool.length < k) throw new Error(`cannot pick ${k} distinct items from ${pool.length}`);
  const out: T[] = [];
  while (out.length < k) {
    const i = Math.floor(rng() * pool.length);
    out.push(pool.splice(i, 1)[0]!);
  }
  return out;
}
