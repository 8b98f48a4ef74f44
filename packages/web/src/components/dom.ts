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
      // Above the pointer when below it would leave the host (a clipping box would hide it).
      const below = y + el.offsetHeight <= host.clientHeight;
      el.style.top = `${below ? y : Math.max(0, y - el.offsetHeight - 24)}px`;
    },
    hide() {
      el.hidden = true;
    },
  };
}

/** What a plot's frame holds: the figure, a tooltip over the plot, and the (empty) svg. */
export interface PlotFrame {
  readonly root: HTMLElement;
  readonly tip: Tooltip;
  readonly svg: SVGSVGElement;
}

/**
 * The frame every plot shares: `<figure class="relp-{kind}">` with the caller's attributes, an optional caption,
 * and a box holding a tooltip and a `width` × `height` svg labelled by the title (or the kind).
 */
export function plotFrame(
  kind: string,
  props: { readonly title?: string; readonly attrs?: Readonly<Record<string, string>> },
  width: number,
  height: number,
): PlotFrame {
  const root = html('figure', { class: `relp-${kind}`, ...props.attrs });
  if (props.title) root.append(html('figcaption', {}, [props.title]));
  const box = html('div', { class: 'relp-plot-box' });
  root.append(box);
  const tip = createTooltip(box);
  const s = svg('svg', {
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': props.title ?? kind,
  });
  box.append(s);
  return { root, tip, svg: s };
}

/** Makes a token printable as a label: visible spaces and newlines, bounded length. */
export function tokenText(s: string, max = 12): string {
  const v = s.replaceAll('\n', '⏎').replaceAll(' ', '·');
  return v.length > max ? `${v.slice(0, max - 1)}…` : v;
}
