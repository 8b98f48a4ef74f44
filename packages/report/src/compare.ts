import {
  type Figure,
  type FigureGrid,
  figureFiles,
  type HtmlReport,
  renderHtml,
  type Section,
} from './html.js';
import { heatmapSvg, scatterSvg, tokenLabel } from './plots.js';
import { fixed, fmt } from './svg.js';
import type { Table } from './table.js';

/** Scores per site: [layer][position], or [layer][position][head|neuron]. */
export type Grid = number[][] | number[][][];

export interface MethodGrids {
  /** "activation-patching", "atp", "relp", … */
  readonly label: string;
  readonly rules?: string;
  readonly scores: Readonly<Record<string, Grid>>;
  readonly granularity?: Readonly<Record<string, 'position' | 'head' | 'neuron'>>;
  readonly cost: Readonly<Record<string, number>>;
}

/** Agreement of one method with activation patching on one site type (computed by the caller). */
export interface AgreementRow {
  readonly method: string;
  readonly site: string;
  readonly pearson: number;
  readonly spearman: number;
  readonly topK?: number;
  readonly sign?: number;
  readonly cells?: number;
}

export interface CompareReportInput {
  readonly title: string;
  readonly subtitle?: string;
  /** Token strings of the first clean prompt, one per position. */
  readonly tokenLabels: readonly string[];
  readonly reference: MethodGrids;
  readonly methods: readonly MethodGrids[];
  readonly agreement: readonly AgreementRow[];
  readonly provenance: Readonly<Record<string, unknown>>;
  /** Metric values, dropped-pair notes, model accuracy … shown before the table. */
  readonly notes?: readonly string[];
  /** What the cost table's seconds are (e.g. "after an untimed warm-up run"), shown under it. */
  readonly costNote?: string;
  /** Sections placed before the figures (e.g. the demo's model behaviour). */
  readonly extraSections?: readonly Section[];
  /** Extra fields stored in report.json. */
  readonly extra?: Readonly<Record<string, unknown>>;
}

export interface RenderedReport {
  /** File name → content: report.html, report.json and every SVG. */
  readonly files: Readonly<Record<string, string>>;
  readonly agreementTable: Table;
  readonly costTable: Table;
  /** The scatter plots, one per site type, and the heatmaps, one row per site type and one column per method. */
  readonly scatters: readonly Figure[];
  readonly heatmaps: FigureGrid;
}

/** A safe file-name fragment. */
export function slug(s: string): string {
  return s.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^-+|-+$/g, '') || 'x';
}

/** A 2-D view of a grid for a heatmap: heads → [layer][head] summed over positions; neurons → [layer][position]. */
export function displayGrid(
  grid: Grid,
  granularity: 'position' | 'head' | 'neuron' = 'position',
): { grid: number[][]; cols: 'position' | 'head' } {
  const first = grid[0]?.[0];
  if (!Array.isArray(first)) return { grid: grid as number[][], cols: 'position' };
  const g3 = grid as number[][][];
  if (granularity === 'neuron') {
    return {
      grid: g3.map((layer) => layer.map((cell) => cell.reduce((a, b) => a + b, 0))),
      cols: 'position',
    };
  }
  const heads = first.length;
  return {
    grid: g3.map((layer) =>
      Array.from({ length: heads }, (_, h) => layer.reduce((a, cell) => a + (cell[h] ?? 0), 0)),
    ),
    cols: 'head',
  };
}

function flat(grid: Grid): number[] {
  return (grid as unknown[]).flat(2) as number[];
}

export function agreementTable(rows: readonly AgreementRow[]): Table {
  return {
    header: ['method', 'site', 'pearson', 'spearman', 'top-k', 'sign', 'cells'],
    rows: rows.map((a) => [
      a.method,
      a.site,
      fixed(a.pearson),
      fixed(a.spearman),
      a.topK === undefined ? '—' : fixed(a.topK, 2),
      a.sign === undefined ? '—' : fixed(a.sign, 2),
      a.cells ?? '—',
    ]),
  };
}

export function costTable(methods: readonly MethodGrids[]): Table {
  return {
    header: ['method', 'rules', 'forward', 'backward', 'fwd equiv.', 'seconds', 'peak MiB'],
    rows: methods.map((m) => [
      m.label,
      m.rules ?? 'none',
      m.cost.forwardPasses ?? '—',
      m.cost.backwardPasses ?? '—',
      m.cost.forwardEquivalents === undefined ? '—' : fmt(m.cost.forwardEquivalents),
      m.cost.seconds === undefined ? '—' : fixed(m.cost.seconds, 2),
      m.cost.peakTensorBytes === undefined ? '—' : fixed(m.cost.peakTensorBytes / 2 ** 20, 1),
    ]),
  };
}

/**
 * The `relp compare` report: heatmaps per method and site type (with token labels), one scatter per site type
 * (each method against activation patching), the Pearson/Spearman table, the cost table, report.json and a
 * self-contained report.html that inlines and links every SVG.
 */
export function buildCompareReport(input: CompareReportInput): RenderedReport {
  const files: Record<string, string> = {};
  const all = [input.reference, ...input.methods];
  const sites = Object.keys(input.reference.scores);
  const heatmaps: FigureGrid = {
    columns: all.map((m) => m.label),
    rows: sites.map((site) => ({
      label: site,
      cells: all.map((m) => {
        const g = m.scores[site];
        if (!g) return undefined;
        const { grid, cols } = displayGrid(g, m.granularity?.[site]);
        const file = `heatmap-${slug(m.label)}-${slug(site)}.svg`;
        const svg = heatmapSvg({
          grid,
          title: `${m.label} · ${site}`,
          rowLabels: grid.map((_, l) => `L${l}`),
          colLabels:
            cols === 'head'
              ? (grid[0] ?? []).map((_, h) => `H${h}`)
              : (grid[0] ?? []).map((_, p) => tokenLabel(input.tokenLabels[p] ?? `[${p}]`, p)),
          rowTitle: 'layer',
          colTitle: cols === 'head' ? 'head (summed over positions)' : 'position',
        });
        files[file] = svg;
        return { file, svg, caption: `${m.label}, ${site}` };
      }),
    })),
  };
  const scatterFigures = sites.map((site) => {
    const ref = flat(input.reference.scores[site]!);
    const series = input.methods
      .filter((m) => m.scores[site])
      .map((m) => {
        const est = flat(m.scores[site]!);
        return { name: m.label, points: ref.map((x, i) => [x, est[i] ?? Number.NaN] as const) };
      });
    const file = `scatter-${slug(site)}.svg`;
    const svg = scatterSvg({
      title: `${site}: estimate vs activation patching`,
      series,
      xLabel: 'activation patching',
      yLabel: 'estimate',
      diagonal: true,
    });
    files[file] = svg;
    return { file, svg, caption: `${site}: every cell, each method against activation patching` };
  });
  const agreement = agreementTable(input.agreement);
  const costs = costTable(all);
  const report: HtmlReport = {
    title: input.title,
    ...(input.subtitle === undefined ? {} : { subtitle: input.subtitle }),
    provenance: input.provenance,
    sections: [
      ...(input.extraSections ?? []),
      {
        heading: 'Agreement with activation patching',
        paragraphs: input.notes ?? [],
        tables: [
          { caption: 'Pearson and Spearman correlation per method and site type', table: agreement },
          { caption: costCaption(input.costNote), table: costs },
        ],
      },
      { heading: 'Scatter plots', figures: scatterFigures },
      heatmapSection(heatmaps),
    ],
  };
  files['report.html'] = renderHtml(report);
  files['report.json'] = `${JSON.stringify(
    {
      title: input.title,
      provenance: input.provenance,
      tokenLabels: input.tokenLabels,
      agreement: input.agreement,
      methods: all.map((m) => ({
        label: m.label,
        rules: m.rules ?? 'none',
        cost: m.cost,
        granularity: m.granularity ?? {},
        scores: m.scores,
      })),
      figures: figureFiles(report),
      ...(input.extra ?? {}),
    },
    (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v),
    1,
  )}\n`;
  return { files, agreementTable: agreement, costTable: costs, scatters: scatterFigures, heatmaps };
}

/** The cost table's caption: what its seconds measure, when the caller says. */
export function costCaption(note?: string): string {
  return note ? `Cost per method (${note})` : 'Cost per method';
}

/** The heatmaps as one grid: a row per site type, a column per method, so one site's methods sit side by side. */
export function heatmapSection(heatmaps: FigureGrid, heading = 'Heatmaps'): Section {
  return {
    heading,
    paragraphs: [
      `One row per site type, one column per method (${heatmaps.columns.join(', ')}); each heatmap has its own colour scale, symmetric around 0.`,
    ],
    grid: heatmaps,
  };
}
