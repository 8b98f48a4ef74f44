import {
  ErrorCodes,
  isRelpError,
  type LanguageModel,
  RelpError,
  RunContext,
  type SiteHook,
  type SiteKey,
} from '@relp/core';
import type * as tf from '@tensorflow/tfjs-core';

/**
 * Activations at several sites from one forward pass that stops after the deepest of them: a hook on the deepest
 * site aborts the run at the end of its block (ctx.checkAborted), so later blocks and the unembedding are skipped.
 * Returns [B, T, d] tensors the caller disposes.
 */
export function collectActivations(
  model: LanguageModel,
  tokens: tf.Tensor2D,
  keys: readonly SiteKey[],
): Map<SiteKey, tf.Tensor> {
  const deepest = Math.max(...keys.map((k) => Number(k.split('.')[1])));
  const stop = new AbortController();
  const deepestKeys = keys.filter((k) => Number(k.split('.')[1]) === deepest);
  const hook: SiteHook = (x) => {
    if (deepest < model.dims.nLayers - 1) stop.abort();
    return x;
  };
  const ctx = new RunContext({
    cache: keys,
    hooks: new Map(deepestKeys.map((k) => [k, [hook]] as const)),
    signal: stop.signal,
  });
  try {
    try {
      const logits = model.forward({ tokens }, ctx, { readout: new Array(tokens.shape[0]).fill(0) });
      logits.dispose();
    } catch (e) {
      if (!(isRelpError(e, ErrorCodes.Aborted) && stop.signal.aborted)) throw e;
    }
    const cache = ctx.takeCache();
    for (const k of keys) {
      if (!cache.has(k)) {
        for (const t of cache.values()) t.dispose();
        throw new RelpError(ErrorCodes.UnknownSite, `site ${k} was requested but the model never reached it`);
      }
    }
    return cache;
  } finally {
    ctx.dispose();
  }
}
