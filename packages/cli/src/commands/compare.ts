import { comparedMethods, parseMethodList } from '@relp/methods';
import { buildCompareReport, fmt, formatTable } from '@relp/report';
import type { CliIo } from '../io.js';
import { checkWritable, writeFolderAtomic } from '../output.js';
import {
  COMPARISON_TIMING,
  type CommonOptions,
  cliSettings,
  loadData,
  openSession,
  runComparison,
  sessionProvenance,
  toGrids,
} from '../session.js';
import { parseSites } from '../sites.js';
import { parseDirection } from './attribute.js';

export interface CompareCommandOptions extends CommonOptions {
  readonly methods: string;
  readonly sites: string;
  readonly normalize?: boolean;
  readonly direction?: string;
  readonly out: string;
  readonly igSteps?: number;
  readonly topK?: number;
  readonly maxBatchRows?: number;
}

/** `relp compare`: activation patching and several methods on the same data → a report folder. */
export async function compareCommand(o: CompareCommandOptions, io: CliIo): Promise<void> {
  const methods = parseMethodList(o.methods);
  const settings = cliSettings(comparedMethods(methods), o);
  const sites = parseSites(o.sites);
  const direction = parseDirection(o.direction);
  checkWritable(o.out, o.force === true, 'output folder');
  const s = await openSession(o, io);
  const data = await loadData(s, o);
  const cmp = await runComparison(s, data.batch, methods, {
    sites,
    ...(o.normalize ? { normalize: true } : {}),
    ...(direction ? { direction } : {}),
    ...(o.topK === undefined ? {} : { topK: o.topK }),
    settings,
  });
  const m = cmp.reference.metric;
  const notes = [
    `${data.batch.size} pairs, ${data.batch.seqLen} positions; metric ${m.name}: clean ${fmt(m.clean, 4)}, corrupt ${fmt(m.corrupt, 4)}` +
      `${m.normalized ? ', scores of the normalised metric' : ''}; direction ${cmp.reference.direction}.`,
    ...(data.droppedNote ? [data.droppedNote] : []),
  ];
  const report = buildCompareReport({
    title: `relp compare · ${s.loaded.model.architecture} · ${String(data.description.task ?? data.description.path)}`,
    tokenLabels: data.labels,
    reference: toGrids(cmp.reference),
    methods: cmp.results.map(toGrids),
    agreement: cmp.agreement,
    notes,
    costNote: COMPARISON_TIMING,
    provenance: sessionProvenance(s, data, { methods: methods.map((x) => x.name), sites: o.sites }),
    extra: { metric: m, dropped: data.checked.dropped },
  });
  await writeFolderAtomic(o.out, report.files, o.force === true);
  if (o.json) {
    io.stdout.write(
      `${JSON.stringify({ out: o.out, metric: m, agreement: cmp.agreement, costs: [cmp.reference, ...cmp.results].map((r) => ({ method: r.label, ...r.cost })) }, null, 1)}\n`,
    );
    return;
  }
  io.stdout.write(
    `${notes[0]}\n\n${formatTable(report.agreementTable)}\n\n${formatTable(report.costTable)}\n(${COMPARISON_TIMING})\n\nwrote ${o.out}/report.html\n`,
  );
}
