import { runInNewContext } from 'node:vm';
import { XMLValidator } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import {
  buildEdgeReport,
  type EdgeCurveRow,
  type EdgeReportInput,
  edgeCircuitSvg,
  edgeCurvesSvg,
} from '../src/index.js';

function wellFormed(svg: string): void {
  const v = XMLValidator.validate(svg);
  expect(v, JSON.stringify(v)).toBe(true);
}

const graph = { nLayers: 2, nHeads: 4, nKvHeads: 2, nEdges: 8 };
const edges = [
  'input->a0.h0<q>',
  'input->a0.h1<k>',
  'a0.h0->m0',
  'a0.h2->a1.h3<q>',
  'm0->a1.h1<v>',
  'a1.h2->m1',
  'm1->logits',
  'a0.h1->logits',
];
const fractions = [0.001, 0.01, 0.1, 1];
const curve = (method: string, ablation: string, f: readonly number[]): EdgeCurveRow => ({
  method,
  ablation,
  fractions,
  requested: fractions.map((x) => Math.floor(x * 8)),
  kept: fractions.map((x) => Math.floor(x * 8)),
  faithfulness: f,
  cpr: f[0]! + 1,
  cmd: f[1]! + 2,
});

function input(overrides: Partial<EdgeReportInput> = {}): EdgeReportInput {
  const cost = { forwardPasses: 2, backwardPasses: 1, forwardEquivalents: 2, seconds: 0.5 };
  return {
    title: 'edges <&>',
    graph,
    methods: [
      { method: 'eap', edges, scores: [0.1, -0.9, 0.3, 0.05, -0.2, 0.7, 0.02, -0.4], cost },
      { method: 'relp', edges, scores: [0.2, -0.1, 0.8, 0.0, -0.6, 0.1, 0.03, -0.05], cost },
    ],
    reference: {
      method: 'edge-patching',
      edges: edges.slice(0, 5),
      scores: [0.15, -0.8, 0.4, 0.01, -0.3],
      cost,
    },
    agreement: [
      { method: 'eap', pearson: 0.91, spearman: 0.8, topK: 1, k: 10, sign: 1, cells: 5 },
      { method: 'relp', pearson: 0.55, spearman: 0.4, topK: 0.6, k: 10, sign: 0.8, cells: 5 },
    ],
    curves: [
      curve('eap', 'corrupt', [0, 0.2, 0.7, 1]),
      curve('relp', 'corrupt', [0.1, 0.3, 0.9, 1]),
      curve('eap', 'mean', [0, 0.1, 0.5, 1]),
      curve('relp', 'mean', [0, 0.4, 0.6, 1]),
    ],
    circuits: [
      {
        method: 'eap',
        requested: 4,
        edges: [
          { name: 'input->a0.h1<k>', score: -0.9 },
          { name: 'a1.h2->m1', score: 0.7 },
          { name: 'm1->logits', score: 0.02 },
        ],
        faithfulness: { corrupt: 0.8, mean: 0.6 },
      },
    ],
    notes: ['4 pairs'],
    provenance: { model: 'tiny' },
    ...overrides,
  };
}

/** The page's sortable table's body rows. */
function tableBody(html: string): string[] {
  const body = /<table class="edge-table" id="edge-table">[\s\S]*?<tbody>([\s\S]*?)<\/tbody>/.exec(html)![1]!;
  return [...body.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((m) => m[1]!);
}

/** The sortable table as rows of cell texts. */
function tableRows(html: string): string[][] {
  return tableBody(html).map((row) => [...row.matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)].map((c) => c[1]!));
}

describe('the edge report', () => {
  it('curves: one line per method on each ablation’s plot, well-formed', () => {
    for (const ablation of ['corrupt', 'mean']) {
      const svg = edgeCurvesSvg(input().curves!, ablation);
      wellFormed(svg);
      expect(svg.match(/<polyline /g)).toHaveLength(2);
      expect(svg).toContain(`(${ablation} ablation)`);
      for (const m of ['eap', 'relp']) expect(svg).toContain(`>${m}</text>`);
    }
  });

  it('writes report.html, report.json and one SVG per ablation and per circuit; CPR/CMD rows per method and ablation', () => {
    const r = buildEdgeReport(input());
    expect(Object.keys(r.files).sort()).toEqual([
      'circuit-eap.svg',
      'faithfulness-corrupt.svg',
      'faithfulness-mean.svg',
      'report.html',
      'report.json',
    ]);
    for (const [name, svg] of Object.entries(r.files)) if (name.endsWith('.svg')) wellFormed(svg);
    expect(r.circuitTable!.header).toEqual(['method', 'ablation', 'CPR ↑', 'CMD ↓']);
    expect(r.circuitTable!.rows).toEqual([
      ['eap', 'corrupt', '1.000', '2.200'],
      ['relp', 'corrupt', '1.100', '2.300'],
      ['eap', 'mean', '1.000', '2.100'],
      ['relp', 'mean', '1.000', '2.400'],
    ]);
    expect(r.agreementTable!.rows.map((row) => row.slice(0, 3))).toEqual([
      ['eap', '0.910', '0.800'],
      ['relp', '0.550', '0.400'],
    ]);
    const html = r.files['report.html']!;
    expect(html).toContain('<title>edges &lt;&amp;&gt;</title>');
    for (const f of ['faithfulness-corrupt.svg', 'faithfulness-mean.svg', 'circuit-eap.svg']) {
      expect(html).toContain(`href="${f}"`);
    }
    // The edge table comes before the provenance, which stays last.
    expect(html.indexOf('id="edge-table"')).toBeLessThan(html.indexOf('<h2>Provenance</h2>'));
    const json = JSON.parse(r.files['report.json']!);
    expect(json.curves).toHaveLength(4);
    expect(json.figures).toEqual(['faithfulness-corrupt.svg', 'faithfulness-mean.svg', 'circuit-eap.svg']);
  });

  it('no curves, no circuit section; no reference, no agreement section', () => {
    const r = buildEdgeReport(
      input({ curves: undefined, circuits: undefined, reference: undefined, agreement: undefined }),
    );
    expect(Object.keys(r.files).sort()).toEqual(['report.html', 'report.json']);
    expect(r.circuitTable).toBeUndefined();
    expect(r.agreementTable).toBeUndefined();
    expect(r.files['report.html']).not.toContain('Agreement with exact edge patching');
  });

  it('edge table: the top edges by the largest |score| of any method, one column per method and the reference', () => {
    const html = buildEdgeReport(input({ tableRows: 5 })).files['report.html']!;
    const header = [...html.matchAll(/<th class="sortable" data-col="(\d+)"[^>]*>([^<]*)<\/th>/g)];
    expect(header.map((h) => h[2])).toEqual([
      'rank',
      'edge',
      'from',
      'to',
      'eap',
      'relp',
      'edge-patching (sample)',
    ]);
    const rows = tableRows(html);
    // max |score| per edge: 0.2, 0.9, 0.8, 0.05, 0.6, 0.7, 0.03, 0.4
    expect(rows.map((r) => r[1]!.replaceAll('&gt;', '>').replaceAll('&lt;', '<'))).toEqual([
      'input->a0.h1<k>',
      'a0.h0->m0',
      'a1.h2->m1',
      'm0->a1.h1<v>',
      'a0.h1->logits',
    ]);
    // An edge outside the sample has no reference score.
    expect(rows[2]![6]).toBe('—');
  });

  it('the inline script sorts the table by a clicked column, and reverses on a second click', () => {
    const html = buildEdgeReport(input()).files['report.html']!;
    const script = /<script>([\s\S]*?)<\/script>/.exec(html)![1]!;
    // A minimal DOM of the rendered table: header cells with listeners, rows with cells (data-v, textContent).
    const parsed = tableRows(html);
    const values = tableBody(html).map((row) =>
      [...row.matchAll(/<td[^>]*?(?: data-v="([^"]*)")?>/g)].map((c) => c[1]),
    );
    let rows = parsed.map((cells, i) => ({
      cells: cells.map((t, j) => ({
        textContent: t,
        dataset: values[i]![j] === undefined ? {} : { v: values[i]![j] },
      })),
    }));
    const listeners: (() => void)[] = [];
    const ths = Array.from({ length: parsed[0]!.length }, (_, j) => ({
      dataset: { col: String(j) },
      style: {} as Record<string, string>,
      addEventListener: (_: string, f: () => void) => listeners.push(f),
      setAttribute: () => {},
      removeAttribute: () => {},
    }));
    const body = {
      get rows() {
        return rows;
      },
      appendChild(row: (typeof rows)[number]) {
        rows = [...rows.filter((r) => r !== row), row];
      },
    };
    const table = { tBodies: [body], querySelectorAll: () => ths };
    runInNewContext(script, { document: { getElementById: () => table } });
    const column = (j: number) => rows.map((r) => r.cells[j]!.textContent);
    listeners[4]!(); // eap: largest first
    expect(column(4).map(Number)).toEqual([0.7, 0.3, 0.1, 0.05, 0.02, -0.2, -0.4, -0.9]);
    listeners[4]!(); // again: smallest first
    expect(column(4).map(Number)).toEqual([-0.9, -0.4, -0.2, 0.02, 0.05, 0.1, 0.3, 0.7]);
    listeners[1]!(); // by name
    expect(column(1)).toEqual([...column(1)].sort((a, b) => a.localeCompare(b)));
  });

  it('circuit graph: one node per head, MLP, input and logits in the circuit; key/value heads drawn at their query heads', () => {
    const svg = edgeCircuitSvg(
      {
        method: 'x',
        requested: 3,
        edges: [
          { name: 'input->a0.h1<k>', score: -1 },
          { name: 'a0.h2->m0', score: 0.5 },
          { name: 'm0->logits', score: 0.25 },
        ],
      },
      graph,
    );
    wellFormed(svg);
    const nodes = [...svg.matchAll(/data-node="([^"]+)"/g)].map((m) => m[1]).sort();
    // a0.h1<k> is key/value head 1 of 2: query heads 2 and 3 share it.
    expect(nodes).toEqual(['a0.h2', 'a0.h3', 'input', 'logits', 'm0']);
    const widths = [...svg.matchAll(/class="edge"[^>]*stroke-width="([\d.]+)"/g)].map((m) => Number(m[1]));
    expect(widths).toHaveLength(4);
    // width grows with |score|: the strongest edge (two drawn copies) is the widest
    expect(Math.max(...widths)).toBe(6);
    expect(svg).toMatch(/stroke="#2166ac"[^>]*stroke-dasharray="5 3"/);
  });
});
