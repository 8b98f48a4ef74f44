// Edge-level results on a real model (SmolLM2-135M, the 8 IOI prompts of `ioi-demo`): one step per process, so
// that each method's peak RSS is its own. Each step writes a JSON file into --out; later steps read earlier ones.
//
//   method <name>   one edge method (eap, relp, relp-ah, eap-ig-inputs, eap-ig-activations) or node-level RelP /
//                   AtP on the graph's nodes (node-relp, node-atp): scores, cost, wall time, peak RSS
//   patch           exact edge patching on --sample random edges (seeded) plus every scored method's top --top;
//                   Pearson and Spearman of each method against it, on the random sample and on the union
//   agree           --methods scored after `patch` against its reference (their own top edges not in the union)
//   curve           MIB's edge-circuit curve (corrupt ablation) of --methods, with CPR and CMD
//   heads           node-level activation patching of heads (z, per head, all positions at once) next to the heads
//                   in each method's top circuit
//
// node --conditions=source --import tsx packages/bench/src/edges-results.ts method eap --out /tmp/edges
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { nativeBackendLoader, setNativeThreads } from '@relp/backend-native';
import {
  allEdges,
  attribute,
  attributeEdges,
  compareEdgeScores,
  type EdgeScores,
  edgeCircuitCurve,
  edgeName,
  makePairBatch,
  modelEdgeGraph,
  pruneEdges,
  Site,
  topEdges,
} from '@relp/core';
import { loadModel } from '@relp/loader';
import { nodeLoadOptions } from '@relp/loader/node';
import { presetByName } from '@relp/lrp-rules';
import { llamaFamily } from '@relp/models-llama';
import * as tf from '@tensorflow/tfjs-core';
import { prepareReal } from './real.js';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    out: { type: 'string', default: 'edges-results' },
    steps: { type: 'string', default: '5' },
    sample: { type: 'string', default: '2000' },
    top: { type: 'string', default: '200' },
    seed: { type: 'string', default: '0' },
    methods: { type: 'string', default: 'eap,relp' },
    'max-batch-rows': { type: 'string' },
    threads: { type: 'string', default: '2' },
  },
});
const [step, name] = positionals;
const out = opt.out!;
mkdirSync(out, { recursive: true });

const EDGE_METHODS = {
  eap: { method: 'eap' },
  relp: { method: 'eap', rules: 'relp' },
  'relp-ah': { method: 'eap', rules: 'relp-ah' },
  'eap-ig-inputs': { method: 'eap-ig-inputs' },
  'eap-ig-activations': { method: 'eap-ig-activations' },
} as const;

const maxRssMiB = () => process.resourceUsage().maxRSS / 1024;
const load = (f: string) => JSON.parse(readFileSync(join(out, f), 'utf8'));
const save = (f: string, x: unknown) => writeFileSync(join(out, f), `${JSON.stringify(x)}\n`);

// ---- set-up: native backend, the model, the IOI batch (what `relp demo` and the bench's real workload use) ----
const probe = await nativeBackendLoader.probe();
if (!probe.ok) throw new Error(`native backend unavailable: ${probe.reason}`);
await nativeBackendLoader.register();
setNativeThreads(Number(opt.threads));
if (!(await tf.setBackend('native'))) throw new Error('native backend failed to start');
await tf.ready();
const w = await prepareReal('smollm2');
if (typeof w === 'string') throw new Error(w);
const t0 = performance.now();
const model = (await loadModel(w.gguf, { ...nodeLoadOptions(process.env), families: [llamaFamily] })).model;
const batch = makePairBatch(w.pairs, { dims: model.dims, padId: w.padId });
const setup = { loadSeconds: (performance.now() - t0) / 1000, rssAfterLoadMiB: maxRssMiB() };
const graph = modelEdgeGraph(model);
const info = {
  batch: batch.size,
  seqLen: batch.seqLen,
  firstDiff: batch.firstDiff,
  upstream: graph.upstream.length,
  downstream: graph.downstream.length,
  edges: graph.nEdges,
};
process.stderr.write(`${JSON.stringify({ setup, info })}\n`);
const mbr = opt['max-batch-rows'] === undefined ? {} : { maxBatchRows: Number(opt['max-batch-rows']) };

/** A saved method result back as EdgeScores (the graph rebuilt from the model). */
function restore(label: string): EdgeScores {
  const r = load(`${label}.json`);
  return { ...r.result, graph } as EdgeScores;
}

/** Progress on stderr, at most every 10 s: how far a long step has come. */
let lastReport = 0;
const onProgress = (p: { phase: string; done: number; total: number }) => {
  const now = performance.now();
  if (now - lastReport < 10_000 && p.done < p.total) return;
  lastReport = now;
  process.stderr.write(`${new Date().toISOString()} ${p.phase} ${p.done}/${p.total}\n`);
};

function timed<T>(f: () => Promise<T>): Promise<{ value: T; wall: number }> {
  const s = performance.now();
  return f().then((value) => ({ value, wall: (performance.now() - s) / 1000 }));
}

if (step === 'method') {
  if (name === 'node-relp' || name === 'node-atp') {
    // The edge graph's nodes at node level: every head's write (result, per head), every MLP, the input.
    const { value: r, wall } = await timed(() =>
      attribute(model, batch, {
        method: 'atp',
        sites: [
          { site: Site.Result, granularity: 'head' },
          Site.MlpOut,
          { site: Site.ResidPre, layers: [0] },
        ],
        ...(name === 'node-relp' ? { rules: presetByName('relp') } : {}),
      }),
    );
    save(`${name}.json`, { name, setup, info, wall, cost: r.cost, peakRssMiB: maxRssMiB() });
  } else {
    const m = EDGE_METHODS[name as keyof typeof EDGE_METHODS];
    if (!m) throw new Error(`unknown method ${name}`);
    const ig = m.method !== 'eap';
    const { value: r, wall } = await timed(() =>
      attributeEdges(model, batch, {
        method: m.method,
        label: name!,
        ...('rules' in m ? { rules: presetByName(m.rules) } : {}),
        ...(ig ? { steps: Number(opt.steps), ...mbr } : {}),
        onProgress,
      }),
    );
    const { graph: _g, ...result } = r;
    save(`${name}.json`, { name, setup, info, wall, cost: r.cost, peakRssMiB: maxRssMiB(), result });
  }
} else if (step === 'patch') {
  const methods = opt.methods!.split(',');
  const results = methods.map(restore);
  const all = allEdges(graph);
  // A partial Fisher–Yates shuffle with a seeded mulberry32: the first n of a seeded permutation.
  let a = Number(opt.seed) >>> 0;
  const rand = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const n = Math.min(Number(opt.sample), all.length);
  const idx = all.map((_, i) => i);
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(rand() * (idx.length - i));
    [idx[i], idx[j]] = [idx[j]!, idx[i]!];
  }
  const name2 = ([u, v]: readonly [number, number]) => edgeName(graph, u, v);
  const random = new Set(idx.slice(0, n).map((i) => name2(all[i]!)));
  const union = new Set(random);
  for (const r of results) for (const e of topEdges(r, Number(opt.top)).edges) union.add(name2(e));
  const order = all.map(name2).filter((e) => union.has(e));
  const { value: ref, wall } = await timed(() =>
    attributeEdges(model, batch, { method: 'edge-patching', edges: order, ...mbr, onProgress }),
  );
  const sub = (r: EdgeScores, keep: Set<string>): EdgeScores => {
    const i = r.edges.flatMap((e, k) => (keep.has(e) ? [k] : []));
    return {
      ...r,
      edges: i.map((k) => r.edges[k]!),
      index: i.map((k) => r.index[k]!),
      scores: i.map((k) => (r.scores as number[])[k]!),
    };
  };
  const agreement = results.map((r) => ({
    method: r.label,
    random: compareEdgeScores(r, sub(ref, random)),
    union: compareEdgeScores(r, sub(ref, union)),
  }));
  const { graph: _g, ...result } = ref;
  save(`patch-${n}.json`, {
    setup,
    info,
    random: [...random],
    sampled: { random: random.size, union: union.size, seed: Number(opt.seed), top: Number(opt.top) },
    wall,
    edgesPerSecond: union.size / wall,
    cost: ref.cost,
    peakRssMiB: maxRssMiB(),
    agreement,
    result,
  });
  process.stdout.write(`${JSON.stringify({ wall, edges: union.size, agreement }, null, 1)}\n`);
} else if (step === 'agree') {
  // A method scored after the patching run, against its reference (its own top edges are not in the union).
  const p = load(`patch-${Number(opt.sample)}.json`);
  const ref = { ...p.result, graph } as EdgeScores;
  const random = new Set<string>(p.random);
  const onlyRandom: EdgeScores = {
    ...ref,
    edges: ref.edges.filter((e) => random.has(e)),
    index: ref.index.filter((_, k) => random.has(ref.edges[k]!)),
    scores: (ref.scores as number[]).filter((_, k) => random.has(ref.edges[k]!)),
  };
  const agreement = opt.methods!.split(',').map((label) => ({
    method: label,
    random: compareEdgeScores(restore(label), onlyRandom),
    union: compareEdgeScores(restore(label), ref),
  }));
  save(`agree-${Number(opt.sample)}.json`, { agreement });
  process.stdout.write(`${JSON.stringify(agreement, null, 1)}\n`);
} else if (step === 'curve') {
  const curves = [];
  for (const label of opt.methods!.split(',')) {
    const r = restore(label);
    const { value: c, wall } = await timed(() => edgeCircuitCurve(model, batch, r, { ablation: 'corrupt' }));
    curves.push({ method: label, wall, ...c });
    process.stdout.write(
      `${label}: CPR ${c.cpr.toFixed(4)} CMD ${c.cmd.toFixed(4)} (${wall.toFixed(0)} s)\n`,
    );
  }
  save('curves.json', { setup, info, curves, peakRssMiB: maxRssMiB() });
} else if (step === 'heads') {
  const { value: ap, wall } = await timed(() =>
    attribute(model, batch, {
      method: 'activation-patching',
      sites: [{ site: Site.Z, granularity: 'head', positions: 'all' }],
    }),
  );
  // Scored once, at the first differing position: [layer][position][head].
  const z = ap.scores.z as number[][][];
  const headScores: Record<string, number> = {};
  for (let l = 0; l < z.length; l++) {
    const row = z[l]![batch.firstDiff]!;
    for (let h = 0; h < row.length; h++) headScores[`a${l}.h${h}`] = row[h]!;
  }
  const ranked = Object.entries(headScores).sort((x, y) => Math.abs(y[1]) - Math.abs(x[1]));
  const circuits = opt.methods!.split(',').map((label) => {
    const r = restore(label);
    const set = pruneEdges(topEdges(r, Number(opt.top)));
    const heads = new Set<string>();
    // A head is in the circuit when it writes through one of the kept edges (pruning keeps reached writers only).
    for (const [u] of set.edges) if (/^a\d+\.h\d+$/.test(graph.upstream[u]!)) heads.add(graph.upstream[u]!);
    const k = heads.size;
    const apTop = new Set(ranked.slice(0, k).map(([h]) => h));
    const overlap = [...heads].filter((h) => apTop.has(h)).length;
    return {
      method: label,
      edgesBeforePruning: Number(opt.top),
      kept: set.edges.length,
      heads: [...heads],
      overlap,
    };
  });
  save('heads.json', { setup, info, wall, cost: ap.cost, ranked: ranked.slice(0, 30), circuits });
  process.stdout.write(`${JSON.stringify({ wall, top: ranked.slice(0, 15), circuits }, null, 1)}\n`);
} else {
  throw new Error('usage: edges-results.ts method <name> | patch | agree | curve | heads  [--out dir]');
}
