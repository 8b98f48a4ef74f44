/** Replaces characters XML 1.0 forbids (C0 controls except tab/newline/CR, U+FFFE, U+FFFF) by U+FFFD. */
function xmlSafe(s: string): string {
  let out = '';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    const bad = (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) || c === 0xfffe || c === 0xffff;
    out += bad ? '\ufffd' : ch;
  }
  return out;
}

/** Escapes text for XML/HTML content and attribute values (and drops characters XML cannot hold). */
export function esc(s: string): string {
  const out = s
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
  return xmlSafe(out);
}

/** A compact number for labels: 3 significant digits, exponent for very small or large values. */
export function fmt(x: number, digits = 3): string {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? '∞' : '−∞';
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e4 || a < 1e-3) return x.toExponential(digits - 1);
  return Number(x.toPrecision(digits)).toString();
}

/** Number with fixed decimals (table cells). */
export function fixed(x: number, decimals = 3): string {
  return Number.isFinite(x) ? x.toFixed(decimals) : Number.isNaN(x) ? 'NaN' : fmt(x);
}

/** A diverging palette from blue (negative) through white to red (positive): ColorBrewer RdBu, reversed. */
const STOPS: [number, number, number][] = [
  [5, 48, 97],
  [33, 102, 172],
  [67, 147, 195],
  [146, 197, 222],
  [247, 247, 247],
  [244, 165, 130],
  [214, 96, 77],
  [178, 24, 43],
  [103, 0, 31],
];

/** Colour of t ∈ [−1, 1] on the diverging scale (clamped; NaN → grey). */
export function divergingColor(t: number): string {
  if (Number.isNaN(t)) return '#bbbbbb';
  const u = ((Math.max(-1, Math.min(1, t)) + 1) / 2) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(u));
  const f = u - i;
  const a = STOPS[i]!;
  const b = STOPS[i + 1]!;
  const c = (k: number): string =>
    Math.round(a[k]! + (b[k]! - a[k]!) * f)
      .toString(16)
      .padStart(2, '0');
  return `#${c(0)}${c(1)}${c(2)}`;
}

/** Series colours (Okabe–Ito, colour-blind safe). */
export const SERIES_COLORS = [
  '#0072B2',
  '#D55E00',
  '#009E73',
  '#CC79A7',
  '#E69F00',
  '#56B4E9',
  '#000000',
  '#F0E442',
];

export function svgOpen(width: number, height: number, title: string): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
    `font-family="Helvetica, Arial, sans-serif" font-size="11"><title>${esc(title)}</title>` +
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`
  );
}

export function text(x: number, y: number, s: string, attrs: Record<string, string | number> = {}): string {
  const a = Object.entries(attrs)
    .map(([k, v]) => ` ${k}="${esc(String(v))}"`)
    .join('');
  return `<text x="${r(x)}" y="${r(y)}"${a}>${esc(s)}</text>`;
}

/** Rounds coordinates to 2 decimals to keep files small. */
export function r(x: number): string {
  return String(Math.round(x * 100) / 100);
}
