import { type Figure, figureFiles, type HtmlReport, renderHtml, type Section } from './html.js';
import { linePlotSvg } from './plots.js';
import { esc, fixed, fmt, r, svgOpen, text } from './svg.js';
import type { Table } from './table.js';

/**
 * The edge report (`relp edges`): each method's agreement with exact edge patching on a sample, faithfulness
 * curves over MIB's edge fractions with CPR and CMD, each method's circuit as a layered graph, and a sortable table
 * of the top edges. Plain data in, files out: this package knows nothing of tensors.
 */

/** The graph's shape, as the engine's EdgeGraph gives it (EAP-IG's node names). */
export interface EdgeReportGraph {
  readonly nLayers: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly nEdges: number;
}

/** One method's scores: every edge it scored, summed over positions. */
export interface EdgeMethodScores {
  readonly method: string;
  readonly edges: readonly string[];
  readonly scores: readonly number[];
  readonly cost: Readonly<Record<string, number>>;
}

export interface EdgeAgreementRow {
  readonly method: string;
  readonly pearson: number;
  readonly spearman: number;
  readonly topK: number;
  readonly k: number;
  readonly sign: number;
  readonly cells: number;
}

/** One method's faithfulness curve under one ablation (edgeCircuitCurve's fields). */
export interface EdgeCurveRow {
  readonly method: string;
  readonly ablation: string;
  readonly fractions: readonly number[];
  readonly requested: readonly number[];
  readonly kept: readonly number[];
  readonly faithfulness: readonly number[];
  readonly cpr: number;
  readonly cmd: number;
}

/** One method's circuit at the chosen size: its edges after pruning, with their scores. */
export interface EdgeCircuitView {
  readonly method: string;
  readonly requested: number;
  readonly edges: readonly { readonly name: string; readonly score: number }[];
  /** Faithfulness of this circuit per ablation. */
  readonly faithfulness?: Readonly<Record<string, number>>;
}

export interface EdgeReportInput {
  readonly title: string;
  readonly graph: EdgeReportGraph;
  readonly methods: readonly EdgeMethodScores[];
  /** Exact edge patching on a sample of edges (the reference), when run. */
  readonly reference?: EdgeMethodScores;
  readonly agreement?: readonly EdgeAgreementRow[];
  readonly curves?: readonly EdgeCurveRow[];
  readonly circuits?: readonly EdgeCircuitView[];
  readonly notes?: readonly string[];
  readonly provenance: Readonly<Record<string, unknown>>;
  /** Rows of the sortable edge table (default 500). */
  readonly tableRows?: number;
  readonly extra?: Readonly<Record<string, unknown>>;
}

export interface RenderedEdgeReport {
  /** report.html, report.json and every SVG. */
  readonly files: Readonly<Record<string, string>>;
  readonly agreementTable?: Table;
  readonly circuitTable?: Table;
  readonly costTable: Table;
}

/** A reader's or writer's name → the node drawn for it: `a3.h2<q>` → `a3.h2`; key/value heads → their query heads. */
function drawnNodes(name: string, g: EdgeReportGraph): string[] {
  const m = /^a(\d+)\.h(\d+)<([qkv])>$/.exec(name);
  if (!m) return [name];
  const [, l, h, letter] = m;
  if (letter === 'q' || g.nKvHeads === g.nHeads) return [`a${l}.h${h}`];
  const rep = g.nHeads / g.nKvHeads;
  return Array.from({ length: rep }, (_, i) => `a${l}.h${Number(h) * rep + i}`);
}

/** The reader's input kind, for the edge's dash pattern: q, k, v, mlp or logits. */
function readerKind(name: string): string {
  const m = /<([qkv])>$/.exec(name);
  return m ? m[1]! : name === 'logits' ? 'logits' : 'mlp';
}

const DASH: Readonly<Record<string, string>> = { q: '', k: '5 3', v: '2 2', mlp: '', logits: '' };

/**
 * A circuit as a layered graph: `input` at the bottom, `logits` at the top, per layer a row of heads and above it
 * the MLP; only the circuit's nodes are drawn. Edge width grows with |score| (relative to the circuit's largest),
 * red for positive scores and blue for negative; key inputs dashed, value inputs dotted.
 */
export function edgeCircuitSvg(
  circuit: EdgeCircuitView,
  g: EdgeReportGraph,
  title = `${circuit.method}: ${circuit.edges.length} edges`,
): string {
  const parts = circuit.edges.flatMap((e) => {
    const [u, v] = e.name.split('->') as [string, string];
    return drawnNodes(v, g).map((to) => ({ from: u, to, kind: readerKind(v), score: e.score, name: e.name }));
  });
  const nodes = new Set<string>(['input', 'logits']);
  for (const p of parts) nodes.add(p.from).add(p.to);
  // Rows from the top: logits, then per layer (last first) the MLP row and the heads row, then input.
  const rowOf = (n: string): number => {
    if (n === 'logits') return 0;
    if (n === 'input') return 2 * g.nLayers + 1;
    const l = Number(/^[am](\d+)/.exec(n)![1]);
    return 1 + 2 * (g.nLayers - 1 - l) + (n.startsWith('m') ? 0 : 1);
  };
  const headsShown = Math.max(1, g.nHeads);
  const rowH = 54;
  const left = 70;
  const slot = Math.max(34, Math.min(64, Math.floor(900 / headsShown)));
  // The MLPs sit in a column right of the heads, so edges into logits do not cross them.
  const mlpX = left + (headsShown + 0.9) * slot;
  const width = Math.max(420, mlpX + slot + 20);
  const top = 40;
  const height = top + (2 * g.nLayers + 2) * rowH + 20;
  const xOf = (n: string): number => {
    const h = /^a\d+\.h(\d+)$/.exec(n);
    if (h) return left + (Number(h[1]) + 0.5) * slot;
    return n.startsWith('m') ? mlpX : left + (headsShown * slot) / 2;
  };
  const yOf = (n: string): number => top + rowOf(n) * rowH + rowH / 2;
  const maxAbs = Math.max(0, ...circuit.edges.map((e) => Math.abs(e.score)).filter(Number.isFinite));
  const out: string[] = [svgOpen(width, height, title)];
  out.push(text(10, 20, title, { 'font-size': 13, 'font-weight': 'bold' }));
  for (let l = 0; l < g.nLayers; l++) {
    const ya = top + rowOf(`a${l}.h0`) * rowH;
    out.push(
      `<rect x="4" y="${r(ya - rowH)}" width="${width - 8}" height="${2 * rowH}" fill="${l % 2 ? '#fafafa' : '#f3f3f3'}"/>`,
    );
    out.push(text(8, ya + rowH / 2 - rowH + 4, `L${l}`, { fill: '#777' }));
  }
  // Edges first, wider ones last (on top).
  const order = parts.map((_, i) => i).sort((a, b) => Math.abs(parts[a]!.score) - Math.abs(parts[b]!.score));
  for (const i of order) {
    const p = parts[i]!;
    // From the top of the writer's box to the bottom of the reader's.
    const [x1, y1, x2, y2] = [xOf(p.from), yOf(p.from) - 11, xOf(p.to), yOf(p.to) + 11];
    const w = maxAbs > 0 && Number.isFinite(p.score) ? 0.6 + (5.4 * Math.abs(p.score)) / maxAbs : 0.6;
    // A sideways bend keeps edges between the same two rows apart; one skipping rows straight up arcs around them.
    const bend = (x2 - x1) * 0.15 + (x1 === x2 ? 12 + (y1 - y2) * 0.25 : 0);
    const cx = (x1 + x2) / 2 + bend;
    const cy = (y1 + y2) / 2;
    const color = p.score >= 0 ? '#c0392b' : '#2166ac';
    const dash = DASH[p.kind] ? ` stroke-dasharray="${DASH[p.kind]}"` : '';
    out.push(
      `<path class="edge" d="M${r(x1)},${r(y1)} Q${r(cx)},${r(cy)} ${r(x2)},${r(y2)}" fill="none" stroke="${color}" stroke-opacity="0.75" stroke-width="${r(w)}"${dash}><title>${esc(`${p.name}: ${fmt(p.score, 4)}`)}</title></path>`,
    );
  }
  for (const n of nodes) {
    const x = xOf(n);
    const y = yOf(n);
    const isHead = n.startsWith('a');
    const fill = n === 'input' || n === 'logits' ? '#eeeeee' : isHead ? '#fde9c8' : '#d6eaf8';
    const w = isHead ? Math.min(slot - 4, 52) : 64;
    out.push(
      `<g class="node" data-node="${esc(n)}"><rect x="${r(x - w / 2)}" y="${r(y - 11)}" width="${r(w)}" height="22" rx="5" fill="${fill}" stroke="#555"/>` +
        `${text(x, y + 4, n, { 'text-anchor': 'middle', 'font-size': 10 })}</g>`,
    );
  }
  out.push('</svg>');
  return out.join('');
}

/** Faithfulness over the edge fractions, one series per method, for one ablation. */
export function edgeCurvesSvg(curves: readonly EdgeCurveRow[], ablation: string): string {
  return linePlotSvg({
    title: `Faithfulness of edge circuits (${ablation} ablation)`,
    series: curves
      .filter((c) => c.ablation === ablation)
      .map((c) => ({
        name: c.method,
        points: c.fractions.map((f, i) => [f, c.faithfulness[i]!] as const),
      })),
    xLabel: 'fraction of edges (log)',
    yLabel: 'faithfulness',
    xLog: true,
  });
}

/** The sortable edge table: an HTML table whose header cells sort it (numbers by value, text alphabetically). */
function sortableTableHtml(
  header: readonly string[],
  rows: readonly (readonly (string | number)[])[],
): string {
  const th = header
    .map((h, j) => `<th class="sortable" data-col="${j}" title="sort by ${esc(h)}">${esc(h)}</th>`)
    .join('');
  const td = (c: string | number) =>
    typeof c === 'number'
      ? `<td class="right" data-v="${Number.isFinite(c) ? c : ''}">${esc(Number.isFinite(c) ? fmt(c, 4) : '—')}</td>`
      : `<td class="left">${esc(c)}</td>`;
  const body = rows.map((row) => `<tr>${row.map(td).join('')}</tr>`).join('\n');
  return `<table class="edge-table" id="edge-table"><thead><tr>${th}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

/** Sorts #edge-table by a clicked column (numbers by value, largest first; text alphabetically); a second click reverses. */
const SORT_SCRIPT = `<script>
(function(){var t=document.getElementById('edge-table');if(!t)return;var dir={};
t.querySelectorAll('th.sortable').forEach(function(th){th.style.cursor='pointer';th.addEventListener('click',function(){
var j=+th.dataset.col,b=t.tBodies[0],rows=Array.prototype.slice.call(b.rows);dir[j]=dir[j]===1?-1:1;var d=dir[j];
rows.sort(function(x,y){var a=x.cells[j],c=y.cells[j];var va=a.dataset.v,vc=c.dataset.v;
if(va!==undefined&&vc!==undefined){var p=va===''?-Infinity:+va,q=vc===''?-Infinity:+vc;return d*(q-p);}
return d*a.textContent.localeCompare(c.textContent);});rows.forEach(function(row){b.appendChild(row);});
t.querySelectorAll('th.sortable').forEach(function(h){h.removeAttribute('aria-sort');});
th.setAttribute('aria-sort',d===1?'descending':'ascending');});});})();
</script>`;

/** The top edges by the largest |score| of any method, one score column per method (and the reference's). */
function edgeRows(input: EdgeReportInput, n: number): { header: string[]; rows: (string | number)[][] } {
  const cols = [...input.methods, ...(input.reference ? [input.reference] : [])];
  const maps = cols.map((m) => new Map(m.edges.map((e, i) => [e, m.scores[i]!])));
  const names = input.methods[0]?.edges ?? input.reference?.edges ?? [];
  const strength = (e: string) =>
    Math.max(
      0,
      ...maps
        .slice(0, input.methods.length)
        .map((m) => Math.abs(m.get(e) ?? 0))
        .filter(Number.isFinite),
    );
  const ranked = names
    .map((e, i) => [e, strength(e), i] as const)
    .sort((a, b) => b[1] - a[1] || a[2] - b[2])
    .slice(0, n);
  const header = [
    'rank',
    'edge',
    'from',
    'to',
    ...input.methods.map((m) => m.method),
    ...(input.reference ? [`${input.reference.method} (sample)`] : []),
  ];
  const rows = ranked.map(([e], i) => {
    const [u, v] = e.split('->') as [string, string];
    return [i + 1, e, u, v, ...maps.map((m) => m.get(e) ?? Number.NaN)];
  });
  return { header, rows };
}

const EXTRA_CSS =
  '<style>.edge-table th.sortable{user-select:none}.edge-table th[aria-sort=descending]::after{content:" ▼"}' +
  '.edge-table th[aria-sort=ascending]::after{content:" ▲"}.edge-table td{font-size:.85rem}</style>';

/** Builds the edge report's files: report.html (figures inlined, the edge table sortable), report.json, SVGs. */
export function buildEdgeReport(input: EdgeReportInput): RenderedEdgeReport {
  const files: Record<string, string> = {};
  const sections: Section[] = [];
  const costTable: Table = {
    header: ['method', 'forward', 'backward', 'forward equiv.', 'seconds'],
    rows: [...input.methods, ...(input.reference ? [input.reference] : [])].map((m) => [
      m.method,
      m.cost.forwardPasses ?? Number.NaN,
      m.cost.backwardPasses ?? Number.NaN,
      fixed(m.cost.forwardEquivalents ?? Number.NaN, 2),
      fixed(m.cost.seconds ?? Number.NaN, 2),
    ]),
  };
  let agreementTable: Table | undefined;
  if (input.agreement && input.agreement.length > 0 && input.reference) {
    agreementTable = {
      header: ['method', 'Pearson', 'Spearman', 'top-k', 'sign', 'edges'],
      rows: input.agreement.map((a) => [
        a.method,
        fixed(a.pearson),
        fixed(a.spearman),
        `${fixed(a.topK, 2)} (k=${a.k})`,
        fixed(a.sign, 2),
        a.cells,
      ]),
    };
    sections.push({
      heading: 'Agreement with exact edge patching',
      paragraphs: [
        `Over a sample of ${input.reference.edges.length} of ${input.graph.nEdges} edges, each patched exactly ` +
          '(random edges plus every method’s top edges).',
      ],
      tables: [{ table: agreementTable }],
    });
  }
  let circuitTable: Table | undefined;
  if (input.curves && input.curves.length > 0) {
    const ablations = [...new Set(input.curves.map((c) => c.ablation))];
    const figures: Figure[] = ablations.map((a) => {
      const svg = edgeCurvesSvg(input.curves!, a);
      const file = `faithfulness-${a}.svg`;
      files[file] = svg;
      return { file, svg, caption: `faithfulness vs fraction of edges, ${a} ablation` };
    });
    circuitTable = {
      header: ['method', 'ablation', 'CPR ↑', 'CMD ↓'],
      rows: input.curves.map((c) => [c.method, c.ablation, fixed(c.cpr), fixed(c.cmd)]),
    };
    const fr = input.curves[0]!.fractions;
    sections.push({
      heading: 'Edge circuits: faithfulness over the edge fractions',
      paragraphs: [
        `The top ⌊f · ${input.graph.nEdges}⌋ edges by |score| for f in ${fr.join(', ')}, pruned to what connects ` +
          'the input to the logits; every other edge ablated on the clean prompts. Faithfulness = (m(C) − m(∅)) / ' +
          '(m(M) − m(∅)); CPR is the area under the curve (higher is better), CMD the area under |1 − faithfulness| ' +
          '(lower is better), trapezoids over f on a linear axis.',
      ],
      tables: [{ table: circuitTable }],
      figures,
    });
  }
  if (input.circuits && input.circuits.length > 0) {
    const figures = input.circuits.map((c): Figure => {
      const svg = edgeCircuitSvg(c, input.graph);
      const file = `circuit-${c.method}.svg`;
      files[file] = svg;
      const faith = Object.entries(c.faithfulness ?? {})
        .map(([a, f]) => `faithfulness ${fixed(f)} (${a})`)
        .join(', ');
      return {
        file,
        svg,
        caption: `${c.method}: top ${c.requested} edges, ${c.edges.length} after pruning${faith ? `; ${faith}` : ''}`,
      };
    });
    sections.push({
      heading: 'Circuits',
      paragraphs: [
        'Heads and MLPs by layer (input at the bottom, logits at the top); edge width by |score|, red positive, ' +
          'blue negative; key inputs dashed, value inputs dotted.',
      ],
      figures,
    });
  }
  sections.push({ heading: 'Cost', tables: [{ table: costTable }] });
  const nRows = input.tableRows ?? 500;
  const { header, rows } = edgeRows(input, nRows);
  const page: HtmlReport = {
    title: input.title,
    subtitle: (input.notes ?? []).join(' '),
    sections,
    provenance: input.provenance,
  };
  const edgeSection =
    `<section><h2>Top edges</h2><p>The ${rows.length} edges with the largest |score| of any method ` +
    `(of ${input.graph.nEdges}); click a column to sort.</p><div class="table-wrap">${sortableTableHtml(header, rows)}</div></section>\n`;
  // renderHtml escapes what it is given; the table with its script goes in before the provenance section.
  const marker = '<section><h2>Provenance</h2>';
  const html = renderHtml(page).replace(marker, () => `${EXTRA_CSS}${edgeSection}${SORT_SCRIPT}\n${marker}`);
  files['report.html'] = html;
  files['report.json'] = `${JSON.stringify(
    {
      title: input.title,
      graph: input.graph,
      notes: input.notes ?? [],
      agreement: input.agreement ?? [],
      curves: input.curves ?? [],
      circuits: input.circuits ?? [],
      costs: costTable.rows.map((row, i) => ({
        method: row[0],
        ...[...input.methods, ...(input.reference ? [input.reference] : [])][i]!.cost,
      })),
      figures: figureFiles(page),
      provenance: input.provenance,
      ...(input.extra ?? {}),
    },
    (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v),
    1,
  )}\n`;
  return {
    files,
    costTable,
    ...(agreementTable ? { agreementTable } : {}),
    ...(circuitTable ? { circuitTable } : {}),
  };
}

/** The table (for the terminal) of the top edges, as in the report. */
export function topEdgesTable(input: EdgeReportInput, n: number): Table {
  const { header, rows } = edgeRows(input, n);
  return { header, rows: rows.map((row) => row.map((c) => (typeof c === 'number' ? fmt(c, 4) : c))) };
}
