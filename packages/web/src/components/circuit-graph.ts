import { divergingColor, fmt } from '@relp/report';
import { html, svg, tokenText } from './dom.js';

export interface CircuitGraphNode {
  readonly id: string;
  readonly site: string;
  readonly layer: number;
  readonly position: number;
  /** The score the node was selected by. */
  readonly score: number;
  readonly token: string;
  /** Scores of the same cell under every method shown, by method label. */
  readonly scores: Readonly<Record<string, number>>;
}

export interface CircuitGraphEdge {
  readonly from: string;
  readonly to: string;
  /** "residual" (same position, later in the stream) or "attention" (from an earlier position). */
  readonly kind: 'residual' | 'attention';
}

export interface CircuitGraphData {
  readonly nodes: readonly CircuitGraphNode[];
  readonly edges: readonly CircuitGraphEdge[];
  /** The method whose scores selected the nodes. */
  readonly method: string;
  readonly nLayers: number;
  readonly seqLen: number;
  /** Token strings by position (axis labels). */
  readonly tokens?: readonly string[];
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

const order = (n: Pick<CircuitGraphNode, 'layer' | 'site'>) => n.layer * 10 + (SITE_ORDER[n.site] ?? 5);

/**
 * Selects a circuit: the `topK` cells by |score| of `results[method]` over its position-granularity sites, and
 * edges of possible information flow between them: along the residual stream at one position (to the next
 * selected node), and, into attention outputs, from the strongest selected node at an earlier position in an
 * earlier layer. Edges are structural, not measured edge attributions.
 */
export function circuitFromResults(
  results: readonly ScoredResult[],
  tokens: readonly string[],
  options: { readonly method?: string; readonly topK?: number } = {},
): CircuitGraphData {
  const chosen = results.find((r) => r.label === options.method) ?? results[0];
  if (!chosen) return { nodes: [], edges: [], method: '', nLayers: 0, seqLen: 0 };
  const cells: CircuitGraphNode[] = [];
  let nLayers = 0;
  let seqLen = 0;
  for (const [site, grid] of Object.entries(chosen.scores)) {
    if (!grid || !Array.isArray(grid[0]) || Array.isArray((grid[0] as unknown[])[0])) continue;
    const g = grid as readonly (readonly number[])[];
    nLayers = Math.max(nLayers, g.length);
    g.forEach((row, layer) => {
      seqLen = Math.max(seqLen, row.length);
      row.forEach((score, position) => {
        if (!Number.isFinite(score) || score === 0) return;
        const scores: Record<string, number> = {};
        for (const r of results) {
          const v = (r.scores[site] as readonly (readonly number[])[] | undefined)?.[layer]?.[position];
          if (typeof v === 'number') scores[r.label] = v;
        }
        cells.push({
          id: `${site}.${layer}.${position}`,
          site,
          layer,
          position,
          score,
          token: tokens[position] ?? '',
          scores,
        });
      });
    });
  }
  const nodes = cells.sort((a, b) => Math.abs(b.score) - Math.abs(a.score)).slice(0, options.topK ?? 20);
  const edges: CircuitGraphEdge[] = [];
  for (const b of nodes) {
    const before = nodes.filter((a) => order(a) < order(b));
    const same = before.filter((a) => a.position === b.position).sort((x, y) => order(y) - order(x))[0];
    if (same) edges.push({ from: same.id, to: b.id, kind: 'residual' });
    if (b.site === 'attn_out') {
      const src = before
        .filter((a) => a.position < b.position && a.layer < b.layer + (a.site === 'resid_pre' ? 1 : 0))
        .sort((x, y) => Math.abs(y.score) - Math.abs(x.score))[0];
      if (src) edges.push({ from: src.id, to: b.id, kind: 'attention' });
    }
  }
  return { nodes, edges, method: chosen.label, nLayers, seqLen, tokens };
}

export interface CircuitGraphView {
  readonly element: HTMLElement;
  select(id: string | undefined): void;
  /** Current view transform (for tests): scale and translation. */
  transform(): { scale: number; x: number; y: number };
}

/**
 * An interactive circuit graph: positions left to right, layers bottom to top (within a layer: resid_pre,
 * attn_out, mlp_out), node size by |score| and colour by sign. Drag to pan, wheel (or the buttons) to zoom,
 * click a node to see its site, layer, token and the score of every method.
 */
export function renderCircuitGraph(
  container: HTMLElement,
  data: CircuitGraphData,
  options: { readonly onSelect?: (node: CircuitGraphNode | undefined) => void } = {},
): CircuitGraphView {
  const colW = 64;
  const rowH = 26;
  const rowsPerLayer = 4;
  const width = 60 + Math.max(1, data.seqLen) * colW;
  const height = 30 + Math.max(1, data.nLayers) * rowsPerLayer * rowH;
  const maxAbs = Math.max(1e-30, ...data.nodes.map((n) => Math.abs(n.score)));
  const pos = (n: CircuitGraphNode) => ({
    x: 60 + n.position * colW + colW / 2,
    y: height - 20 - (n.layer * rowsPerLayer + (SITE_ORDER[n.site] ?? 3) * (rowsPerLayer / 5) + 0.5) * rowH,
  });

  const root = html('figure', { class: 'relp-circuit' });
  root.append(html('figcaption', {}, [`circuit: top ${data.nodes.length} nodes by |${data.method}|`]));
  const toolbar = html('div', { class: 'relp-toolbar' });
  const zoomIn = html('button', { type: 'button', title: 'zoom in' }, ['+']);
  const zoomOut = html('button', { type: 'button', title: 'zoom out' }, ['−']);
  const reset = html('button', { type: 'button', title: 'reset view' }, ['reset']);
  toolbar.append(zoomIn, zoomOut, reset);
  const layout = html('div', { class: 'relp-circuit-layout' });
  const viewport = html('div', { class: 'relp-circuit-viewport' });
  const details = html('div', { class: 'relp-circuit-details' }, ['Select a node to see its scores.']);
  layout.append(viewport, details);
  root.append(toolbar, layout);

  const s = svg('svg', {
    width: '100%',
    height: Math.min(480, height + 10),
    role: 'img',
    'aria-label': 'circuit graph',
  });
  const world = svg('g', { class: 'world' });
  s.append(world);
  viewport.append(s);
  // Axes: layer bands and token columns.
  for (let l = 0; l < data.nLayers; l++) {
    const y = height - 20 - (l + 1) * rowsPerLayer * rowH;
    world.append(
      svg('rect', {
        x: 50,
        y,
        width: width - 50,
        height: rowsPerLayer * rowH,
        fill: l % 2 ? '#fafafa' : '#f2f4f7',
      }),
      svg('text', { x: 4, y: y + (rowsPerLayer * rowH) / 2 + 4, class: 'axis' }, [`L${l}`]),
    );
  }
  for (let p = 0; p < data.seqLen; p++) {
    world.append(
      svg(
        'text',
        { x: 60 + p * colW + colW / 2, y: height - 4, 'text-anchor': 'middle', class: 'axis token' },
        [tokenText(data.tokens?.[p] ?? data.nodes.find((n) => n.position === p)?.token ?? String(p), 8)],
      ),
    );
  }
  const byId = new Map(data.nodes.map((n) => [n.id, n]));
  for (const e of data.edges) {
    const a = byId.get(e.from);
    const b = byId.get(e.to);
    if (!a || !b) continue;
    const pa = pos(a);
    const pb = pos(b);
    world.append(
      svg('path', {
        d: `M${pa.x},${pa.y} C${pa.x},${(pa.y + pb.y) / 2} ${pb.x},${(pa.y + pb.y) / 2} ${pb.x},${pb.y}`,
        class: `edge ${e.kind}`,
        fill: 'none',
      }),
    );
  }
  const nodeEls = new Map<string, SVGGElement>();
  for (const n of data.nodes) {
    const p = pos(n);
    const r = 4 + 10 * Math.sqrt(Math.abs(n.score) / maxAbs);
    const g = svg(
      'g',
      { class: 'node', tabindex: 0, 'data-id': n.id, transform: `translate(${p.x},${p.y})` },
      [
        svg('circle', { r, fill: divergingColor(n.score / maxAbs), stroke: '#333' }),
        svg('text', { y: -r - 2, 'text-anchor': 'middle', class: 'node-label' }, [
          n.site.replace('_out', '').replace('resid_pre', 'res'),
        ]),
      ],
    );
    nodeEls.set(n.id, g);
    world.append(g);
  }

  let scale = 1;
  let tx = 0;
  let ty = 0;
  const apply = () => world.setAttribute('transform', `translate(${tx},${ty}) scale(${scale})`);
  const zoomAt = (factor: number, cx: number, cy: number) => {
    const next = Math.max(0.2, Math.min(8, scale * factor));
    tx = cx - ((cx - tx) * next) / scale;
    ty = cy - ((cy - ty) * next) / scale;
    scale = next;
    apply();
  };
  const fit = () => {
    const w = viewport.clientWidth || width;
    const h = Number(s.getAttribute('height'));
    scale = Math.min(1, w / width, h / height);
    tx = 0;
    ty = 0;
    apply();
  };
  s.addEventListener(
    'wheel',
    (ev) => {
      ev.preventDefault();
      const b = s.getBoundingClientRect();
      zoomAt(ev.deltaY < 0 ? 1.15 : 1 / 1.15, ev.clientX - b.left, ev.clientY - b.top);
    },
    { passive: false },
  );
  let drag: { x: number; y: number; tx: number; ty: number } | undefined;
  s.addEventListener('pointerdown', (ev) => {
    if ((ev.target as Element).closest('.node')) return;
    drag = { x: ev.clientX, y: ev.clientY, tx, ty };
    s.setPointerCapture(ev.pointerId);
    s.classList.add('dragging');
  });
  s.addEventListener('pointermove', (ev) => {
    if (!drag) return;
    tx = drag.tx + ev.clientX - drag.x;
    ty = drag.ty + ev.clientY - drag.y;
    apply();
  });
  const endDrag = () => {
    drag = undefined;
    s.classList.remove('dragging');
  };
  s.addEventListener('pointerup', endDrag);
  s.addEventListener('pointercancel', endDrag);
  const centre = () => ({ x: (viewport.clientWidth || width) / 2, y: Number(s.getAttribute('height')) / 2 });
  zoomIn.addEventListener('click', () => zoomAt(1.25, centre().x, centre().y));
  zoomOut.addEventListener('click', () => zoomAt(1 / 1.25, centre().x, centre().y));
  reset.addEventListener('click', fit);

  let selected: string | undefined;
  const select = (id: string | undefined) => {
    if (selected) nodeEls.get(selected)?.classList.remove('selected');
    selected = id && byId.has(id) ? id : undefined;
    const n = selected ? byId.get(selected) : undefined;
    if (n) {
      nodeEls.get(n.id)?.classList.add('selected');
      details.replaceChildren(
        html('strong', {}, [`${n.site} · layer ${n.layer} · position ${n.position}`]),
        html('div', {}, [`token ${JSON.stringify(n.token)}`]),
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
    } else details.replaceChildren('Select a node to see its scores.');
    options.onSelect?.(n);
  };
  world.addEventListener('click', (ev) => {
    const g = (ev.target as Element).closest('.node');
    if (g instanceof SVGGElement) select(g.dataset.id);
  });
  world.addEventListener('keydown', (ev) => {
    const g = (ev.target as Element).closest('.node');
    if (g instanceof SVGGElement && (ev.key === 'Enter' || ev.key === ' ')) select(g.dataset.id);
  });
  container.append(root);
  requestAnimationFrame(fit);
  return { element: root, select, transform: () => ({ scale, x: tx, y: ty }) };
}
