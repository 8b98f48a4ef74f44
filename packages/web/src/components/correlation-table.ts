import type { Agreement } from '@relp/core';
import { fixed } from '@relp/report';
import { html } from './dom.js';

/** One row: a method's agreement with activation patching on one site type (`compareGrids`' output). */
export interface CorrelationRow {
  readonly method: string;
  readonly site: string;
  readonly agreement: Agreement;
}

/**
 * The correlation table: rows are methods, column groups are site types, each with Pearson, Spearman and
 * top-k agreement against activation patching. Cells carry `data-method`, `data-site`, `data-stat` and the
 * full-precision `data-value`. The table scrolls sideways in its own box, so a narrow screen never scrolls the
 * page.
 */
export function renderCorrelationTable(
  container: HTMLElement,
  rows: readonly CorrelationRow[],
): HTMLTableElement {
  const methods = [...new Set(rows.map((r) => r.method))];
  const sites = [...new Set(rows.map((r) => r.site))];
  const k = rows[0]?.agreement.k ?? 10;
  const table = html('table', { class: 'relp-table relp-correlation' });
  const head1 = html('tr', {}, [html('th', { rowspan: 2 }, ['method'])]);
  const head2 = html('tr');
  for (const s of sites) {
    head1.append(html('th', { colspan: 3, scope: 'colgroup' }, [s]));
    head2.append(html('th', {}, ['Pearson']), html('th', {}, ['Spearman']), html('th', {}, [`top-${k}`]));
  }
  table.append(html('thead', {}, [head1, head2]));
  const body = html('tbody');
  for (const m of methods) {
    const tr = html('tr', {}, [html('th', { scope: 'row' }, [m])]);
    for (const s of sites) {
      const a = rows.find((r) => r.method === m && r.site === s)?.agreement;
      for (const stat of ['pearson', 'spearman', 'topK'] as const) {
        const v = a ? a[stat] : Number.NaN;
        tr.append(
          html('td', { 'data-method': m, 'data-site': s, 'data-stat': stat, 'data-value': String(v) }, [
            a ? fixed(v) : '—',
          ]),
        );
      }
    }
    body.append(tr);
  }
  table.append(body);
  container.append(
    html(
      'div',
      { class: 'relp-table-scroll', role: 'region', 'aria-label': 'agreement table', tabindex: 0 },
      [table],
    ),
  );
  return table;
}
