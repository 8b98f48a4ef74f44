import { divergingColor, esc, fmt, r, SERIES_COLORS, svgOpen, text } from './svg.js';

export interface HeatmapOptions {
  /** Rows (e.g. layers) of columns (e.g. positions). */
  readonly grid: readonly (readonly number[])[];
  readonly title: string;
  /** One label a row ("L0", …); default the row index. */
  readonly rowLabels?: readonly string[];
  /** One label a column (token strings); default the column index. */
  readonly colLabels?: readonly string[];
  readonly rowTitle?: string;
  readonly colTitle?: string;
  /** Colour scale bound (symmetric); default the grid's largest |value|. */
  readonly maxAbs?: number;
  readonly cell?: number;
}

/** Makes a token printable as an axis label: visible spaces and newlines, bounded length. */
export function tokenLabel(s: string, i?: number): string {
  const v = s.replaceAll('\n', '⏎').replaceAll(' ', '·');
  const short = v.length > 14 ? `${v.slice(0, 13)}…` : v;
  return i === undefined ? short : `${short} ${i}`;
}

/** A layer × position heatmap on a symmetric diverging scale, with token labels and a colour bar. */
export function heatmapSvg(o: HeatmapOptions): string {
  const rows = o.grid.length;
  const cols = Math.max(0, ...o.grid.map((g) => g.length));
  const cell = o.cell ?? Math.max(14, Math.min(36, Math.floor(720 / Math.max(1, cols))));
  const rowLabels = o.rowLabels ?? o.grid.map((_, i) => String(i));
  const colLabels = o.colLabels ?? Array.from({ length: cols }, (_, i) => String(i));
  const maxAbs =
    o.maxAbs ??
    Math.max(
      0,
      ...o.grid
        .flat()
        .filter(Number.isFinite)
        .map((v) => Math.abs(v)),
    );
  const top = 34;
  const labelChars = Math.min(16, Math.max(3, ...colLabels.map((l) => l.length)));
  const labelSpace = 7 * labelChars + 16;
  // Column labels are rotated 60° about their end: the first one reaches 7·chars·cos 60° left of its cell.
  const left = Math.max(56, Math.ceil(3.5 * labelChars - cell / 2 + 6));
  const width = left + cols * cell + 90;
  const height = top + rows * cell + labelSpace + 20;
  const parts: string[] = [svgOpen(width, height, o.title)];
  parts.push(text(left, 20, o.title, { 'font-size': 13, 'font-weight': 'bold' }));
  for (let i = 0; i < rows; i++) {
    const y = top + i * cell;
    parts.push(text(left - 6, y + cell / 2 + 4, rowLabels[i] ?? String(i), { 'text-anchor': 'end' }));
    for (let j = 0; j < cols; j++) {
      const v = o.grid[i]![j];
      if (v === undefined) continue;
      const t = maxAbs > 0 ? v / maxAbs : 0;
      parts.push(
        `<rect x="${r(left + j * cell)}" y="${r(y)}" width="${cell}" height="${cell}" fill="${divergingColor(t)}">` +
          `<title>${esc(`${rowLabels[i] ?? i} · ${colLabels[j] ?? j}: ${fmt(v, 4)}`)}</title></rect>`,
      );
    }
  }
  const ly = top + rows * cell + 6;
  for (let j = 0; j < cols; j++) {
    const x = left + j * cell + cell / 2 + 4;
    parts.push(
      `<text x="${r(x)}" y="${r(ly)}" text-anchor="end" transform="rotate(-60 ${r(x)} ${r(ly)})">${esc(colLabels[j] ?? String(j))}</text>`,
    );
  }
  if (o.rowTitle) {
    parts.push(
      `<text x="12" y="${r(top + (rows * cell) / 2)}" text-anchor="middle" transform="rotate(-90 12 ${r(top + (rows * cell) / 2)})">${esc(o.rowTitle)}</text>`,
    );
  }
  if (o.colTitle)
    parts.push(text(left + (cols * cell) / 2, height - 6, o.colTitle, { 'text-anchor': 'middle' }));
  // Colour bar
  const bx = left + cols * cell + 24;
  const bh = Math.max(60, rows * cell);
  const steps = 20;
  for (let k = 0; k < steps; k++) {
    const t = 1 - (2 * k) / (steps - 1);
    parts.push(
      `<rect x="${bx}" y="${r(top + (k * bh) / steps)}" width="14" height="${r(bh / steps + 0.5)}" fill="${divergingColor(t)}"/>`,
    );
  }
  parts.push(text(bx + 18, top + 8, fmt(maxAbs)));
  parts.push(text(bx + 18, top + bh / 2 + 4, '0'));
  parts.push(text(bx + 18, top + bh, fmt(-maxAbs)));
  parts.push('</svg>');
  return parts.join('');
}

export interface Series {
  readonly name: string;
  readonly points: readonly (readonly [number, number])[];
}

export interface XYOptions {
  readonly title: string;
  readonly series: readonly Series[];
  readonly xLabel: string;
  readonly yLabel: string;
  readonly xLog?: boolean;
  /** Draw y = x (scatter of an estimate against the reference). */
  readonly diagonal?: boolean;
  /** Connect points (line plot) or not (scatter). */
  readonly lines?: boolean;
  readonly width?: number;
  readonly height?: number;
  /** Fixed y range, e.g. [0, 1.1] for faithfulness. */
  readonly yRange?: readonly [number, number];
}

function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0) ?? step0;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step)
    out.push(Number(v.toPrecision(12)));
  return out;
}

/** A scatter or line plot with axes, ticks and a legend; log-x optional. */
export function xyPlotSvg(o: XYOptions): string {
  const width = o.width ?? 520;
  const height = o.height ?? 400;
  const m = { l: 64, r: 20, t: 36, b: 52 };
  const pw = width - m.l - m.r;
  const ph = height - m.t - m.b - 18 * Math.ceil(o.series.length / 3);
  const tx = (x: number): number => (o.xLog ? Math.log10(x) : x);
  const all = o.series
    .flatMap((s) => s.points)
    .filter(([x, y]) => Number.isFinite(tx(x)) && Number.isFinite(y));
  let [x0, x1] = all.length
    ? [Math.min(...all.map((p) => tx(p[0]))), Math.max(...all.map((p) => tx(p[0])))]
    : [0, 1];
  let [y0, y1] =
    o.yRange ??
    (all.length ? [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))] : [0, 1]);
  if (o.diagonal) {
    x0 = y0 = Math.min(x0, y0);
    x1 = y1 = Math.max(x1, y1);
  }
  if (x1 === x0) [x0, x1] = [x0 - 1, x1 + 1];
  if (y1 === y0) [y0, y1] = [y0 - 1, y1 + 1];
  const padX = o.xLog ? 0 : (x1 - x0) * 0.04;
  const padY = o.yRange ? 0 : (y1 - y0) * 0.06;
  x0 -= padX;
  x1 += padX;
  y0 -= padY;
  y1 += padY;
  const sx = (x: number): number => m.l + ((tx(x) - x0) / (x1 - x0)) * pw;
  const sy = (y: number): number => m.t + ph - ((y - y0) / (y1 - y0)) * ph;
  const parts: string[] = [svgOpen(width, height, o.title)];
  parts.push(text(m.l, 20, o.title, { 'font-size': 13, 'font-weight': 'bold' }));
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${r(ph)}" fill="none" stroke="#888"/>`);
  const xt = o.xLog
    ? Array.from({ length: Math.floor(x1) - Math.ceil(x0) + 1 }, (_, i) => 10 ** (Math.ceil(x0) + i))
    : niceTicks(x0, x1);
  for (const v of xt) {
    const x = sx(v);
    parts.push(`<line x1="${r(x)}" x2="${r(x)}" y1="${m.t}" y2="${r(m.t + ph)}" stroke="#eee"/>`);
    parts.push(text(x, m.t + ph + 14, fmt(v), { 'text-anchor': 'middle' }));
  }
  for (const v of niceTicks(y0, y1)) {
    const y = sy(v);
    parts.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${r(y)}" y2="${r(y)}" stroke="#eee"/>`);
    parts.push(text(m.l - 6, y + 4, fmt(v), { 'text-anchor': 'end' }));
  }
  parts.push(text(m.l + pw / 2, m.t + ph + 32, o.xLabel, { 'text-anchor': 'middle' }));
  const ym = m.t + ph / 2;
  parts.push(
    `<text x="16" y="${r(ym)}" text-anchor="middle" transform="rotate(-90 16 ${r(ym)})">${esc(o.yLabel)}</text>`,
  );
  if (o.diagonal) {
    parts.push(
      `<line x1="${r(sx(x0))}" y1="${r(sy(x0))}" x2="${r(sx(x1))}" y2="${r(sy(x1))}" stroke="#999" stroke-dasharray="4 3"/>`,
    );
  }
  o.series.forEach((s, k) => {
    const color = SERIES_COLORS[k % SERIES_COLORS.length]!;
    const pts = s.points.filter(([x, y]) => Number.isFinite(tx(x)) && Number.isFinite(y));
    if (o.lines && pts.length > 1) {
      parts.push(
        `<polyline fill="none" stroke="${color}" stroke-width="1.8" points="${pts.map(([x, y]) => `${r(sx(x))},${r(sy(y))}`).join(' ')}"/>`,
      );
    }
    for (const [x, y] of pts) {
      parts.push(
        `<circle cx="${r(sx(x))}" cy="${r(sy(y))}" r="${o.lines ? 2.5 : 3}" fill="${color}" fill-opacity="${o.lines ? 1 : 0.6}"><title>${esc(`${s.name}: (${fmt(x, 4)}, ${fmt(y, 4)})`)}</title></circle>`,
      );
    }
    const lx = m.l + (k % 3) * 150;
    const ly = height - 10 - 18 * (Math.ceil(o.series.length / 3) - 1 - Math.floor(k / 3));
    parts.push(`<rect x="${lx}" y="${ly - 9}" width="10" height="10" fill="${color}"/>`);
    parts.push(text(lx + 14, ly, s.name));
  });
  parts.push('</svg>');
  return parts.join('');
}

export function scatterSvg(o: Omit<XYOptions, 'lines'>): string {
  return xyPlotSvg({ ...o, lines: false });
}

export function linePlotSvg(o: Omit<XYOptions, 'lines' | 'diagonal'>): string {
  return xyPlotSvg({ ...o, lines: true });
}
