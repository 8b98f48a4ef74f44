import { type Figure, type HtmlReport, renderHtml, type Section } from './html.js';
import { esc, fixed, fmt, r, SERIES_COLORS, svgOpen, text } from './svg.js';
import type { Table } from './table.js';

export interface GroupedBarOptions {
  readonly title: string;
  /** One group of bars per label (e.g. a rule set). */
  readonly groups: readonly string[];
  /** One bar per series in every group (e.g. calibration, held-out); values[i] belongs to groups[i]. */
  readonly series: readonly { readonly name: string; readonly values: readonly number[] }[];
  readonly yLabel: string;
  /** Axis range; default [min(0, smallest value), max(1, largest value)]. NaN values draw no bar. */
  readonly yRange?: readonly [number, number];
}

/** A grouped bar chart: groups along x (labels rotated), one coloured bar per series, a legend on top. */
export function groupedBarSvg(o: GroupedBarOptions): string {
  const finite = o.series.flatMap((s) => s.values.filter(Number.isFinite));
  const [lo, hi] = o.yRange ?? [Math.min(0, ...finite), Math.max(1, ...finite)];
  const bar = 12;
  const groupWidth = bar * o.series.length + 10;
  const left = 56;
  const top = 40;
  const plotH = 220;
  const labelH = 150;
  const width = left + groupWidth * o.groups.length + 20;
  const height = top + plotH + labelH;
  const y = (v: number) => top + ((hi - Math.max(lo, Math.min(hi, v))) / (hi - lo || 1)) * plotH;
  const out = [svgOpen(width, height, o.title), text(left, 16, o.title, { 'font-weight': 'bold' })];
  o.series.forEach((s, k) => {
    const x = left + k * 130;
    out.push(
      `<rect x="${r(x)}" y="22" width="10" height="10" fill="${SERIES_COLORS[k % SERIES_COLORS.length]}"/>`,
      text(x + 14, 31, s.name),
    );
  });
  for (const t of [lo, (lo + hi) / 2, hi, ...(lo < 0 && hi > 0 ? [0] : [])]) {
    out.push(
      `<line x1="${left}" x2="${r(width - 20)}" y1="${r(y(t))}" y2="${r(y(t))}" stroke="${t === 0 ? '#888' : '#e5e5e5'}"/>`,
      text(left - 4, y(t) + 4, fmt(t), { 'text-anchor': 'end' }),
    );
  }
  out.push(
    text(14, top + plotH / 2, o.yLabel, {
      transform: `rotate(-90 14 ${r(top + plotH / 2)})`,
      'text-anchor': 'middle',
    }),
  );
  const base = y(Math.max(lo, Math.min(hi, 0)));
  o.groups.forEach((g, i) => {
    const x0 = left + i * groupWidth + 5;
    o.series.forEach((s, k) => {
      const v = s.values[i] ?? Number.NaN;
      if (!Number.isFinite(v)) return;
      const yv = y(v);
      out.push(
        `<rect x="${r(x0 + k * bar)}" y="${r(Math.min(yv, base))}" width="${bar - 1}" height="${r(Math.abs(base - yv))}" ` +
          `fill="${SERIES_COLORS[k % SERIES_COLORS.length]}"><title>${esc(`${g} · ${s.name}: ${fixed(v)}`)}</title></rect>`,
      );
    });
    const lx = x0 + (bar * o.series.length) / 2;
    const ly = top + plotH + 8;
    out.push(text(lx, ly, g, { transform: `rotate(55 ${r(lx)} ${r(ly)})`, 'font-size': 10 }));
  });
  out.push('</svg>');
  return out.join('');
}

/** One audited rule set, as the report shows it. */
export interface RuleAuditView {
  readonly name: string;
  readonly group: string;
  readonly sameAs?: string;
  /** Why it did not run on this model. */
  readonly skipped?: string;
  /** Pearson with activation patching by site label, on each split. */
  readonly pearson: Readonly<Record<string, { readonly calibration: number; readonly heldOut: number }>>;
  /** Σ|S_b − m_b| / Σ|m_b| on the clean prompts. */
  readonly conservation: number;
  /** Nonlinearities the rule set treats ("normalize:layernorm → ln") and those left to the plain gradient. */
  readonly treated: readonly string[];
  readonly plain: readonly string[];
  readonly normsTreated: readonly string[];
}

export interface RuleAuditReportInput {
  readonly title: string;
  /** Site labels (with granularity), the table's column groups, in order. */
  readonly sites: readonly string[];
  readonly rows: readonly RuleAuditView[];
  readonly notes?: readonly string[];
  readonly provenance: Readonly<Record<string, unknown>>;
  /** The full audit, stored as report.json. */
  readonly json: unknown;
}

/** Rows: rule sets; columns: site × {calibration, held-out} Pearson, then conservation and coverage. */
export function ruleAuditTable(input: Pick<RuleAuditReportInput, 'sites' | 'rows'>): Table {
  return {
    header: [
      'rule set',
      'group',
      ...input.sites.flatMap((s) => [`${s} cal.`, `${s} held-out`]),
      'conservation err.',
      'plain gradient at',
      'norms treated',
    ],
    rows: input.rows.map((row) => [
      row.sameAs ? `${row.name} (= ${row.sameAs})` : row.skipped ? `${row.name} (not run)` : row.name,
      row.group,
      ...input.sites.flatMap((s) => [
        fixed(row.pearson[s]?.calibration ?? Number.NaN),
        fixed(row.pearson[s]?.heldOut ?? Number.NaN),
      ]),
      fmt(row.conservation),
      row.skipped ?? (row.plain.length === 0 ? '—' : row.plain.join(', ')),
      row.normsTreated.length === 0 ? '—' : row.normsTreated.join(', '),
    ]),
  };
}

/**
 * The rule audit's folder: report.html (the table and one grouped bar chart of Pearson per site, calibration and
 * held-out side by side), every chart as an SVG file, and report.json with the whole audit.
 */
export function buildRuleAuditReport(input: RuleAuditReportInput): {
  files: Readonly<Record<string, string>>;
  table: Table;
} {
  const files: Record<string, string> = {};
  const table = ruleAuditTable(input);
  const figures: Figure[] = input.sites.map((site) => {
    const file = `pearson-${site.replace(/[^A-Za-z0-9_.-]+/g, '_')}.svg`;
    const svg = groupedBarSvg({
      title: `${site}: Pearson with activation patching`,
      groups: input.rows.map((row) => row.name),
      series: [
        {
          name: 'calibration',
          values: input.rows.map((row) => row.pearson[site]?.calibration ?? Number.NaN),
        },
        { name: 'held-out', values: input.rows.map((row) => row.pearson[site]?.heldOut ?? Number.NaN) },
      ],
      yLabel: 'Pearson r',
    });
    files[file] = svg;
    return { file, svg, caption: `${site}: every rule set, calibration and held-out` };
  });
  const sections: Section[] = [
    {
      heading: 'Rule sets against activation patching',
      paragraphs: input.notes ?? [],
      tables: [{ caption: 'Pearson per site and split, conservation and coverage', table }],
    },
    { heading: 'Pearson per site', figures },
  ];
  const report: HtmlReport = { title: input.title, provenance: input.provenance, sections };
  files['report.html'] = renderHtml(report);
  files['report.json'] = `${JSON.stringify(
    input.json,
    (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v),
    1,
  )}\n`;
  return { files, table };
}
