import * as tf from '@tensorflow/tfjs-core';
import { RunContext, type RunContextOptions, type SiteHook } from '../context.js';
import { batchTokens, type PairBatch } from '../data.js';
import { PeakBytes } from '../memory.js';
import { type Metric, readMetric } from '../metrics.js';
import { type LanguageModel, type ModelInput, positionOffset } from '../model.js';
import { resolveSite, type SiteDef, type SiteKey, siteShapeInRun, splitSiteKey } from '../sites.js';
import { NO_RULES, type RuleSet } from '../slots.js';
import type { Cost, Direction, Progress } from './types.js';

/** What every run of a job carries besides the method's own patches, deltas and caches. */
export interface JobRuns {
  /** Run-time sites (not the model's own) that the hooks visit, e.g. an SAE's features and error. */
  readonly extraSites?: readonly SiteDef[];
  /** Hooks applied in every run of the job (before the method's own), e.g. an SAE splice. */
  readonly hooks?: ReadonlyMap<SiteKey, readonly SiteHook[]>;
}

/**
 * Everything the methods share about one attribution job: the model, the batch, which run is the base (the
 * run that is patched or differentiated) and which the source (where patched values come from), the metric,
 * the rules, and the cost counters.
 */
export class Job {
  readonly peak = new PeakBytes();
  forwardPasses = 0;
  backwardPasses = 0;
  /** Forward work in units of one full pass over the batch. */
  forwardEquivalents = 0;
  readonly started = performance.now();
  readonly baseTokens: tf.Tensor2D;
  readonly sourceTokens: tf.Tensor2D;
  readonly readout: number[] | undefined;
  readonly extraSites: readonly SiteDef[];
  private readonly hooks: ReadonlyMap<SiteKey, readonly SiteHook[]> | undefined;

  constructor(
    readonly model: LanguageModel,
    readonly batch: PairBatch,
    readonly metric: Metric,
    readonly direction: Direction,
    readonly rules: RuleSet = NO_RULES,
    readonly signal?: AbortSignal,
    readonly onProgress?: (p: Progress) => void,
    runs: JobRuns = {},
  ) {
    this.extraSites = runs.extraSites ?? [];
    this.hooks = runs.hooks;
    this.baseTokens = batchTokens(batch, direction === 'denoising' ? 'corrupt' : 'clean');
    this.sourceTokens = batchTokens(batch, direction === 'denoising' ? 'clean' : 'corrupt');
    this.readout = metric.readout === 'last' ? [...batch.lastPositions] : undefined;
  }

  /** Where a readout-only site's rows sit in the score grid (see reduceToGranularity); none without a readout. */
  readoutLayout(): { readonly positions: readonly number[]; readonly seqLen: number } | undefined {
    return this.readout === undefined ? undefined : { positions: this.readout, seqLen: this.batch.seqLen };
  }

  /** Readout positions for `copies` stacked copies of the batch. */
  readoutFor(copies: number): number[] | undefined {
    if (this.readout === undefined) return undefined;
    const out: number[] = [];
    for (let c = 0; c < copies; c++) out.push(...this.readout);
    return out;
  }

  context(options: Omit<RunContextOptions, 'signal' | 'peak' | 'extraSites'>): RunContext {
    const hooks = this.hooks === undefined ? options.hooks : mergeHooks(this.hooks, options.hooks);
    return new RunContext({
      ...options,
      ...(hooks === undefined ? {} : { hooks }),
      signal: this.signal,
      peak: this.peak,
      extraSites: this.extraSites,
    });
  }

  /**
   * One forward pass; counts it (blocks fromLayer.. of the `copies` copies of the batch the input starts with,
   * and each joined row's blocks from its join layer on, over the positions the input covers: all, or those from
   * a prefix run's offset on) and returns the logits. `readout` defaults to
   * the metric's readout for the copies; `vocab` restricts the logits' columns (ForwardOptions.vocab).
   */
  forward(
    input: ModelInput,
    ctx: RunContext,
    copies = 1,
    fromLayer = 0,
    options: { readout?: number[] | undefined; vocab?: number[] | undefined } = {},
  ): tf.Tensor3D {
    const readout = 'readout' in options ? options.readout : this.readoutFor(copies);
    this.forwardPasses++;
    const T = this.batch.seqLen;
    const L = this.model.dims.nLayers;
    const positions = (T - positionOffset(input)) / T;
    // Rows that join on the way (a joined run) cost their own blocks only.
    let copyBlocks = copies * (L - fromLayer);
    if ('resid' in input) {
      for (const j of input.joins ?? []) copyBlocks += (j.resid.shape[0] / this.batch.size) * (L - j.layer);
    }
    this.forwardEquivalents += (positions * copyBlocks) / L;
    return this.model.forward(input, ctx, {
      readout,
      ...(options.vocab === undefined ? {} : { vocab: options.vocab }),
    });
  }

  /** The metric of a plain run, with activations recorded at `cache`. */
  /** With `keepLogits`, also the run's logits (the caller disposes them with the cache). */
  async cachedRun(
    which: 'base' | 'source',
    cache: Iterable<SiteKey>,
    keepLogits = false,
  ): Promise<{ m: number; cache: Map<SiteKey, tf.Tensor>; logits?: tf.Tensor3D }> {
    const ctx = this.context({ cache });
    let logits: tf.Tensor3D | undefined;
    try {
      const value = tf.tidy(() => {
        const out = this.forward({ tokens: which === 'base' ? this.baseTokens : this.sourceTokens }, ctx);
        if (keepLogits) logits = tf.keep(out);
        return this.metric.compute(out, this.batch);
      });
      ctx.assertAllVisited();
      // Disposed also when the metric is not finite (readMetric throws).
      const m = await readMetric(
        value,
        this.metric,
        which === 'base' ? this.baseName : this.sourceName,
      ).finally(() => value.dispose());
      return logits === undefined ? { m, cache: ctx.takeCache() } : { m, cache: ctx.takeCache(), logits };
    } catch (e) {
      logits?.dispose();
      throw e;
    } finally {
      ctx.dispose();
    }
  }

  get baseName(): 'clean' | 'corrupt' {
    return this.direction === 'denoising' ? 'corrupt' : 'clean';
  }

  get sourceName(): 'clean' | 'corrupt' {
    return this.direction === 'denoising' ? 'clean' : 'corrupt';
  }

  /** Shape of a site's activation in a run of `rows` rows (a readout-only site has one position there). */
  shapeOf(key: SiteKey, rows = this.batch.size): number[] {
    const def = resolveSite(splitSiteKey(key).name, this.extraSites);
    return siteShapeInRun(this.model.dims, def, rows, this.batch.seqLen, this.readout !== undefined);
  }

  progress(phase: string, done: number, total: number): void {
    this.onProgress?.({ phase, done, total });
  }

  checkAborted(): void {
    this.context({}).checkAborted();
  }

  get seconds(): number {
    return (performance.now() - this.started) / 1000;
  }

  /** What the job has cost so far, as every result reports it. */
  cost(): Cost {
    return {
      forwardPasses: this.forwardPasses,
      backwardPasses: this.backwardPasses,
      forwardEquivalents: this.forwardEquivalents,
      seconds: this.seconds,
      peakTensorBytes: this.peak.value,
    };
  }

  dispose(): void {
    this.baseTokens.dispose();
    this.sourceTokens.dispose();
  }
}

/** The job's hooks, then a run's own, per key. */
function mergeHooks(
  first: ReadonlyMap<SiteKey, readonly SiteHook[]>,
  then: ReadonlyMap<SiteKey, readonly SiteHook[]> | undefined,
): ReadonlyMap<SiteKey, readonly SiteHook[]> {
  if (then === undefined) return first;
  const out = new Map(first);
  for (const [k, hs] of then) out.set(k, [...(out.get(k) ?? []), ...hs]);
  return out;
}
