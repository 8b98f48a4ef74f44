/**
 * Edge attribution (docs/method.md §17) on every family's tiny model: EAP, RelP on edges and EAP-IG against slow
 * literal references (one separate forward per downstream input, only that input a variable), exact edge
 * patching against one full forward per edge, the sum identity Σ_v EAP(u→v) = AtP(u), the split forward against
 * the plain one, and the typed errors.
 */
import {
  attribute,
  attributeEdges,
  batchTokens,
  compareEdgeScores,
  downstreamRead,
  EDGE_SITE_DEFS,
  EDGE_SITES,
  type EdgeGraph,
  edgeUpstreamKeys,
  type LanguageModel,
  logitDiff,
  modelEdgeGraph,
  type PairBatch,
  type RuleSet,
  RunContext,
  Site,
  type SiteHook,
  type SiteKey,
  siteKey,
} from '@relp/core';
import { presetByName } from '@relp/lrp-rules';
import { describeEachBackend, installLeakGuard, useBackend } from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { EDGE_CASES, edgePairs } from './edge-cases.js';

installLeakGuard();

const CASES = EDGE_CASES;
const pairs = edgePairs;

/** The embeddings of the clean or corrupt prompts. */
function embedded(model: LanguageModel, batch: PairBatch, which: 'clean' | 'corrupt'): tf.Tensor3D {
  const tokens = batchTokens(batch, which);
  try {
    return model.embed(tokens);
  } finally {
    tokens.dispose();
  }
}

/** A plain run's metric and its recorded sites (edge sites allowed). */
async function recorded(
  model: LanguageModel,
  batch: PairBatch,
  which: 'clean' | 'corrupt',
  keys: readonly SiteKey[],
): Promise<Map<SiteKey, tf.Tensor>> {
  const ctx = new RunContext({ cache: keys, extraSites: EDGE_SITE_DEFS });
  const tokens = batchTokens(batch, which);
  try {
    tf.tidy(() => {
      model.forward({ tokens }, ctx, { readout: [...batch.lastPositions] });
    });
    return ctx.takeCache();
  } finally {
    tokens.dispose();
    ctx.dispose();
  }
}

/** Upstream node u's activation [B,T,d] from recorded tensors. */
function upstreamOf(g: EdgeGraph, byKey: ReadonlyMap<SiteKey, tf.Tensor>, u: number): tf.Tensor {
  const keys = edgeUpstreamKeys(g);
  if (u === 0) return byKey.get(keys[0]!)!;
  const l = Math.floor((u - 1) / (g.nHeads + 1));
  const i = (u - 1) % (g.nHeads + 1);
  if (i === g.nHeads) return byKey.get(siteKey(Site.MlpOut, l))!;
  const x = byKey.get(siteKey(EDGE_SITES.head_out, l))!;
  return tf.squeeze(tf.slice(x, [0, 0, i, 0], [-1, -1, 1, -1]), [2]);
}

/** v's own input slice [B,T,d] of a tensor at v's site. */
function atHead(g: EdgeGraph, v: number, x: tf.Tensor): tf.Tensor {
  const { head } = downstreamRead(g, v);
  return head === undefined ? x : tf.squeeze(tf.slice(x, [0, 0, head, 0], [-1, -1, 1, -1]), [2]);
}

/**
 * The literal reference of a gradient estimator: per downstream input v, the gradient of the metric with respect to
 * v's input alone (a separate run from `input` whose only variable is a zero delta at v's site), averaged over the
 * runs `inputs` gives, dotted with each upstream difference.
 */
async function literalGradientScores(
  model: LanguageModel,
  batch: PairBatch,
  rules: RuleSet | undefined,
  inputs: () => { resid: tf.Tensor3D; patches?: Map<SiteKey, { mask: tf.Tensor; value: tf.Tensor }[]> }[],
  groupOf: (u: number) => number = () => 0,
  group = 0,
): Promise<Map<string, number>> {
  const g = modelEdgeGraph(model);
  const keys = edgeUpstreamKeys(g);
  const clean = await recorded(model, batch, 'clean', keys);
  const corrupt = await recorded(model, batch, 'corrupt', keys);
  const out = new Map<string, number>();
  const runs = inputs();
  try {
    for (let v = 0; v < g.downstream.length; v++) {
      const users = Array.from({ length: g.prev[v]! }, (_, u) => u).filter((u) => groupOf(u) === group);
      if (users.length === 0) continue;
      const read = downstreamRead(g, v);
      const shape = EDGE_SITE_DEFS.find((d) => read.key.startsWith(`${d.name}.`))
        ? [
            batch.size,
            batch.seqLen,
            ...(read.head === undefined ? [] : [unitsOf(g, read.key)]),
            model.dims.dModel,
          ]
        : [batch.size, batch.seqLen, model.dims.dModel];
      const mean = tf.tidy(() => {
        const grads = runs.map((run) =>
          tf.grad((z: tf.Tensor) => {
            const ctx = new RunContext({
              deltas: new Map([[read.key, z]]),
              extraSites: EDGE_SITE_DEFS,
              ...(rules ? { rules } : {}),
              ...(run.patches ? { patches: run.patches } : {}),
            });
            const logits = model.forward({ resid: run.resid, layer: 0 }, ctx, {
              readout: [...batch.lastPositions],
            });
            return logitDiff.compute(logits, batch);
          })(tf.zeros(shape)),
        );
        return atHead(g, v, tf.div(tf.addN(grads), runs.length));
      });
      for (const u of users) {
        const s = tf.tidy(() =>
          tf.sum(tf.mul(tf.sub(upstreamOf(g, clean, u), upstreamOf(g, corrupt, u)), mean)),
        );
        out.set(`${g.upstream[u]}->${g.downstream[v]}`, (await s.data())[0]!);
        s.dispose();
      }
      mean.dispose();
    }
  } finally {
    for (const r of runs) {
      r.resid.dispose();
      for (const ps of r.patches?.values() ?? []) for (const p of ps) tf.dispose([p.mask, p.value]);
    }
    tf.dispose([...clean.values(), ...corrupt.values()]);
  }
  return out;
}

/** 1 at i of n (host-side: tfjs's oneHot of a scalar index gives zeros on wasm). */
function unit(i: number, n: number): Float32Array {
  const v = new Float32Array(n);
  v[i] = 1;
  return v;
}

function unitsOf(g: EdgeGraph, key: SiteKey): number {
  return key.startsWith('q_input') ? g.nHeads : g.nKvHeads;
}

function expectClose(got: ReadonlyMap<string, number>, want: ReadonlyMap<string, number>, rel = 1e-4): void {
  const scale = Math.max(...[...want.values()].map(Math.abs));
  expect(scale).toBeGreaterThan(0);
  expect(got.size).toBe(want.size);
  let worst = 0;
  for (const [name, w] of want) {
    const x = got.get(name);
    expect(x, name).toBeDefined();
    worst = Math.max(worst, Math.abs(x! - w));
  }
  expect(worst / scale).toBeLessThan(rel);
}

function byName(r: { edges: readonly string[]; scores: readonly unknown[] }): Map<string, number> {
  return new Map(r.edges.map((e, i) => [e, r.scores[i] as number]));
}

beforeAll(async () => {
  await useBackend('cpu');
});

for (const c of CASES) {
  describeEachBackend(
    `edge attribution: ${c.name}`,
    (backend) => {
      let model: LanguageModel;
      let batch: PairBatch;
      beforeAll(async () => {
        await useBackend(backend);
        model = c.make();
        batch = pairs(model);
      });
      afterAll(() => model.dispose());

      it('the split forward computes the plain forward (float rounding) and every edge site', async () => {
        const g = modelEdgeGraph(model);
        const keys = [
          ...new Set([...edgeUpstreamKeys(g), ...g.downstream.map((_, v) => downstreamRead(g, v).key)]),
        ];
        const tokens = batchTokens(batch, 'clean');
        const plainCtx = new RunContext();
        const splitCtx = new RunContext({ cache: keys, extraSites: EDGE_SITE_DEFS });
        try {
          const plain = tf.tidy(() => model.forward({ tokens }, plainCtx));
          const split = tf.tidy(() => model.forward({ tokens }, splitCtx));
          splitCtx.assertAllVisited();
          const cache = splitCtx.takeCache();
          const p = await plain.data();
          const s = await split.data();
          let worst = 0;
          let scale = 0;
          p.forEach((x, i) => {
            worst = Math.max(worst, Math.abs(x - s[i]!));
            scale = Math.max(scale, Math.abs(x));
          });
          expect(worst / scale).toBeLessThan(1e-5);
          // Every head's copy of the residual is the residual itself.
          const q0 = cache.get(siteKey(EDGE_SITES.q_input, 0))!;
          expect(q0.shape).toEqual([batch.size, batch.seqLen, g.nHeads, model.dims.dModel]);
          expect(cache.get(siteKey(EDGE_SITES.k_input, 0))!.shape[2]).toBe(g.nKvHeads);
          tf.dispose([plain, split, ...cache.values()]);
        } finally {
          tokens.dispose();
          plainCtx.dispose();
          splitCtx.dispose();
        }
      });

      for (const preset of ['none', 'relp'] as const) {
        it(`${preset === 'none' ? 'EAP' : 'RelP'} edges equal the per-input literal reference`, async () => {
          const rules = preset === 'none' ? undefined : presetByName(preset);
          const got = await attributeEdges(model, batch, { method: 'eap', ...(rules ? { rules } : {}) });
          expect(got.edges.length).toBe(got.graph.nEdges);
          const want = await literalGradientScores(model, batch, rules, () => [
            { resid: embedded(model, batch, 'corrupt') },
          ]);
          expectClose(byName(got), want);
        });

        it(`${preset === 'none' ? 'EAP' : 'RelP'}: Σ_v score(u→v) is the node-level score of u`, async () => {
          const rules = preset === 'none' ? undefined : presetByName(preset);
          const edges = await attributeEdges(model, batch, { method: 'eap', ...(rules ? { rules } : {}) });
          const nodes = await attribute(model, batch, {
            method: 'atp',
            ...(rules ? { rules } : {}),
            sites: [{ site: Site.Result, granularity: 'head' }, Site.AttnOut, Site.MlpOut, Site.ResidPre],
          });
          const g = edges.graph;
          const out = new Array<number>(g.upstream.length).fill(0);
          edges.index.forEach(([u], i) => {
            out[u]! += edges.scores[i] as number;
          });
          const sumPositions = (row: number[]) => row.reduce((a, b) => a + b, 0);
          const want: number[] = [sumPositions((nodes.scores.resid_pre as number[][])[0]!)];
          const attnWant: number[] = [];
          for (let l = 0; l < g.nLayers; l++) {
            const heads = (nodes.scores.result as number[][][])[l]!;
            for (let h = 0; h < g.nHeads; h++) want.push(heads.reduce((a, row) => a + row[h]!, 0));
            want.push(sumPositions((nodes.scores.mlp_out as number[][])[l]!));
            attnWant.push(sumPositions((nodes.scores.attn_out as number[][])[l]!));
          }
          const scale = Math.max(...want.map(Math.abs), ...attnWant.map(Math.abs));
          expect(scale).toBeGreaterThan(0);
          const tol = 1e-4 * scale;
          for (let u = 0; u < g.upstream.length; u++) {
            const isHead = g.upstream[u]!.startsWith('a');
            // Gemma 3: a head's write is not its result (the post-norm); the heads' sum is attn_out's.
            if (!(isHead && c.postNorm))
              expect(Math.abs(out[u]! - want[u]!), g.upstream[u]).toBeLessThan(tol);
          }
          for (let l = 0; l < g.nLayers; l++) {
            const first = 1 + l * (g.nHeads + 1);
            const heads = out.slice(first, first + g.nHeads).reduce((a, b) => a + b, 0);
            expect(Math.abs(heads - attnWant[l]!), `a${l}`).toBeLessThan(tol);
          }
        });
      }

      it('per-position scores sum to the summed ones; noising mirrors node AtP; a subset is the full result’s', async () => {
        const sum = await attributeEdges(model, batch, { method: 'eap' });
        const each = await attributeEdges(model, batch, { method: 'eap', positions: 'each' });
        const scale = Math.max(...(sum.scores as number[]).map(Math.abs));
        each.scores.forEach((row, i) => {
          const r = row as number[];
          for (let p = 0; p < batch.firstDiff; p++) expect(r[p]).toBe(0);
          expect(Math.abs(r.reduce((a, b) => a + b, 0) - (sum.scores[i] as number))).toBeLessThan(
            1e-5 * scale,
          );
        });
        const noising = await attributeEdges(model, batch, {
          method: 'eap',
          direction: 'noising',
          normalize: true,
        });
        const node = await attribute(model, batch, {
          method: 'atp',
          direction: 'noising',
          normalize: true,
          sites: [Site.MlpOut],
        });
        const g = noising.graph;
        for (let l = 0; l < g.nLayers; l++) {
          const u = g.upstream.indexOf(`m${l}`);
          const out = noising.index.reduce(
            (a, [w], i) => (w === u ? a + (noising.scores[i] as number) : a),
            0,
          );
          const want = (node.scores.mlp_out as number[][])[l]!.reduce((a, b) => a + b, 0);
          expect(Math.abs(out - want), `m${l}`).toBeLessThan(1e-4 * Math.max(1, Math.abs(want)));
        }
        expect(noising.metric.clean).toBeCloseTo(sum.metric.clean, 4);
        const some = sum.edges.filter((_, i) => i % 4 === 1);
        const part = await attributeEdges(model, batch, { method: 'eap', edges: some });
        const full = byName(sum);
        part.edges.forEach((e, i) => {
          expect(part.scores[i]).toBe(full.get(e));
        });
      });

      it('EAP-IG over the inputs equals its literal reference', async () => {
        const steps = 3;
        // Two steps per pass: the steps' gradients add up across passes.
        const got = await attributeEdges(model, batch, { method: 'eap-ig-inputs', steps, maxBatchRows: 4 });
        const want = await literalGradientScores(model, batch, undefined, () => {
          const base = embedded(model, batch, 'corrupt');
          const source = embedded(model, batch, 'clean');
          const runs = Array.from({ length: steps }, (_, k) => ({
            resid: tf.tidy(() => tf.add(base, tf.mul(tf.sub(source, base), (k + 1) / steps))) as tf.Tensor3D,
          }));
          tf.dispose([base, source]);
          return runs;
        });
        expectClose(byName(got), want);
      });

      it('EAP-IG over the activations equals its literal reference', async () => {
        const steps = 2;
        const got = await attributeEdges(model, batch, {
          method: 'eap-ig-activations',
          steps,
          maxBatchRows: 2,
        });
        const g = got.graph;
        const keys = edgeUpstreamKeys(g);
        const groupOf = (u: number) =>
          u === 0
            ? 0
            : 1 + Math.floor((u - 1) / (g.nHeads + 1)) * 2 + ((u - 1) % (g.nHeads + 1) === g.nHeads ? 1 : 0);
        const want = new Map<string, number>();
        for (let group = 0; group < keys.length; group++) {
          const key = keys[group]!;
          const part = await literalGradientScores(
            model,
            batch,
            undefined,
            () => {
              const clean = new RunContext({ cache: [key], extraSites: EDGE_SITE_DEFS });
              const corrupt = new RunContext({ cache: [key], extraSites: EDGE_SITE_DEFS });
              const ct = batchTokens(batch, 'clean');
              const kt = batchTokens(batch, 'corrupt');
              tf.tidy(() => {
                model.forward({ tokens: ct }, clean);
                model.forward({ tokens: kt }, corrupt);
              });
              const a = clean.takeCache().get(key)!;
              const b = corrupt.takeCache().get(key)!;
              const runs = Array.from({ length: steps }, (_, k) => ({
                resid: model.embed(kt),
                patches: new Map([
                  [
                    key,
                    [
                      {
                        mask: tf.ones(a.shape, 'bool'),
                        value: tf.tidy(() => tf.add(b, tf.mul(tf.sub(a, b), (k + 1) / steps))),
                      },
                    ],
                  ],
                ]),
              }));
              tf.dispose([a, b, ct, kt]);
              return runs;
            },
            groupOf,
            group,
          );
          for (const [k, x] of part) want.set(k, x);
        }
        expectClose(byName(got), want);
      });

      it('exact edge patching equals one full forward per edge (summed and per position)', async () => {
        const g = modelEdgeGraph(model);
        const all = await attributeEdges(model, batch, { method: 'eap' });
        // Every third edge: edges into every block, from every kind of node.
        const sample = all.edges.filter((_, i) => i % 3 === 0);
        const got = await attributeEdges(model, batch, {
          method: 'edge-patching',
          edges: sample,
          maxBatchRows: 8,
        });
        const want = await literalPatching(model, batch, g, sample, undefined);
        expectClose(byName(got), want, 1e-4);
        // EAP against its ground truth on the sample: the agreement statistics of node methods.
        const agreement = compareEdgeScores(all, got, 5);
        expect(agreement.cells).toBe(sample.length);
        expect(agreement.pearson).toBeGreaterThan(-1);
        expect(() => compareEdgeScores(got, all)).toThrow(/no score for edge/);
        const few = sample.filter((_, i) => i % 5 === 0);
        const each = await attributeEdges(model, batch, {
          method: 'edge-patching',
          edges: few,
          positions: 'each',
          maxBatchRows: 8,
        });
        const wantEach = new Map<string, number>();
        const gotEach = new Map<string, number>();
        for (let p = 0; p < batch.seqLen; p++) {
          const at = await literalPatching(model, batch, g, few, p);
          for (const [k, x] of at) wantEach.set(`${k}@${p}`, x);
          each.edges.forEach((e, i) => {
            gotEach.set(`${e}@${p}`, (each.scores[i] as number[])[p]!);
          });
        }
        expectClose(gotEach, wantEach, 1e-4);
        expect(() => compareEdgeScores(all, each)).toThrow(/per edge with scores per position/);
      });

      it('patching every edge out of a node at once is patching the node', async () => {
        const g = modelEdgeGraph(model);
        const u = g.upstream.indexOf('m0');
        const names = g.downstream.flatMap((_, v) => (u < g.prev[v]! ? [`m0->${g.downstream[v]}`] : []));
        const viaEdges = await literalPatching(model, batch, g, names, undefined, true);
        const node = await attribute(model, batch, {
          method: 'activation-patching',
          sites: [{ site: Site.MlpOut, layers: [0], positions: 'all' }],
        });
        const want = (node.scores.mlp_out as number[][])[0]![batch.firstDiff]!;
        expect(Math.abs(want)).toBeGreaterThan(0);
        expect(Math.abs(viaEdges.get('all')! - want)).toBeLessThan(1e-4 * Math.abs(want) + 1e-6);
      });

      it('an aborted run stops with ABORTED and leaves no tensor behind', async () => {
        for (const method of ['eap', 'eap-ig-inputs', 'eap-ig-activations'] as const) {
          const controller = new AbortController();
          let calls = 0;
          const onProgress = () => {
            // Abort once the method is under way (after its first recording run).
            if (++calls === 2) controller.abort();
          };
          await expect(
            attributeEdges(model, batch, {
              method,
              ...(method === 'eap' ? {} : { steps: 2, maxBatchRows: 2 }),
              signal: controller.signal,
              onProgress,
            }),
            method,
          ).rejects.toMatchObject({ code: 'ABORTED' });
        }
        const controller = new AbortController();
        controller.abort();
        await expect(
          attributeEdges(model, batch, {
            method: 'edge-patching',
            edges: ['input->logits'],
            signal: controller.signal,
          }),
        ).rejects.toMatchObject({ code: 'ABORTED' });
      });

      it('bad edges and sizes are BAD_INPUT before any run', async () => {
        const g = modelEdgeGraph(model);
        const L = g.nLayers;
        let progressed = 0;
        const onProgress = () => {
          progressed++;
        };
        for (const edges of [
          ['m0-a1.h0<q>'],
          ['x0->m1'],
          [`m${L}->logits`],
          [`a0.h${g.nHeads}->logits`],
          [`input->a0.h${g.nKvHeads}<k>`],
          ['m1->m0'],
          ['input->a0.h0'],
          ['input->logits', 'input->logits'],
        ]) {
          await expect(
            attributeEdges(model, batch, { method: 'edge-patching', edges }),
            edges[0],
          ).rejects.toMatchObject({
            code: 'BAD_INPUT',
          });
        }
        for (const knob of [{ maxBatchRows: 4 }, { steps: 4 }]) {
          await expect(attributeEdges(model, batch, { method: 'eap', ...knob })).rejects.toMatchObject({
            code: 'BAD_INPUT',
          });
        }
        await expect(attributeEdges(model, batch, { method: 'edge-patching' })).rejects.toMatchObject({
          code: 'BAD_INPUT',
        });
        await expect(
          attributeEdges(model, batch, { method: 'eap', maxBytes: 1000, onProgress }),
        ).rejects.toMatchObject({
          code: 'BAD_INPUT',
        });
        // Refused before any run: no progress was ever reported.
        expect(progressed).toBe(0);
        await expect(
          attributeEdges(model, batch, {
            method: 'edge-patching',
            edges: ['input->logits'],
            rules: presetByName('relp'),
          }),
        ).rejects.toMatchObject({ code: 'BAD_INPUT' });
        await expect(attributeEdges(model, batch, { method: 'nope' as 'eap' })).rejects.toMatchObject({
          code: 'BAD_INPUT',
        });
      });
    },
    c.everyBackend ? undefined : ['cpu'],
  );
}

/**
 * One full forward from the corrupt tokens per edge u→v: a hook adds a_u(clean) − a_u(corrupt) to v's input (at
 * v's head; at every position, or at `position` only); the score is the metric's change. `together`: one run with
 * every edge's change at once (key 'all').
 */
async function literalPatching(
  model: LanguageModel,
  batch: PairBatch,
  g: EdgeGraph,
  names: readonly string[],
  position: number | undefined,
  together = false,
): Promise<Map<string, number>> {
  const keys = edgeUpstreamKeys(g);
  const clean = await recorded(model, batch, 'clean', keys);
  const corrupt = await recorded(model, batch, 'corrupt', keys);
  const tokens = batchTokens(batch, 'corrupt');
  const metric = async (hooks: Map<SiteKey, SiteHook[]>) => {
    const ctx = new RunContext({ hooks, extraSites: EDGE_SITE_DEFS });
    const m = tf.tidy(() =>
      logitDiff.compute(model.forward({ tokens }, ctx, { readout: [...batch.lastPositions] }), batch),
    );
    ctx.dispose();
    const x = (await m.data())[0]!;
    m.dispose();
    return x;
  };
  const out = new Map<string, number>();
  try {
    const base = await metric(new Map());
    const hooksOf = (list: readonly string[]) => {
      const hooks = new Map<SiteKey, SiteHook[]>();
      for (const name of list) {
        const [us, vs] = name.split('->') as [string, string];
        const u = g.upstream.indexOf(us);
        const v = g.downstream.indexOf(vs);
        const read = downstreamRead(g, v);
        const hook: SiteHook = (x) =>
          tf.tidy(() => {
            let d = tf.sub(upstreamOf(g, clean, u), upstreamOf(g, corrupt, u));
            if (position !== undefined) {
              d = tf.mul(d, tf.tensor3d(unit(position, batch.seqLen), [1, batch.seqLen, 1]));
            }
            if (read.head === undefined) return tf.add(x, d);
            const n = x.shape[2]!;
            return tf.add(x, tf.mul(tf.expandDims(d, 2), tf.tensor4d(unit(read.head, n), [1, 1, n, 1])));
          });
        hooks.set(read.key, [...(hooks.get(read.key) ?? []), hook]);
      }
      return hooks;
    };
    if (together) out.set('all', (await metric(hooksOf(names))) - base);
    else for (const name of names) out.set(name, (await metric(hooksOf([name]))) - base);
  } finally {
    tokens.dispose();
    tf.dispose([...clean.values(), ...corrupt.values()]);
  }
  return out;
}
