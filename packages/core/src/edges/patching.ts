import * as tf from '@tensorflow/tfjs-core';
import type { Job } from '../attribution/run.js';
import type { SiteHook } from '../context.js';
import { ErrorCodes, RelpError } from '../errors.js';
import { disposeAll } from '../memory.js';
import { restrictToAnswers } from '../metrics.js';
import type { KvPrefix } from '../model.js';
import { Site, type SiteKey, siteKey } from '../sites.js';
import { downstreamRead, type EdgeGraph } from './graph.js';
import { edgeUpstreamKeys, stackUpstream } from './matrix.js';

/** One patched copy of the batch: edge (u, v), at one position or (undefined) at every position. */
interface EdgeCopy {
  readonly edge: number;
  readonly u: number;
  readonly v: number;
  readonly position: number | undefined;
}

/** Token rows (copies × batch × positions) one joined pass holds at its last block, per row of maxRows. */
const TOKEN_ROWS_PER_BATCH_ROW = 3;

/**
 * Exact edge patching (docs/method.md §17): for each edge u→v, the base run with only v's input changed by
 * a_u(source) − a_u(base) (at every position, or at one position with `each`); the score is the metric's change.
 * The savings of fast activation patching apply: a patched copy starts at v's block from the base run's residual
 * and covers the positions from the first difference (or its position) on, attending to the base run's cached
 * keys and values before; copies of one offset share joined runs, each joining at its block.
 */
export async function edgePatching(
  job: Job,
  g: EdgeGraph,
  edges: readonly (readonly [number, number])[],
  each: boolean,
  maxRows: number,
): Promise<{ mSource: number; mBase: number; scores: number[] | number[][] }> {
  const L = job.model.dims.nLayers;
  const T = job.batch.seqLen;
  const first = job.batch.firstDiff;
  const up = edgeUpstreamKeys(g);
  const reads = edges.map(([, v]) => downstreamRead(g, v));
  const blocks = [...new Set(reads.map((r) => r.block))];
  const firstBlock = Math.min(...blocks);
  const baseKeys: SiteKey[] = [...up, ...blocks.map((l) => siteKey(Site.ResidPre, l))];
  for (let l = firstBlock; l < L; l++) baseKeys.push(siteKey(Site.K, l), siteKey(Site.V, l));
  const source = await job.cachedRun('source', up);
  let base: Awaited<ReturnType<Job['cachedRun']>> | undefined;
  let delta: tf.Tensor4D | undefined;
  try {
    base = await job.cachedRun('base', [...new Set(baseKeys)], true);
    delta = tf.tidy(
      () => tf.sub(stackUpstream(g, source.cache), stackUpstream(g, base!.cache!)) as tf.Tensor4D,
    );
    const restricted =
      job.readout !== undefined && job.metric.answerTokensOnly ? restrictToAnswers(job.batch) : undefined;

    const copies: EdgeCopy[] = [];
    edges.forEach(([u, v], edge) => {
      if (!each) copies.push({ edge, u, v, position: undefined });
      else for (let p = first; p < T; p++) copies.push({ edge, u, v, position: p });
    });
    const passes = planPasses(job, g, copies, maxRows);
    const results = each ? edges.map(() => new Array<number>(T).fill(0)) : edges.map(() => 0);
    let done = 0;
    job.progress('edge patching', 0, copies.length);
    for (const pass of passes) {
      job.checkAborted();
      const ms = await runPass(job, g, pass, delta, base, restricted);
      pass.copies.forEach((c, i) => {
        const effect = ms[i]! - base!.m;
        if (each) (results[c.edge] as number[])[c.position!] = effect;
        else (results as number[])[c.edge] = effect;
      });
      done += pass.copies.length;
      job.progress('edge patching', done, copies.length);
    }
    return { mSource: source.m, mBase: base.m, scores: results as number[] | number[][] };
  } finally {
    disposeAll(source.cache, delta);
    if (base) {
      disposeAll(base.cache);
      base.logits?.dispose();
    }
  }
}

interface Pass {
  readonly copies: readonly EdgeCopy[];
  /** The first position the pass covers. */
  readonly offset: number;
}

/**
 * Copies grouped by the first position they change (their position, or the first difference), sorted by the
 * block where v reads, cut into passes of at most TOKEN_ROWS_PER_BATCH_ROW · maxRows token rows.
 */
function planPasses(job: Job, g: EdgeGraph, copies: readonly EdgeCopy[], maxRows: number): Pass[] {
  const B = job.batch.size;
  const T = job.batch.seqLen;
  const byOffset = new Map<number, EdgeCopy[]>();
  for (const c of copies) {
    const at = c.position ?? job.batch.firstDiff;
    const list = byOffset.get(at) ?? [];
    list.push(c);
    byOffset.set(at, list);
  }
  const passes: Pass[] = [];
  for (const [offset, list] of [...byOffset].sort((a, b) => a[0] - b[0])) {
    list.sort((a, b) => downstreamRead(g, a.v).block - downstreamRead(g, b.v).block);
    const cap = Math.max(1, Math.floor((TOKEN_ROWS_PER_BATCH_ROW * maxRows) / (B * (T - offset))));
    const size = Math.ceil(list.length / Math.ceil(list.length / cap));
    for (let i = 0; i < list.length; i += size) passes.push({ copies: list.slice(i, i + size), offset });
  }
  return passes;
}

/**
 * 1 at index i of n, 0 elsewhere, built on the host: tfjs's oneHot of a scalar index returns zeros on the wasm
 * backend (tfjs 4.22).
 */
function unitVector(i: number, n: number): Float32Array {
  const v = new Float32Array(n);
  v[i] = 1;
  return v;
}

/** x from `offset` on along `axis`. */
function from(x: tf.Tensor, axis: number, offset: number): tf.Tensor {
  if (offset === 0) return x;
  const begin = x.shape.map(() => 0);
  begin[axis] = offset;
  return tf.slice(
    x,
    begin,
    x.shape.map((d, i) => (i === axis ? d - offset : d)),
  );
}

/** `copies` copies of a [B, …] tensor stacked along the batch axis. */
function tile(x: tf.Tensor, copies: number): tf.Tensor {
  return tf.tile(x, [copies, ...new Array<number>(x.rank - 1).fill(1)]);
}

/** One joined prefix pass; the metric of each copy. */
async function runPass(
  job: Job,
  g: EdgeGraph,
  pass: Pass,
  delta: tf.Tensor4D,
  base: Awaited<ReturnType<Job['cachedRun']>>,
  restricted: ReturnType<typeof restrictToAnswers> | undefined,
): Promise<number[]> {
  const { copies, offset } = pass;
  const L = job.model.dims.nLayers;
  const B = job.batch.size;
  const n = copies.length;
  const blockOf = copies.map((c) => downstreamRead(g, c.v).block);
  const start = blockOf[0]!;
  const rowsAt = (l: number) => blockOf.filter((b) => b <= l).length;
  // Per copy, what is added at its input: a_u(source) − a_u(base) from `offset` on (only at its position with
  // `each`), on v's head when v's site has a head axis.
  const hooks = new Map<SiteKey, SiteHook[]>();
  const keys = [...new Set(copies.map((c) => downstreamRead(g, c.v).key))];
  for (const key of keys) {
    const hook: SiteHook = (x) =>
      tf.tidy(() => {
        const rows = x.shape[0]! / B;
        const units = x.rank === 4 ? x.shape[2]! : 1;
        const parts = copies.slice(0, rows).map((c) => {
          const read = downstreamRead(g, c.v);
          const shape = [B, x.shape[1]!, units, x.shape[x.rank - 1]!];
          if (read.key !== key) return tf.zeros(shape);
          let du = from(tf.slice(delta, [0, 0, c.u, 0], [-1, -1, 1, -1]), 1, offset);
          if (c.position !== undefined) {
            const only = tf.tensor1d(Array.from({ length: x.shape[1]! }, (_, i) => (i === 0 ? 1 : 0)));
            du = tf.mul(du, tf.reshape(only, [1, -1, 1, 1]));
          }
          if (read.head === undefined) return du;
          return tf.mul(du, tf.tensor4d(unitVector(read.head, units), [1, 1, units, 1]));
        });
        const d = tf.concat(parts, 0);
        return tf.add(x, x.rank === 4 ? d : tf.reshape(d, x.shape));
      });
    hooks.set(key, [hook]);
  }
  const ctx = job.context({ hooks });
  try {
    const logits = tf.tidy(() => {
      const joining = new Map<number, number>();
      for (const b of blockOf) joining.set(b, (joining.get(b) ?? 0) + 1);
      const residAt = (l: number) =>
        tile(from(base.cache.get(siteKey(Site.ResidPre, l))!, 1, offset), joining.get(l)!) as tf.Tensor3D;
      const joins = [...joining.keys()].slice(1).map((l) => ({ layer: l, resid: residAt(l) }));
      let prefix: KvPrefix | undefined;
      if (offset > 0) {
        const ks: tf.Tensor4D[] = [];
        const vs: tf.Tensor4D[] = [];
        for (let l = start; l < L; l++) {
          const upTo = (x: tf.Tensor) =>
            tile(tf.slice(x, [0, 0, 0, 0], [B, offset, -1, -1]), rowsAt(l)) as tf.Tensor4D;
          ks[l] = upTo(base.cache.get(siteKey(Site.K, l))!);
          vs[l] = upTo(base.cache.get(siteKey(Site.V, l))!);
        }
        prefix = { length: offset, keys: ks, values: vs };
      }
      const input = {
        resid: residAt(start),
        layer: start,
        ...(prefix === undefined ? {} : { prefix }),
        ...(joins.length === 0 ? {} : { joins }),
      };
      const readout = job.readoutFor(n);
      const vocab = restricted?.vocab;
      if (readout === undefined) {
        const out = job.forward(input, ctx, rowsAt(start), start, { readout: undefined });
        if (offset === 0) return out;
        // A metric over every position: the positions before the offset are the base run's.
        return tf.concat(
          [tile(tf.slice(base.logits!, [0, 0, 0], [B, offset, -1]), n), out],
          1,
        ) as tf.Tensor3D;
      }
      const stale = readout.map((p) => p < offset);
      const out = job.forward(input, ctx, rowsAt(start), start, {
        readout: readout.map((p) => Math.max(p, offset)),
        vocab,
      });
      if (!stale.some(Boolean)) return out;
      // Rows that read out before the offset cannot see the change: the base run's logits.
      const mask = tf.tensor3d(Uint8Array.from(stale, Number), [n * B, 1, 1], 'bool');
      const baseLogits =
        vocab === undefined ? base.logits! : tf.gather(base.logits!, tf.tensor1d(vocab, 'int32'), 2);
      return tf.where(mask, tile(baseLogits, n), out) as tf.Tensor3D;
    });
    const metricBatch = restricted?.batch ?? job.batch;
    const values = tf.tidy(() =>
      tf.stack(
        Array.from({ length: n }, (_, c) =>
          job.metric.compute(tf.slice(logits, [c * B, 0, 0], [B, -1, -1]) as tf.Tensor3D, metricBatch),
        ),
      ),
    );
    logits.dispose();
    const data = await values.data();
    values.dispose();
    const badAt = data.findIndex((x) => !Number.isFinite(x));
    if (badAt >= 0) {
      throw new RelpError(
        ErrorCodes.NonFiniteMetric,
        `metric ${job.metric.name} is ${data[badAt]} on a patched run`,
      );
    }
    return Array.from(data);
  } finally {
    ctx.dispose();
  }
}
