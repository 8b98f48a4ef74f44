import * as tf from '@tensorflow/tfjs-core';
import type { Patch } from '../context.js';
import type { PairBatch } from '../data.js';
import { ErrorCodes, RelpError } from '../errors.js';
import { disposeAll } from '../memory.js';
import { restrictToAnswers } from '../metrics.js';
import type { KvPrefix } from '../model.js';
import { Site, type SiteKey, siteKey, unitAxis } from '../sites.js';
import type { ScoredKey } from './plan.js';
import type { LayerScores } from './reduce.js';
import type { Job } from './run.js';

/**
 * One patch unit: a position, and a unit index (head, neuron, feature) when the granularity has one. `all`: the
 * unit is patched at every position at once (its score is reported at `position`, the first difference).
 */
interface Unit {
  readonly position: number;
  readonly index?: number;
  readonly all?: boolean;
}

/** Whether a unit's source and base values differ (see SiteDef.sparse). */
type Differs = (u: Unit) => boolean;

function unitsOf(job: Job, k: ScoredKey, fromPosition: number): Unit[] {
  const axis = unitAxis(k.def, k.granularity);
  const width = axis === undefined ? 1 : job.shapeOf(k.key)[axis]!;
  const out: Unit[] = [];
  if (k.allPositions) {
    // Positions before the first difference hold equal values on both runs: the unit acts from there on.
    const at = job.batch.firstDiff;
    if (at >= job.batch.seqLen) return out;
    if (k.granularity === 'position') out.push({ position: at, all: true });
    else for (let i = 0; i < width; i++) out.push({ position: at, index: i, all: true });
    return out;
  }
  for (let p = fromPosition; p < job.batch.seqLen; p++) {
    if (k.granularity === 'position') out.push({ position: p });
    else for (let i = 0; i < width; i++) out.push({ position: p, index: i });
  }
  return out;
}

/**
 * A boolean mask for `slots.length` stacked copies of the batch: copy c is masked at its unit `slots[c]` only
 * (nowhere when undefined: a copy that patches another site). Its shape keeps the batch axis, the position axis
 * and the unit axis (when the granularity has one) and broadcasts over the rest.
 */
function unitMask(job: Job, k: ScoredKey, slots: readonly (Unit | undefined)[]): tf.Tensor {
  const B = job.batch.size;
  const siteShape = job.shapeOf(k.key, B * slots.length);
  const axes = k.def.axes;
  const indexAxis = unitAxis(k.def, k.granularity);
  const shape = siteShape.map((n, ax) => (ax === 0 || ax === axes.position || ax === indexAxis ? n : 1));
  const strides = new Array<number>(shape.length).fill(1);
  for (let ax = shape.length - 2; ax >= 0; ax--) strides[ax] = strides[ax + 1]! * shape[ax + 1]!;
  const data = new Uint8Array(shape.reduce((a, b) => a * b, 1));
  // Under a last-position readout a readout-only site (the final norm's scale) exists only at each row's
  // readout position (its position axis has one entry): a unit at position p patches the rows that read out at p.
  const readoutOnly = k.def.readoutOnly && job.readout !== undefined;
  slots.forEach((u, c) => {
    if (u === undefined) return;
    for (let b = 0; b < B; b++) {
      if (u.all) {
        const base =
          (c * B + b) * strides[0]! + (indexAxis === undefined ? 0 : u.index! * strides[indexAxis]!);
        for (let p = 0; p < shape[axes.position]!; p++) data[base + p * strides[axes.position]!] = 1;
        continue;
      }
      if (readoutOnly && job.readout![b] !== u.position) continue;
      let offset = (c * B + b) * strides[0]! + (readoutOnly ? 0 : u.position * strides[axes.position]!);
      if (indexAxis !== undefined) offset += u.index! * strides[indexAxis]!;
      data[offset] = 1;
    }
  });
  return tf.tensor(data, shape, 'bool');
}

/**
 * For a sparse site (SiteDef.sparse): which of its units have source and base values that differ somewhere (over
 * the batch and the axes the granularity sums); a unit at every position differs when it does at some position
 * from the first difference on.
 */
async function differingUnits(job: Job, k: ScoredKey, source: tf.Tensor, base: tf.Tensor): Promise<Differs> {
  const position = k.def.axes.position;
  const axis = unitAxis(k.def, k.granularity);
  const cells = tf.tidy(() => {
    const ne = tf.notEqual(source, base);
    const sumAxes = ne.shape.map((_, i) => i).filter((i) => i !== position && i !== axis);
    const any = sumAxes.length > 0 ? tf.any(ne, sumAxes) : ne;
    return tf.cast(axis !== undefined && axis < position ? tf.transpose(any, [1, 0]) : any, 'int32');
  });
  const data = await cells.data();
  cells.dispose();
  const width = axis === undefined ? 1 : source.shape[axis]!;
  const T = job.batch.seqLen;
  return (u) => {
    const i = u.index ?? 0;
    if (!u.all) return data[u.position * width + i] !== 0;
    for (let p = u.position; p < T; p++) if (data[p * width + i] !== 0) return true;
    return false;
  };
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
  return k.def.block(k.layer);
}

/** How many copies of the batch fit in one full-length forward pass. */
function copiesPerPass(job: Job, maxRows: number): number {
  return Math.max(1, Math.min(Math.floor(maxRows / job.batch.size), copiesByLogits(job)));
}

/**
 * The token rows (copies × batch × positions) a joined run holds at its last block, per row of `maxRows`:
 * 3 · 64 = 192 by default. On GPT-2 shapes 192–256 ran fastest; 512 ran slower (element-wise kernels on tensors
 * past the caches, and more memory), 64–96 left the matrix products short (docs/benchmarks.md). Speed only.
 */
const JOINED_TOKEN_ROWS_PER_BATCH_ROW = 3;

/** One patched copy of the batch in a pass: the key it patches and the unit it patches there. */
interface Copy {
  readonly k: ScoredKey;
  readonly unit: Unit;
}

/**
 * One forward pass over stacked patched copies. `start` null: a full run from tokens. Otherwise a joined prefix
 * run: the copies, sorted by their block, join the batch at their block from the base run's residual, and the
 * run covers positions `offset`..T−1 (attending to the base run's cached keys/values before `offset`).
 */
interface Pass {
  readonly copies: readonly Copy[];
  readonly start: number | null;
  readonly offset: number;
}

/**
 * Groups the units of every key into passes. Naive: one pass per unit. Fast: the final norm's scale in passes of
 * full runs; every other unit by its position p (a patch at p changes nothing before p): all units at p, from
 * every site and block, share joined runs over positions p..T−1, each copy joining at its own block, so every
 * copy costs exactly its blocks × its positions and the later blocks multiply one tall matrix per weight instead
 * of one short one per site (a weight matrix is read from memory once per product, whatever its row count). A
 * pass holds at most JOINED_TOKEN_ROWS_PER_BATCH_ROW · `maxRows` token rows at its last block (at least one
 * copy), and at most what keeps its logits under ~64 MB.
 */
function planPasses(
  job: Job,
  keys: readonly ScoredKey[],
  fast: boolean,
  maxRows: number,
  differs: ReadonlyMap<SiteKey, Differs>,
): Pass[] {
  const B = job.batch.size;
  const T = job.batch.seqLen;
  const passes: Pass[] = [];
  const byPosition = new Map<number, Copy[]>();
  const copies = copiesPerPass(job, maxRows);
  for (const k of keys) {
    const runs = differs.get(k.key);
    const all = unitsOf(job, k, fast ? job.batch.firstDiff : 0);
    const units = runs === undefined ? all : all.filter(runs);
    if (!fast) {
      for (const unit of units) passes.push({ copies: [{ k, unit }], start: null, offset: 0 });
    } else if (startLayerOf(k) === null) {
      for (let i = 0; i < units.length; i += copies) {
        passes.push({
          copies: units.slice(i, i + copies).map((unit) => ({ k, unit })),
          start: null,
          offset: 0,
        });
      }
    } else {
      for (const unit of units) {
        const group = byPosition.get(unit.position) ?? [];
        group.push({ k, unit });
        byPosition.set(unit.position, group);
      }
    }
  }
  const budget = JOINED_TOKEN_ROWS_PER_BATCH_ROW * maxRows;
  for (const [offset, group] of [...byPosition].sort((a, b) => a[0] - b[0])) {
    // A stable sort: within a block, each key's copies stay together, in unit order.
    group.sort((a, b) => startLayerOf(a.k)! - startLayerOf(b.k)!);
    const cap = Math.max(1, Math.min(Math.floor(budget / (B * (T - offset))), copiesByLogits(job)));
    // Equal chunks of consecutive blocks: a chunk of late blocks runs only those blocks.
    const size = Math.ceil(group.length / Math.ceil(group.length / cap));
    for (let i = 0; i < group.length; i += size) {
      const chunk = group.slice(i, i + size);
      passes.push({ copies: chunk, start: startLayerOf(chunk[0]!.k), offset });
    }
  }
  return passes;
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
 * Exact activation patching (docs/method.md §7): score = m(base run with the unit patched to the source value) −
 * m(base). `naive` runs one full forward pass per unit over every position, as TransformerLens does. `fast`
 * gives the same numbers (a test compares them) with less work:
 * - positions before the first clean/corrupt difference are skipped (their effect is exactly 0);
 * - a patch's run starts at the patched block from the base run's cached residual (earlier blocks cannot
 *   change);
 * - prefix K/V reuse: a patch at position p cannot change anything at positions < p (causal attention), so its
 *   run covers positions p..T−1 only, attending to the base run's cached keys and values of positions < p at
 *   every block from the patched one on (a prefix run, see `KvPrefix`). Rows whose readout position lies before
 *   p keep the base run's logits (the patch cannot reach them); a metric over all positions gets the base run's
 *   logits for positions < p;
 * - all patches at one position, whatever their site and block, are stacked as copies of the batch in joined
 *   runs (`ModelInput.joins`): each copy joins at its block, so the blocks they share run as one pass.
 * Patches at sites inside a block (attn_out, z, q/k/v, pattern, mlp_post, resid_mid, norm scales …) act at
 * their position from that site on, so the copy joins at the block's resid_pre and recomputes the block's
 * earlier sites from cached values. Only sites after every block (the final norm's scale: `block` null in the
 * site table) run full passes from tokens.
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
  const siteKeys = keys.map((k) => k.key);
  const startLayers = fast ? [...new Set(keys.map(startLayerOf).filter((l): l is number => l !== null))] : [];
  const firstStart = Math.min(L, ...startLayers);
  const baseKeys = startLayers.map((l) => siteKey(Site.ResidPre, l));
  for (let l = firstStart; l < L; l++) baseKeys.push(siteKey(Site.K, l), siteKey(Site.V, l));
  // Sparse sites are recorded on the base run too, to find the units that differ.
  const sparseKeys = keys.filter((k) => k.def.sparse).map((k) => k.key);
  baseKeys.push(...sparseKeys);
  const source = await job.cachedRun('source', siteKeys);
  let base: Awaited<ReturnType<Job['cachedRun']>>;
  try {
    base = fast ? await job.cachedRun('base', baseKeys, true) : await job.cachedRun('base', sparseKeys);
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
  try {
    const differs = new Map<SiteKey, Differs>();
    for (const k of keys) {
      if (k.def.sparse) {
        differs.set(k.key, await differingUnits(job, k, source.cache.get(k.key)!, baseCache.get(k.key)!));
      }
    }
    const passes = planPasses(job, keys, fast, maxRows, differs);
    const total = passes.reduce((a, p) => a + p.copies.length, 0);
    let done = 0;
    job.progress('activation patching', 0, total);
    const values = new Map<SiteKey, Map<string, number>>(keys.map((k) => [k.key, new Map()]));

    /** The logits of one pass (its patches through `ctx`), one batch copy per patched copy. */
    const passLogits = (pass: Pass, setContext: (ctx: ReturnType<Job['context']>) => void): tf.Tensor3D => {
      const { copies, start, offset } = pass;
      const n = copies.length;
      // Copies joining at each block (a joined run's copies are sorted by block), and those in the batch at
      // block l: all of a full run's; those joined by l in a joined run.
      const joining = new Map<number, number>();
      for (const c of copies) {
        const at = startLayerOf(c.k) ?? 0;
        joining.set(at, (joining.get(at) ?? 0) + 1);
      }
      const rowsAt = (l: number) => {
        if (start === null) return n;
        let rows = 0;
        for (const [layer, count] of joining) if (layer <= l) rows += count;
        return rows;
      };
      const patches = new Map<SiteKey, Patch[]>();
      for (const k of new Set(copies.map((c) => c.k))) {
        const m = rowsAt(startLayerOf(k) ?? 0);
        const axis = k.def.axes.position;
        const slots = copies.slice(0, m).map((c) => (c.k === k ? c.unit : undefined));
        const mask = sliceFrom(unitMask(job, k, slots), axis, offset);
        const value = tileBatch(sliceFrom(source.cache.get(k.key)!, axis, offset), m);
        patches.set(k.key, [{ mask, value }]);
      }
      const ctx = job.context({ patches });
      setContext(ctx);
      if (start === null) {
        const tokens = tileBatch(job.baseTokens, n) as tf.Tensor2D;
        return job.forward({ tokens }, ctx, n, 0, { readout: job.readoutFor(n), vocab });
      }
      const layers = [...joining.keys()];
      const residAt = (l: number) =>
        tileBatch(
          sliceFrom(baseCache.get(siteKey(Site.ResidPre, l))!, 1, offset),
          joining.get(l)!,
        ) as tf.Tensor3D;
      const joins = layers.slice(1).map((l) => ({ layer: l, resid: residAt(l) }));
      let prefix: KvPrefix | undefined;
      if (offset > 0) {
        const keysAt: tf.Tensor4D[] = [];
        const valuesAt: tf.Tensor4D[] = [];
        for (let l = start; l < L; l++) {
          const upTo = (x: tf.Tensor) =>
            tileBatch(tf.slice(x, [0, 0, 0, 0], [B, offset, -1, -1]), rowsAt(l)) as tf.Tensor4D;
          keysAt[l] = upTo(baseCache.get(siteKey(Site.K, l))!);
          valuesAt[l] = upTo(baseCache.get(siteKey(Site.V, l))!);
        }
        prefix = { length: offset, keys: keysAt, values: valuesAt };
      }
      const input = {
        resid: residAt(start),
        layer: start,
        ...(prefix === undefined ? {} : { prefix }),
        ...(joins.length === 0 ? {} : { joins }),
      };
      const firstCopies = rowsAt(start);
      const readout = job.readoutFor(n);
      if (readout === undefined) {
        const out = job.forward(input, ctx, firstCopies, start, { readout: undefined });
        if (offset === 0) return out;
        // A metric over every position: positions < offset are the base run's.
        const before = tileBatch(tf.slice(base.logits!, [0, 0, 0], [B, offset, -1]), n);
        return tf.concat([before, out], 1) as tf.Tensor3D;
      }
      // Rows that read out before the offset cannot see the patch: they keep the base run's logits.
      const stale = readout.map((p) => p < offset);
      const clamped = readout.map((p) => Math.max(p, offset));
      const out = job.forward(input, ctx, firstCopies, start, { readout: clamped, vocab });
      if (!stale.some(Boolean)) return out;
      const staleMask = tf.tensor3d(Uint8Array.from(stale, Number), [n * B, 1, 1], 'bool');
      const baseLogits =
        vocab === undefined ? base.logits! : tf.gather(base.logits!, tf.tensor1d(vocab, 'int32'), 2);
      return tf.where(staleMask, tileBatch(baseLogits, n), out) as tf.Tensor3D;
    };

    for (const pass of passes) {
      job.checkAborted();
      let ctx: ReturnType<Job['context']> | undefined;
      try {
        const logits = tf.tidy(() =>
          passLogits(pass, (c) => {
            ctx = c;
          }),
        );
        const n = pass.copies.length;
        const ms = await metricPerCopy(job, logits, n, metricBatch).finally(() => logits.dispose());
        pass.copies.forEach(({ k, unit }, c) => {
          values.get(k.key)!.set(`${unit.position}:${unit.index ?? 0}`, ms[c]! - base.m);
        });
        done += n;
      } finally {
        ctx?.dispose();
      }
      job.progress('activation patching', done, total);
    }
    const perKey = new Map<SiteKey, LayerScores>();
    for (const k of keys) perKey.set(k.key, toScores(job, k, values.get(k.key)!));
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
  const axis = unitAxis(k.def, k.granularity);
  if (axis === undefined) {
    return Array.from({ length: T }, (_, p) => values.get(`${p}:0`) ?? 0);
  }
  const width = job.shapeOf(k.key)[axis]!;
  return Array.from({ length: T }, (_, p) =>
    Array.from({ length: width }, (_, i) => values.get(`${p}:${i}`) ?? 0),
  );
}
