import * as tf from '@tensorflow/tfjs-core';
import { EDGE_SITES, Site, type SiteKey, siteKey } from '../sites.js';
import { downstreamRead, type EdgeGraph, upstreamWrite } from './graph.js';

/**
 * Edge scores as matrix products (docs/method.md §17): the upstream nodes' differences stacked on a node axis,
 * [B,T,n_up,d], against the downstream inputs' gradients stacked the same way, [B,T,n_down,d]; one product gives
 * every pair's Σ over batch, positions and hidden axis (or per position).
 */

/** The site keys every upstream node writes at: resid_pre.0, then head_out.l and mlp_out.l per layer. */
export function edgeUpstreamKeys(g: EdgeGraph): SiteKey[] {
  const keys: SiteKey[] = [siteKey(Site.ResidPre, 0)];
  for (let l = 0; l < g.nLayers; l++) keys.push(siteKey(EDGE_SITES.head_out, l), siteKey(Site.MlpOut, l));
  return keys;
}

/** The site keys every downstream node reads at: q/k/v_input.l and mlp_input.l per layer, resid_post.{L−1}. */
export function edgeDownstreamKeys(g: EdgeGraph): SiteKey[] {
  const keys = new Set<SiteKey>();
  g.downstream.forEach((_, v) => {
    keys.add(downstreamRead(g, v).key);
  });
  return [...keys];
}

/** A [B,T,d] or [B,T,n,d] site tensor as [B,T,n,d]. */
function asHeads(x: tf.Tensor): tf.Tensor4D {
  return (x.rank === 3 ? tf.expandDims(x, 2) : x) as tf.Tensor4D;
}

/**
 * The upstream nodes' activations [B,T,n_up,d], nodes in graph order, from tensors by site key (every upstream
 * key present).
 */
export function stackUpstream(g: EdgeGraph, byKey: ReadonlyMap<SiteKey, tf.Tensor>): tf.Tensor4D {
  return tf.tidy(
    () =>
      tf.concat(
        edgeUpstreamKeys(g).map((k) => asHeads(byKey.get(k)!)),
        2,
      ) as tf.Tensor4D,
  );
}

/**
 * The downstream inputs' gradients [B,T,n_down,d], nodes in graph order, from tensors by site key; a key that is
 * absent contributes zeros (a reader no change reaches).
 */
export function stackDownstream(
  g: EdgeGraph,
  byKey: ReadonlyMap<SiteKey, tf.Tensor>,
  shape: readonly [number, number, number],
): tf.Tensor4D {
  const [b, t, d] = shape;
  return tf.tidy(() => {
    const parts: tf.Tensor[] = [];
    for (const k of edgeDownstreamKeys(g)) {
      const x = byKey.get(k);
      const units = x === undefined ? unitsAt(g, k) : 0;
      parts.push(x === undefined ? tf.zeros([b, t, units, d]) : asHeads(x));
    }
    return tf.concat(parts, 2) as tf.Tensor4D;
  });
}

/** How many downstream nodes read at a key. */
function unitsAt(g: EdgeGraph, key: SiteKey): number {
  let n = 0;
  g.downstream.forEach((_, v) => {
    if (downstreamRead(g, v).key === key) n++;
  });
  return n;
}

/**
 * S[u, v] = Σ_{b, t ≥ from, i} A[b,t,u,i]·G[b,t,v,i] ('sum': [n_up, n_down]) or per position t
 * ('each': [T, n_up, n_down], positions before `from` exactly 0).
 */
export function scoreMatrix(a: tf.Tensor4D, gr: tf.Tensor4D, from: number, each: boolean): tf.Tensor {
  return tf.tidy(() => {
    const [b, t, n, d] = a.shape;
    const m = gr.shape[2];
    if (!each) {
      const span = t - from;
      if (span <= 0) return tf.zeros([n, m]);
      const cut = (x: tf.Tensor4D) => tf.slice(x, [0, from, 0, 0], [-1, span, -1, -1]);
      const rows = (x: tf.Tensor, k: number) => tf.reshape(tf.transpose(x, [2, 0, 1, 3]), [k, b * span * d]);
      return tf.matMul(rows(cut(a), n) as tf.Tensor2D, rows(cut(gr), m) as tf.Tensor2D, false, true);
    }
    const perPosition = (x: tf.Tensor4D, k: number) =>
      tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [t, k, b * d]) as tf.Tensor3D;
    const s = tf.matMul(perPosition(a, n), perPosition(gr, m), false, true);
    if (from <= 0) return s;
    const keep = tf.reshape(tf.tensor1d(Array.from({ length: t }, (_, p) => (p < from ? 0 : 1))), [t, 1, 1]);
    return tf.mul(s, keep);
  });
}

/** The upstream index range an upstream key's nodes occupy: [first, first + count). */
export function upstreamRange(g: EdgeGraph, key: SiteKey): { first: number; count: number } {
  let first = -1;
  let count = 0;
  g.upstream.forEach((_, u) => {
    if (upstreamWrite(g, u).key === key) {
      if (first < 0) first = u;
      count++;
    }
  });
  return { first, count };
}
