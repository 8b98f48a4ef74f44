import {
  allEdges,
  attributeEdges,
  checkRulesCover,
  compareEdgeScores,
  DEFAULT_EDGE_MAX_BYTES,
  type EdgeGraph,
  type EdgeScores,
  type EdgeSet,
  edgeCircuitCurve,
  edgeGraphJson,
  edgeName,
  evaluateEdgeSets,
  greedyEdges,
  pruneEdges,
  topEdges,
} from '@relp/core';
import { badInput } from '@relp/core/errors';
import { EDGE_METHOD_NAMES, edgeMethodByName, edgeMethodOptions, type NamedEdgeMethod } from '@relp/methods';
import {
  buildEdgeReport,
  type EdgeAgreementRow,
  type EdgeCircuitView,
  type EdgeCurveRow,
  type EdgeMethodScores,
  fmt,
  formatTable,
  topEdgesTable,
} from '@relp/report';
import { seededRng } from '@relp/tasks';
import { type Command, Option } from 'commander';
import type { CliIo } from '../io.js';
import { checkWritable, toJson, writeFolderAtomic } from '../output.js';
import {
  type CommonOptions,
  loadData,
  openSession,
  type Session,
  type SessionData,
  sessionProvenance,
} from '../session.js';
import { parseDirection } from './attribute.js';
import type { CommandHelpers } from './rules.js';

export interface EdgesCommandOptions extends CommonOptions {
  readonly methods: string;
  readonly out: string;
  readonly normalize?: boolean;
  readonly direction?: string;
  readonly positions: string;
  readonly igSteps?: number;
  readonly maxBatchRows?: number;
  readonly patchSample?: number;
  readonly patchTop: number;
  readonly sampleSeed: number;
  readonly circuit?: boolean;
  readonly ablation?: string;
  readonly circuitEdges?: number;
  readonly select?: 'top' | 'greedy';
  readonly maxMemory: number;
  readonly top: number;
}

/** Every method's top edges join the exact-patching sample: agreement is then measured where it matters most. */
export const DEFAULT_PATCH_TOP = 200;
/** The circuit exported (JSON, DOT, the report's graph): its top edges before pruning, by default. */
export const DEFAULT_CIRCUIT_EDGES = 100;

const IG_KINDS = new Set(['eap-ig-inputs', 'eap-ig-activations']);
type Ablation = 'corrupt' | 'mean';

/** `--methods` → the named edge methods, each once; edge patching is the reference (--patch-sample), not a method. */
export function parseEdgeMethods(list: string): NamedEdgeMethod[] {
  const names = list
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '');
  if (names.length === 0) throw badInput(`--methods is empty; choose from ${EDGE_METHOD_NAMES.join(', ')}`);
  const seen = new Set<string>();
  return names.map((n) => {
    if (n === 'edge-patching') {
      throw badInput(
        'edge-patching is the reference, run on a sample of edges: pass --patch-sample <n> instead of naming it in --methods',
      );
    }
    if (seen.has(n)) throw badInput(`--methods lists ${n} twice`);
    seen.add(n);
    return edgeMethodByName(n);
  });
}

/** Every flag checked against the others before any model loads: a setting no run would use is an error. */
function checkFlags(o: EdgesCommandOptions, methods: readonly NamedEdgeMethod[]): void {
  if (o.positions !== 'sum' && o.positions !== 'each') throw badInput('--positions must be sum or each');
  const ig = methods.some((m) => IG_KINDS.has(m.kind));
  if (o.igSteps !== undefined && !ig) {
    throw badInput('--ig-steps applies to eap-ig-inputs and eap-ig-activations, and --methods names neither');
  }
  if (o.maxBatchRows !== undefined && o.patchSample === undefined && !ig) {
    throw badInput(
      '--max-batch-rows bounds edge patching (--patch-sample) and EAP-IG, and this run has neither',
    );
  }
  if (
    o.circuit !== true &&
    (o.ablation !== undefined || o.circuitEdges !== undefined || o.select !== undefined)
  ) {
    throw badInput('--ablation, --circuit-edges and --select apply to edge circuits: add --circuit');
  }
  if (o.ablation !== undefined && !['corrupt', 'mean', 'both'].includes(o.ablation)) {
    throw badInput('--ablation must be corrupt, mean or both');
  }
}

/**
 * The edges patched exactly: `n` drawn at random (without replacement, seeded) plus every method's `top` edges by
 * |score|, in the graph's edge order; every edge when that is all of them.
 */
export function patchSample(
  g: EdgeGraph,
  results: readonly EdgeScores[],
  n: number,
  top: number,
  seed: number,
): string[] {
  const all = allEdges(g);
  const key = ([u, v]: readonly [number, number]) => u * g.downstream.length + v;
  const chosen = new Set<number>();
  if (n >= all.length) {
    for (const e of all) chosen.add(key(e));
  } else {
    // A partial Fisher–Yates shuffle: the first n of a seeded permutation.
    // The library's one seeded stream: the same --sample-seed draws the same sample.
    const rand = seededRng(seed);
    const idx = all.map((_, i) => i);
    for (let i = 0; i < n; i++) {
      const j = i + Math.floor(rand() * (idx.length - i));
      [idx[i], idx[j]] = [idx[j]!, idx[i]!];
      chosen.add(key(all[idx[i]!]!));
    }
  }
  for (const r of results) {
    for (const e of topEdges(r, Math.min(top, r.edges.length)).edges) chosen.add(key(e));
  }
  return all.filter((e) => chosen.has(key(e))).map(([u, v]) => edgeName(g, u, v));
}

/** Scores summed over positions (the JSON's, the circuits' and the report's view of a per-position result). */
function summed(r: EdgeScores): number[] {
  return r.scores.map((s) => (typeof s === 'number' ? s : s.reduce((a, b) => a + b, 0)));
}

/** A circuit as DOT: input at the bottom, one rank per layer's heads and one per MLP; edges weighted by |score|. */
export function edgeCircuitDot(set: EdgeSet, result: EdgeScores, title: string): string {
  const g = set.graph;
  const totals = summed(result);
  const score = new Map(result.edges.map((e, i) => [e, totals[i]!]));
  const names = set.edges.map(([u, v]) => edgeName(g, u, v));
  const maxAbs = Math.max(0, ...names.map((e) => Math.abs(score.get(e) ?? 0)).filter(Number.isFinite));
  const nodeOf = (n: string) => n.replace(/<[qkv]>$/, '');
  const nodes = new Set<string>(['input', 'logits']);
  for (const e of names) for (const n of e.split('->')) nodes.add(nodeOf(n));
  const q = (s: string) => JSON.stringify(s);
  const lines = [
    'digraph edge_circuit {',
    `  label=${q(title)}; labelloc=t; rankdir=BT;`,
    '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
  ];
  const ranks = new Map<string, string[]>();
  for (const n of nodes) {
    const m = /^(a|m)(\d+)/.exec(n);
    const rank = m ? `${m[1]}${m[2]}` : n;
    ranks.set(rank, [...(ranks.get(rank) ?? []), n]);
  }
  const fill = (n: string) => (n.startsWith('a') ? '#fde9c8' : n.startsWith('m') ? '#d6eaf8' : '#eeeeee');
  for (const members of ranks.values()) {
    lines.push(`  { rank=same; ${members.map((n) => `${q(n)} [fillcolor=${q(fill(n))}];`).join(' ')} }`);
  }
  for (const e of names) {
    const [u, v] = e.split('->') as [string, string];
    const s = score.get(e) ?? 0;
    const w = maxAbs > 0 ? 0.5 + (4.5 * Math.abs(s)) / maxAbs : 1;
    const letter = /<([qkv])>$/.exec(v)?.[1];
    lines.push(
      `  ${q(u)} -> ${q(nodeOf(v))} [penwidth=${w.toFixed(2)}, color=${q(s >= 0 ? '#c0392b' : '#2166ac')}` +
        `${letter ? `, label=${q(letter)}` : ''}, tooltip=${q(`${e}: ${fmt(s, 4)}`)}];`,
    );
  }
  lines.push('}', '');
  return lines.join('\n');
}

/** Runs one named method (or edge patching on `edges`), with its progress bar and a cost line. */
async function scoreEdges(
  s: Session,
  data: SessionData,
  m: NamedEdgeMethod | 'edge-patching',
  o: EdgesCommandOptions,
  edges?: readonly string[],
): Promise<EdgeScores> {
  const label = typeof m === 'string' ? m : m.name;
  const direction = parseDirection(o.direction);
  const method =
    typeof m === 'string'
      ? {
          method: 'edge-patching' as const,
          label: m,
          ...(o.maxBatchRows === undefined ? {} : { maxBatchRows: o.maxBatchRows }),
        }
      : edgeMethodOptions(m, {
          ...(o.igSteps === undefined ? {} : { steps: o.igSteps }),
          ...(o.maxBatchRows === undefined ? {} : { maxBatchRows: o.maxBatchRows }),
        });
  const r = await attributeEdges(s.loaded.model, data.batch, {
    ...method,
    positions: o.positions as 'sum' | 'each',
    maxBytes: o.maxMemory * 1024 ** 2,
    ...(direction ? { direction } : {}),
    ...(o.normalize ? { normalize: true } : {}),
    ...(edges ? { edges } : {}),
    onProgress: s.progress.labelled(label),
  });
  s.progress.stop();
  s.log.info(
    `${label}: ${r.edges.length} edges, ${r.cost.forwardPasses} forward, ${r.cost.backwardPasses} backward, ` +
      `${r.cost.seconds.toFixed(2)} s`,
  );
  return r;
}

function methodScores(r: EdgeScores): EdgeMethodScores {
  return { method: r.label, edges: r.edges, scores: summed(r), cost: { ...r.cost } };
}

/** A per-position result's scores as JSON: edge name → [T]. */
function positionScores(r: EdgeScores): Record<string, readonly number[]> {
  return Object.fromEntries(r.edges.map((e, i) => [e, r.scores[i] as readonly number[]]));
}

/** Each method's circuit curves (per ablation) and its circuit at the chosen size, exported as JSON and DOT. */
async function edgeCircuits(
  s: Session,
  data: SessionData,
  results: readonly EdgeScores[],
  ablations: readonly Ablation[],
  requested: number,
  select: 'top' | 'greedy',
): Promise<{
  curves: (EdgeCurveRow & { readonly full: number; readonly empty: number })[];
  circuits: EdgeCircuitView[];
  files: Record<string, string>;
}> {
  const model = s.loaded.model;
  const curves: (EdgeCurveRow & { readonly full: number; readonly empty: number })[] = [];
  const circuits: EdgeCircuitView[] = [];
  const files: Record<string, string> = {};
  const total = results.length * ablations.length;
  let done = 0;
  for (const r of results) {
    const g = r.graph;
    const size = Math.min(requested, g.nEdges);
    const set = pruneEdges(select === 'greedy' ? greedyEdges(r, size) : topEdges(r, size));
    const faithfulness: Record<string, number> = {};
    for (const ablation of ablations) {
      s.progress.update({ phase: 'edge circuits', done, total });
      const c = await edgeCircuitCurve(model, data.batch, r, { ablation, select });
      // The chosen circuit against the curve's own m(M) and m(∅): one more forward pass.
      const [mc] = await evaluateEdgeSets(model, data.batch, [set], { ablation });
      faithfulness[ablation] = (mc! - c.empty) / (c.full - c.empty);
      curves.push({ method: r.label, ablation, ...c });
      s.progress.update({ phase: 'edge circuits', done: ++done, total });
    }
    const totals = summed(r);
    const score = new Map(r.edges.map((e, i) => [e, totals[i]!]));
    const names = set.edges.map(([u, v]) => edgeName(g, u, v));
    circuits.push({
      method: r.label,
      requested: size,
      edges: names.map((name) => ({ name, score: score.get(name)! })),
      faithfulness,
    });
    const title = `${r.label}: top ${size} edges by |score|, ${set.edges.length} after pruning`;
    files[`circuit-${r.label}.json`] = toJson(edgeGraphJson(r, model.dims.dModel, set));
    files[`circuit-${r.label}.dot`] = edgeCircuitDot(set, r, title);
  }
  s.progress.stop();
  return { curves, circuits, files };
}

/**
 * `relp edges`: edge attribution with several methods on the same data (EAP, RelP on edges, EAP-IG), exact edge
 * patching on a sample as the reference and each method's agreement with it, and with --circuit MIB's edge
 * circuits (faithfulness over the edge fractions, CPR, CMD; one circuit exported as JSON and DOT) → a folder with
 * edges.json (every method's scores in EAP-IG's JSON layout), report.json and report.html.
 */
export async function edgesCommand(o: EdgesCommandOptions, io: CliIo): Promise<void> {
  const methods = parseEdgeMethods(o.methods);
  checkFlags(o, methods);
  parseDirection(o.direction);
  const ablations: Ablation[] =
    o.ablation === undefined || o.ablation === 'both' ? ['corrupt', 'mean'] : [o.ablation as Ablation];
  checkWritable(o.out, o.force === true, 'output folder');
  const s = await openSession(o, io);
  const data = await loadData(s, o);
  const model = s.loaded.model;
  // Every method's rules must cover the model: checked for all of them before the first one runs.
  for (const m of methods) if (m.rules) checkRulesCover(m.rules, model.nonlinearities, model.architecture);
  // attributeEdges checks the graph's size before any pass, and every gradient method shares one estimate (edge
  // patching's is smaller), so a graph too large stops at the first method, before any work.
  const results: EdgeScores[] = [];
  for (const m of methods) results.push(await scoreEdges(s, data, m, o));
  const g = results[0]!.graph;

  let reference: EdgeScores | undefined;
  const agreement: EdgeAgreementRow[] = [];
  if (o.patchSample !== undefined) {
    const sample = patchSample(g, results, o.patchSample, o.patchTop, o.sampleSeed);
    s.log.info(`edge patching: a sample of ${sample.length} of ${g.nEdges} edges`);
    reference = await scoreEdges(s, data, 'edge-patching', o, sample);
    for (const r of results) agreement.push({ method: r.label, ...compareEdgeScores(r, reference) });
  }
  const circuit = o.circuit
    ? await edgeCircuits(
        s,
        data,
        results,
        ablations,
        o.circuitEdges ?? DEFAULT_CIRCUIT_EDGES,
        o.select ?? 'top',
      )
    : undefined;

  const first = results[0]!;
  const m = first.metric;
  const notes = [
    `${data.batch.size} pairs, ${data.batch.seqLen} positions; metric ${m.name}: clean ${fmt(m.clean, 4)}, ` +
      `corrupt ${fmt(m.corrupt, 4)}${m.normalized ? ', scores of the normalised metric' : ''}; direction ` +
      `${first.direction}; ${g.upstream.length} upstream × ${g.downstream.length} downstream nodes, ${g.nEdges} edges` +
      `${o.positions === 'each' ? '; scored per position, shown summed over positions' : ''}.`,
    'Seconds: one run each; the first run also pays one-off set-up costs.',
  ];
  const prov = sessionProvenance(s, data, {
    methods: methods.map((x) => x.name),
    positions: o.positions,
    ...(o.patchSample === undefined
      ? {}
      : { patchSample: o.patchSample, patchTop: o.patchTop, sampleSeed: o.sampleSeed }),
    ...(circuit ? { ablation: ablations.join(','), select: o.select ?? 'top' } : {}),
  });
  const graph = { nLayers: g.nLayers, nHeads: g.nHeads, nKvHeads: g.nKvHeads, nEdges: g.nEdges };
  const scores = results.map(methodScores);
  const report = buildEdgeReport({
    title: `relp edges · ${model.architecture} · ${String(data.description.task ?? data.description.path)}`,
    graph,
    methods: scores,
    ...(reference ? { reference: methodScores(reference), agreement } : {}),
    ...(circuit ? { curves: circuit.curves, circuits: circuit.circuits } : {}),
    notes,
    provenance: prov,
    extra: { metric: m, direction: first.direction, positions: o.positions },
  });
  const each = o.positions === 'each';
  const edgesJson = {
    direction: first.direction,
    positions: o.positions,
    metric: m,
    // EAP-IG's Graph.to_json layout per method (scores summed over positions); per position beside it.
    methods: Object.fromEntries(results.map((r) => [r.label, edgeGraphJson(r, model.dims.dModel)])),
    ...(each ? { positionScores: Object.fromEntries(results.map((r) => [r.label, positionScores(r)])) } : {}),
    reference: reference
      ? {
          method: 'edge-patching',
          edges: Object.fromEntries(methodScores(reference).edges.map((e, i) => [e, summed(reference)[i]!])),
          ...(each ? { positionScores: positionScores(reference) } : {}),
        }
      : null,
    provenance: prov,
  };
  await writeFolderAtomic(
    o.out,
    { ...report.files, ...(circuit?.files ?? {}), 'edges.json': toJson(edgesJson) },
    o.force === true,
  );
  const costs = [...results, ...(reference ? [reference] : [])].map((r) => ({ method: r.label, ...r.cost }));
  if (o.json) {
    io.stdout.write(
      toJson({
        out: o.out,
        metric: m,
        edges: g.nEdges,
        agreement,
        curves: (circuit?.curves ?? []).map((c) => ({
          method: c.method,
          ablation: c.ablation,
          cpr: c.cpr,
          cmd: c.cmd,
        })),
        circuits: (circuit?.circuits ?? []).map((c) => ({
          method: c.method,
          edges: c.edges.length,
          faithfulness: c.faithfulness,
        })),
        costs,
      }),
    );
    return;
  }
  const parts = [notes[0]!];
  if (report.agreementTable) {
    parts.push(`agreement with exact edge patching:\n${formatTable(report.agreementTable)}`);
  }
  if (report.circuitTable) parts.push(`edge circuits:\n${formatTable(report.circuitTable)}`);
  const top = topEdgesTable({ title: '', graph, methods: scores, provenance: {} }, o.top);
  parts.push(`top edges:\n${formatTable(top)}`, formatTable(report.costTable));
  parts.push(`wrote ${o.out}/report.html and ${o.out}/edges.json`);
  io.stdout.write(`${parts.join('\n\n')}\n`);
}

const EX = (lines: string[]) => `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`;

/** `relp edges`, registered from main.ts with its shared flags. */
export function registerEdgesCommand(program: Command, io: CliIo, h: CommandHelpers): void {
  h.common(h.metricFlags(program.command('edges')))
    .description(
      'edge attribution (EAP, RelP on edges, EAP-IG) vs exact edge patching on a sample; --circuit: MIB edge circuits (CPR, CMD): report folder (edges.json, HTML)',
    )
    .option(
      '--methods <list>',
      `edge methods: ${EDGE_METHOD_NAMES.filter((n) => n !== 'edge-patching').join(', ')}`,
      'eap,relp',
    )
    .addOption(
      new Option('--positions <mode>', 'scores summed over positions or one per position')
        .choices(['sum', 'each'])
        .default('sum'),
    )
    .option('--ig-steps <n>', 'EAP-IG steps (default 10)', h.int('--ig-steps', 1, 10_000))
    .option(
      '--max-batch-rows <n>',
      'edge patching and EAP-IG: rows per forward pass (default 64)',
      h.int('--max-batch-rows', 1, 1_000_000),
    )
    .option(
      '--patch-sample <n>',
      `patch this many random edges exactly, plus each method's top --patch-top, as the reference`,
      h.int('--patch-sample', 1, 100_000_000),
    )
    .option(
      '--patch-top <n>',
      "each method's top edges added to the sample",
      h.int('--patch-top', 0, 100_000_000),
      DEFAULT_PATCH_TOP,
    )
    .option('--sample-seed <seed>', 'seed of the random sample', h.int('--sample-seed', 0, 2 ** 32 - 1), 0)
    .option(
      '--circuit',
      "edge circuits: faithfulness over MIB's edge fractions, CPR and CMD; one circuit exported",
    )
    .addOption(
      new Option(
        '--ablation <kind>',
        'edge circuits: ablate to the corrupt run, the mean, or both (default)',
      ).choices(['corrupt', 'mean', 'both']),
    )
    .addOption(
      new Option(
        '--select <how>',
        'edge circuits: the top n edges (default), or greedy growth from the logits (EAP-IG greedy)',
      ).choices(['top', 'greedy']),
    )
    .option(
      '--circuit-edges <n>',
      `edge circuits: the exported circuit's top edges before pruning (default ${DEFAULT_CIRCUIT_EDGES})`,
      h.int('--circuit-edges', 1, 100_000_000),
    )
    .option(
      '--max-memory <MiB>',
      'refuse a graph whose tensors would need more MiB than this (8192: 8 GiB)',
      h.int('--max-memory', 1, 1_048_576),
      DEFAULT_EDGE_MAX_BYTES / 1024 ** 2,
    )
    .option('--top <n>', 'edges printed', h.int('--top', 1, 100_000), 20)
    .option('--out <folder>', 'output folder', 'relp-edges')
    .addHelpText(
      'after',
      EX([
        'pnpm relp edges --model ./gpt2 --task ioi-demo --methods eap,relp,eap-ig-inputs --patch-sample 300 --out ioi-edges',
        'pnpm relp edges --model smollm2-135m --task ioi-demo --methods eap,relp,relp-ah --circuit --circuit-edges 200 --out edge-circuit',
        'pnpm relp edges --model ./gpt2 --data pairs.jsonl --methods eap-ig-activations --ig-steps 5 --positions each --json',
      ]),
    )
    .action(async (o) => edgesCommand(o, io));
}
