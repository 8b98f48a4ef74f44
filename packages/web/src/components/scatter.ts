import { fmt, SERIES_COLORS } from '@relp/report';
import { html, plotFrame, svg, tokenText } from './dom.js';

export interface ScatterSeries {
  /** Method label, e.g. "relp". */
  readonly label: string;
  /** [layer][position] estimates, the same shape as `reference`. */
  readonly grid: readonly (readonly number[])[];
}

export interface ScatterProps {
  /** The activation-patching grid [layer][position] (x axis). */
  readonly reference: readonly (readonly number[])[];
  readonly series: readonly ScatterSeries[];
  readonly tokens?: readonly string[];
  readonly title?: string;
  readonly size?: number;
  readonly attrs?: Readonly<Record<string, string>>;
}

/**
 * Method-vs-patching scatter: one point per (layer, position) cell, x = activation patching, y = the method's
 * estimate, one colour per method, with the y = x diagonal, round-valued ticks on both axes and a tooltip per
 * point.
 */
export function renderScatter(container: HTMLElement, props: ScatterProps): HTMLElement {
  const size = props.size ?? 300;
  const pad = 52;
  const w = size + pad + 12;
  const h = size + 12 + 36;
  const xs = props.reference.flat();
  const ys = props.series.flatMap((s) => s.grid.flat());
  const all = [...xs, ...ys].filter(Number.isFinite);
  let lo = Math.min(0, ...all);
  let hi = Math.max(0, ...all);
  if (hi - lo === 0) {
    lo -= 1;
    hi += 1;
  }
  const m = (hi - lo) * 0.05;
  lo -= m;
  hi += m;
  const sx = (v: number) => pad + ((v - lo) / (hi - lo)) * size;
  const sy = (v: number) => 12 + size - ((v - lo) / (hi - lo)) * size;

  const { root, tip, svg: s } = plotFrame('scatter', props, w, h);
  s.append(
    svg('rect', { x: pad, y: 12, width: size, height: size, fill: 'none', stroke: '#bbb' }),
    svg('line', {
      x1: sx(lo),
      y1: sy(lo),
      x2: sx(hi),
      y2: sy(hi),
      stroke: '#999',
      'stroke-dasharray': '4 3',
    }),
    svg('line', { x1: sx(0), y1: 12, x2: sx(0), y2: 12 + size, stroke: '#e3e3e3' }),
    svg('line', { x1: pad, y1: sy(0), x2: pad + size, y2: sy(0), stroke: '#e3e3e3' }),
    svg('text', { x: pad + size / 2, y: h - 2, 'text-anchor': 'middle', class: 'axis' }, [
      'activation patching',
    ]),
    svg(
      'text',
      {
        x: 12,
        y: 12 + size / 2,
        transform: `rotate(-90 12 ${12 + size / 2})`,
        'text-anchor': 'middle',
        class: 'axis',
      },
      ['estimate'],
    ),
  );
  // The same round ticks on both axes (the plot is square with one scale).
  const ticks = svg('g', { class: 'ticks' });
  for (const v of niceTicks(lo, hi)) {
    ticks.append(
      svg('line', { x1: sx(v), y1: 12 + size, x2: sx(v), y2: 12 + size + 4, stroke: '#888' }),
      svg(
        'text',
        { x: sx(v), y: 12 + size + 15, 'text-anchor': 'middle', class: 'axis tick x', 'data-value': v },
        [fmt(v)],
      ),
      svg('line', { x1: pad - 4, y1: sy(v), x2: pad, y2: sy(v), stroke: '#888' }),
      svg('text', { x: pad - 6, y: sy(v) + 4, 'text-anchor': 'end', class: 'axis tick y', 'data-value': v }, [
        fmt(v),
      ]),
    );
  }
  s.append(ticks);
  const points = svg('g', { class: 'points' });
  props.series.forEach((ser, k) => {
    const color = SERIES_COLORS[k % SERIES_COLORS.length]!;
    ser.grid.forEach((row, l) => {
      row.forEach((y, p) => {
        const x = props.reference[l]?.[p];
        if (x === undefined || !Number.isFinite(x) || !Number.isFinite(y)) return;
        points.append(
          svg('circle', {
            cx: sx(x),
            cy: sy(y),
            r: 3.2,
            fill: color,
            'fill-opacity': 0.7,
            'data-series': ser.label,
            'data-layer': l,
            'data-position': p,
            'data-x': String(x),
            'data-y': String(y),
          }),
        );
      });
    });
  });
  s.append(points);
  points.addEventListener('pointermove', (ev) => {
    const c = ev.target;
    if (!(c instanceof SVGCircleElement)) return tip.hide();
    const p = Number(c.dataset.position);
    tip.show(ev, [
      `${c.dataset.series} · L${c.dataset.layer} · ${tokenText(props.tokens?.[p] ?? String(p))}`,
      `patching ${Number(c.dataset.x).toPrecision(5)}`,
      `estimate ${Number(c.dataset.y).toPrecision(5)}`,
    ]);
  });
  points.addEventListener('pointerleave', () => tip.hide());
  const legend = html('div', { class: 'relp-legend' });
  props.series.forEach((ser, k) => {
    const sw = html('span', { class: 'swatch' });
    sw.style.background = SERIES_COLORS[k % SERIES_COLORS.length]!;
    legend.append(html('span', {}, [sw, ser.label]));
  });
  root.append(legend);
  container.append(root);
  return root;
}

/** About `n` round tick values (steps of 1, 2 or 5 × 10^k) inside [lo, hi]. */
function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo) || !Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  const rough = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((v) => v >= rough) ?? rough;
  const out: number[] = [];
  for (let i = Math.ceil(lo / step); i * step <= hi + step * 1e-9; i++)
    out.push(Number((i * step).toPrecision(12)));
  return out;
}
