import { esc } from './svg.js';
import { htmlTable, keyValueTable, type Table } from './table.js';

export interface Figure {
  /** File name of the SVG written next to report.html. */
  readonly file: string;
  readonly svg: string;
  readonly caption: string;
}

/**
 * Figures to compare side by side: one row per row label (a site), one column per column label (a method). On a
 * wide page a row's figures sit next to each other; on a narrow one they wrap, each captioned with its column.
 */
export interface FigureGrid {
  readonly columns: readonly string[];
  readonly rows: readonly { readonly label: string; readonly cells: readonly (Figure | undefined)[] }[];
}

export interface Section {
  readonly heading: string;
  /** Paragraphs of plain text (escaped). */
  readonly paragraphs?: readonly string[];
  readonly tables?: readonly { readonly caption?: string; readonly table: Table }[];
  readonly figures?: readonly Figure[];
  /** Shown after the figures. */
  readonly grid?: FigureGrid;
}

export interface HtmlReport {
  readonly title: string;
  readonly subtitle?: string;
  readonly sections: readonly Section[];
  /** Model, tokenizer, task, seed, methods, backend, version, command line … */
  readonly provenance: Readonly<Record<string, unknown>>;
}

const CSS = `
body{font-family:Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1400px;color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}h3{font-size:1rem;margin:1rem 0 .3rem}
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{padding:.25rem .6rem;border-bottom:1px solid #eee}
th{background:#f5f5f5}.right{text-align:right;font-variant-numeric:tabular-nums}.left{text-align:left}
.table-wrap{overflow-x:auto;max-width:100%}
figure{display:inline-block;margin:.5rem 1rem .5rem 0;vertical-align:top;max-width:100%}
figure svg{max-width:100%;height:auto}figcaption{font-size:.85rem;color:#555}
.fig-cells{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,22rem),1fr));gap:.5rem 1rem}
.fig-cells figure{display:block;margin:0}.fig-cells svg{width:100%;height:auto;display:block}
.prov td{font-family:monospace;font-size:.8rem;vertical-align:top}
.prov td.key{white-space:nowrap;font-weight:bold}.prov td.value{overflow-wrap:anywhere}.sub{color:#666}
`;

/** Strips an XML prolog/doctype so an SVG file can be inlined in HTML. */
export function inlineSvg(svg: string): string {
  return svg.replace(/^\s*<\?xml[^>]*>\s*/, '').replace(/^\s*<!DOCTYPE[^>]*>\s*/, '');
}

function figureHtml(f: Figure, attrs = ''): string {
  return `<figure data-file="${esc(f.file)}"${attrs}>${inlineSvg(f.svg)}<figcaption>${esc(f.caption)} — <a href="${esc(f.file)}">${esc(f.file)}</a></figcaption></figure>`;
}

/** One block per row (its label as a heading), its cells in a grid that wraps on narrow screens. */
function gridHtml(g: FigureGrid): string {
  const rows = g.rows.map((row) => {
    const cells = row.cells.map((f, j) =>
      f === undefined
        ? ''
        : figureHtml(
            f,
            ` class="fig-cell" data-row="${esc(row.label)}" data-column="${esc(g.columns[j] ?? '')}"`,
          ),
    );
    return `<div class="fig-row" data-row="${esc(row.label)}"><h3>${esc(row.label)}</h3><div class="fig-cells">${cells.join('')}</div></div>`;
  });
  return `<div class="fig-grid" data-columns="${esc(g.columns.join(','))}">${rows.join('\n')}</div>`;
}

/**
 * A self-contained HTML page: every figure is inlined (no external resources) and also linked to its SVG file
 * (href), so the page works alone and names every file it shows.
 */
export function renderHtml(report: HtmlReport): string {
  const out: string[] = [
    '<!DOCTYPE html>',
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${esc(report.title)}</title>`,
    `<style>${CSS}</style></head><body>`,
    `<h1>${esc(report.title)}</h1>`,
  ];
  if (report.subtitle) out.push(`<p class="sub">${esc(report.subtitle)}</p>`);
  for (const s of report.sections) {
    out.push(`<section><h2>${esc(s.heading)}</h2>`);
    for (const p of s.paragraphs ?? []) out.push(`<p>${esc(p)}</p>`);
    for (const t of s.tables ?? []) {
      if (t.caption) out.push(`<p><b>${esc(t.caption)}</b></p>`);
      out.push(`<div class="table-wrap">${htmlTable(t.table)}</div>`);
    }
    if (s.figures?.length)
      out.push(`<div class="fig-cells">${s.figures.map((f) => figureHtml(f)).join('')}</div>`);
    if (s.grid) out.push(gridHtml(s.grid));
    out.push('</section>');
  }
  out.push(
    '<section><h2>Provenance</h2>',
    `<div class="table-wrap">${htmlTable(keyValueTable(report.provenance), 'class="prov"')}</div>`,
    '</section>',
  );
  out.push('</body></html>', '');
  return out.join('\n');
}

/** Every figure file a report names (for writing and for tests). */
export function figureFiles(report: HtmlReport): string[] {
  return report.sections.flatMap((s) => [
    ...(s.figures ?? []).map((f) => f.file),
    ...(s.grid?.rows ?? []).flatMap((r) => r.cells.flatMap((f) => (f ? [f.file] : []))),
  ]);
}
