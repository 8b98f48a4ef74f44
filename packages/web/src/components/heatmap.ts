import { divergingColor, fmt } from '@relp/report';
import { html, plotFrame, svg, tokenText } from './dom.js';

export interface HeatmapProps {
  /** [layer][position] scores, as `AttributionResult.scores[site]` holds them (position granularity). */
  readonly grid: readonly (readonly number[])[];
  /** Token strings of one prompt, one per position. */
  readonly tokens?: readonly string[];
  readonly title?: string;
  /** Row labels (default "L0", "L1", …). */
  readonly rowLabels?: readonly string[];
  /** Symmetric colour bound; default the grid's largest |value| (share it across methods to compare them). */
  readonly maxAbs?: number;
  /** Cell size in px (default from the number of positions and the container's width). */
  readonly cell?: number;
  /** Extra attributes for tests and styling, e.g. { 'data-method': 'relp', 'data-site': 'mlp_out' }. */
  readonly attrs?: Readonly<Record<string, string>>;
}

export interface HeatmapView {
  readonly element: HTMLElement;
  /** Highlights one cell (or none). */
  highlight(layer: number | undefined, position?: number): void;
}

/** Largest finite |value| of grids (0 when none). */
export function maxAbsOf(...grids: readonly (readonly (readonly number[])[])[]): number {
  let m = 0;
  for (const g of grids)
    for (const row of g) for (const v of row) if (Number.isFinite(v)) m = Math.max(m, Math.abs(v));
  return m;
}

/**
 * A layer × position heatmap (layers top to bottom, tokens left to right) on a symmetric diverging scale,
 * with token labels, a colour bar and a tooltip on hover. Each cell carries `data-layer`, `data-position` and
 * `data-value` (the full-precision score). For keyboards and screen readers: the picture is an image whose label
 * summarises it, the cells are one tab stop moved through with the arrow keys (Home/End: first/last position,
 * PageUp/PageDown: first/last layer) with the focused cell read out in a live region, and a data table under
 * "Data table" holds every value.
 */
export function renderHeatmap(container: HTMLElement, props: HeatmapProps): HeatmapView {
  const rows = props.grid.length;
  const cols = Math.max(0, ...props.grid.map((r) => r.length));
  // Cells fit the container's width where they can (a phone), between 14 and 28 px.
  const room = (container.clientWidth || 560) - 44 - 16 - 70 - 24;
  const cell = props.cell ?? Math.max(14, Math.min(28, Math.floor(Math.min(400, room) / Math.max(1, cols))));
  const maxAbs = props.maxAbs ?? maxAbsOf(props.grid);
  const rowLabels = props.rowLabels ?? props.grid.map((_, i) => `L${i}`);
  const tokens = props.tokens ?? [];
  const left = 44;
  const top = 8;
  const labelH = 84;
  const barW = 70;
  const width = left + cols * cell + 16 + barW;
  const height = top + rows * cell + labelH;

  const { root, tip, svg: s } = plotFrame('heatmap', props, width, height);
  const cells = svg('g', { class: 'cells' });
  const rectRows: SVGRectElement[][] = [];
  props.grid.forEach((row, l) => {
    s.append(
      svg('text', { x: left - 6, y: top + l * cell + cell / 2 + 4, 'text-anchor': 'end', class: 'axis' }, [
        rowLabels[l] ?? String(l),
      ]),
    );
    const rowRects: SVGRectElement[] = [];
    rectRows.push(rowRects);
    row.forEach((v, p) => {
      const t = maxAbs > 0 ? v / maxAbs : 0;
      const rect = svg('rect', {
        x: left + p * cell,
        y: top + l * cell,
        width: cell - 1,
        height: cell - 1,
        fill: divergingColor(Number.isFinite(v) ? t : Number.NaN),
        'data-layer': l,
        'data-position': p,
        'data-value': String(v),
        tabindex: l === 0 && p === 0 ? 0 : -1,
      });
      rowRects.push(rect);
      cells.append(rect);
    });
  });
  s.append(cells);
  for (let p = 0; p < cols; p++) {
    const x = left + p * cell + cell / 2;
    const y = top + rows * cell + 6;
    s.append(
      svg('text', { x, y, transform: `rotate(60 ${x} ${y})`, class: 'axis token' }, [
        tokenText(tokens[p] ?? String(p)),
      ]),
    );
  }
  // Colour bar.
  const bx = left + cols * cell + 16;
  const bh = Math.max(40, rows * cell);
  const grad = `relp-grad-${Math.random().toString(36).slice(2)}`;
  const defs = svg('defs', {}, [
    svg(
      'linearGradient',
      { id: grad, x1: 0, y1: 1, x2: 0, y2: 0 },
      [-1, -0.5, 0, 0.5, 1].map((t, i) =>
        svg('stop', { offset: `${i * 25}%`, 'stop-color': divergingColor(t) }),
      ),
    ),
  ]);
  s.append(
    defs,
    svg('rect', { x: bx, y: top, width: 12, height: bh, fill: `url(#${grad})`, stroke: '#999' }),
    svg('text', { x: bx + 16, y: top + 10, class: 'axis' }, [`+${fmt(maxAbs)}`]),
    svg('text', { x: bx + 16, y: top + bh / 2 + 4, class: 'axis' }, ['0']),
    svg('text', { x: bx + 16, y: top + bh, class: 'axis' }, [`−${fmt(maxAbs)}`]),
  );
  const marker = svg('rect', { class: 'marker', width: cell - 1, height: cell - 1, fill: 'none' });
  marker.style.display = 'none';
  s.append(marker);

  s.setAttribute('aria-label', summary(props, rowLabels, tokens, rows, cols));
  const readout = html('div', { class: 'relp-sr-only', 'aria-live': 'polite' });
  root.append(readout, dataTable(props.grid, rowLabels, tokens, cols));

  // One tab stop: the last focused cell (first the top left); arrow keys move between cells.
  const rects = rectRows.flat();
  const rectAt = (l: number, p: number) => rectRows[l]?.[Math.min(p, (rectRows[l]?.length ?? 1) - 1)];
  const cellText = (l: number, p: number, v: number) =>
    `${rowLabels[l] ?? `L${l}`}, position ${p} ${JSON.stringify(tokens[p] ?? '')}: ${Number.isFinite(v) ? v.toPrecision(6) : String(v)}`;
  cells.addEventListener('focusin', (ev) => {
    const r = cellOf(ev.target);
    if (!r) return;
    for (const o of rects) o.setAttribute('tabindex', o === r ? '0' : '-1');
    const l = Number(r.dataset.layer);
    const p = Number(r.dataset.position);
    marker.setAttribute('x', String(left + p * cell));
    marker.setAttribute('y', String(top + l * cell));
    marker.style.display = '';
    const b = r.getBoundingClientRect();
    tip.show({ clientX: b.right, clientY: b.bottom }, [
      `${rowLabels[l] ?? l} · position ${p} ${JSON.stringify(tokens[p] ?? '')}`,
      `score ${Number(r.dataset.value).toPrecision(6)}`,
    ]);
    readout.textContent = cellText(l, p, Number(r.dataset.value));
  });
  cells.addEventListener('focusout', () => {
    marker.style.display = 'none';
    tip.hide();
  });
  cells.addEventListener('keydown', (ev) => {
    const r = cellOf(ev.target);
    if (!r) return;
    const l = Number(r.dataset.layer);
    const p = Number(r.dataset.position);
    const lastPos = (props.grid[l]?.length ?? 1) - 1;
    const to: Record<string, [number, number]> = {
      ArrowLeft: [l, p - 1],
      ArrowRight: [l, p + 1],
      ArrowUp: [l - 1, p],
      ArrowDown: [l + 1, p],
      Home: [l, 0],
      End: [l, lastPos],
      PageUp: [0, p],
      PageDown: [rows - 1, p],
    };
    const next = to[ev.key];
    if (!next) return;
    ev.preventDefault();
    rectAt(Math.max(0, Math.min(rows - 1, next[0])), Math.max(0, next[1]))?.focus();
  });

  const cellOf = (target: EventTarget | null): SVGRectElement | undefined =>
    target instanceof SVGRectElement && target.dataset.value !== undefined ? target : undefined;
  cells.addEventListener('pointermove', (ev) => {
    const r = cellOf(ev.target);
    if (!r) return tip.hide();
    const l = Number(r.dataset.layer);
    const p = Number(r.dataset.position);
    tip.show(ev, [
      `${rowLabels[l] ?? l} · position ${p} ${JSON.stringify(tokens[p] ?? '')}`,
      `score ${Number(r.dataset.value).toPrecision(6)}`,
    ]);
  });
  cells.addEventListener('pointerleave', () => tip.hide());
  container.append(root);
  return {
    element: root,
    highlight(layer, position) {
      if (layer === undefined || position === undefined) {
        marker.style.display = 'none';
        return;
      }
      marker.setAttribute('x', String(left + position * cell));
      marker.setAttribute('y', String(top + layer * cell));
      marker.style.display = '';
    },
  };
}

/** The picture in words: its size, its range and where its largest |value| is. */
function summary(
  props: HeatmapProps,
  rowLabels: readonly string[],
  tokens: readonly string[],
  rows: number,
  cols: number,
): string {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  let peak: { l: number; p: number; v: number } | undefined;
  for (const [l, row] of props.grid.entries()) {
    for (const [p, v] of row.entries()) {
      if (!Number.isFinite(v)) continue;
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
      if (!peak || Math.abs(v) > Math.abs(peak.v)) peak = { l, p, v };
    }
  }
  const head = `${props.title ?? 'heatmap'}: ${rows} layers × ${cols} positions`;
  if (!peak) return `${head}, no finite values`;
  return `${head}, values from ${fmt(lo)} to ${fmt(hi)}; largest |value| ${fmt(peak.v)} at ${rowLabels[peak.l] ?? `L${peak.l}`}, position ${peak.p} ${JSON.stringify(tokens[peak.p] ?? '')}. Arrow keys move between cells; the data table below lists every value.`;
}

/** Every value as a table (rows: layers, columns: positions), folded under "Data table". */
function dataTable(
  grid: readonly (readonly number[])[],
  rowLabels: readonly string[],
  tokens: readonly string[],
  cols: number,
): HTMLDetailsElement {
  const head = html('tr', {}, [
    html('th', { scope: 'col' }, ['layer']),
    ...Array.from({ length: cols }, (_, p) =>
      html('th', { scope: 'col' }, [`${p} ${tokenText(tokens[p] ?? '', 10)}`]),
    ),
  ]);
  const body = grid.map((row, l) =>
    html('tr', {}, [
      html('th', { scope: 'row' }, [rowLabels[l] ?? `L${l}`]),
      ...row.map((v) => html('td', { 'data-value': String(v) }, [fmt(v, 4)])),
    ]),
  );
  return html('details', { class: 'relp-data' }, [
    html('summary', {}, ['Data table']),
    html('div', { class: 'relp-table-scroll' }, [
      html('table', { class: 'relp-table' }, [html('thead', {}, [head]), html('tbody', {}, body)]),
    ]),
  ]);
}
