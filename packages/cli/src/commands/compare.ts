import { rm } from 'node:fs/promises';
import { compareGrids, type ScoreGrid } from '@relp/core';
import { comparedMethods, parseMethodList } from '@relp/methods';
import { buildCompareReport, fmt, formatTable, type MethodGrids } from '@relp/report';
import { DEFAULT_BATCH_SIZE, removeOnUserError, runBatched } from '../batched.js';
import type { CliIo } from '../io.js';
import { checkWritable, writeFolderAtomic } from '../output.js';
import { provenance } from '../provenance.js';
import { combine, dataProvenance, nothingScored } from '../result.js';
import { COMPARISON_TIMING, type CommonOptions, cliSettings, openSession } from '../session.js';
import { WHOLE } from '../shard.js';
import { parseSites } from '../sites.js';
import { openPairSource } from '../stream.js';
import { finishTotals } from '../totals.js';
import { checkpointPath, parseDirection } from './attribute.js';

export interface CompareCommandOptions extends CommonOptions {
  readonly methods: string;
  readonly sites: string;
  readonly normalize?: boolean;
  readonly direction?: string;
  readonly out: string;
  readonly igSteps?: number;
  readonly topK?: number;
  readonly maxBatchRows?: number;
  readonly batchSize?: number;
  readonly resume?: boolean;
}

/**
 * `relp compare`: activation patching and several methods on the same data → a report folder. The pairs are
 * scored in batches (--batch-size), every method on each batch, with a checkpoint after each; agreement is
 * computed once, on the whole data set's scores.
 */
export async function compareCommand(o: CompareCommandOptions, io: CliIo): Promise<void> {
  const methods = parseMethodList(o.methods);
  const run = comparedMethods(methods);
  const settings = cliSettings(run, o);
  const sites = parseSites(o.sites);
  const direction = parseDirection(o.direction);
  checkWritable(o.out, o.force === true, 'output folder');
  const s = await openSession(o, io);
  const source = await openPairSource(o, io.cwd);
  const prov = provenance(
    io.argv,
    s.loaded.source,
    s.loaded.model.architecture,
    s.loaded.tokenizerSource,
    source.description,
    s.backend,
    { methods: methods.map((x) => x.name), sites: o.sites },
  );
  const checkpoint = checkpointPath(o.out);
  const partial = await runBatched(s, {
    source,
    methods: run,
    sites,
    ...(direction ? { direction } : {}),
    normalize: o.normalize === true,
    settings,
    batchSize: o.batchSize ?? DEFAULT_BATCH_SIZE,
    shard: WHOLE,
    checkpoint,
    resume: o.resume !== false,
    ...(o.bos === undefined ? {} : { bos: o.bos }),
    command: 'compare',
    warmUp: true,
    provenance: prov,
  });
  const combined = combine([partial]);
  const finished = await removeOnUserError(checkpoint, async () =>
    combined.totals.map((t) =>
      t ? finishTotals(t, o.normalize === true) : nothingScored(combined, source.what),
    ),
  );
  const [reference, ...results] = finished.map((r) => ({
    ...r,
    scores: r.scores as Readonly<Record<string, ScoreGrid>>,
  }));
  const agreement = results.flatMap((r) =>
    Object.keys(reference!.scores)
      .filter((site) => r.scores[site] !== undefined)
      .map((site) => {
        const a = compareGrids(r.scores[site]!, reference!.scores[site]!, o.topK);
        return {
          method: r.label,
          site,
          pearson: a.pearson,
          spearman: a.spearman,
          topK: a.topK,
          sign: a.sign,
          cells: a.cells,
        };
      }),
  );
  const toGrids = (r: (typeof finished)[number]): MethodGrids => ({
    label: r.label,
    rules: r.rules,
    scores: r.scores as MethodGrids['scores'],
    granularity: r.granularity as MethodGrids['granularity'],
    cost: { ...r.cost },
  });
  const m = reference!.metric;
  const dropped = combined.dropped;
  const notes = [
    `${reference!.batchSize} pairs, ${reference!.seqLen} positions; metric ${m.name}: clean ${fmt(m.clean, 4)}, corrupt ${fmt(m.corrupt, 4)}` +
      `${m.normalized ? ', scores of the normalised metric' : ''}; direction ${reference!.direction}.`,
    ...(dropped.length > 0
      ? [`dropped ${dropped.length} of ${source.records} pairs (listed in the report's JSON).`]
      : []),
  ];
  const report = buildCompareReport({
    title: `relp compare · ${s.loaded.model.architecture} · ${String(source.description.task ?? source.description.path)}`,
    tokenLabels: combined.labels ?? [],
    reference: toGrids(reference!),
    methods: results.map(toGrids),
    agreement,
    notes,
    costNote: `${COMPARISON_TIMING}; summed over batches`,
    provenance: { ...prov, data: dataProvenance(partial, combined, reference!.batchSize) },
    extra: { metric: m, dropped },
  });
  await writeFolderAtomic(o.out, report.files, o.force === true);
  await rm(checkpoint, { force: true });
  if (o.json) {
    io.stdout.write(
      `${JSON.stringify({ out: o.out, metric: m, agreement, costs: finished.map((r) => ({ method: r.label, ...r.cost })) }, null, 1)}\n`,
    );
    return;
  }
  io.stdout.write(
    `${notes[0]}\n\n${formatTable(report.agreementTable)}\n\n${formatTable(report.costTable)}\n(${COMPARISON_TIMING})\n\nwrote ${o.out}/report.html\n`,
  );
}
