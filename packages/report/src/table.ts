import { esc } from './svg.js';

export interface Table {
  readonly header: readonly string[];
  readonly rows: readonly (readonly (string | number)[])[];
  /** Columns to right-align (numbers); default: every column whose cells are all numbers or numeric text. */
  readonly align?: readonly ('left' | 'right')[];
  /** An extra class per column for HTML (e.g. "key" and "value" of a key/value table). */
  readonly classes?: readonly string[];
}

function cellText(c: string | number): string {
  return typeof c === 'number' ? (Number.isFinite(c) ? String(c) : Number.isNaN(c) ? 'NaN' : String(c)) : c;
}

function alignments(t: Table): ('left' | 'right')[] {
  return (
    (t.align as ('left' | 'right')[] | undefined) ??
    t.header.map((_, j) =>
      t.rows.length > 0 &&
      t.rows.every(
        (row) =>
          typeof row[j] === 'number' || /^[-−+]?[\d.]+(e[-+]?\d+)?%?$|^NaN$|^—$/.test(String(row[j] ?? '')),
      )
        ? 'right'
        : 'left',
    )
  );
}

/** A plain-text table with aligned columns (for the terminal). */
export function formatTable(t: Table): string {
  const cells = [t.header.map(String), ...t.rows.map((row) => row.map(cellText))];
  const widths = t.header.map((_, j) => Math.max(...cells.map((row) => [...(row[j] ?? '')].length)));
  const align = alignments(t);
  const line = (row: readonly string[]): string =>
    row
      .map((c, j) => {
        const pad = ' '.repeat(Math.max(0, widths[j]! - [...c].length));
        return align[j] === 'right' ? pad + c : c + pad;
      })
      .join('  ')
      .trimEnd();
  const rule = widths.map((w) => '─'.repeat(w)).join('  ');
  return [line(cells[0]!), rule, ...cells.slice(1).map(line)].join('\n');
}

/** An HTML table (escaped); a header of empty names is left out. */
export function htmlTable(t: Table, attrs = ''): string {
  const align = alignments(t);
  const cls = (j: number) => esc([align[j], t.classes?.[j]].filter(Boolean).join(' '));
  const th = t.header.map((h, j) => `<th class="${cls(j)}">${esc(h)}</th>`).join('');
  const head = t.header.some((h) => h !== '') ? `<thead><tr>${th}</tr></thead>` : '';
  const body = t.rows
    .map((row) => `<tr>${row.map((c, j) => `<td class="${cls(j)}">${esc(cellText(c))}</td>`).join('')}</tr>`)
    .join('\n');
  return `<table${attrs ? ` ${attrs}` : ''}>${head}<tbody>\n${body}\n</tbody></table>`;
}

/** Key/value pairs (provenance) as a two-column table: keys never wrap (class "key"), values do ("value"). */
export function keyValueTable(record: Readonly<Record<string, unknown>>): Table {
  return {
    header: ['', ''],
    rows: Object.entries(record).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]),
    align: ['left', 'left'],
    classes: ['key', 'value'],
  };
}
