import * as tf from '@tensorflow/tfjs-core';
import type { RunContext } from './context.js';
import { ErrorCodes, RelpError } from './errors.js';
import { type SiteName, siteKeyExists } from './sites.js';
import type { NormName } from './slots.js';

/**
 * Small building blocks every model family shares, written once so each family calls the rule slots and the
 * sites the same way. All are functional (no chained tensor methods) and work on the cpu and wasm backends.
 */

/**
 * LayerNorm through the rule slots: xc = x − mean(x); scale = site(scaleSite, layer, sqrt(mean(xc²) + eps));
 * out = normalize(xc, scale)·γ + β (as torch.nn.LayerNorm, biased variance); without `scaleSite` the scale passes
 * through no site; `norm` names the instance for the normalize slot. `gamma`/`beta` are [d]; `beta`
 * may be omitted for bias-free norms.
 */
export function layerNorm(
  ctx: RunContext,
  x: tf.Tensor,
  gamma: tf.Tensor,
  beta: tf.Tensor | undefined,
  eps: number,
  scaleSite: SiteName | undefined,
  layer: number,
  norm?: NormName,
): tf.Tensor {
  const xc = tf.sub(x, tf.mean(x, -1, true));
  // No scale site for a norm over per-reader copies (edge runs' split inputs, docs/method.md §17).
  const s = ctx.normScale(xc, eps, norm);
  const scale = scaleSite === undefined ? s : ctx.site(scaleSite, layer, s);
  const y = tf.mul(ctx.normalize(xc, scale, norm), gamma);
  return beta === undefined ? y : tf.add(y, beta);
}

/**
 * Reduces x [B,T,...] to one position per row, [B,1,...], by an exact one-hot multiply and a sum over T
 * (not gather: its gradient needs UnsortedSegmentSum, which wasm lacks). Every row of the result has exactly
 * the bits of x at that position. `readout` is validated against B and T (BAD_INPUT).
 */
export function selectPositions(x: tf.Tensor, readout: readonly number[]): tf.Tensor {
  const [batch, seq] = x.shape as [number, number];
  checkReadout(readout, batch, seq);
  const onehot = new Float32Array(batch * seq);
  readout.forEach((p, b) => {
    onehot[b * seq + p] = 1;
  });
  const maskShape = [batch, seq, ...x.shape.slice(2).map(() => 1)];
  return tf.tidy(() => tf.sum(tf.mul(x, tf.tensor(onehot, maskShape)), 1, true));
}

/**
 * Readout positions of a run whose first position is the absolute position `offset` (a prefix run; 0
 * otherwise), validated (absolute, in [offset, offset+seq), one per row; BAD_INPUT) and made relative to the
 * run's rows.
 */
export function readoutRows(readout: readonly number[], batch: number, seq: number, offset = 0): number[] {
  if (offset === 0) {
    checkReadout(readout, batch, seq);
    return [...readout];
  }
  if (readout.length !== batch) {
    throw new RelpError(ErrorCodes.BadInput, `readout has ${readout.length} positions for ${batch} rows`);
  }
  return readout.map((p) => {
    if (!Number.isInteger(p) || p < offset || p >= offset + seq) {
      throw new RelpError(
        ErrorCodes.BadInput,
        `readout position ${p} outside the prefix run's positions [${offset}, ${offset + seq})`,
      );
    }
    return p - offset;
  });
}

export function checkReadout(readout: readonly number[], batch: number, seq: number): void {
  if (readout.length !== batch) {
    throw new RelpError(ErrorCodes.BadInput, `readout has ${readout.length} positions for ${batch} rows`);
  }
  for (const p of readout) {
    if (!Number.isInteger(p) || p < 0 || p >= seq) {
      throw new RelpError(ErrorCodes.BadInput, `readout position ${p} outside [0, ${seq})`);
    }
  }
}

/** Value added to masked attention scores (finite, so no inf − inf can appear; softmax gives exactly 0). */
export const MASKED_SCORE = -1e9;

/** Additive causal mask [T,T]: 0 where key ≤ query, MASKED_SCORE above the diagonal. */
export function causalMaskBias(seq: number): tf.Tensor2D {
  const m = new Float32Array(seq * seq);
  for (let i = 0; i < seq; i++) for (let j = i + 1; j < seq; j++) m[i * seq + j] = MASKED_SCORE;
  return tf.tensor2d(m, [seq, seq]);
}

/**
 * Host-side check of token ids before a run: int32 [B,T] with 1 ≤ T ≤ contextLength and ids in [0, vocab).
 * Raises BAD_TOKENS (reads the ids with dataSync: token tensors are small).
 */
export function checkTokens(tokens: tf.Tensor, vocabSize: number, contextLength: number): void {
  if (!(tokens instanceof tf.Tensor) || tokens.rank !== 2) {
    throw new RelpError(
      ErrorCodes.BadTokens,
      `tokens must be a tensor [batch, seq], got shape [${tokens?.shape}]`,
    );
  }
  if (tokens.dtype !== 'int32') {
    throw new RelpError(ErrorCodes.BadTokens, `tokens must be int32, got ${tokens.dtype}`);
  }
  const seq = tokens.shape[1]!;
  if (seq < 1 || tokens.shape[0]! < 1) {
    throw new RelpError(ErrorCodes.BadTokens, `empty token batch [${tokens.shape}]`);
  }
  if (seq > contextLength) {
    throw new RelpError(ErrorCodes.BadTokens, `${seq} tokens exceed the context length ${contextLength}`, {
      details: { seq, contextLength },
    });
  }
  const ids = tokens.dataSync();
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (id < 0 || id >= vocabSize) {
      throw new RelpError(ErrorCodes.BadTokens, `token id ${id} outside the vocabulary [0, ${vocabSize})`, {
        details: { id, index: i, vocabSize },
      });
    }
  }
}

/**
 * Raises UNKNOWN_SITE for any site the context asks for that the model does not have (a name missing from
 * `sites`, e.g. resid_mid of a parallel-residual model, or a layer out of range: the table in sites.ts says
 * how many layers each site has). Run-time sites the context declares (`ctx.extraSites`, e.g. an SAE's
 * features) are checked against their own definitions. Sites a run merely skips (a `{resid, layer}` start)
 * are the caller's to check with `ctx.assertAllVisited()`.
 */
export function checkRequestedSites(ctx: RunContext, sites: readonly SiteName[], nLayers: number): void {
  for (const key of ctx.requestedKeys()) {
    if (!siteKeyExists(key, sites, { nLayers }, ctx.extraSites)) {
      throw new RelpError(ErrorCodes.UnknownSite, `this model has no site ${key}`, {
        details: { site: key },
      });
    }
  }
}
