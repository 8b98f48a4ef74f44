import { esc } from './svg.js';
import { htmlTable, keyValueTable, type Table } from './table.js';

export interface Figure {
  /** File name of the SVG written next to report.html. */
  readonly file: string;
  readonly svg: string;
  readonly caption: string;
}

export interface Section {
  readonly heading: string;
  /** Paragraphs of plain text (escaped). */
  readonly paragraphs?: readonly string[];
  readonly tables?: readonly { readonly caption?: string; readonly table: Table }[];
  readonly figures?: readonly Figure[];
}

export interface HtmlReport {
  readonly title: string;
  readonly subtitle?: string;
  readonly sections: readonly Section[];
  /** Model, tokenizer, task, seed, methods, backend, version, command line … */
  readonly provenance: Readonly<Record<string, unknown>>;
}

const CSS = `
body{font-family:Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{padding:.25rem .6rem;border-bottom:1px solid #eee}
th{background:#f5f5f5}.right{text-align:right;font-variant-numeric:tabular-nums}.left{text-align:left}
figure{display:inline-block;margin:.5rem 1rem .5rem 0;vertical-align:top}figcaption{font-size:.85rem;color:#555}
.prov td{font-family:monospace;font-size:.8rem;word-break:break-all}.sub{color:#666}
`;

/** Strips an XML prolog/doctype so an SVG file can be inlined in HTML. */
export function inlineSvg(svg: string): string {
  return svg.replace(/^\s*<\?xml[^>]*>\s*/, '').replace(/^\s*<!DOCTYPE[^>]*>\s*/, '');
}

/**
 * A self-contained HTML page: every figure is inlined (no external resources) and also linked to its SVG file
 * (href), so the page works alone and names every file it shows.
 */
export function renderHtml(report: HtmlReport): string {
  const out: string[] = [
    '<!DOCTYPE html>',
    '<html lang="en"><head><meta charset="utf-8">',
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
      out.push(htmlTable(t.table));
    }
    for (const f of s.figures ?? []) {
      out.push(
        `<figure data-file="${esc(f.file)}">${inlineSvg(f.svg)}<figcaption>${esc(f.caption)} — <a href="${esc(f.file)}">${esc(f.file)}</a></figcaption></figure>`,
      );
    }
    out.push('</section>');
  }
  out.push(
    '<section><h2>Provenance</h2>',
    htmlTable(keyValueTable(report.provenance), 'class="prov"'),
    '</section>',
  );
  out.push('</body></html>', '');
  return out.join('\n');
}

/** Every figure file a report names (for writing and for tests). */
export function figureFiles(report: HtmlReport): string[] {
  return report.sections.flatMap((s) => (s.figures ?? []).map((f) => f.file));
}
