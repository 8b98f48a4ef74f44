/**
 * Exact sums of float64 numbers, so that a data set's scores do not depend on how its pairs were split into
 * batches, shards or resumed runs. A sum is held as its partials: float64 numbers of non-overlapping bits whose
 * real sum is exactly the sum of everything added (Shewchuk's algorithm, as Python's math.fsum). Adding partials
 * of another sum is exact too, so sums merge in any order and grouping, and `exactValue` rounds the one real
 * number they hold correctly to float64: the same bits whatever the order.
 */

/** Adds `x` to the partials `p` in place, exactly. A non-finite number makes the sum non-finite (one entry). */
export function addExact(p: number[], x: number): void {
  const special = p.length === 1 && !Number.isFinite(p[0]!);
  if (special || !Number.isFinite(x)) {
    const total = (special ? p[0]! : 0) + x; // NaN or ±Infinity absorb whatever else is added
    p.length = 0;
    p.push(total);
    return;
  }
  let i = 0;
  for (let j = 0; j < p.length; j++) {
    let y = p[j]!;
    if (Math.abs(x) < Math.abs(y)) [x, y] = [y, x];
    const hi = x + y;
    const lo = y - (hi - x);
    if (lo !== 0) p[i++] = lo;
    x = hi;
  }
  p.length = i;
  p.push(x);
  if (!Number.isFinite(x)) {
    // an overflow of finite numbers: the sum is ±Infinity
    p.length = 0;
    p.push(x);
  }
}

/** The sum held by partials `p`, correctly rounded to float64 (ties to even). */
export function exactValue(p: readonly number[]): number {
  let n = p.length;
  if (n === 0) return 0;
  n--;
  let hi = p[n]!;
  let lo = 0;
  while (n > 0) {
    const x = hi;
    n--;
    const y = p[n]!;
    hi = x + y;
    const yr = hi - x;
    lo = y - yr;
    if (lo !== 0) break;
  }
  // Round half to even: when the rest lies exactly halfway, the partials below say which way.
  if (n > 0 && ((lo < 0 && p[n - 1]! < 0) || (lo > 0 && p[n - 1]! > 0))) {
    const y = lo * 2;
    const x = hi + y;
    const yr = x - hi;
    if (y === yr) hi = x;
  }
  return hi;
}

/** Adds every partial of `from` to `into`: `into` then holds the exact sum of both. */
export function mergeExact(into: number[], from: readonly number[]): void {
  for (const x of from) addExact(into, x);
}
