import { parseMethodList } from '@relp/methods';
import {
  buildCompareReport,
  costCaption,
  type Figure,
  fixed,
  fmt,
  formatTable,
  heatmapSection,
  renderHtml,
  type Section,
  type Table,
} from '@relp/report';
import type { CliIo } from '../io.js';
import { checkWritable, toJson, writeFolderAtomic } from '../output.js';
import {
  behaviour,
  COMPARISON_TIMING,
  type CommonOptions,
  loadData,
  openSession,
  runComparison,
  sessionProvenance,
  toGrids,
} from '../session.js';
import { parseSites } from '../sites.js';
import { REFERENCE_DEMO } from './reproduce.js';

export interface DemoCommandOptions extends CommonOptions {
  readonly methods: string;
  readonly sites: string;
  readonly out: string;
  readonly generated: boolean;
}

/** The demo's model: --model, else RELP_DEMO_MODEL, else SmolLM2-135M (fetched into the cache when absent). */
export const DEFAULT_DEMO_MODEL = 'smollm2-135m';

export function demoModel(o: { model?: string }, env: Readonly<Record<string, string | undefined>>): string {
  return o.model ?? env.RELP_DEMO_MODEL ?? DEFAULT_DEMO_MODEL;
}

/**
 * `relp demo`: IOI on the reference 8 prompts and on N generated prompts: the model's accuracy and logit
 * difference, then activation patching vs AtP vs RelP per site type, with a report per set.
 */
export async function demoCommand(o: DemoCommandOptions, io: CliIo): Promise<void> {
  const methods = parseMethodList(o.methods);
  const sites = parseSites(o.sites);
  checkWritable(o.out, o.force === true, 'output folder');
  const s = await openSession(o, io, demoModel(o, io.env));
  const sets = [
    {
      name: 'reference-8',
      title: 'IOI, the 8 prompts of the RelP reference demo',
      data: { task: 'ioi-demo' },
    },
    ...(o.generated
      ? [
          {
            name: `generated-${o.n ?? 100}`,
            title: `IOI, ${o.n ?? 100} prompts generated with seed ${o.seed ?? 0} (Wang et al. templates, s2-swap)`,
            data: { task: 'ioi', n: o.n ?? 100, seed: o.seed ?? 0, corruption: 's2-swap' },
          },
        ]
      : []),
  ];
  const files: Record<string, string> = {};
  const summaryRows: (string | number)[][] = [];
  const behaviourRows: (string | number)[][] = [];
  const out: Record<string, unknown> = {};
  /** Each set's pictures and costs, shown in the top-level report too (its files are in the set's folder). */
  const setSections: Section[] = [];
  let provenance: Record<string, unknown> = {};
  for (const set of sets) {
    s.log.info(`— ${set.title}`);
    const data = await loadData(s, { ...set.data, ...(o.bos === undefined ? {} : { bos: o.bos }) });
    const b = await behaviour(s, data.batch);
    behaviourRows.push([set.name, data.batch.size, fixed(b.accuracy * 100, 1), fixed(b.meanLogitDiff, 3)]);
    s.log.info(
      `IOI accuracy ${(b.accuracy * 100).toFixed(1)}%, mean logit difference ${b.meanLogitDiff.toFixed(3)}`,
    );
    const cmp = await runComparison(s, data.batch, methods, { sites, normalize: true });
    for (const a of cmp.agreement)
      summaryRows.push([set.name, a.method, a.site, fixed(a.pearson), fixed(a.spearman)]);
    const prov = sessionProvenance(s, data, {
      methods: methods.map((m) => m.name),
      sites: o.sites,
      normalize: true,
    });
    provenance = { ...prov, data: sets.map((x) => x.data) };
    const m = cmp.reference.metric;
    const report = buildCompareReport({
      title: `relp demo · ${set.title}`,
      tokenLabels: data.labels,
      reference: toGrids(cmp.reference),
      methods: cmp.results.map(toGrids),
      agreement: cmp.agreement,
      notes: [
        `Model behaviour on the clean prompts: accuracy ${(b.accuracy * 100).toFixed(1)}% (answer logit above the wrong one), ` +
          `mean logit difference ${fmt(b.meanLogitDiff, 4)}. Metric: clean ${fmt(m.clean, 4)}, corrupt ${fmt(m.corrupt, 4)}; ` +
          'scores are of the normalised metric (1 = clean, 0 = corrupt), as in the paper demo.',
        ...(data.droppedNote ? [data.droppedNote] : []),
      ],
      costNote: COMPARISON_TIMING,
      provenance: prov,
      extra: { behaviour: b },
    });
    for (const [name, content] of Object.entries(report.files)) files[`${set.name}/${name}`] = content;
    const inSet = (f: Figure): Figure => ({ ...f, file: `${set.name}/${f.file}` });
    setSections.push(
      {
        heading: `${set.name}: scatter plots and cost`,
        paragraphs: [`${set.title}; the full report of this set: ${set.name}/report.html`],
        tables: [{ caption: costCaption(COMPARISON_TIMING), table: report.costTable }],
        figures: report.scatters.map(inSet),
      },
      heatmapSection(
        {
          columns: report.heatmaps.columns,
          rows: report.heatmaps.rows.map((r) => ({
            label: r.label,
            cells: r.cells.map((f) => (f ? inSet(f) : undefined)),
          })),
        },
        `${set.name}: heatmaps`,
      ),
    );
    out[set.name] = { behaviour: b, metric: m, agreement: cmp.agreement };
  }
  const summary: Table = { header: ['prompts', 'method', 'site', 'pearson', 'spearman'], rows: summaryRows };
  const beh: Table = { header: ['prompts', 'n', 'accuracy %', 'logit diff'], rows: behaviourRows };
  files['report.html'] = renderHtml({
    title: 'relp demo: relevance patching on IOI',
    subtitle:
      'Activation patching (ground truth) against attribution patching (AtP) and relevance patching (RelP)',
    sections: [
      {
        heading: 'Model behaviour',
        tables: [{ table: beh }],
        paragraphs: sets.map((x) => `${x.name}: ${x.title} — full report in ${x.name}/report.html`),
      },
      {
        heading: 'Agreement with activation patching',
        paragraphs: [
          `Reference (GPT-2 small, the 8 prompts of the RelP reference demo; docs/method.md §13): ${referenceDemoSentence()}.`,
        ],
        tables: [{ table: summary }],
      },
      ...setSections,
    ],
    provenance,
  });
  files['demo.json'] = toJson({ sets: out, provenance });
  await writeFolderAtomic(o.out, files, o.force === true);
  if (o.json) {
    io.stdout.write(toJson({ out: o.out, sets: out }));
    return;
  }
  io.stdout.write(`${formatTable(beh)}\n\n${formatTable(summary)}\n\nwrote ${o.out}/report.html\n`);
}

/** "AtP 0.735 / 0.982 / 0.436, RelP 0.962 / 0.961 / 0.989 for resid_pre / attn_out / mlp_out". */
function referenceDemoSentence(): string {
  const sites = ['resid_pre', 'attn_out', 'mlp_out'] as const;
  const row = (v: Partial<Record<(typeof sites)[number], number>> | undefined) =>
    sites.map((s) => v?.[s]?.toFixed(3) ?? '—').join(' / ');
  return `AtP ${row(REFERENCE_DEMO.atp)}, RelP ${row(REFERENCE_DEMO.relp)} for ${sites.join(' / ')}`;
}
