import * as tf from '@tensorflow/tfjs-core';
import type { Patch } from '../context.js';
import { ErrorCodes, RelpError } from '../errors.js';
import { disposeAll } from '../memory.js';
import type { ModelInput } from '../model.js';
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
  units.forEach((u, c) => {
    for (let b = 0; b < B; b++) {
      let offset = (c * B + b) * strides[0]! + u.position * strides[axes.position]!;
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
async function metricPerCopy(job: Job, logits: tf.Tensor3D, copies: number): Promise<number[]> {
  const B = job.batch.size;
  const values = tf.tidy(() =>
    tf.stack(
      Array.from({ length: copies }, (_, c) =>
        job.metric.compute(tf.slice(logits, [c * B, 0, 0], [B, -1, -1]) as tf.Tensor3D, job.batch),
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

/** How many copies of the batch fit in one forward pass. */
function copiesPerPass(job: Job, maxRows: number): number {
  const B = job.batch.size;
  const V = job.model.dims.vocabSize;
  const T = job.readout === undefined ? job.batch.seqLen : 1;
  // Keep the logits of one pass under ~64 MB of float32 as well.
  const byLogits = Math.floor((16 * 1024 * 1024) / (B * T * V));
  return Math.max(1, Math.min(Math.floor(maxRows / B), byLogits));
}

/**
 * Exact activation patching (METHOD.md §1): score = m(base run with the unit patched to the source value) −
 * m(base). `fast` batches many units into one forward pass, starts each pass at the patched block from the
 * base run's cached residual, and skips positions before the first difference (exactly 0 there); `naive`
 * runs one full forward pass per unit over every position, as TransformerLens does. Both give the same
 * numbers (a test compares them).
 */
export async function activationPatching(
  job: Job,
  keys: readonly ScoredKey[],
  strategy: 'fast' | 'naive',
  maxRows: number,
): Promise<{ mSource: number; mBase: number; perKey: Map<SiteKey, LayerScores> }> {
  const siteKeys = keys.map((k) => k.key);
  const residKeys =
    strategy === 'fast'
      ? [...new Set(keys.map(startLayerOf).filter((l): l is number => l !== null))].map((l) =>
          siteKey(Site.ResidPre, l),
        )
      : [];
  const source = await job.cachedRun('source', siteKeys);
  let base: Awaited<ReturnType<Job['cachedRun']>> | undefined;
  try {
    base = await job.cachedRun('base', residKeys);
    const copies = strategy === 'fast' ? copiesPerPass(job, maxRows) : 1;
    const fromPosition = strategy === 'fast' ? job.batch.firstDiff : 0;
    const plan = keys.map((k) => ({ k, units: unitsOf(job, k, fromPosition) }));
    const total = plan.reduce((a, p) => a + p.units.length, 0);
    let done = 0;
    job.progress('activation patching', 0, total);
    const perKey = new Map<SiteKey, LayerScores>();
    for (const { k, units } of plan) {
      const values = new Map<string, number>();
      for (let start = 0; start < units.length; start += copies) {
        job.checkAborted();
        const chunk = units.slice(start, start + copies);
        const n = chunk.length;
        const startLayer = strategy === 'fast' ? startLayerOf(k) : null;
        const mask = unitMask(job, k, chunk);
        const value = tileBatch(source.cache.get(k.key)!, n);
        let input: ModelInput;
        let owned: tf.Tensor;
        if (startLayer === null) {
          owned = tileBatch(job.baseTokens, n);
          input = { tokens: owned as tf.Tensor2D };
        } else {
          owned = tileBatch(base.cache.get(siteKey(Site.ResidPre, startLayer))!, n);
          input = { resid: owned as tf.Tensor3D, layer: startLayer };
        }
        const patches = new Map<SiteKey, Patch[]>([[k.key, [{ mask, value }]]]);
        const ctx = job.context({ patches });
        try {
          const logits = tf.tidy(() => job.forward(input, ctx, n, startLayer ?? 0));
          const ms = await metricPerCopy(job, logits, n).finally(() => logits.dispose());
          chunk.forEach((u, c) => {
            values.set(`${u.position}:${u.index ?? 0}`, ms[c]! - base!.m);
          });
        } finally {
          ctx.dispose();
          disposeAll(mask, value, owned);
        }
        done += n;
        job.progress('activation patching', done, total);
      }
      perKey.set(k.key, toScores(job, k, values));
    }
    return { mSource: source.m, mBase: base.m, perKey };
  } finally {
    disposeAll(source.cache);
    if (base) disposeAll(base.cache);
  }
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
