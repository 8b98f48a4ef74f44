import * as tf from '@tensorflow/tfjs-core';
import { metricAndSiteGrads } from '../attribution/gradient.js';
import {
  addCopies,
  alphas,
  embeddingPathGradSums,
  interpolate,
  summedCopiesMetric,
} from '../attribution/path.js';
import { Job } from '../attribution/run.js';
import type { Patch } from '../context.js';
import type { PairBatch } from '../data.js';
import { ErrorCodes, RelpError } from '../errors.js';
import { disposeAll } from '../memory.js';
import { logitDiff } from '../metrics.js';
import type { LanguageModel } from '../model.js';
import { EDGE_SITE_DEFS, Site, type SiteKey, siteKey } from '../sites.js';
import { checkRulesCover, NO_RULES } from '../slots.js';
import {
  allEdges,
  downstreamRead,
  type EdgeGraph,
  edgeName,
  modelEdgeGraph,
  parseEdges,
  upstreamWrite,
} from './graph.js';
import {
  edgeDownstreamKeys,
  edgeUpstreamKeys,
  scoreMatrix,
  stackDownstream,
  stackUpstream,
  upstreamRange,
} from './matrix.js';
import { edgePatching } from './patching.js';
import { EDGE_METHOD_KINDS, type EdgeAttributeOptions, type EdgeScores } from './types.js';

/** Default bound on the method's largest tensors together (EdgeAttributeOptions.maxBytes). */
export const DEFAULT_EDGE_MAX_BYTES = 8 * 1024 ** 3;

/** Per method: the dense score values, [n_up·n_down] ('sum') or [T·n_up·n_down] ('each'), and the two metrics. */
interface Dense {
  readonly mSource: number;
  readonly mBase: number;
  readonly values: Float32Array;
}

/**
 * Edge attribution (docs/method.md §17) behind one interface, as `attribute` is for sites: EAP (RelP on edges with
 * `rules`), EAP-IG over the input embeddings or each upstream layer's activations, and exact edge patching on a
 * sample of edges. Every option is checked (BAD_INPUT: an unknown method or edge name, a layer or head out of
 * range, an edge that does not exist, a graph too large for `maxBytes`) before any run.
 */
export async function attributeEdges(
  model: LanguageModel,
  batch: PairBatch,
  options: EdgeAttributeOptions,
): Promise<EdgeScores> {
  const bad = (message: string): never => {
    throw new RelpError(ErrorCodes.BadInput, message);
  };
  if (!(EDGE_METHOD_KINDS as readonly string[]).includes(options.method)) {
    bad(`unknown edge method '${String(options.method)}'; choose one of ${EDGE_METHOD_KINDS.join(', ')}`);
  }
  const patching = options.method === 'edge-patching';
  const ig = options.method === 'eap-ig-inputs' || options.method === 'eap-ig-activations';
  const rules = options.rules ?? NO_RULES;
  if (patching && rules !== NO_RULES) bad('edge patching runs forward passes only: LRP rules do not apply');
  // A knob the method would ignore is an error, not silence.
  if (!ig && options.steps !== undefined) bad(`steps do not apply to ${options.method}`);
  if (options.method === 'eap' && options.maxBatchRows !== undefined) {
    bad('maxBatchRows does not apply to eap (one pass each way); it bounds edge patching and EAP-IG');
  }
  const steps = options.steps ?? 10;
  if (!Number.isInteger(steps) || steps < 1 || steps > 10_000) {
    bad(`steps must be a whole number in 1..10000, got ${steps}`);
  }
  const direction = options.direction ?? 'denoising';
  if (direction !== 'denoising' && direction !== 'noising') bad(`unknown direction '${String(direction)}'`);
  const positions = options.positions ?? 'sum';
  if (positions !== 'sum' && positions !== 'each') bad(`positions must be 'sum' or 'each'`);
  const maxRows = options.maxBatchRows ?? 64;
  if (!Number.isInteger(maxRows) || maxRows < 1)
    bad(`maxBatchRows must be a whole number ≥ 1, got ${maxRows}`);
  const maxBytes = options.maxBytes ?? DEFAULT_EDGE_MAX_BYTES;
  if (!(maxBytes > 0)) bad(`maxBytes must be > 0, got ${maxBytes}`);
  if (patching && options.edges === undefined) {
    bad('edge patching needs the edges to patch (`edges`: a sample of "u->v" names)');
  }
  if (options.edges !== undefined && (!Array.isArray(options.edges) || options.edges.length === 0)) {
    bad('`edges` must be a non-empty list of "u->v" names');
  }
  checkRulesCover(rules, model.nonlinearities, model.architecture);
  const g = modelEdgeGraph(model);
  const index = options.edges === undefined ? allEdges(g) : parseEdges(g, options.edges);
  const copiesFit = checkMemory(model, batch, g, positions === 'each', patching, maxBytes);

  const metric = options.metric ?? logitDiff;
  const job = new Job(model, batch, metric, direction, rules, options.signal, options.onProgress, {
    extraSites: EDGE_SITE_DEFS,
  });
  try {
    const each = positions === 'each';
    let dense: Dense | undefined;
    let perEdge: number[] | number[][] | undefined;
    let mSource: number;
    let mBase: number;
    if (patching) {
      const out = await edgePatching(job, g, index, each, maxRows);
      ({ mSource, mBase } = out);
      perEdge = out.scores;
    } else {
      dense =
        options.method === 'eap'
          ? await eap(job, g, each)
          : options.method === 'eap-ig-inputs'
            ? await igInputs(job, g, each, steps, maxRows, copiesFit)
            : await igActivations(job, g, each, steps, maxRows, copiesFit);
      ({ mSource, mBase } = dense);
    }
    const mClean = direction === 'denoising' ? mSource : mBase;
    const mCorrupt = direction === 'denoising' ? mBase : mSource;
    const span = mClean - mCorrupt;
    if (options.normalize && (span === 0 || !Number.isFinite(span))) {
      bad(`cannot normalise: the metric is ${mClean} on clean and ${mCorrupt} on corrupt prompts`);
    }
    const by = options.normalize ? span : 1;
    const T = batch.seqLen;
    const up = g.upstream.length;
    const down = g.downstream.length;
    const scores: number[] | number[][] =
      perEdge !== undefined
        ? each
          ? (perEdge as number[][]).map((row) => row.map((x) => x / by))
          : (perEdge as number[]).map((x) => x / by)
        : each
          ? index.map(([u, v]) =>
              // Exactly +0 before the first difference (a product with 0 can be −0).
              Array.from({ length: T }, (_, p) =>
                p < batch.firstDiff ? 0 : dense!.values[(p * up + u) * down + v]! / by,
              ),
            )
          : index.map(([u, v]) => dense!.values[u * down + v]! / by);
    const label =
      options.label ?? (options.method === 'eap' && rules !== NO_RULES ? rules.name : options.method);
    return {
      method: options.method,
      label,
      rules: rules.name,
      direction,
      metric: { name: metric.name, clean: mClean, corrupt: mCorrupt, normalized: options.normalize === true },
      graph: g,
      edges: index.map(([u, v]) => edgeName(g, u, v)),
      index,
      positions,
      scores,
      batchSize: batch.size,
      seqLen: T,
      firstDiff: batch.firstDiff,
      cost: job.cost(),
    };
  } finally {
    job.dispose();
  }
}

/**
 * Memory a split run takes per copy of the batch, in tensors of [B,T,d] per reader per layer: every reader's copy
 * of the residual, its norm's intermediates and their gradients. Calibrated on GPT-2 small with random weights,
 * 8 × 15 tokens, native backend: EAP peaked at 3.9 GB (0.5 GB of weights), EAP-IG with 4 stacked steps at 10.9 GB,
 * about 2.6 GB per copy; 18 such tensors make 2.9 GB.
 */
const SPLIT_TAPE_TENSORS = 18;

/**
 * The bytes a method's own tensors take (the upstream differences and the downstream gradients, each also
 * transposed for the product, the dense score matrix, and one copy's split backward tape), and how many stacked
 * copies (IG's steps) fit in `maxBytes`; BAD_INPUT when not even one does, before any run.
 */
function checkMemory(
  model: LanguageModel,
  batch: PairBatch,
  g: EdgeGraph,
  each: boolean,
  patching: boolean,
  maxBytes: number,
): number {
  const { dModel: d, nLayers: L, nHeads: H, nKvHeads: Hkv } = model.dims;
  const cells = batch.size * batch.seqLen * d;
  const up = g.upstream.length;
  const down = g.downstream.length;
  const fixed = patching
    ? 4 * cells * up * 3
    : 4 * (2 * cells * (up + down) + (each ? batch.seqLen : 1) * up * down);
  const perCopy = patching ? 0 : 4 * cells * L * (H + 2 * Hkv) * SPLIT_TAPE_TENSORS;
  const bytes = fixed + perCopy;
  if (bytes > maxBytes) {
    throw new RelpError(
      ErrorCodes.BadInput,
      `the edge graph (${up} upstream × ${down} downstream nodes, ${g.nEdges} edges) over ${batch.size} × ` +
        `${batch.seqLen} tokens needs about ${(bytes / 1024 ** 2).toFixed(0)} MB, over the limit of ` +
        `${(maxBytes / 1024 ** 2).toFixed(0)} MB (maxBytes): use fewer pairs or positions 'sum'`,
      { details: { bytes, maxBytes, edges: g.nEdges } },
    );
  }
  return perCopy === 0 ? Number.POSITIVE_INFINITY : Math.floor((maxBytes - fixed) / perCopy);
}

/** The scores of every (u, v) pair from upstream differences and downstream gradients, on the host. */
async function denseScores(a: tf.Tensor4D, gr: tf.Tensor4D, job: Job, each: boolean): Promise<Float32Array> {
  const s = scoreMatrix(a, gr, job.batch.firstDiff, each);
  try {
    return (await s.data()) as Float32Array;
  } finally {
    s.dispose();
  }
}

/** Source − base of every upstream node, [B,T,n_up,d]. */
function differences(
  g: EdgeGraph,
  source: ReadonlyMap<SiteKey, tf.Tensor>,
  base: ReadonlyMap<SiteKey, tf.Tensor>,
) {
  return tf.tidy(() => tf.sub(stackUpstream(g, source), stackUpstream(g, base)) as tf.Tensor4D);
}

function residShape(job: Job): [number, number, number] {
  return [job.batch.size, job.batch.seqLen, job.model.dims.dModel];
}

/**
 * EAP, and RelP on edges with rules: the source run recording every upstream node, the base run recording them
 * with gradients at every downstream input (split sites), then (a_source − a_base)·∂m/∂in_v for every pair.
 * 2 forward passes and 1 backward pass.
 */
async function eap(job: Job, g: EdgeGraph, each: boolean): Promise<Dense> {
  const up = edgeUpstreamKeys(g);
  job.progress('forward (source)', 0, 3);
  const source = await job.cachedRun('source', up);
  let base: Awaited<ReturnType<typeof metricAndSiteGrads>> | undefined;
  const owned: tf.Tensor[] = [];
  try {
    job.progress('forward + backward (base)', 1, 3);
    base = await metricAndSiteGrads(job, { tokens: job.baseTokens }, edgeDownstreamKeys(g), { cache: up });
    const a = differences(g, source.cache, base.cache);
    owned.push(a);
    const gr = stackDownstream(g, base.grads, residShape(job));
    owned.push(gr);
    const values = await denseScores(a, gr, job, each);
    job.progress('scores', 3, 3);
    return { mSource: source.m, mBase: base.m, values };
  } finally {
    disposeAll(source.cache, owned);
    if (base) disposeAll(base.grads, base.cache);
  }
}

/**
 * EAP-IG over the inputs: the embeddings interpolated from base to source in N steps (α_k = k/N), every downstream
 * input's gradient averaged over the steps, times each upstream node's source − base difference.
 */
async function igInputs(
  job: Job,
  g: EdgeGraph,
  each: boolean,
  steps: number,
  maxRows: number,
  copiesFit: number,
): Promise<Dense> {
  const up = edgeUpstreamKeys(g);
  const down = edgeDownstreamKeys(g);
  const B = job.batch.size;
  // Stacked steps per pass: at most maxBatchRows rows, and what fits in maxBytes.
  const perChunk = Math.max(1, Math.min(Math.floor(maxRows / B), copiesFit));
  const source = await job.cachedRun('source', up);
  let base: Awaited<ReturnType<Job['cachedRun']>> | undefined;
  const sums = new Map<SiteKey, tf.Tensor>();
  const owned: tf.Tensor[] = [];
  try {
    base = await job.cachedRun('base', up);
    const eBase = job.model.embed(job.baseTokens);
    owned.push(eBase);
    const eSource = job.model.embed(job.sourceTokens);
    owned.push(eSource);
    await embeddingPathGradSums(job, eBase, eSource, down, sums, steps, perChunk);
    const a = differences(g, source.cache, base.cache);
    owned.push(a);
    const gr = tf.tidy(() => tf.div(stackDownstream(g, sums, residShape(job)), steps) as tf.Tensor4D);
    owned.push(gr);
    return { mSource: source.m, mBase: base.m, values: await denseScores(a, gr, job, each) };
  } finally {
    disposeAll(source.cache, sums, owned);
    if (base) disposeAll(base.cache);
  }
}

/**
 * EAP-IG over the activations: per upstream layer (the input; each layer's heads together; each MLP), its
 * activation interpolated from base to source in N steps (α_k = k/N) in a run that is the base run everywhere
 * else, started at its block from the base run's residual; the gradient at every input downstream of it averaged
 * over the steps, times each of its nodes' source − base difference. Edges from other layers take their own runs.
 */
async function igActivations(
  job: Job,
  g: EdgeGraph,
  each: boolean,
  steps: number,
  maxRows: number,
  copiesFit: number,
): Promise<Dense> {
  const up = edgeUpstreamKeys(g);
  const L = g.nLayers;
  const B = job.batch.size;
  // Stacked steps per pass: at most maxBatchRows rows, and what fits in maxBytes.
  const perChunk = Math.max(1, Math.min(Math.floor(maxRows / B), copiesFit));
  const starts = Array.from({ length: L }, (_, l) => siteKey(Site.ResidPre, l));
  const source = await job.cachedRun('source', up);
  let base: Awaited<ReturnType<Job['cachedRun']>> | undefined;
  const owned: tf.Tensor[] = [];
  const T = job.batch.seqLen;
  const nUp = g.upstream.length;
  const nDown = g.downstream.length;
  const values = new Float32Array((each ? T : 1) * nUp * nDown);
  try {
    base = await job.cachedRun('base', [...new Set([...up, ...starts])]);
    const a = differences(g, source.cache, base.cache);
    owned.push(a);
    const as = alphas(steps);
    let done = 0;
    job.progress('integrated gradients', 0, up.length * steps);
    for (const key of up) {
      const { first, count } = upstreamRange(g, key);
      const start = upstreamWrite(g, first).block;
      // The inputs that read this layer's writes (they all read after every node of the layer).
      const down = [
        ...new Set(
          g.downstream
            .map((_, v) => v)
            .filter((v) => g.prev[v]! > first)
            .map((v) => downstreamRead(g, v).key),
        ),
      ];
      const sums = new Map<SiteKey, tf.Tensor>();
      try {
        for (let s = 0; s < as.length; s += perChunk) {
          job.checkAborted();
          const chunk = as.slice(s, s + perChunk);
          const n = chunk.length;
          const run: tf.Tensor[] = [];
          try {
            const value = interpolate(base.cache.get(key)!, source.cache.get(key)!, chunk);
            run.push(value);
            const mask = tf.ones(value.shape, 'bool');
            run.push(mask);
            const patches = new Map<SiteKey, Patch[]>([[key, [{ mask, value }]]]);
            const resid = tf.tile(base.cache.get(starts[start]!)!, [n, 1, 1]) as tf.Tensor3D;
            run.push(resid);
            const { grads } = await metricAndSiteGrads(job, { resid, layer: start }, down, {
              copies: n,
              rows: n * B,
              fromLayer: start,
              patches,
              computeMetric: summedCopiesMetric(job, n),
            });
            addCopies(job, sums, grads, n);
          } finally {
            disposeAll(run);
          }
          done += n;
          job.progress('integrated gradients', done, up.length * steps);
        }
        const part = tf.tidy(() => {
          const gr = tf.div(stackDownstream(g, sums, residShape(job)), steps) as tf.Tensor4D;
          const rows = tf.slice(a, [0, 0, first, 0], [-1, -1, count, -1]) as tf.Tensor4D;
          return scoreMatrix(rows, gr, job.batch.firstDiff, each);
        });
        const data = await part.data();
        part.dispose();
        // Rows first … first+count−1 of the dense matrix ([T,] n_up, n_down).
        for (let p = 0; p < (each ? T : 1); p++) {
          values.set(data.subarray(p * count * nDown, (p + 1) * count * nDown), (p * nUp + first) * nDown);
        }
      } finally {
        disposeAll(sums);
      }
    }
    return { mSource: source.m, mBase: base.m, values };
  } finally {
    disposeAll(source.cache, owned);
    if (base) disposeAll(base.cache);
  }
}
