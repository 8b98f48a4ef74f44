import { divergingColor, fmt } from '@relp/report';
import { plotFrame, svg, tokenText } from './dom.js';

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
  /** Cell size in px (default from the number of positions). */
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
 * `data-value` (the full-precision score).
 */
export function renderHeatmap(container: HTMLElement, props: HeatmapProps): HeatmapView {
  const rows = props.grid.length;
  const cols = Math.max(0, ...props.grid.map((r) => r.length));
  const cell = props.cell ?? Math.max(14, Math.min(28, Math.floor(400 / Math.max(1, cols))));
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
  props.grid.forEach((row, l) => {
    s.append(
      svg('text', { x: left - 6, y: top + l * cell + cell / 2 + 4, 'text-anchor': 'end', class: 'axis' }, [
        rowLabels[l] ?? String(l),
      ]),
    );
    row.forEach((v, p) => {
      const t = maxAbs > 0 ? v / maxAbs : 0;
      cells.append(
        svg('rect', {
          x: left + p * cell,
          y: top + l * cell,
          width: cell - 1,
          height: cell - 1,
          fill: divergingColor(Number.isFinite(v) ? t : Number.NaN),
          'data-layer': l,
          'data-position': p,
          'data-value': String(v),
        }),
      );
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
