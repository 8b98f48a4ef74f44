import type { PairBatch } from '../data.js';
import { ErrorCodes, RelpError } from '../errors.js';
import { logitDiff } from '../metrics.js';
import type { LanguageModel } from '../model.js';
import type { Granularity } from '../sites.js';
import { checkRulesCover, NO_RULES } from '../slots.js';
import { gradientAttribution } from './gradient.js';
import { integratedGradients } from './ig.js';
import { activationPatching } from './patching.js';
import { planSites } from './plan.js';
import { assembleGrid, type LayerScores, scaleGrid } from './reduce.js';
import { Job } from './run.js';
import { type AttributeOptions, type AttributionResult, METHOD_KNOBS, type SiteScores } from './types.js';

const METHODS = Object.keys(METHOD_KNOBS);
const ALL_KNOBS = [...new Set(Object.values(METHOD_KNOBS).flat())];

/** A knob the method would ignore is an error, not silence (JavaScript callers and spread objects escape the types). */
function checkKnobs(options: AttributeOptions): void {
  const takes = METHOD_KNOBS[options.method];
  const stray = ALL_KNOBS.filter(
    (k) => !takes.includes(k) && (options as unknown as Record<string, unknown>)[k] !== undefined,
  );
  if (stray.length === 0) return;
  throw new RelpError(
    ErrorCodes.BadInput,
    `${stray.join(', ')} ${stray.length === 1 ? 'does' : 'do'} not apply to ${options.method}` +
      (takes.length ? ` (it takes ${takes.join(', ')})` : ''),
    { details: { method: options.method, stray } },
  );
}

/**
 * One interface for every method (docs/method.md §7–§12): activation patching (the ground truth), attribution patching
 * (`atp`; RelP when `rules` are given), and integrated gradients. Scores are per site as [layer][position]
 * (or [layer][position][head|neuron]), of the raw metric unless `normalize` is set; every result carries its
 * cost. Nothing about the model changes: rules, patches and caches live in the run contexts.
 */
export async function attribute(
  model: LanguageModel,
  batch: PairBatch,
  options: AttributeOptions,
): Promise<AttributionResult> {
  if (!(METHODS as readonly string[]).includes(options.method)) {
    throw new RelpError(
      ErrorCodes.BadInput,
      `unknown method '${options.method}'; choose one of ${METHODS.join(', ')}`,
    );
  }
  const rules = options.rules ?? NO_RULES;
  if (options.method === 'activation-patching' && rules !== NO_RULES) {
    throw new RelpError(
      ErrorCodes.BadInput,
      'activation patching runs forward passes only: LRP rules do not apply',
    );
  }
  checkKnobs(options);
  checkRulesCover(rules, model.nonlinearities, model.architecture);
  const keys = planSites(model, options.sites);
  const direction = options.direction ?? 'denoising';
  if (direction !== 'denoising' && direction !== 'noising') {
    throw new RelpError(ErrorCodes.BadInput, `unknown direction '${String(direction)}'`);
  }
  const metric = options.metric ?? logitDiff;
  const job = new Job(
    model,
    batch,
    metric,
    direction,
    rules,
    options.signal,
    options.onProgress,
    options.runs,
  );
  try {
    let out: { mSource: number; mBase: number; perKey: Map<string, LayerScores>; convergenceDelta?: number };
    if (options.method === 'activation-patching') {
      out = await activationPatching(
        job,
        keys,
        options.patchingStrategy ?? 'fast',
        options.maxBatchRows ?? 64,
      );
    } else if (options.method === 'atp') {
      out = await gradientAttribution(job, keys);
    } else {
      out = await integratedGradients(
        job,
        keys,
        options.igSteps ?? 10,
        options.igInterpolate ?? 'embeddings',
        options.maxBatchRows ?? 64,
      );
    }
    const mClean = direction === 'denoising' ? out.mSource : out.mBase;
    const mCorrupt = direction === 'denoising' ? out.mBase : out.mSource;
    const span = mClean - mCorrupt;
    if (options.normalize && (span === 0 || !Number.isFinite(span))) {
      throw new RelpError(
        ErrorCodes.BadInput,
        `cannot normalise: the metric is ${mClean} on clean and ${mCorrupt} on corrupt prompts`,
      );
    }
    const scores: SiteScores = {};
    const granularity: Partial<Record<string, Granularity>> = {};
    const defs = [...new Set(keys.map((k) => k.def))];
    for (const def of defs) {
      const layers = new Map<number, LayerScores>();
      for (const k of keys) if (k.def === def) layers.set(k.layer, out.perKey.get(k.key)!);
      const grid = assembleGrid(def.layers(model.dims), layers);
      scores[def.name] = options.normalize ? scaleGrid(grid, span) : grid;
      granularity[def.name] = keys.find((k) => k.def === def)!.granularity;
    }
    const label =
      options.label ?? (options.method === 'atp' && rules !== NO_RULES ? rules.name : options.method);
    return {
      method: options.method,
      label,
      rules: rules.name,
      direction,
      metric: { name: metric.name, clean: mClean, corrupt: mCorrupt, normalized: options.normalize === true },
      scores,
      granularity,
      batchSize: batch.size,
      seqLen: batch.seqLen,
      firstDiff: batch.firstDiff,
      cost: job.cost(),
      ...(out.convergenceDelta !== undefined
        ? { convergenceDelta: options.normalize ? out.convergenceDelta / span : out.convergenceDelta }
        : {}),
    };
  } finally {
    job.dispose();
  }
}
