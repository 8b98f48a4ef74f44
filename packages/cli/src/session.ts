import {
  type AttributionResult,
  attribute,
  type BackendChoice,
  batchTokens,
  type Direction,
  makePairBatch,
  type PairBatch,
  RunContext,
  type SiteRequest,
} from '@relp/core';
import { badInput } from '@relp/core/errors';
import {
  checkSettings,
  compareMethods,
  type MethodSettings,
  methodOptions,
  type NamedMethod,
  parseMethodList,
} from '@relp/methods';
import type { AgreementRow, MethodGrids } from '@relp/report';
import * as tf from '@tensorflow/tfjs-core';
import { chooseBackend } from './backends.js';
import { type DataOptions, type ResolvedData, resolveData } from './data.js';
import { type CliIo, Log } from './io.js';
import { type LoadedForCli, loadForCli } from './model.js';
import { ProgressBar } from './progress.js';
import { type Provenance, provenance } from './provenance.js';

export interface CommonOptions extends DataOptions {
  readonly model?: string;
  readonly backend?: string;
  readonly quiet?: boolean;
  readonly json?: boolean;
  readonly force?: boolean;
}

export interface Session {
  readonly io: CliIo;
  readonly log: Log;
  readonly progress: ProgressBar;
  readonly backend: BackendChoice;
  readonly loaded: LoadedForCli;
}

/** Backend (printed with its reason), then the model and its tokenizer. */
export async function openSession(o: CommonOptions, io: CliIo, defaultModel?: string): Promise<Session> {
  const log = new Log(io, o.quiet === true);
  const progress = new ProgressBar(io, o.quiet === true);
  const backend = await chooseBackend(o.backend, io.env);
  log.info(`backend: ${backend.name} (${backend.reason})`);
  const ref = o.model ?? defaultModel;
  if (!ref) throw badInput('no model given: pass --model <folder|hub id>');
  const loaded = await loadForCli(ref, io.env, (p) =>
    progress.update({
      phase: `${p.alias} ${p.phase}`,
      done: p.bytesDone,
      total: p.bytesTotal ?? p.bytesDone,
    }),
  );
  for (const w of loaded.warnings) log.warn(w);
  const src = loaded.source;
  log.info(
    `model: ${src.kind === 'hub' ? src.id : src.path} (${loaded.model.architecture}, ${loaded.model.dims.nLayers} layers, ` +
      `hash ${src.contentHash.slice(0, 12)}…), tokenizer: ${loaded.tokenizerSource}`,
  );
  return { io, log, progress, backend, loaded };
}

export interface SessionData extends ResolvedData {
  readonly batch: PairBatch;
}

export async function loadData(s: Session, o: DataOptions): Promise<SessionData> {
  const data = await resolveData(o, s.loaded.model, s.loaded.tokenizer, s.io.cwd);
  if (data.droppedNote) s.log.warn(data.droppedNote);
  const pad = (s.loaded.tokenizer as { eosId?: number } | undefined)?.eosId ?? 0;
  const batch = makePairBatch(data.pairs, {
    dims: s.loaded.model.dims,
    padId: pad < s.loaded.model.dims.vocabSize ? pad : 0,
  });
  s.log.info(
    `data: ${batch.size} pairs, ${batch.seqLen} positions, first difference at position ${batch.firstDiff}`,
  );
  return { ...data, batch };
}

export function sessionProvenance(
  s: Session,
  data: SessionData,
  extra: Readonly<Record<string, unknown>> = {},
): Provenance {
  return provenance(
    s.io.argv,
    s.loaded.source,
    s.loaded.model.architecture,
    s.loaded.tokenizerSource,
    data.description,
    s.backend,
    extra,
  );
}

export interface AttributeRunOptions {
  readonly sites: readonly SiteRequest[];
  readonly normalize?: boolean;
  readonly direction?: Direction;
  /** The user's settings, from cliSettings. */
  readonly settings?: MethodSettings;
}

/** How the CLI spells a method setting (igSteps → --ig-steps). */
function settingFlag(setting: string): string {
  return `--${setting.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/**
 * The settings the user passed (--ig-steps, --max-batch-rows), checked against the methods that will run: one that
 * none of them takes is BAD_INPUT, before any model is loaded.
 */
export function cliSettings(
  methods: readonly NamedMethod[],
  o: { readonly igSteps?: number; readonly maxBatchRows?: number },
): MethodSettings {
  const settings = {
    ...(o.igSteps === undefined ? {} : { igSteps: o.igSteps }),
    ...(o.maxBatchRows === undefined ? {} : { maxBatchRows: o.maxBatchRows }),
  };
  checkSettings(methods, settings, settingFlag);
  return settings;
}

function logCost(s: Session, name: string, r: AttributionResult): void {
  s.progress.stop();
  s.log.info(
    `${name}: ${r.cost.forwardPasses} forward, ${r.cost.backwardPasses} backward, ${r.cost.seconds.toFixed(2)} s`,
  );
}

export async function runMethod(
  s: Session,
  batch: PairBatch,
  m: NamedMethod,
  o: AttributeRunOptions,
): Promise<AttributionResult> {
  const result = await attribute(s.loaded.model, batch, {
    ...methodOptions(m, o.settings),
    sites: o.sites,
    ...(o.normalize ? { normalize: true } : {}),
    ...(o.direction ? { direction: o.direction } : {}),
    onProgress: s.progress.labelled(m.name),
  });
  logCost(s, m.name, result);
  return result;
}

export function toGrids(r: AttributionResult): MethodGrids {
  return {
    label: r.label,
    rules: r.rules,
    scores: r.scores as MethodGrids['scores'],
    granularity: r.granularity as MethodGrids['granularity'],
    cost: { ...r.cost },
  };
}

const WARM_UP = parseMethodList('atp')[0]!;

/** What the seconds of a comparison's cost table measure. */
export const COMPARISON_TIMING =
  'seconds: one timed run each, after one untimed warm-up run of AtP on the same prompts, as the benchmarks warm up';

/**
 * Activation patching and each method on the same batch (compareMethods), and their agreement per site type.
 * One untimed AtP run goes first: the first forward and backward passes of a process pay one-off costs (kernel
 * set-up, memory growth) that would otherwise be charged to whichever method runs first (COMPARISON_TIMING).
 */
export async function runComparison(
  s: Session,
  batch: PairBatch,
  methods: readonly NamedMethod[],
  o: AttributeRunOptions & { topK?: number },
): Promise<{ reference: AttributionResult; results: AttributionResult[]; agreement: AgreementRow[] }> {
  await attribute(s.loaded.model, batch, { ...methodOptions(WARM_UP), sites: o.sites });
  const cmp = await compareMethods(s.loaded.model, batch, {
    methods,
    sites: o.sites,
    settings: o.settings ?? {},
    ...(o.normalize ? { normalize: true } : {}),
    ...(o.direction ? { direction: o.direction } : {}),
    ...(o.topK === undefined ? {} : { topK: o.topK }),
    onProgress: (m, p) => s.progress.labelled(m.name)(p),
    onResult: (m, r) => logCost(s, m.name, r),
  });
  return {
    reference: cmp.reference!,
    results: [...cmp.results],
    agreement: cmp.agreement.map(({ method, site, agreement: a }) => ({
      method,
      site,
      pearson: a.pearson,
      spearman: a.spearman,
      topK: a.topK,
      sign: a.sign,
      cells: a.cells,
    })),
  };
}

/** The model's behaviour on the clean prompts: accuracy (answer logit > wrong logit) and mean logit difference. */
export async function behaviour(
  s: Session,
  batch: PairBatch,
): Promise<{ accuracy: number; meanLogitDiff: number; perPrompt: number[] }> {
  const tokens = batchTokens(batch, 'clean');
  try {
    const diffs = tf.tidy(() => {
      const logits = s.loaded.model.forward({ tokens }, new RunContext(), {
        readout: [...batch.lastPositions],
      });
      const v = logits.shape[2];
      const flat = tf.reshape(logits, [batch.size, v]);
      const sign = tf.sub(
        tf.oneHot(
          tf.tensor1d(
            batch.pairs.map((p) => p.answer),
            'int32',
          ),
          v,
        ),
        tf.oneHot(
          tf.tensor1d(
            batch.pairs.map((p) => p.wrong),
            'int32',
          ),
          v,
        ),
      );
      return tf.sum(tf.mul(flat, sign), 1);
    });
    const d = Array.from(await diffs.data());
    diffs.dispose();
    return {
      accuracy: d.filter((x) => x > 0).length / d.length,
      meanLogitDiff: d.reduce((a, b) => a + b, 0) / d.length,
      perPrompt: d,
    };
  } finally {
    tokens.dispose();
  }
}
