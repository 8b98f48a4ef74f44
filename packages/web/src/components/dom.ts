/** Small DOM/SVG helpers shared by the components (no framework). */

export const SVG_NS = 'http://www.w3.org/2000/svg';

type Attrs = Readonly<Record<string, string | number | undefined>>;

/** Creates an SVG element with attributes (undefined values are skipped). */
export function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  children: readonly (Node | string)[] = [],
): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) el.setAttribute(k, String(v));
  for (const c of children) el.append(c);
  return el;
}

/** Creates an HTML element with attributes and children. */
export function html<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  children: readonly (Node | string)[] = [],
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) el.setAttribute(k, String(v));
  for (const c of children) el.append(c);
  return el;
}

/** A floating tooltip attached to a container; `show` positions it next to the pointer. */
export interface Tooltip {
  show(ev: { clientX: number; clientY: number }, lines: readonly string[]): void;
  hide(): void;
  readonly element: HTMLElement;
}

export function createTooltip(host: HTMLElement): Tooltip {
  const el = html('div', { class: 'relp-tooltip', role: 'tooltip' });
  el.hidden = true;
  if (getComputedStyle(host).position === 'static') host.style.position = 'relative';
  host.append(el);
  return {
    element: el,
    show(ev, lines) {
      el.replaceChildren(...lines.map((l, i) => html(i === 0 ? 'strong' : 'div', {}, [l])));
      el.hidden = false;
      const box = host.getBoundingClientRect();
      const x = ev.clientX - box.left + 12;
      const y = ev.clientY - box.top + 12;
      el.style.left = `${Math.min(x, Math.max(0, host.clientWidth - el.offsetWidth - 4))}px`;
      el.style.top = `${y}px`;
    },
    hide() {
      el.hidden = true;
    },
  };
}

/** Makes a token printable as a label: visible spaces and newlines, bounded length. */
export function tokenText(s: string, max = 12): string {
  const v = s.replaceAll('\n', '⏎').replaceAll(' ', '·');
  return v.length > max ? `${v.slice(0, max - 1)}…` : v;
}

/** A compact number: 3 significant digits, exponent for very small or large magnitudes. */
export function fmt(x: number, digits = 3): string {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? '∞' : '−∞';
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e4 || a < 1e-3) return x.toExponential(digits - 1);
  return Number(x.toPrecision(digits)).toString();
}
