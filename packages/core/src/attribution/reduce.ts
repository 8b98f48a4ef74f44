import * as tf from '@tensorflow/tfjs-core';
import { unitAxis } from '../sites.js';
import type { ScoredKey } from './plan.js';

/** A site's scores at one layer: [position] or [position][head|neuron]. */
export type LayerScores = number[] | number[][];

/**
 * Reduces an elementwise product (e.g. (a_clean − a_corrupt)·∂m/∂a) to the key's granularity: summed over
 * batch and every axis but position (and the granularity's unit axis). Returns a tensor [T] or [T, units].
 * A readout-only site under a readout (the final norm's scale: one position per row, the row's readout position)
 * puts each row's sum at that row's readout position of a [T] row, as activation patching scores it.
 */
export function reduceToGranularity(
  product: tf.Tensor,
  k: ScoredKey,
  readout?: { readonly positions: readonly number[]; readonly seqLen: number },
): tf.Tensor {
  return tf.tidy(() => {
    if (k.def.readoutOnly && readout !== undefined) {
      const perRow = tf.sum(product, product.shape.map((_, i) => i).slice(1));
      const at = tf.oneHot(tf.tensor1d([...readout.positions], 'int32'), readout.seqLen);
      return tf.sum(tf.mul(tf.reshape(perRow, [-1, 1]), at), 0);
    }
    const position = k.def.axes.position;
    const keep = unitAxis(k.def, k.granularity);
    const sumAxes = product.shape.map((_, i) => i).filter((i) => i !== position && i !== keep);
    const reduced = sumAxes.length > 0 ? tf.sum(product, sumAxes) : product;
    // Remaining axes are in their original order; put position first.
    if (keep !== undefined && keep < position) return tf.transpose(reduced, [1, 0]);
    return reduced;
  });
}

/**
 * Host copy of a reduced tensor as nested arrays, with positions before `firstDiff` set to exactly 0. Read
 * asynchronously: WebGPU's synchronous reads go through a canvas that some adapters lose.
 */
export async function toLayerScores(reduced: tf.Tensor, firstDiff: number): Promise<LayerScores> {
  const data = await reduced.data();
  if (reduced.rank === 1) {
    return Array.from(data, (v, p) => (p < firstDiff ? 0 : v));
  }
  const [t, n] = reduced.shape as [number, number];
  const out: number[][] = [];
  for (let p = 0; p < t; p++) {
    const row = new Array<number>(n);
    for (let j = 0; j < n; j++) row[j] = p < firstDiff ? 0 : data[p * n + j]!;
    out.push(row);
  }
  return out;
}

/** Assembles per-layer scores into a [layer][…] grid, unscored layers filled with zeros of the same shape. */
export function assembleGrid(
  nLayers: number,
  perLayer: ReadonlyMap<number, LayerScores>,
): number[][] | number[][][] {
  const sample = perLayer.values().next().value as LayerScores | undefined;
  const zeros = (): LayerScores =>
    sample === undefined
      ? []
      : Array.isArray(sample[0])
        ? (sample as number[][]).map((r) => r.map(() => 0))
        : (sample as number[]).map(() => 0);
  const grid: LayerScores[] = [];
  for (let l = 0; l < nLayers; l++) grid.push(perLayer.get(l) ?? zeros());
  return grid as number[][] | number[][][];
}

/** Divides every score by `by` (the normalised metric is affine in the raw one). */
export function scaleGrid<T extends number[][] | number[][][]>(grid: T, by: number): T {
  const walk = (x: unknown): unknown => (Array.isArray(x) ? x.map(walk) : (x as number) / by);
  return walk(grid) as T;
}
