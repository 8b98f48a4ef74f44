import * as tf from '@tensorflow/tfjs-core';
import type { Patch } from '../context.js';
import type { PairBatch } from '../data.js';
import { ErrorCodes, RelpError } from '../errors.js';
import { disposeAll } from '../memory.js';
import { restrictToAnswers } from '../metrics.js';
import { Site, type SiteKey, siteKey } from '../sites.js';
import { type ScoredKey, siteAxes } from './plan.js';
import type { LayerScores } from './reduce.js';
import type { Job } from './run.js';

/** One patch unit: a position, and a head or neuron index when the granularity has one. */
interface Unit {
  readonly position: number;
  readonly index?: number;
}

function unitsOf(job: Job, k: ScoredKey, fromPosition: number): Unit[] {
  const { dims } = job.model;
  const axes = siteAxes(k.site);
  const width =
    k.granularity === 'head'
      ? job.shapeOf(k.key)[axes.head!]!
      : k.granularity === 'neuron'
        ? job.shapeOf(k.key)[axes.neuron!]!
        : 1;
  void dims;
  const out: Unit[] = [];
  for (let p = fromPosition; p < job.batch.seqLen; p++) {
    if (k.granularity === 'position') out.push({ position: p });
    else for (let i = 0; i < width; i++) out.push({ position: p, index: i });
  }
  return out;
}

/**
 * A boolean mask for `units.length` stacked copies of the batch: copy c is masked at its unit only. Its shape
 * keeps the batch axis, the position axis and the head/neuron axis (when the granularity has one) and
 * broadcasts over the rest.
 */
function unitMask(job: Job, k: ScoredKey, units: readonly Unit[]): tf.Tensor {
  const B = job.batch.size;
  const siteShape = job.shapeOf(k.key, B * units.length);
  const axes = siteAxes(k.site);
  const indexAxis =
    k.granularity === 'head' ? axes.head : k.granularity === 'neuron' ? axes.neuron : undefined;
  const shape = siteShape.map((n, ax) => (ax === 0 || ax === axes.position || ax === indexAxis ? n : 1));
  const strides = new Array<number>(shape.length).fill(1);
  for (let ax = shape.length - 2; ax >= 0; ax--) strides[ax] = strides[ax + 1]! * shape[ax + 1]!;
  const data = new Uint8Array(shape.reduce((a, b) => a * b, 1));
  // Under a last-position readout the final norm's scale exists only at each row's readout position (its
  // position axis has one entry): a unit at position p patches the rows that read out at p.
  const readoutOnly = k.site === Site.LnFinalScale && job.readout !== undefined;
  units.forEach((u, c) => {
    for (let b = 0; b < B; b++) {
      if (readoutOnly && job.readout![b] !== u.position) continue;
      let offset = (c * B + b) * strides[0]! + (readoutOnly ? 0 : u.position * strides[axes.position]!);
      if (indexAxis !== undefined) offset += u.index! * strides[indexAxis]!;
      data[offset] = 1;
    }
  });
  return tf.tensor(data, shape, 'bool');
}

/** Stacks `copies` copies of a [B, …] tensor along the batch axis. */
function tileBatch(x: tf.Tensor, copies: number): tf.Tensor {
  return copies === 1 ? tf.clone(x) : tf.tile(x, [copies, ...new Array<number>(x.rank - 1).fill(1)]);
}

/** Metric of each stacked copy of the batch in logits of K·B rows. */
async function metricPerCopy(
  job: Job,
  logits: tf.Tensor3D,
  copies: number,
  batch: PairBatch = job.batch,
): Promise<number[]> {
  const B = job.batch.size;
  const values = tf.tidy(() =>
    tf.stack(
      Array.from({ length: copies }, (_, c) =>
        job.metric.compute(tf.slice(logits, [c * B, 0, 0], [B, -1, -1]) as tf.Tensor3D, batch),
      ),
    ),
  );
  const data = await values.data();
  values.dispose();
  const bad = data.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) {
    throw new RelpError(
      ErrorCodes.NonFiniteMetric,
      `metric ${job.metric.name} is ${data[bad]} on a patched run`,
    );
  }
  return Array.from(data);
}

/** Where a patched run can start: the block of the patched site (its inputs are unchanged before it). */
function startLayerOf(k: ScoredKey): number | null {
  return k.site === Site.LnFinalScale ? null : k.layer;
}

/** How many copies of the batch fit in one full-length forward pass. */
function copiesPerPass(job: Job, maxRows: number): number {
  const B = job.batch.size;
  const V = job.model.dims.vocabSize;
  const T = job.readout === undefined ? job.batch.seqLen : 1;
  // Keep the logits of one pass under ~64 MB of float32 as well.
  const byLogits = Math.floor((16 * 1024 * 1024) / (B * T * V));
  return Math.max(1, Math.min(Math.floor(maxRows / B), byLogits));
}

/**
 * The fixed cost of one patched pass (kernel launches, tiling the cached keys/values, the per-pass bookkeeping)
 * in units of one row × one position × one block: a heuristic for grouping patches into passes. It changes
 * only the speed, never the numbers.
 */
const PASS_OVERHEAD_ROW_POSITIONS = 16;

/**
 * Splits units (sorted by position) into passes for prefix runs: a pass of units i..j−1 covers positions
 * units[i].position..T−1 for every copy, so it costs about n·B·(T − units[i].position) row-positions plus a
 * fixed overhead. Dynamic programming over contiguous groups minimises the total, with at most `maxCopies`
 * copies and at most `maxRowPositions` row-positions (the activation memory of a full-length pass) a pass.
 */
function groupByOffset(
  units: readonly Unit[],
  batch: number,
  seq: number,
  maxCopies: number,
  maxRowPositions: number,
): Unit[][] {
  const n = units.length;
  const best = new Float64Array(n + 1).fill(Number.POSITIVE_INFINITY);
  const from = new Int32Array(n + 1);
  best[0] = 0;
  for (let j = 1; j <= n; j++) {
    for (let i = j - 1; i >= 0 && j - i <= maxCopies; i--) {
      const rowPositions = (j - i) * batch * (seq - units[i]!.position);
      if (rowPositions > maxRowPositions && j - i > 1) break;
      const cost = best[i]! + PASS_OVERHEAD_ROW_POSITIONS + rowPositions;
      if (cost < best[j]!) {
        best[j] = cost;
        from[j] = i;
      }
    }
  }
  const out: Unit[][] = [];
  for (let j = n; j > 0; j = from[j]!) out.unshift(units.slice(from[j]!, j));
  return out;
}

/** x's entries from `offset` on along `axis` (a view-like slice; x itself when offset is 0). */
function sliceFrom(x: tf.Tensor, axis: number, offset: number): tf.Tensor {
  if (offset === 0) return x;
  const begin = x.shape.map(() => 0);
  begin[axis] = offset;
  const size = x.shape.map((d, i) => (i === axis ? d - offset : d));
  return tf.slice(x, begin, size);
}

/**
 * Exact activation patching (METHOD.md §1): score = m(base run with the unit patched to the source value) −
 * m(base). `naive` runs one full forward pass per unit over every position, as TransformerLens does. `fast`
 * gives the same numbers (a test compares them) with less work:
 * - positions before the first clean/corrupt difference are skipped (their effect is exactly 0);
 * - many units are stacked as copies of the batch in one forward pass;
 * - a pass starts at the patched block from the base run's cached residual (earlier blocks cannot change);
 * - prefix K/V reuse: a patch at position p cannot change anything at positions < p (causal attention), so a
 *   pass whose units sit at positions ≥ o runs positions o..T−1 only, attending to the base run's cached keys
 *   and values of positions < o at every block from the patched one on (a prefix run, see `KvPrefix`). Units
 *   are grouped into passes by position to minimise rows × positions. Rows whose readout position lies
 *   before o keep the base run's logits (the patch cannot reach them); a metric over all positions gets the
 *   base run's logits for positions < o.
 * Patches at sites inside a block (attn_out, z, q/k/v, pattern, mlp_post, resid_mid, norm scales …) act at
 * their position from that site on, so the pass starts at the block's resid_pre and recomputes the block's
 * earlier sites from cached values. Only the final norm's scale (ln_final_scale) runs full passes from tokens.
 */
export async function activationPatching(
  job: Job,
  keys: readonly ScoredKey[],
  strategy: 'fast' | 'naive',
  maxRows: number,
): Promise<{ mSource: number; mBase: number; perKey: Map<SiteKey, LayerScores> }> {
  const fast = strategy === 'fast';
  const L = job.model.dims.nLayers;
  const B = job.batch.size;
  const T = job.batch.seqLen;
  const siteKeys = keys.map((k) => k.key);
  const startLayers = fast ? [...new Set(keys.map(startLayerOf).filter((l): l is number => l !== null))] : [];
  const firstStart = Math.min(L, ...startLayers);
  const baseKeys = startLayers.map((l) => siteKey(Site.ResidPre, l));
  for (let l = firstStart; l < L; l++) baseKeys.push(siteKey(Site.K, l), siteKey(Site.V, l));
  const source = await job.cachedRun('source', siteKeys);
  let base: Awaited<ReturnType<Job['cachedRun']>>;
  try {
    base = fast ? await job.cachedRun('base', baseKeys, true) : await job.cachedRun('base', []);
  } catch (e) {
    disposeAll(source.cache);
    throw e;
  }
  const baseCache = base.cache;
  // A metric of the answer/wrong logits only needs those columns of the unembedding (logit difference).
  const restricted =
    fast && job.readout !== undefined && job.metric.answerTokensOnly
      ? restrictToAnswers(job.batch)
      : undefined;
  const vocab = restricted?.vocab;
  const metricBatch = restricted?.batch ?? job.batch;
  const vocabOption = { vocab };
  try {
    const copies = fast ? copiesPerPass(job, maxRows) : 1;
    const fromPosition = fast ? job.batch.firstDiff : 0;
    const plan = keys.map((k) => {
      const units = unitsOf(job, k, fromPosition);
      let passes: Unit[][];
      if (!fast) passes = units.map((u) => [u]);
      else if (startLayerOf(k) === null) {
        passes = [];
        for (let i = 0; i < units.length; i += copies) passes.push(units.slice(i, i + copies));
      } else {
        const maxCopies = Math.max(copies, Math.floor((maxRows * T) / B));
        passes = groupByOffset(units, B, T, Math.min(maxCopies, copiesByLogits(job)), maxRows * T);
      }
      return { k, passes };
    });
    const total = plan.reduce((a, p) => a + p.passes.reduce((b, c) => b + c.length, 0), 0);
    let done = 0;
    job.progress('activation patching', 0, total);
    const perKey = new Map<SiteKey, LayerScores>();
    for (const { k, passes } of plan) {
      const values = new Map<string, number>();
      const startLayer = fast ? startLayerOf(k) : null;
      const axis = siteAxes(k.site).position;
      for (const chunk of passes) {
        job.checkAborted();
        const n = chunk.length;
        // Prefix runs from the chunk's first position (units are sorted by position).
        const offset = startLayer === null ? 0 : chunk[0]!.position;
        let ctx: ReturnType<Job['context']> | undefined;
        try {
          const logits = tf.tidy(() => {
            const mask = sliceFrom(unitMask(job, k, chunk), axis, offset);
            const value = tileBatch(sliceFrom(source.cache.get(k.key)!, axis, offset), n);
            ctx = job.context({ patches: new Map<SiteKey, Patch[]>([[k.key, [{ mask, value }]]]) });
            if (startLayer === null) {
              const tokens = tileBatch(job.baseTokens, n) as tf.Tensor2D;
              return job.forward({ tokens }, ctx, n, 0, { readout: job.readoutFor(n), vocab });
            }
            const resid = tileBatch(
              sliceFrom(baseCache.get(siteKey(Site.ResidPre, startLayer))!, 1, offset),
              n,
            ) as tf.Tensor3D;
            if (offset === 0) {
              const o = { readout: job.readoutFor(n), vocab };
              return job.forward({ resid, layer: startLayer }, ctx, n, startLayer, o);
            }
            const keysAt: tf.Tensor4D[] = [];
            const valuesAt: tf.Tensor4D[] = [];
            const upTo = (x: tf.Tensor) =>
              tileBatch(tf.slice(x, [0, 0, 0, 0], [B, offset, -1, -1]), n) as tf.Tensor4D;
            for (let l = startLayer; l < L; l++) {
              keysAt[l] = upTo(baseCache.get(siteKey(Site.K, l))!);
              valuesAt[l] = upTo(baseCache.get(siteKey(Site.V, l))!);
            }
            const prefix = { length: offset, keys: keysAt, values: valuesAt };
            const readout = job.readoutFor(n);
            if (readout === undefined) {
              // A metric over every position: positions < offset are the base run's.
              const out = job.forward({ resid, layer: startLayer, prefix }, ctx, n, startLayer);
              const before = tileBatch(tf.slice(base.logits!, [0, 0, 0], [B, offset, -1]), n);
              return tf.concat([before, out], 1) as tf.Tensor3D;
            }
            // Rows that read out before the offset cannot see the patch: they keep the base run's logits.
            const stale = readout.map((p) => p < offset);
            const clamped = readout.map((p) => Math.max(p, offset));
            const out = job.forward({ resid, layer: startLayer, prefix }, ctx, n, startLayer, {
              ...vocabOption,
              readout: clamped,
            });
            if (!stale.some(Boolean)) return out;
            const staleMask = tf.tensor3d(Uint8Array.from(stale, Number), [n * B, 1, 1], 'bool');
            const baseLogits =
              vocab === undefined ? base.logits! : tf.gather(base.logits!, tf.tensor1d(vocab, 'int32'), 2);
            return tf.where(staleMask, tileBatch(baseLogits, n), out) as tf.Tensor3D;
          });
          const ms = await metricPerCopy(job, logits, n, metricBatch).finally(() => logits.dispose());
          chunk.forEach((u, c) => {
            values.set(`${u.position}:${u.index ?? 0}`, ms[c]! - base.m);
          });
        } finally {
          ctx?.dispose();
        }
        done += n;
        job.progress('activation patching', done, total);
      }
      perKey.set(k.key, toScores(job, k, values));
    }
    return { mSource: source.m, mBase: base.m, perKey };
  } finally {
    disposeAll(source.cache);
    disposeAll(baseCache);
    base.logits?.dispose();
  }
}

/** Copies whose logits stay under ~64 MB of float32. */
function copiesByLogits(job: Job): number {
  const T = job.readout === undefined ? job.batch.seqLen : 1;
  return Math.max(1, Math.floor((16 * 1024 * 1024) / (job.batch.size * T * job.model.dims.vocabSize)));
}

function toScores(job: Job, k: ScoredKey, values: ReadonlyMap<string, number>): LayerScores {
  const T = job.batch.seqLen;
  const axes = siteAxes(k.site);
  if (k.granularity === 'position') {
    return Array.from({ length: T }, (_, p) => values.get(`${p}:0`) ?? 0);
  }
  const width = job.shapeOf(k.key)[k.granularity === 'head' ? axes.head! : axes.neuron!]!;
  return Array.from({ length: T }, (_, p) =>
    Array.from({ length: width }, (_, i) => values.get(`${p}:${i}`) ?? 0),
  );
}
