import { XMLValidator } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import {
  buildCompareReport,
  type CompareReportInput,
  circuitCurvesSvg,
  displayGrid,
  divergingColor,
  formatTable,
  heatmapSvg,
  scatterSvg,
} from '../src/index.js';

function wellFormed(svg: string): void {
  const v = XMLValidator.validate(svg);
  expect(v, JSON.stringify(v)).toBe(true);
  expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
}

const tokens = ['<|endoftext|>', 'When\u0001', ' John', ' & <Mary>', ' "went"'];
const grid = (f: (l: number, p: number) => number) =>
  Array.from({ length: 3 }, (_, l) => Array.from({ length: tokens.length }, (_, p) => f(l, p)));

describe('SVG plots', () => {
  it('heatmap: well-formed with hostile labels, one cell per value, colours on a symmetric scale', () => {
    const g = grid((l, p) => (l - 1) * p);
    const svg = heatmapSvg({ grid: g, title: 'a <b> & "c"', colLabels: tokens });
    wellFormed(svg);
    expect(
      svg.match(/<rect x="[\d.]+" y="[\d.]+" width="\d+" height="\d+" fill="#[0-9a-f]{6}"><title>/g),
    ).toHaveLength(15);
    // the largest positive value gets the darkest red, the most negative the darkest blue, zero white
    expect(svg).toContain(
      `fill="${divergingColor(1)}"><title>L2 · ${' "went"'.replaceAll('"', '&quot;')}`.replace('L2', '2'),
    );
    expect(divergingColor(0)).toBe('#f7f7f7');
    expect(divergingColor(1)).toBe('#67001f');
    expect(divergingColor(-1)).toBe('#053061');
  });

  it('scatter and line plots are well-formed, with a legend entry per series', () => {
    const svg = scatterSvg({
      title: 'x',
      series: [
        {
          name: 'atp',
          points: [
            [0, 1],
            [1, 2],
            [Number.NaN, 3],
          ],
        },
        { name: 'relp', points: [[0, 0.5]] },
      ],
      xLabel: 'ap',
      yLabel: 'est',
      diagonal: true,
    });
    wellFormed(svg);
    expect(svg.match(/<circle /g)).toHaveLength(3); // the NaN point is skipped
    const curves = circuitCurvesSvg({
      atp: [
        { threshold: 1, nodes: 1, faithfulness: 0.2, completeness: 0.9 },
        { threshold: 0.1, nodes: 10, faithfulness: 0.8, completeness: 0.1 },
      ],
      relp: [{ threshold: 1, nodes: 3, faithfulness: 0.5, completeness: 0.5 }],
    });
    wellFormed(curves.faithfulness);
    wellFormed(curves.completeness);
    expect(curves.faithfulness.match(/<polyline /g)).toHaveLength(1);
  });
});

describe('displayGrid', () => {
  it('sums heads over positions and neurons over the neuron axis', () => {
    const g3 = [
      [
        [1, 2],
        [3, 4],
      ],
    ];
    expect(displayGrid(g3, 'head')).toEqual({ grid: [[4, 6]], cols: 'head' });
    expect(displayGrid(g3, 'neuron')).toEqual({ grid: [[3, 7]], cols: 'position' });
  });
});

describe('formatTable', () => {
  it('aligns columns, numbers to the right', () => {
    const t = formatTable({
      header: ['method', 'r'],
      rows: [
        ['atp', '0.5'],
        ['relp-ah', '-0.25'],
      ],
    });
    const lines = t.split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[2]).toBe('atp        0.5');
    expect(lines[3]).toBe('relp-ah  -0.25');
  });
});

describe('compare report', () => {
  const ap = grid((l, p) => (p === 2 ? l + 1 : 0));
  const input: CompareReportInput = {
    title: 'IOI <test>',
    tokenLabels: tokens,
    reference: {
      label: 'activation-patching',
      scores: { resid_pre: ap, attn_out: ap },
      cost: { forwardPasses: 30 },
    },
    methods: [
      {
        label: 'atp',
        scores: { resid_pre: grid(() => 0.1), attn_out: ap },
        cost: { forwardPasses: 2, seconds: 0.5 },
      },
      { label: 'relp', rules: 'relp', scores: { resid_pre: ap, attn_out: ap }, cost: { forwardPasses: 2 } },
    ],
    agreement: [
      { method: 'atp', site: 'resid_pre', pearson: Number.NaN, spearman: 0.1234 },
      { method: 'relp', site: 'resid_pre', pearson: 0.987654, spearman: 1 },
    ],
    provenance: { command: 'relp compare --x "<y>"', seed: 3 },
  };
  const out = buildCompareReport(input);
  const html = out.files['report.html']!;

  it('writes a heatmap per method and site type, a scatter per site type, report.json and report.html', () => {
    const svgs = Object.keys(out.files).filter((f) => f.endsWith('.svg'));
    expect(svgs.sort()).toEqual(
      [
        'heatmap-activation-patching-attn_out.svg',
        'heatmap-activation-patching-resid_pre.svg',
        'heatmap-atp-attn_out.svg',
        'heatmap-atp-resid_pre.svg',
        'heatmap-relp-attn_out.svg',
        'heatmap-relp-resid_pre.svg',
        'scatter-attn_out.svg',
        'scatter-resid_pre.svg',
      ].sort(),
    );
    for (const f of svgs) wellFormed(out.files[f]!);
  });

  it('the HTML contains the correlation table and references (and inlines) every SVG it names, no other', () => {
    expect(html).toContain('<th class="left">method</th>');
    expect(html).toContain('<td class="right">0.988</td>');
    expect(html).toContain('<td class="right">0.123</td>');
    expect(html).toContain('NaN');
    const named = [...html.matchAll(/href="([^"]+\.svg)"/g)].map((m) => m[1]!);
    const svgs = Object.keys(out.files).filter((f) => f.endsWith('.svg'));
    expect(new Set(named)).toEqual(new Set(svgs));
    for (const f of named) expect(html).toMatch(new RegExp(`<figure data-file="${f}"[^>]*><svg`));
    expect(html).not.toMatch(/<script|https?:\/\/(?!www\.w3\.org)/); // self-contained
    expect(html).toContain('relp compare --x &quot;&lt;y&gt;&quot;');
    expect(html).not.toContain('<test>');
  });

  it('heatmaps are one grid: a row per site type, in it one cell per method, side by side', () => {
    const grids = html.match(/<div class="fig-grid"/g) ?? [];
    expect(grids).toHaveLength(1);
    const cells = [
      ...html.matchAll(
        /<figure data-file="([^"]+)" class="fig-cell" data-row="([^"]+)" data-column="([^"]+)"><svg/g,
      ),
    ];
    const sites = ['resid_pre', 'attn_out'];
    const methods = ['activation-patching', 'atp', 'relp'];
    expect(cells.map((c) => `${c[2]} ${c[3]}`)).toEqual(
      sites.flatMap((s) => methods.map((m) => `${s} ${m}`)),
    );
    for (const c of cells) expect(c[1]).toBe(`heatmap-${c[3]}-${c[2]}.svg`);
    // Each row holds its own cells, in a container that lays them out as a wrapping grid.
    const rows = html.split('<div class="fig-row"').slice(1);
    expect(rows.map((r) => /data-row="([^"]+)"/.exec(r)?.[1])).toEqual(sites);
    for (const r of rows) expect(r.match(/class="fig-cell"/g)).toHaveLength(methods.length);
    expect(html).toMatch(/\.fig-cells\{display:grid;grid-template-columns:repeat\(auto-fit,minmax\(/);
    expect(out.heatmaps.rows.map((r) => r.cells.length)).toEqual([3, 3]);
  });

  it('provenance keys never wrap (class "key", white-space: nowrap), values do; no empty header row', () => {
    const prov = html.slice(html.indexOf('<table class="prov">'));
    expect(prov).toContain('<td class="left key">command</td><td class="left value">relp compare');
    expect(prov).toContain('<td class="left key">seed</td>');
    expect(prov.slice(0, prov.indexOf('</table>'))).not.toContain('<thead>');
    expect(html).toMatch(/\.prov td\.key\{white-space:nowrap/);
    expect(html).toMatch(/\.prov td\.value\{overflow-wrap:anywhere/);
    expect(html).not.toMatch(/word-break:break-all/);
  });

  it('the cost table says what its seconds are when told', () => {
    const noted = buildCompareReport({ ...input, costNote: 'after a warm-up run' }).files['report.html']!;
    expect(noted).toContain('Cost per method (after a warm-up run)');
  });

  it('report.json holds the grids, the agreement and the provenance', () => {
    const json = JSON.parse(out.files['report.json']!);
    expect(json.methods.map((m: { label: string }) => m.label)).toEqual([
      'activation-patching',
      'atp',
      'relp',
    ]);
    expect(json.methods[0].scores.resid_pre).toEqual(ap);
    expect(json.agreement[0].pearson).toBe('NaN');
    expect(json.provenance.seed).toBe(3);
    expect(json.figures).toHaveLength(8);
  });

  it('the terminal table lists each method × site', () => {
    const t = formatTable(out.agreementTable);
    expect(t).toMatch(/relp\s+resid_pre\s+0\.988\s+1\.000/);
  });
});
