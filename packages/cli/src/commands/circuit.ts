import {
  type Ablation,
  CircuitEvaluator,
  circuitToDot,
  logThresholds,
  nodeId,
  nodesFromScores,
  type SelectBy,
  type SweepPoint,
  selectNodes,
  sweepThresholds,
} from '@relp/core';
import { badInput } from '@relp/core/errors';
import { parseMethodList } from '@relp/methods';
import { circuitCurvesSvg, type Figure, fixed, formatTable, renderHtml, type Section } from '@relp/report';
import type { CliIo } from '../io.js';
import { checkWritable, toJson, writeFolderAtomic } from '../output.js';
import {
  type CommonOptions,
  cliSettings,
  loadData,
  openSession,
  runMethod,
  sessionProvenance,
} from '../session.js';
import { parseSites } from '../sites.js';

export interface CircuitCommandOptions extends CommonOptions {
  readonly methods: string;
  readonly sites: string;
  readonly select: string;
  readonly value: number;
  readonly by: string;
  readonly ablation: string;
  readonly sweep: boolean;
  readonly thresholds: string;
  readonly raw?: boolean;
  readonly out: string;
  readonly igSteps?: number;
  readonly maxBatchRows?: number;
}

/** "1e-4:1:15" → 15 log-spaced thresholds from 1 down to 1e-4. */
export const MAX_SWEEP_STEPS = 1000;

export function parseThresholds(s: string): number[] {
  const parts = s.split(':').map(Number);
  if (parts.length !== 3 || parts.some((x) => !Number.isFinite(x))) {
    throw badInput(`--thresholds takes lo:hi:steps, e.g. 1e-4:1:15 (got ${s})`);
  }
  // Each step is one ablated forward pass per method: a bound keeps a typo from starting days of work.
  if (parts[2]! > MAX_SWEEP_STEPS)
    throw badInput(`--thresholds: at most ${MAX_SWEEP_STEPS} steps (got ${parts[2]})`);
  return logThresholds(parts[0]!, parts[1]!, parts[2]!);
}

/** A sweep point as curves.json records it. */
export function curvePoint(p: SweepPoint) {
  return {
    threshold: p.threshold,
    nodes: p.nodes,
    faithfulness: p.faithfulness,
    completeness: p.completeness,
    mCircuit: p.mCircuit,
    mComplement: p.mComplement,
  };
}

/** Renders DOT to SVG with @viz-js/viz (Graphviz compiled to WebAssembly; works offline). */
export async function renderDot(dot: string): Promise<string | undefined> {
  try {
    const { instance } = await import('@viz-js/viz');
    const viz = await instance();
    return viz.renderString(dot, { format: 'svg' });
  } catch {
    return undefined;
  }
}

/** `relp circuit`: node selection, faithfulness/completeness, threshold sweeps, JSON + DOT (+ SVG) export. */
export async function circuitCommand(o: CircuitCommandOptions, io: CliIo): Promise<void> {
  const methods = parseMethodList(o.methods);
  const settings = cliSettings(methods, o);
  const sites = parseSites(o.sites);
  if (o.select !== 'threshold' && o.select !== 'top-k') throw badInput('--select must be threshold or top-k');
  if (o.by !== 'abs' && o.by !== 'signed') throw badInput('--by must be abs or signed');
  if (o.ablation !== 'mean' && o.ablation !== 'corrupt') throw badInput('--ablation must be mean or corrupt');
  if (o.select === 'top-k' && (!Number.isInteger(o.value) || o.value < 1)) {
    throw badInput(`--value with --select top-k is the number of nodes, an integer ≥ 1 (got ${o.value})`);
  }
  if (o.select === 'threshold' && o.by === 'abs' && o.value < 0) {
    throw badInput(`--value is a threshold on |score|, so it must be ≥ 0 (got ${o.value})`);
  }
  const thresholds = parseThresholds(o.thresholds);
  checkWritable(o.out, o.force === true, 'output folder');
  const s = await openSession(o, io);
  const data = await loadData(s, o);
  const normalize = o.raw !== true;
  const files: Record<string, string> = {};
  const summary: (string | number)[][] = [];
  const curves: Record<
    string,
    { threshold: number; nodes: number; faithfulness: number; completeness: number }[]
  > = {};
  const circuits: Record<string, unknown> = {};
  const circuitFigures: Figure[] = [];
  let evaluator: CircuitEvaluator | undefined;
  try {
    for (const m of methods) {
      const r = await runMethod(s, data.batch, m, { sites, normalize, settings });
      const scored = nodesFromScores(r.scores, r.granularity);
      evaluator ??= await CircuitEvaluator.create(s.loaded.model, data.batch, scored, {
        ablation: o.ablation as Ablation,
      });
      const chosen = selectNodes(scored, {
        mode: o.select as 'threshold' | 'top-k',
        value: o.value,
        by: o.by as SelectBy,
      });
      const ev = await evaluator.evaluate(chosen);
      summary.push([m.name, chosen.length, scored.length, fixed(ev.faithfulness), fixed(ev.completeness)]);
      const dot = circuitToDot(chosen, {
        title: `${m.name}: ${o.select} ${o.value} on ${o.by === 'abs' ? '|score|' : 'score'}`,
        tokenLabels: data.labels,
      });
      files[`circuit-${m.name}.dot`] = dot;
      const svg = await renderDot(dot);
      if (svg) {
        files[`circuit-${m.name}.svg`] = svg;
        circuitFigures.push({
          file: `circuit-${m.name}.svg`,
          svg,
          caption: `${m.name}: ${chosen.length} nodes`,
        });
      } else {
        s.log.warn('no Graphviz renderer could start (@viz-js/viz): wrote DOT only');
      }
      circuits[m.name] = {
        method: m.name,
        rules: r.rules,
        selection: { mode: o.select, value: o.value, by: o.by },
        nodes: chosen.map((n) => ({ id: nodeId(n), ...n })),
        evaluation: { ...ev, mFull: evaluator.mFull, mEmpty: evaluator.mEmpty },
        cost: r.cost,
      };
      files[`circuit-${m.name}.json`] = toJson(circuits[m.name]);
      if (o.sweep) {
        const pts = await sweepThresholds(evaluator, scored, thresholds, {
          by: o.by as SelectBy,
          onProgress: s.progress.labelled(`${m.name} sweep`),
        });
        s.progress.stop();
        curves[m.name] = pts.map(curvePoint);
      }
    }
    const mFull = evaluator!.mFull;
    const mEmpty = evaluator!.mEmpty;
    const prov = sessionProvenance(s, data, {
      methods: methods.map((m) => m.name),
      sites: o.sites,
      ablation: o.ablation,
      normalizedScores: normalize,
    });
    const table = {
      header: ['method', 'nodes', 'of', 'faithfulness', 'completeness'],
      rows: summary,
    };
    const sections: Section[] = [
      {
        heading: 'Selected circuits',
        paragraphs: [
          `m(M) = ${mFull.toPrecision(5)} (clean), m(∅) = ${mEmpty.toPrecision(5)} (every node ablated, ${o.ablation} ablation). ` +
            'Faithfulness = (m(C) − m(∅)) / (m(M) − m(∅)); completeness is the same with the circuit itself ablated (near 0 is complete).',
        ],
        tables: [{ table }],
        figures: circuitFigures,
      },
    ];
    if (o.sweep) {
      const svgs = circuitCurvesSvg(curves);
      files['faithfulness.svg'] = svgs.faithfulness;
      files['completeness.svg'] = svgs.completeness;
      files['curves.json'] = toJson({ thresholds, by: o.by, ablation: o.ablation, curves });
      sections.push({
        heading: `Threshold sweep (${thresholds.length} thresholds, ${fixed(thresholds[0]!, 0)} … ${thresholds.at(-1)!.toExponential(0)})`,
        figures: [
          { file: 'faithfulness.svg', svg: svgs.faithfulness, caption: 'faithfulness vs nodes' },
          { file: 'completeness.svg', svg: svgs.completeness, caption: 'completeness vs nodes' },
        ],
      });
    }
    files['circuit.json'] = toJson({ mFull, mEmpty, ablation: o.ablation, circuits, provenance: prov });
    files['report.html'] = renderHtml({ title: 'relp circuit', sections, provenance: prov });
    await writeFolderAtomic(o.out, files, o.force === true);
    if (o.json) {
      io.stdout.write(toJson({ out: o.out, mFull, mEmpty, circuits, curves }));
      return;
    }
    io.stdout.write(
      `m(M) = ${mFull.toPrecision(5)}, m(∅) = ${mEmpty.toPrecision(5)} (${o.ablation} ablation)\n${formatTable(table)}\nwrote ${o.out}/report.html\n`,
    );
  } finally {
    evaluator?.dispose();
  }
}
