import { badInput, type LanguageModel, type Progress, type SiteKey } from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';
import type { SparseAutoencoder } from './sae.js';
import { checkSaes, SaeSplice } from './splice.js';

/** Where a feature fired: window index, position in it, activation. */
export interface TopActivation {
  readonly window: number;
  readonly position: number;
  readonly activation: number;
}

export interface TopContextsOptions {
  /** Features to track per SAE site (default: every feature). */
  readonly features?: ReadonlyMap<SiteKey, readonly number[]>;
  /** Contexts kept per feature (default 5). */
  readonly topN?: number;
  /** Windows per forward pass (default 8). */
  readonly batchSize?: number;
  /** Skip the first positions of every window (e.g. 1 for a BOS token, whose activations are outliers). */
  readonly skipPositions?: number;
  readonly onProgress?: (p: Progress) => void;
  readonly signal?: AbortSignal;
}

/**
 * Runs the model over token windows (all the same length), encodes at every SAE site, and keeps per feature the
 * top-n (window, position, activation) with activation > 0, largest first. A feature keeps at most one entry per
 * window (its largest there), so its contexts are distinct texts.
 */
export async function topActivatingContexts(
  model: LanguageModel,
  saes: readonly SparseAutoencoder[],
  windows: readonly (readonly number[] | Int32Array)[],
  options: TopContextsOptions = {},
): Promise<Map<SiteKey, Map<number, TopActivation[]>>> {
  if (windows.length === 0) throw badInput('no text windows to find top-activating contexts in');
  const T = windows[0]!.length;
  if (windows.some((w) => w.length !== T)) throw badInput('text windows must all have the same length');
  const bySite = checkSaes(model, saes);
  const topN = options.topN ?? 5;
  const bs = options.batchSize ?? 8;
  const skip = options.skipPositions ?? 0;
  const tracked = new Map<SiteKey, number[]>();
  for (const [key, sae] of bySite) {
    const f = options.features?.get(key) ?? Array.from({ length: sae.dSae }, (_, i) => i);
    if (f.length > 0) tracked.set(key, [...f]);
  }
  const out = new Map<SiteKey, Map<number, TopActivation[]>>();
  for (const [key, f] of tracked) out.set(key, new Map(f.map((i) => [i, []])));
  const keep = (list: TopActivation[], a: TopActivation) => {
    if (list.length === topN && a.activation <= list[list.length - 1]!.activation) return;
    list.push(a);
    list.sort((x, y) => y.activation - x.activation);
    if (list.length > topN) list.pop();
  };
  const splice = new SaeSplice(
    model,
    [...tracked.keys()].map((k) => bySite.get(k)!),
  );
  const featureKeys = new Map([...splice.sites].map(([k, s]) => [s.featuresKey, k]));
  for (let start = 0; start < windows.length; start += bs) {
    const chunk = windows.slice(start, start + bs);
    const tokens = tf.tensor2d(
      chunk.flatMap((w) => Array.from(w)),
      [chunk.length, T],
      'int32',
    );
    const ctx = splice.context({
      cache: featureKeys.keys(),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    try {
      // Only the sites matter: read the logits at one position to skip most of the unembedding.
      tf.tidy(() => {
        model.forward({ tokens }, ctx, { readout: chunk.map(() => 0) });
      });
      for (const [fk, features] of ctx.takeCache()) {
        const key = featureKeys.get(fk)!;
        const idx = tracked.get(key)!;
        const sel = tf.tidy(() => tf.gather(features, tf.tensor1d(idx, 'int32'), 2)); // [b,T,n]
        const data = await sel.data();
        tf.dispose([sel, features]);
        const lists = out.get(key)!;
        const n = idx.length;
        for (let b = 0; b < chunk.length; b++) {
          for (let j = 0; j < n; j++) {
            let best = 0;
            let at = -1;
            for (let t = skip; t < T; t++) {
              const v = data[(b * T + t) * n + j]!;
              if (v > best) {
                best = v;
                at = t;
              }
            }
            if (at >= 0) keep(lists.get(idx[j]!)!, { window: start + b, position: at, activation: best });
          }
        }
      }
    } finally {
      ctx.dispose();
      tokens.dispose();
    }
    options.onProgress?.({
      phase: 'top-activating contexts',
      done: Math.min(windows.length, start + bs),
      total: windows.length,
    });
  }
  return out;
}
