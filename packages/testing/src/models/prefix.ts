import {
  attribute,
  isRelpError,
  type KvPrefix,
  type LanguageModel,
  makePairBatch,
  parseSiteKey,
  RunContext,
  Site,
  type SiteKey,
  type SiteRequest,
  siteKey,
  siteLayers,
} from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';
import { maxAbsDiff } from '../index.js';

/**
 * A prefix run (the residual at positions ≥ offset entering block `start`, plus the full run's cached keys and
 * values of the earlier positions) against a full run of the same tokens: logits, every site from `start` on
 * and the gradient with respect to the residual must agree at positions ≥ offset within `rel` of each
 * tensor's largest magnitude. Not bit-identical: the matmuls have other shapes (fewer rows, other key counts),
 * so their summation order may differ.
 */
export function expectPrefixRunMatchesFullRun(
  model: LanguageModel,
  tokenIds: number[][],
  start: number,
  offset: number,
  rel = 1e-5,
): void {
  const { nLayers: L } = model.dims;
  const B = tokenIds.length;
  const T = tokenIds[0]!.length;
  const tokens = tf.tensor2d(tokenIds, [B, T], 'int32');
  const siteKeys: SiteKey[] = [];
  for (const s of model.sites) {
    for (let l = 0; l < siteLayers(model.dims, s); l++) siteKeys.push(siteKey(s, l));
  }
  const full = new RunContext({ cache: siteKeys });
  const fullLogits = model.forward({ tokens }, full);
  const fullCache = full.takeCache();
  full.dispose();
  const from = (x: tf.Tensor, axis: number) => {
    const begin = x.shape.map(() => 0);
    begin[axis] = offset;
    const size = x.shape.map((n, i) => (i === axis ? n - offset : n));
    return tf.slice(x, begin, size);
  };
  const upTo = (x: tf.Tensor) => tf.slice(x, [0, 0, 0, 0], [B, offset, x.shape[2]!, x.shape[3]!]);
  const keys: (tf.Tensor4D | undefined)[] = [];
  const values: (tf.Tensor4D | undefined)[] = [];
  for (let l = start; l < L; l++) {
    keys[l] = upTo(fullCache.get(siteKey(Site.K, l))!) as tf.Tensor4D;
    values[l] = upTo(fullCache.get(siteKey(Site.V, l))!) as tf.Tensor4D;
  }
  const prefix: KvPrefix = { length: offset, keys, values };
  const resid = from(fullCache.get(siteKey(Site.ResidPre, start))!, 1) as tf.Tensor3D;
  const owned: tf.Tensor[] = [tokens, fullLogits, ...fullCache.values(), resid];
  for (let l = start; l < L; l++) owned.push(keys[l]!, values[l]!);
  try {
    const runKeys = siteKeys.filter((k) => {
      const { site, layer } = parseSiteKey(k);
      return site === Site.LnFinalScale || layer >= start;
    });
    const ctx = new RunContext({ cache: runKeys });
    const logits = model.forward({ resid, layer: start, prefix }, ctx);
    const cache = ctx.takeCache();
    ctx.dispose();
    owned.push(logits, ...cache.values());
    const check = (what: string, got: tf.Tensor, want: tf.Tensor) => {
      expect(got.shape, what).toEqual(want.shape);
      const w = want.dataSync();
      const scale = Math.max(1e-30, ...Array.from(w, Math.abs));
      expect(maxAbsDiff(got.dataSync(), w) / scale, what).toBeLessThanOrEqual(rel);
    };
    const wantLogits = from(fullLogits, 1);
    owned.push(wantLogits);
    check('logits', logits, wantLogits);
    expect(cache.size).toBe(runKeys.length);
    for (const k of runKeys) {
      const { site } = parseSiteKey(k);
      // The pattern's position axis is the query axis; its key axis stays absolute (0..T−1).
      const want = from(fullCache.get(k)!, site === Site.Pattern ? 2 : 1);
      owned.push(want);
      check(k, cache.get(k)!, want);
    }

    // A readout at absolute positions ≥ offset reads the same rows.
    const readout = tokenIds.map((_, b) => offset + ((b * 5) % (T - offset)));
    const rctx = new RunContext();
    const read = model.forward({ resid, layer: start, prefix }, rctx, { readout });
    rctx.dispose();
    owned.push(read);
    const wantRead = tf.tidy(() =>
      tf.concat(
        readout.map((p, b) => tf.slice(fullLogits, [b, p, 0], [1, 1, -1])),
        0,
      ),
    );
    owned.push(wantRead);
    check('readout logits', read, wantRead);
    // Logits of a few vocabulary ids (ForwardOptions.vocab) are those columns of the full logits.
    const ids = [model.dims.vocabSize - 1, 0, 5, 2];
    const vctx = new RunContext();
    const few = model.forward({ resid, layer: start, prefix }, vctx, { readout, vocab: ids });
    vctx.dispose();
    owned.push(few);
    const wantFew = tf.tidy(() => tf.gather(read, tf.tensor1d(ids, 'int32'), 2));
    owned.push(wantFew);
    check('vocab logits', few, wantFew);
    // A readout before the run's first position is an error.
    let caught: unknown;
    try {
      model.forward({ resid, layer: start, prefix }, new RunContext(), {
        readout: tokenIds.map(() => offset - 1),
      });
    } catch (e) {
      caught = e;
    }
    expect(isRelpError(caught) && caught.code).toBe('BAD_INPUT');

    // Gradients flow: d Σ logits[:, offset:] / d resid equals the full run's (started at `start`).
    const fullResid = fullCache.get(siteKey(Site.ResidPre, start))! as tf.Tensor3D;
    const gFull = tf.grad((x: tf.Tensor) =>
      tf.sum(from(model.forward({ resid: x as tf.Tensor3D, layer: start }, new RunContext()), 1)),
    )(fullResid);
    const gPrefix = tf.grad((x: tf.Tensor) =>
      tf.sum(model.forward({ resid: x as tf.Tensor3D, layer: start, prefix }, new RunContext())),
    )(resid);
    const gWant = from(gFull, 1);
    owned.push(gFull, gPrefix, gWant);
    check('gradient', gPrefix, gWant);
  } finally {
    tf.dispose(owned);
  }
}

/**
 * A joined run (ModelInput.joins): rows entering at `start` and more rows joining before later blocks, each the
 * full run's residual at its block (from `offset` on, with a prefix tiled to the rows present at each block).
 * Every row must reproduce the full run's logits at positions ≥ offset, and a site at a block must have the rows
 * joined by then. Malformed joins, and a prefix without the joined rows, are refused (BAD_INPUT).
 */
export function expectJoinedRunMatchesFullRun(
  model: LanguageModel,
  tokenIds: number[][],
  start: number,
  offset: number,
  rel = 1e-5,
): void {
  const { nLayers: L } = model.dims;
  const B = tokenIds.length;
  const T = tokenIds[0]!.length;
  const later = [...new Set([start + 1, L - 1])].filter((l) => l > start && l < L);
  expect(later.length, 'the model needs a block after the start').toBeGreaterThan(0);
  const owned: tf.Tensor[] = [];
  const keep = <X extends tf.Tensor>(x: X): X => {
    owned.push(x);
    return x;
  };
  try {
    const tokens = keep(tf.tensor2d(tokenIds, [B, T], 'int32'));
    const cacheKeys: SiteKey[] = [];
    for (let l = 0; l < L; l++)
      cacheKeys.push(siteKey(Site.ResidPre, l), siteKey(Site.K, l), siteKey(Site.V, l));
    const full = new RunContext({ cache: cacheKeys });
    const fullLogits = keep(model.forward({ tokens }, full));
    const fullCache = full.takeCache();
    full.dispose();
    owned.push(...fullCache.values());
    const from = (x: tf.Tensor) => keep(tf.slice(x, [0, offset, 0], [-1, T - offset, -1]));
    // Copies entering at `start` (2) and at each later block (1 each).
    const copiesAt = (l: number) => 2 + later.filter((j) => j <= l).length;
    const tileRows = (x: tf.Tensor, n: number) => keep(tf.tile(x, [n, ...x.shape.slice(1).map(() => 1)]));
    const resid = tileRows(from(fullCache.get(siteKey(Site.ResidPre, start))!), 2) as tf.Tensor3D;
    const joins = later.map((l) => ({
      layer: l,
      resid: from(fullCache.get(siteKey(Site.ResidPre, l))!) as tf.Tensor3D,
    }));
    let prefix: KvPrefix | undefined;
    if (offset > 0) {
      const upTo = (x: tf.Tensor, l: number) =>
        tileRows(keep(tf.slice(x, [0, 0, 0, 0], [B, offset, -1, -1])), copiesAt(l)) as tf.Tensor4D;
      const keys: tf.Tensor4D[] = [];
      const values: tf.Tensor4D[] = [];
      for (let l = start; l < L; l++) {
        keys[l] = upTo(fullCache.get(siteKey(Site.K, l))!, l);
        values[l] = upTo(fullCache.get(siteKey(Site.V, l))!, l);
      }
      prefix = { length: offset, keys, values };
    }
    const input = { resid, layer: start, joins, ...(prefix ? { prefix } : {}) };
    const last = later[later.length - 1]!;
    const ctx = new RunContext({ cache: [siteKey(Site.ResidPre, start), siteKey(Site.ResidPre, last)] });
    const logits = keep(model.forward(input, ctx));
    const sites = ctx.takeCache();
    ctx.dispose();
    owned.push(...sites.values());
    const rows = copiesAt(L);
    expect(logits.shape).toEqual([rows * B, T - offset, model.dims.vocabSize]);
    expect(sites.get(siteKey(Site.ResidPre, start))!.shape[0]).toBe(2 * B);
    expect(sites.get(siteKey(Site.ResidPre, last))!.shape[0]).toBe(rows * B);
    const want = from(fullLogits).dataSync();
    const scale = Math.max(1e-30, ...Array.from(want, Math.abs));
    for (let c = 0; c < rows; c++) {
      const got = keep(tf.slice(logits, [c * B, 0, 0], [B, -1, -1]));
      expect(maxAbsDiff(got.dataSync(), want) / scale, `copy ${c}`).toBeLessThanOrEqual(rel);
    }
    // A readout gives one absolute position per final row.
    const readout = Array.from({ length: rows * B }, (_, r) => T - 1 - (r % 2));
    const read = keep(model.forward(input, new RunContext(), { readout }));
    expect(read.shape).toEqual([rows * B, 1, model.dims.vocabSize]);
    const wantRead = keep(
      tf.tidy(() =>
        tf.concat(
          readout.map((p, r) => tf.slice(fullLogits, [r % B, p, 0], [1, 1, -1])),
          0,
        ),
      ),
    );
    const readScale = Math.max(1e-30, ...Array.from(wantRead.dataSync(), Math.abs));
    expect(maxAbsDiff(read.dataSync(), wantRead.dataSync()) / readScale, 'readout').toBeLessThanOrEqual(rel);
    const codeOf = (bad: unknown): string | undefined => {
      try {
        tf.dispose(model.forward(bad as Parameters<LanguageModel['forward']>[0], new RunContext()));
      } catch (e) {
        return isRelpError(e) ? e.code : String(e);
      }
      return undefined;
    };
    const j0 = joins[0]!;
    expect(codeOf({ ...input, joins: [{ layer: start, resid: j0.resid }] })).toBe('BAD_INPUT');
    expect(codeOf({ ...input, joins: [{ layer: L, resid: j0.resid }] })).toBe('BAD_INPUT');
    expect(codeOf({ ...input, joins: [...joins, ...joins] })).toBe('BAD_INPUT');
    const narrow = keep(tf.slice(j0.resid, [0, 0, 0], [-1, -1, model.dims.dModel - 1]));
    expect(codeOf({ ...input, joins: [{ layer: j0.layer, resid: narrow }] })).toBe('BAD_INPUT');
    expect(codeOf(input), 'the input itself is fine').toBeUndefined();
    if (prefix) {
      // The prefix must have the joined rows at every block from the join on.
      expect(codeOf({ resid, layer: start, prefix })).toBe('BAD_INPUT');
    }
  } finally {
    tf.dispose(owned);
  }
}

/** A prefix whose keys have the wrong shape is refused (BAD_INPUT), as is one past the context length. */
export function expectBadPrefixRefused(model: LanguageModel): void {
  const { dModel: d, nKvHeads: hkv, dHead: dh, nLayers: L } = model.dims;
  const resid = tf.zeros([1, 2, d]) as tf.Tensor3D;
  const good = tf.zeros([1, 3, hkv, dh]) as tf.Tensor4D;
  const bad = tf.zeros([1, 2, hkv, dh]) as tf.Tensor4D;
  const all = (t: tf.Tensor4D) => Array.from({ length: L }, () => t);
  const codeOf = (prefix: KvPrefix): string | undefined => {
    try {
      tf.dispose(model.forward({ resid, layer: 0, prefix }, new RunContext()));
    } catch (e) {
      return isRelpError(e) ? e.code : String(e);
    }
    return undefined;
  };
  try {
    expect(codeOf({ length: 3, keys: all(good), values: all(good) })).toBeUndefined();
    expect(codeOf({ length: 3, keys: all(bad), values: all(good) })).toBe('BAD_INPUT');
    expect(codeOf({ length: 3, keys: all(good), values: [] })).toBe('BAD_INPUT');
    expect(codeOf({ length: -1, keys: [], values: [] })).toBe('BAD_INPUT');
    expect(codeOf({ length: model.dims.contextLength, keys: [], values: [] })).toBe('BAD_TOKENS');
  } finally {
    tf.dispose([resid, good, bad]);
  }
}

function flat(g: unknown): number[] {
  return Array.isArray(g) ? g.flatMap(flat) : [g as number];
}

/**
 * Fast activation patching (stacked patches, restart at the patched block, prefix K/V reuse from the first
 * patched position) equals the naive way (one full forward pass per patch) within 1e-5 of the largest score,
 * for every site and granularity given, both directions, and every effect before the first difference exactly 0
 * (in the naive run too with `naiveZeroBeforeFirstDiff`).
 * The pairs include a shorter (padded) row whose last position lies before some patched positions, and
 * differences at two positions.
 */
export async function expectFastPatchingEqualsNaive(
  model: LanguageModel,
  sites: readonly SiteRequest[],
  seq = 9,
  options: { readonly naiveZeroBeforeFirstDiff?: boolean } = {},
): Promise<void> {
  const V = model.dims.vocabSize;
  const pairs = [0, 1, 2].map((b) => {
    const len = b === 2 ? seq - 3 : seq;
    const clean = Array.from({ length: len }, (_, i) => (i * 13 + b * 5 + 1) % V);
    const corrupt = [...clean];
    corrupt[2 + (b % 2)] = (corrupt[2 + (b % 2)]! + 7) % V;
    return { clean, corrupt, answer: (b + 2) % V, wrong: (b + 9) % V };
  });
  const batch = makePairBatch(pairs, { dims: model.dims });
  for (const direction of ['denoising', 'noising'] as const) {
    const fast = await attribute(model, batch, {
      method: 'activation-patching',
      sites,
      direction,
      maxBatchRows: 12,
    });
    const naive = await attribute(model, batch, {
      method: 'activation-patching',
      sites,
      direction,
      patchingStrategy: 'naive',
    });
    expect(fast.cost.forwardEquivalents).toBeLessThan(naive.cost.forwardEquivalents);
    for (const s of sites) {
      const f = flat(fast.scores[s.site]);
      const n = flat(naive.scores[s.site]);
      expect(f.length).toBe(n.length);
      const largest = Math.max(...n.map(Math.abs));
      expect(largest, `${s.site} has effects`).toBeGreaterThan(0);
      // A score is m(patched) − m(base): its rounding error scales with the metric, not with the score (the
      // passes differ in matmul shapes, so an effect of exactly 0 can come out as ±1 ulp of the metric).
      const scale = Math.max(largest, Math.abs(naive.metric.clean), Math.abs(naive.metric.corrupt));
      const worst = Math.max(...f.map((v, i) => Math.abs(v - n[i]!)));
      expect(worst / scale, `${direction} ${s.site}`).toBeLessThanOrEqual(1e-5);
      // Before the first difference every effect is exactly zero: the fast way never runs those units, and the
      // literal way, when asked, finds 0 (not for `result`, whose runs sum attn_out over heads: ±1 ulp).
      const rows = [fast, ...(options.naiveZeroBeforeFirstDiff ? [naive] : [])];
      for (const r of rows)
        for (const row of r.scores[s.site] as unknown[][])
          for (let p = 0; p < batch.firstDiff; p++)
            expect(flat(row[p]), `${direction} ${s.site} at ${p}`).toEqual(flat(row[p]).map(() => 0));
    }
  }
}
