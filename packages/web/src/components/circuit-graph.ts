import { RelpError } from '@relp/core/errors';
import { divergingColor, fmt } from '@relp/report';
import { createTooltip, html, svg, tokenText } from './dom.js';

/**
 * One node of a circuit graph: a site cell (node circuits), an attention head, an MLP, the input or the logits
 * (edge circuits). The graph lays nodes out in rows by `layer` and along a horizontal axis by `column`.
 */
export interface CircuitGraphNode {
  readonly id: string;
  /** Row: the block's layer; below 0 for the input (embeddings), above the last block for the logits. */
  readonly layer: number;
  /** Horizontal place (any scale: a position, a head index, …); nodes sharing layer and column are spread. */
  readonly column: number;
  /** Drawn next to the node, e.g. "a3.h5", "m7", "attn". */
  readonly label: string;
  /** Drawn instead of `label` when that does not fit (default: its first characters). */
  readonly shortLabel?: string;
  /** The node's own score (node circuits): its size and colour. Without one the node is sized by its edges. */
  readonly score?: number;
  /** Scores of the same node under several methods, by method label (the details panel's table). */
  readonly scores?: Readonly<Record<string, number>>;
  /** Further lines for the tooltip and the details panel (site, token, …). */
  readonly details?: readonly string[];
}

/** An edge u → v. With a score (edge attribution) its width is |score| and its colour the sign. */
export interface CircuitGraphEdge {
  readonly from: string;
  readonly to: string;
  readonly score?: number;
  /** Which input of the downstream node the edge enters, e.g. "q", "k", "v" of a head. */
  readonly label?: string;
  /** A styling class, e.g. "residual" or "attention" for structural edges. */
  readonly kind?: string;
}

/** A circuit as the graph draws it: plain nodes and edges, so node and edge circuits alike fit. */
export interface CircuitGraphData {
  readonly nodes: readonly CircuitGraphNode[];
  readonly edges: readonly CircuitGraphEdge[];
  /** Caption. */
  readonly title?: string;
  /** Row labels by layer (default "L{layer}", "input" below 0). */
  readonly rowLabels?: Readonly<Record<number, string>>;
  /** Labels along the horizontal axis: tokens at positions, "h0"… for heads. */
  readonly columns?: readonly { readonly column: number; readonly label: string }[];
  /** The method whose scores selected the nodes (node circuits). */
  readonly method?: string;
}

/** What `circuitFromResults` reads: a result's label and [layer][position] scores per site (AttributionResult). */
export interface ScoredResult {
  readonly label: string;
  readonly scores: Readonly<
    Partial<Record<string, readonly (readonly number[])[] | readonly (readonly (readonly number[])[])[]>>
  >;
}

const SITE_ORDER: Readonly<Record<string, number>> = {
  resid_pre: 0,
  attn_out: 1,
  resid_mid: 2,
  mlp_out: 3,
  resid_post: 4,
};
const SITE_LABEL: Readonly<Record<string, string>> = {
  resid_pre: 'res',
  attn_out: 'attn',
  resid_mid: 'mid',
  mlp_out: 'mlp',
  resid_post: 'post',
};
/** Columns per position in a node circuit: one per site kind and a gap. */
const SITE_SLOTS = 6;

interface Cell {
  readonly id: string;
  readonly site: string;
  readonly layer: number;
  readonly position: number;
  readonly score: number;
  readonly scores: Record<string, number>;
}

const order = (n: Pick<Cell, 'layer' | 'site'>) => n.layer * 10 + (SITE_ORDER[n.site] ?? 5);

/**
 * Selects a node circuit: the `topK` cells by |score| of `results[method]` over its position-granularity sites,
 * and edges of possible information flow between them: along the residual stream at one position (to the next
 * selected node), and, into attention outputs, from the strongest selected node at an earlier position in an
 * earlier layer. Edges are structural (no score), not measured edge attributions.
 */
export function circuitFromResults(
  results: readonly ScoredResult[],
  tokens: readonly string[],
  options: { readonly method?: string; readonly topK?: number } = {},
): CircuitGraphData {
  const chosen = results.find((r) => r.label === options.method) ?? results[0];
  if (!chosen) return { nodes: [], edges: [] };
  const cells: Cell[] = [];
  let seqLen = 0;
  for (const [site, grid] of Object.entries(chosen.scores)) {
    if (!grid || !Array.isArray(grid[0]) || Array.isArray((grid[0] as unknown[])[0])) continue;
    const g = grid as readonly (readonly number[])[];
    g.forEach((row, layer) => {
      seqLen = Math.max(seqLen, row.length);
      row.forEach((score, position) => {
        if (!Number.isFinite(score) || score === 0) return;
        const scores: Record<string, number> = {};
        for (const r of results) {
          const v = (r.scores[site] as readonly (readonly number[])[] | undefined)?.[layer]?.[position];
          if (typeof v === 'number') scores[r.label] = v;
        }
        cells.push({ id: `${site}.${layer}.${position}`, site, layer, position, score, scores });
      });
    });
  }
  const chosenCells = cells
    .sort((a, b) => Math.abs(b.score) - Math.abs(a.score))
    .slice(0, options.topK ?? 20);
  const edges: CircuitGraphEdge[] = [];
  for (const b of chosenCells) {
    const before = chosenCells.filter((a) => order(a) < order(b));
    const same = before.filter((a) => a.position === b.position).sort((x, y) => order(y) - order(x))[0];
    if (same) edges.push({ from: same.id, to: b.id, kind: 'residual' });
    if (b.site === 'attn_out') {
      const src = before
        .filter((a) => a.position < b.position && a.layer < b.layer + (a.site === 'resid_pre' ? 1 : 0))
        .sort((x, y) => Math.abs(y.score) - Math.abs(x.score))[0];
      if (src) edges.push({ from: src.id, to: b.id, kind: 'attention' });
    }
  }
  const siteSlot = (site: string) => Math.min(SITE_SLOTS - 2, SITE_ORDER[site] ?? SITE_SLOTS - 2);
  const nodes: CircuitGraphNode[] = chosenCells.map((c) => ({
    id: c.id,
    layer: c.layer,
    column: c.position * SITE_SLOTS + siteSlot(c.site),
    label: SITE_LABEL[c.site] ?? c.site,
    shortLabel: (SITE_LABEL[c.site] ?? c.site).slice(0, 1),
    score: c.score,
    scores: c.scores,
    details: [
      `${c.site} · layer ${c.layer} · position ${c.position}`,
      `token ${JSON.stringify(tokens[c.position] ?? '')}`,
    ],
  }));
  const positions = [...new Set(chosenCells.map((c) => c.position))].sort((a, b) => a - b);
  return {
    nodes,
    edges,
    method: chosen.label,
    title: `circuit: top ${nodes.length} nodes by |${chosen.label}|`,
    columns: positions.map((p) => ({
      column: p * SITE_SLOTS + (SITE_SLOTS - 2) / 2,
      label: `${p}:${tokenText(tokens[p] ?? '', 8)}`,
    })),
  };
}

/** One scored edge of an edge circuit, by node name (see `edgeCircuitGraph`). */
export interface NamedEdge {
  readonly from: string;
  readonly to: string;
  readonly score: number;
}

const UPSTREAM = /^(?:input|a(\d+)\.h(\d+)|m(\d+))$/;
const DOWNSTREAM = /^(?:logits|a(\d+)\.h(\d+)<([qkv])>|m(\d+))$/;

/**
 * An edge circuit as a graph. Upstream nodes are `input`, heads `a{l}.h{h}` and MLPs `m{l}`; downstream ends are
 * a head's query, key or value input `a{l}.h{h}<q>` (`<k>`, `<v>`), an MLP's input `m{l}` and `logits`. Edges into
 * a head's inputs end at the head, labelled q/k/v. Rows are layers (input below, logits above); columns are
 * heads, then the MLP. A name that is not one of these, or a head or layer out of range, is BAD_INPUT.
 */
export function edgeCircuitGraph(
  edges: readonly NamedEdge[],
  dims: { readonly nLayers: number; readonly nHeads: number },
  options: { readonly title?: string } = {},
): CircuitGraphData {
  const { nLayers, nHeads } = dims;
  if (!Number.isInteger(nLayers) || nLayers < 1 || !Number.isInteger(nHeads) || nHeads < 1) {
    throw new RelpError('BAD_INPUT', `edge circuit: nLayers and nHeads must be positive integers`);
  }
  const nodes = new Map<string, CircuitGraphNode>();
  const node = (name: string, m: RegExpExecArray, down: boolean): string => {
    const [layerS, headS] = down ? [m[1] ?? m[4], m[2]] : [m[1] ?? m[3], m[2]];
    if (name === 'input' || name === 'logits') {
      const isInput = name === 'input';
      if (!nodes.has(name)) {
        nodes.set(name, {
          id: name,
          layer: isInput ? -1 : nLayers,
          column: (nHeads - 1) / 2,
          label: isInput ? 'input' : 'logits',
          shortLabel: isInput ? 'input' : 'logits',
        });
      }
      return name;
    }
    const layer = Number(layerS);
    if (layer >= nLayers) {
      throw new RelpError('BAD_INPUT', `edge circuit: '${name}' is past the last layer (${nLayers - 1})`);
    }
    if (headS === undefined) {
      const id = `m${layer}`;
      if (!nodes.has(id)) nodes.set(id, { id, layer, column: nHeads, label: id, shortLabel: 'm' });
      return id;
    }
    const head = Number(headS);
    if (head >= nHeads) {
      throw new RelpError('BAD_INPUT', `edge circuit: '${name}' names head ${head} of ${nHeads}`);
    }
    const id = `a${layer}.h${head}`;
    if (!nodes.has(id)) nodes.set(id, { id, layer, column: head, label: id, shortLabel: `h${head}` });
    return id;
  };
  const out: CircuitGraphEdge[] = edges.map((e, i) => {
    const u = UPSTREAM.exec(e.from);
    const v = DOWNSTREAM.exec(e.to);
    if (!u || !v) {
      throw new RelpError(
        'BAD_INPUT',
        `edge circuit: edge ${i} '${e.from}' → '${e.to}' is not upstream (input, a{l}.h{h}, m{l}) → downstream (a{l}.h{h}<q|k|v>, m{l}, logits)`,
      );
    }
    if (!Number.isFinite(e.score)) {
      throw new RelpError(
        'BAD_INPUT',
        `edge circuit: edge ${i} '${e.from}' → '${e.to}' has score ${e.score}`,
      );
    }
    return { from: node(e.from, u, false), to: node(e.to, v, true), score: e.score, label: v[3] };
  });
  return {
    nodes: [...nodes.values()],
    edges: out,
    title: options.title ?? `edge circuit: ${out.length} edges`,
    // The input and logits nodes name themselves; their rows keep the axis narrow.
    rowLabels: { [-1]: '', [nLayers]: '' },
    columns: [
      ...Array.from({ length: nHeads }, (_, h) => ({ column: h, label: `h${h}` })),
      { column: nHeads, label: 'MLP' },
    ],
  };
}

export interface CircuitGraphOptions {
  readonly onSelect?: (node: CircuitGraphNode | undefined) => void;
  /** Draw at most this many edges, the largest |score| first (default 600): the rest are named in the caption. */
  readonly maxEdges?: number;
  /** Draw at most this many nodes, the largest |score| (or strongest edge) first (default 1500). */
  readonly maxNodes?: number;
}

export interface CircuitGraphView {
  readonly element: HTMLElement;
  select(id: string | undefined): void;
  /** Fits the whole graph into the viewport. */
  fit(): void;
  /** Zooms by `factor` about a point of the viewport (default its centre), in CSS pixels from its top left. */
  zoom(factor: number, at?: { x: number; y: number }): void;
  /** The view: zoom relative to the fit, and the screen position of world (0, 0). */
  transform(): { scale: number; x: number; y: number };
  /** Stops observing the viewport's size (also done when the graph leaves the document). */
  destroy(): void;
}

/** Margins of the plot inside the viewport (CSS px): column labels below (the right one fits the last labels). */
const M = { top: 6, bottom: 30 };
const FONT = 11;
const ZOOM_MIN = 0.25;
const ZOOM_MAX = 60;
const svgNum = (v: number) => Math.round(v * 100) / 100;

/**
 * An interactive circuit graph. Rows are layers (the input at the bottom, the logits on top), the horizontal axis
 * the nodes' columns (positions, heads); the view fits the graph to the whole width on load and whenever the
 * viewport's size changes. Nodes are sized by |score| and coloured by sign; edges are as wide as their |score|
 * and coloured by its sign. Drag (mouse or touch) to pan, the wheel or a pinch to zoom about the pointer, the
 * buttons to zoom about the centre or fit; hover for a score, click a node to highlight and list its edges.
 * Labels keep a legible size at every zoom and are shortened or hidden where they would overlap.
 */
export function renderCircuitGraph(
  container: HTMLElement,
  data: CircuitGraphData,
  options: CircuitGraphOptions = {},
): CircuitGraphView {
  const maxEdges = options.maxEdges ?? 600;
  const maxNodes = options.maxNodes ?? 1500;
  const allNodes = new Map(data.nodes.map((n) => [n.id, n]));
  // The strongest edges between known nodes; a node's weight is |score|, or its strongest edge's |score|.
  const known = data.edges.filter((e) => allNodes.has(e.from) && allNodes.has(e.to));
  const edgesKept = [...known]
    .sort((a, b) => Math.abs(b.score ?? 0) - Math.abs(a.score ?? 0))
    .slice(0, Math.max(0, maxEdges));
  const weight = new Map<string, number>();
  for (const n of data.nodes) weight.set(n.id, Math.abs(n.score ?? 0));
  for (const e of edgesKept) {
    const w = Math.abs(e.score ?? 0);
    for (const id of [e.from, e.to]) {
      if (allNodes.get(id)!.score === undefined && w > (weight.get(id) ?? 0)) weight.set(id, w);
    }
  }
  const nodes = [...data.nodes]
    .filter((n) => Number.isFinite(n.layer) && Number.isFinite(n.column))
    .sort((a, b) => (weight.get(b.id) ?? 0) - (weight.get(a.id) ?? 0))
    .slice(0, Math.max(0, maxNodes));
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const edges = edgesKept.filter((e) => byId.has(e.from) && byId.has(e.to));
  const maxNodeW = Math.max(1e-30, ...nodes.map((n) => weight.get(n.id) ?? 0));
  const maxEdgeAbs = Math.max(1e-30, ...edges.map((e) => Math.abs(e.score ?? 0)));
  const scored = edges.some((e) => e.score !== undefined);

  // World coordinates: x = column (nodes sharing a layer and column spread around it), y = layer.
  const world = new Map<string, { x: number; y: number }>();
  const cellsOf = new Map<string, CircuitGraphNode[]>();
  for (const n of nodes) {
    const key = `${n.layer}|${n.column}`;
    const list = cellsOf.get(key) ?? [];
    list.push(n);
    cellsOf.set(key, list);
  }
  for (const list of cellsOf.values()) {
    list.forEach((n, i) => {
      world.set(n.id, {
        x: n.column + (list.length > 1 ? (i / (list.length - 1) - 0.5) * 0.6 : 0),
        y: n.layer,
      });
    });
  }
  const xs = [...world.values()].map((p) => p.x);
  const layers = nodes.map((n) => n.layer);
  const minX = xs.length ? Math.min(...xs) : 0;
  const maxX = xs.length ? Math.max(...xs) : 0;
  const minL = layers.length ? Math.floor(Math.min(...layers)) : 0;
  const maxL = layers.length ? Math.ceil(Math.max(...layers)) : 0;
  const nRows = maxL - minL + 1;
  const rowLabel = (l: number) => data.rowLabels?.[l] ?? (l < 0 ? 'input' : `L${l}`);
  let longestRow = 0;
  for (let l = minL; l <= maxL; l++) longestRow = Math.max(longestRow, rowLabel(l).length);
  /** Left margin: the row labels. */
  const left = Math.ceil(longestRow * FONT * 0.62) + 14;
  /** Right margin: room for the labels of the rightmost column's nodes, short ones on a narrow screen. */
  const lastColumn = nodes.filter((n) => world.get(n.id)!.x >= maxX - 1e-9);
  const rightMargin = (narrow: boolean) => {
    const chars = Math.max(
      0,
      ...lastColumn.map((n) => (narrow ? (n.shortLabel ?? n.label.slice(0, 3)) : n.label).length),
    );
    return Math.max(16, Math.min(64, Math.ceil(chars * FONT * 0.62) + 20));
  };

  const root = html('figure', { class: 'relp-circuit' });
  const shown =
    edges.length < known.length || nodes.length < data.nodes.length
      ? ` (drawn: the ${nodes.length} strongest of ${data.nodes.length} nodes, ${edges.length} of ${known.length} edges)`
      : '';
  root.append(html('figcaption', {}, [`${data.title ?? `circuit: ${nodes.length} nodes`}${shown}`]));
  const toolbar = html('div', { class: 'relp-toolbar', role: 'toolbar', 'aria-label': 'circuit view' });
  const zoomIn = html('button', { type: 'button', title: 'zoom in', 'aria-label': 'zoom in' }, ['+']);
  const zoomOut = html('button', { type: 'button', title: 'zoom out', 'aria-label': 'zoom out' }, ['−']);
  const fitButton = html('button', { type: 'button', title: 'fit the graph to the view' }, ['fit']);
  toolbar.append(zoomIn, zoomOut, fitButton);
  if (scored) {
    const legend = html('span', { class: 'relp-circuit-legend' });
    for (const [t, name] of [
      [0.85, 'positive'],
      [-0.85, 'negative'],
    ] as const) {
      const sw = html('span', { class: 'swatch' });
      sw.style.background = divergingColor(t);
      legend.append(html('span', {}, [sw, name]));
    }
    legend.append(html('span', {}, ['edge width: |score|']));
    toolbar.append(legend);
  }
  const layout = html('div', { class: 'relp-circuit-layout' });
  const viewport = html('div', { class: 'relp-circuit-viewport' });
  const details = html('div', { class: 'relp-circuit-details', 'aria-live': 'polite' }, [
    'Select a node to see its scores and edges.',
  ]);
  layout.append(viewport, details);
  root.append(toolbar, layout);
  const tip = createTooltip(viewport);

  const s = svg('svg', {
    width: '100%',
    role: 'group',
    tabindex: 0,
    'aria-label': `${data.title ?? 'circuit graph'}: ${nodes.length} nodes, ${edges.length} edges; drag to pan, + and − to zoom, 0 to fit`,
  });
  const bands = svg('g', { class: 'bands' });
  const edgeLayer = svg('g', { class: 'edges' });
  const nodeLayer = svg('g', { class: 'nodes' });
  const axes = svg('g', { class: 'axes' });
  const rowAxisBg = svg('rect', { class: 'axis-bg', x: 0, y: 0, width: left - 4 });
  const colAxisBg = svg('rect', { class: 'axis-bg', x: 0, height: M.bottom });
  axes.append(rowAxisBg, colAxisBg);
  s.append(bands, edgeLayer, nodeLayer, axes);
  viewport.append(s);

  const rowEls = Array.from({ length: nRows }, (_, i) => {
    const l = minL + i;
    const band = svg('rect', { class: `band ${i % 2 ? 'odd' : 'even'}`, x: 0 });
    const label = svg('text', { class: 'axis row-label', x: left - 8, 'text-anchor': 'end' }, [rowLabel(l)]);
    bands.append(band);
    axes.append(label);
    return { l, band, label };
  });
  const colEls = (data.columns ?? []).map((c) => {
    const label = svg('text', { class: 'axis col-label', 'text-anchor': 'middle' }, [c.label]);
    axes.append(label);
    return { c, label };
  });

  const edgeEls = edges.map((e, i) => {
    const width = e.score === undefined ? 1.2 : 0.75 + 4.25 * Math.sqrt(Math.abs(e.score) / maxEdgeAbs);
    const colour = e.score === undefined ? undefined : divergingColor(Math.sign(e.score) * 0.85);
    const line = svg('path', { class: `edge${e.kind ? ` ${e.kind}` : ''}`, fill: 'none' });
    line.style.strokeWidth = `${svgNum(width)}px`;
    if (colour) line.style.stroke = colour;
    const hit = svg('path', { class: 'edge-hit', fill: 'none', 'data-edge': i });
    const g = svg('g', { class: 'edge-group', 'data-from': e.from, 'data-to': e.to }, [line, hit]);
    if (e.score !== undefined) g.setAttribute('data-score', String(e.score));
    edgeLayer.append(g);
    return { e, g, line, hit };
  });
  const nodeEls = new Map<string, { g: SVGGElement; circle: SVGCircleElement; text: SVGTextElement }>();
  for (const n of nodes) {
    const fill = n.score === undefined ? '#e9edf3' : divergingColor(n.score / maxNodeW);
    const circle = svg('circle', { fill, stroke: '#333' });
    const text = svg('text', { class: 'node-label', 'dominant-baseline': 'central' }, [n.label]);
    const g = svg(
      'g',
      {
        class: 'node',
        tabindex: 0,
        role: 'button',
        'data-id': n.id,
        'aria-label': `${n.label}, ${rowLabel(n.layer)}${n.score === undefined ? '' : `, score ${fmt(n.score, 4)}`}`,
      },
      [circle, text],
    );
    if (n.score !== undefined) g.setAttribute('data-score', String(n.score));
    nodeEls.set(n.id, { g, circle, text });
    nodeLayer.append(g);
  }
  const incident = (id: string) => edgeEls.filter(({ e }) => e.from === id || e.to === id);

  // The view: screen = origin + zoom·unit·world, with units set by the last fit.
  let W = 0;
  let H = 0;
  let unitX = 1;
  let unitY = 1;
  let k = 1;
  let ox = 0;
  let oy = 0;
  const sx = (x: number) => ox + k * unitX * x;
  const sy = (l: number) => oy - k * unitY * l;

  const draw = () => {
    const rowH = k * unitY;
    // Row bands and labels (labels thinned to one every `step` rows when rows are tight).
    const step = Math.max(1, Math.ceil((FONT + 3) / Math.max(1e-9, rowH)));
    for (const { l, band, label } of rowEls) {
      const y = sy(l);
      band.setAttribute('y', String(svgNum(y - rowH / 2)));
      band.setAttribute('height', String(svgNum(rowH)));
      band.setAttribute('width', String(W));
      label.setAttribute('y', String(svgNum(y + FONT * 0.35)));
      const inside = y > M.top - FONT && y < H - M.bottom + FONT / 2;
      label.style.display = inside && (l - minL) % step === 0 ? '' : 'none';
    }
    rowAxisBg.setAttribute('height', String(H));
    colAxisBg.setAttribute('y', String(H - M.bottom));
    colAxisBg.setAttribute('width', String(W));
    let lastRight = Number.NEGATIVE_INFINITY;
    for (const { c, label } of [...colEls].sort((a, b) => a.c.column - b.c.column)) {
      const x = sx(c.column);
      const half = (c.label.length * FONT * 0.6) / 2;
      label.setAttribute('x', String(svgNum(x)));
      label.setAttribute('y', String(H - M.bottom + FONT + 6));
      const fits = x - half > lastRight + 4 && x > left - 4 && x < W;
      label.style.display = fits ? '' : 'none';
      if (fits) lastRight = x + half;
    }
    // Nodes: radius from the spacing and the weight; labels to the right, shortened or hidden when crowded.
    const pitch = Math.min(k * unitX, rowH);
    const rMax = Math.max(3, Math.min(13, pitch * 0.38));
    const screen = new Map<string, { x: number; y: number; r: number }>();
    for (const n of nodes) {
      const p = world.get(n.id)!;
      const r = Math.max(2.5, rMax * (0.45 + 0.55 * Math.sqrt((weight.get(n.id) ?? 0) / maxNodeW)));
      screen.set(n.id, { x: sx(p.x), y: sy(p.y), r });
    }
    const rows = new Map<number, CircuitGraphNode[]>();
    for (const n of nodes) rows.set(n.layer, [...(rows.get(n.layer) ?? []), n]);
    const showLabels = rowH >= FONT + 1;
    // Room right of each node up to its neighbour in the row.
    const room = new Map<string, number>();
    for (const list of rows.values()) {
      list.sort((a, b) => screen.get(a.id)!.x - screen.get(b.id)!.x);
      list.forEach((n, i) => {
        const p = screen.get(n.id)!;
        const next = list[i + 1] && screen.get(list[i + 1]!.id)!;
        room.set(n.id, (next ? next.x - next.r : W) - (p.x + p.r) - 4);
      });
    }
    const width = (t: string) => t.length * FONT * 0.62;
    // One style for the whole view: full labels where nearly all fit, else short ones (hidden where even those
    // do not fit), so neighbouring labels read alike.
    const full = nodes.filter((n) => width(n.label) <= room.get(n.id)!).length >= 0.8 * nodes.length;
    for (const n of nodes) {
      const p = screen.get(n.id)!;
      const el = nodeEls.get(n.id)!;
      el.g.setAttribute('transform', `translate(${svgNum(p.x)},${svgNum(p.y)})`);
      el.circle.setAttribute('r', String(svgNum(p.r)));
      const r = room.get(n.id)!;
      const short = n.shortLabel ?? n.label.slice(0, 3);
      const text = !showLabels ? '' : full && width(n.label) <= r ? n.label : width(short) <= r ? short : '';
      el.text.textContent = text;
      el.text.style.display = text ? '' : 'none';
      el.text.setAttribute('x', String(svgNum(p.r + 2)));
    }
    for (const { e, line, hit } of edgeEls) {
      const a = screen.get(e.from)!;
      const b = screen.get(e.to)!;
      const my = (a.y + b.y) / 2;
      const d = `M${svgNum(a.x)},${svgNum(a.y)} C${svgNum(a.x)},${svgNum(my)} ${svgNum(b.x)},${svgNum(my)} ${svgNum(b.x)},${svgNum(b.y)}`;
      line.setAttribute('d', d);
      hit.setAttribute('d', d);
    }
  };

  const fit = () => {
    W = viewport.clientWidth;
    // Tall enough for legible rows, at most most of the window.
    const maxH = Math.max(240, Math.min(680, Math.round(window.innerHeight * 0.8)));
    H = Math.max(240, Math.min(maxH, nRows * 22 + M.top + M.bottom));
    s.setAttribute('height', String(H));
    // Rows sit in equal bands (half a band above the first and below the last); columns span the plot's width.
    const plotW = Math.max(1, W - left - rightMargin(W < 600) - 8);
    const plotH = Math.max(1, H - M.top - M.bottom);
    unitX = maxX > minX ? plotW / (maxX - minX) : plotW;
    unitY = plotH / nRows;
    k = 1;
    ox = maxX > minX ? left + 8 - unitX * minX : left + 8 + plotW / 2 - unitX * minX;
    oy = M.top + unitY * (maxL + 0.5);
    draw();
  };
  const zoom = (factor: number, at = { x: W / 2, y: H / 2 }) => {
    const next = Math.max(ZOOM_MIN, Math.min(ZOOM_MAX, k * factor));
    ox = at.x - ((at.x - ox) * next) / k;
    oy = at.y - ((at.y - oy) * next) / k;
    k = next;
    draw();
  };
  const pan = (dx: number, dy: number) => {
    ox += dx;
    oy += dy;
    draw();
  };

  // Pointers: one drags, two pinch; a press that barely moves on a node selects it.
  const local = (ev: { clientX: number; clientY: number }) => {
    const b = s.getBoundingClientRect();
    return { x: ev.clientX - b.left, y: ev.clientY - b.top };
  };
  const pointers = new Map<number, { x: number; y: number }>();
  let press: { x: number; y: number; target: Element | null; moved: boolean } | undefined;
  s.addEventListener('pointerdown', (ev) => {
    pointers.set(ev.pointerId, local(ev));
    if (pointers.size === 1) press = { ...local(ev), target: ev.target as Element, moved: false };
    try {
      s.setPointerCapture(ev.pointerId);
    } catch {
      // A pointer the browser no longer tracks: dragging still works while it stays over the graph.
    }
    s.classList.add('dragging');
    tip.hide();
  });
  s.addEventListener('pointermove', (ev) => {
    const prev = pointers.get(ev.pointerId);
    if (!prev) return hover(ev);
    const now = local(ev);
    if (pointers.size >= 2) {
      // Pinch: the point under the fingers' midpoint follows the midpoint, scaled by their spread.
      const [a, b] = [...pointers.values()];
      const before = { d: Math.hypot(a!.x - b!.x, a!.y - b!.y), x: (a!.x + b!.x) / 2, y: (a!.y + b!.y) / 2 };
      pointers.set(ev.pointerId, now);
      const [c, d] = [...pointers.values()];
      const after = { d: Math.hypot(c!.x - d!.x, c!.y - d!.y), x: (c!.x + d!.x) / 2, y: (c!.y + d!.y) / 2 };
      if (before.d > 0) zoom(after.d / before.d, before);
      pan(after.x - before.x, after.y - before.y);
      if (press) press.moved = true;
      return;
    }
    pointers.set(ev.pointerId, now);
    if (press && Math.hypot(now.x - press.x, now.y - press.y) > 4) press.moved = true;
    pan(now.x - prev.x, now.y - prev.y);
  });
  const release = (ev: PointerEvent) => {
    pointers.delete(ev.pointerId);
    if (pointers.size > 0) return;
    s.classList.remove('dragging');
    if (ev.type === 'pointerup' && press && !press.moved) {
      const g = press.target?.closest('.node');
      select(g instanceof SVGGElement ? g.dataset.id : undefined);
    }
    press = undefined;
  };
  s.addEventListener('pointerup', release);
  s.addEventListener('pointercancel', release);
  s.addEventListener(
    'wheel',
    (ev) => {
      ev.preventDefault();
      zoom(Math.exp(-Math.max(-100, Math.min(100, ev.deltaY)) * 0.004), local(ev));
    },
    { passive: false },
  );
  s.addEventListener('keydown', (ev) => {
    const g = (ev.target as Element).closest('.node');
    if (g instanceof SVGGElement && (ev.key === 'Enter' || ev.key === ' ')) {
      ev.preventDefault();
      select(g.dataset.id);
      return;
    }
    const moves: Record<string, [number, number]> = {
      ArrowLeft: [40, 0],
      ArrowRight: [-40, 0],
      ArrowUp: [0, 40],
      ArrowDown: [0, -40],
    };
    if (ev.key === '+' || ev.key === '=') zoom(1.25);
    else if (ev.key === '-' || ev.key === '_') zoom(1 / 1.25);
    else if (ev.key === '0') fit();
    else if (moves[ev.key]) pan(...moves[ev.key]!);
    else return;
    ev.preventDefault();
  });
  zoomIn.addEventListener('click', () => zoom(1.25));
  zoomOut.addEventListener('click', () => zoom(1 / 1.25));
  fitButton.addEventListener('click', fit);

  const hover = (ev: PointerEvent) => {
    const t = ev.target as Element;
    const g = t.closest('.node');
    if (g instanceof SVGGElement) {
      const n = byId.get(g.dataset.id ?? '')!;
      const deg = incident(n.id).length;
      tip.show(ev, [
        rowLabel(n.layer) ? `${n.label} · ${rowLabel(n.layer)}` : n.label,
        ...(n.score === undefined ? [] : [`score ${fmt(n.score, 4)}`]),
        ...(n.details ?? []),
        ...(deg ? [`${deg} edge${deg === 1 ? '' : 's'}`] : []),
      ]);
      return;
    }
    const hit = t.closest('.edge-hit');
    if (hit instanceof SVGPathElement) {
      const { e } = edgeEls[Number(hit.dataset.edge)]!;
      tip.show(ev, [
        `${byId.get(e.from)!.label} → ${byId.get(e.to)!.label}${e.label ? ` (${e.label})` : ''}`,
        e.score === undefined ? `${e.kind ?? 'structural'} edge` : `score ${fmt(e.score, 4)}`,
      ]);
      return;
    }
    tip.hide();
  };
  s.addEventListener('pointerleave', () => tip.hide());

  let selected: string | undefined;
  const edgeItem = (e: CircuitGraphEdge, other: string, dir: string) =>
    html('li', { 'data-from': e.from, 'data-to': e.to }, [
      `${dir} ${byId.get(other)!.label}${e.label ? ` (${e.label})` : ''}`,
      ...(e.score === undefined ? [] : [' ', html('span', { class: 'score' }, [fmt(e.score, 4)])]),
    ]);
  const select = (id: string | undefined) => {
    for (const { g } of edgeEls) g.classList.remove('active');
    for (const { g } of nodeEls.values()) g.classList.remove('selected', 'adjacent');
    selected = id && byId.has(id) ? id : undefined;
    s.classList.toggle('has-selection', selected !== undefined);
    const n = selected ? byId.get(selected) : undefined;
    if (n) {
      nodeEls.get(n.id)!.g.classList.add('selected');
      const mine = incident(n.id);
      for (const { e, g } of mine) {
        g.classList.add('active');
        nodeEls.get(e.from === n.id ? e.to : e.from)?.g.classList.add('adjacent');
      }
      const byAbs = (a: CircuitGraphEdge, b: CircuitGraphEdge) =>
        Math.abs(b.score ?? 0) - Math.abs(a.score ?? 0);
      const ins = mine
        .map(({ e }) => e)
        .filter((e) => e.to === n.id)
        .sort(byAbs);
      const outs = mine
        .map(({ e }) => e)
        .filter((e) => e.from === n.id)
        .sort(byAbs);
      const parts: (Node | string)[] = [
        html('strong', {}, [rowLabel(n.layer) ? `${n.label} · ${rowLabel(n.layer)}` : n.label]),
        ...(n.score === undefined ? [] : [html('div', {}, [`score ${fmt(n.score, 4)}`])]),
        ...(n.details ?? []).map((d) => html('div', {}, [d])),
      ];
      if (n.scores && Object.keys(n.scores).length > 0) {
        parts.push(
          html(
            'table',
            { class: 'relp-table' },
            Object.entries(n.scores).map(([m, v]) =>
              html('tr', {}, [
                html('th', {}, [m]),
                html('td', { 'data-method': m, 'data-value': String(v) }, [fmt(v, 4)]),
              ]),
            ),
          ),
        );
      }
      parts.push(
        html('div', { class: 'edge-list-title' }, [`in (${ins.length})`]),
        html(
          'ul',
          { class: 'edge-list in' },
          ins.map((e) => edgeItem(e, e.from, '←')),
        ),
        html('div', { class: 'edge-list-title' }, [`out (${outs.length})`]),
        html(
          'ul',
          { class: 'edge-list out' },
          outs.map((e) => edgeItem(e, e.to, '→')),
        ),
      );
      details.replaceChildren(...parts);
    } else details.replaceChildren('Select a node to see its scores and edges.');
    options.onSelect?.(n);
  };

  container.append(root);
  let lastW = -1;
  const observer = new ResizeObserver(() => {
    if (!root.isConnected) return observer.disconnect();
    const w = viewport.clientWidth;
    if (w > 0 && w !== lastW) {
      lastW = w;
      fit();
    }
  });
  observer.observe(viewport);
  if (viewport.clientWidth > 0) {
    lastW = viewport.clientWidth;
    fit();
  }
  return {
    element: root,
    select,
    fit,
    zoom: (factor, at) => zoom(factor, at),
    transform: () => ({ scale: k, x: ox, y: oy }),
    destroy: () => observer.disconnect(),
  };
}
