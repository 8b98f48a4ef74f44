/**
 * Edge circuits (docs/method.md §17): ablating edges outside a set against edge patching, the empty and full
 * circuits against the corrupt and clean runs, pruning, MIB's curve, and EAP-IG's JSON layout.
 */
import {
  attribute,
  attributeEdges,
  decoderDims,
  type EdgeSet,
  edgeCircuitCurve,
  edgeGraph,
  edgeGraphJson,
  evaluateEdgeSets,
  type LanguageModel,
  makePairBatch,
  modelEdgeGraph,
  type PairBatch,
  parseEdges,
  pruneEdges,
  Site,
  topEdges,
} from '@relp/core';
import { describeEachBackend, installLeakGuard, useBackend } from '@relp/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { EDGE_CASES, edgePairs } from './edge-cases.js';

installLeakGuard();

// Edge circuits on a sequential block, a parallel one and grouped-query attention.
const CASES = EDGE_CASES.filter((c) =>
  ['gpt2', 'pythia (parallel residual)', 'llama (grouped-query attention)'].includes(c.name),
);
const pairs = edgePairs;

beforeAll(async () => {
  await useBackend('cpu');
});

it('the graph has EAP-IG’s edge count for GPT-2 small (32,491)', () => {
  const dims = decoderDims({
    nLayers: 12,
    dModel: 768,
    nHeads: 12,
    dMlp: 3072,
    vocabSize: 50257,
    contextLength: 1024,
  });
  expect(edgeGraph(dims, false).nEdges).toBe(32491);
});

for (const c of CASES) {
  describeEachBackend(
    `edge circuits: ${c.name}`,
    (backend) => {
      let model: LanguageModel;
      let batch: PairBatch;
      beforeAll(async () => {
        await useBackend(backend);
        model = c.make();
        batch = pairs(model);
      });
      afterAll(() => model.dispose());

      it('with every edge kept the run is clean; with none (corrupt ablation) it is the corrupt run', async () => {
        const g = modelEdgeGraph(model);
        const all = await attributeEdges(model, batch, { method: 'eap' });
        const full: EdgeSet = { graph: g, edges: all.index };
        const [clean, kept, none] = await evaluateEdgeSets(model, batch, [
          null,
          full,
          { graph: g, edges: [] },
        ]);
        const node = await attribute(model, batch, { method: 'atp', sites: [Site.ResidPre] });
        expect(Math.abs(kept! - clean!)).toBeLessThan(1e-5 * Math.abs(clean!) + 1e-6);
        expect(Math.abs(clean! - node.metric.clean)).toBeLessThan(1e-5 * Math.abs(clean!) + 1e-6);
        expect(Math.abs(none! - node.metric.corrupt)).toBeLessThan(1e-4 * Math.abs(clean! - none!));
        expect(Math.abs(clean! - none!)).toBeGreaterThan(1e-3);
      });

      it('ablating one edge (corrupt) is noising edge patching of that edge', async () => {
        const g = modelEdgeGraph(model);
        const all = await attributeEdges(model, batch, { method: 'eap' });
        const sample = all.edges.filter((_, i) => i % 7 === 3);
        const patched = await attributeEdges(model, batch, {
          method: 'edge-patching',
          direction: 'noising',
          edges: sample,
        });
        const index = parseEdges(g, sample);
        const sets = index.map(([u0, v0]) => ({
          graph: g,
          edges: all.index.filter(([u, v]) => u !== u0 || v !== v0),
        }));
        const [clean, ...ms] = await evaluateEdgeSets(model, batch, [null, ...sets]);
        const scale = Math.max(...(patched.scores as number[]).map(Math.abs));
        expect(scale).toBeGreaterThan(0);
        ms.forEach((m, i) => {
          expect(Math.abs(m - clean! - (patched.scores[i] as number)), sample[i]).toBeLessThan(1e-4 * scale);
        });
      });

      it('mean ablation: on a batch of one prompt twice the mean is that prompt, so ablating changes nothing', async () => {
        const g = modelEdgeGraph(model);
        const twice = makePairBatch([batch.pairs[0]!, batch.pairs[0]!], { dims: model.dims });
        const [clean, none] = await evaluateEdgeSets(model, twice, [null, { graph: g, edges: [] }], {
          ablation: 'mean',
        });
        expect(Math.abs(none! - clean!)).toBeLessThan(1e-5 * Math.abs(clean!) + 1e-6);
        // On the two different prompts the mean differs from each: ablating every edge changes the metric.
        const [clean2, none2] = await evaluateEdgeSets(model, batch, [null, { graph: g, edges: [] }], {
          ablation: 'mean',
        });
        expect(Math.abs(none2! - clean2!)).toBeGreaterThan(1e-4);
      });

      it('pruning keeps only paths from the input to the logits', () => {
        const g = modelEdgeGraph(model);
        const L = g.nLayers;
        const set = (names: string[]): EdgeSet => ({ graph: g, edges: parseEdges(g, names) });
        const kept = pruneEdges(
          set(['input->m0', 'm0->logits', `a${L - 1}.h0->logits`, 'input->a0.h0<q>', `m0->m${L - 1}`]),
        );
        const names = kept.edges.map(([u, v]) => `${g.upstream[u]}->${g.downstream[v]}`);
        expect(names.sort()).toEqual(['input->m0', 'm0->logits']);
        // A key/value input feeds every query head of its group.
        const kv = pruneEdges(set(['input->a0.h0<k>', `a0.h${g.nHeads / g.nKvHeads - 1}->logits`]));
        expect(kv.edges.length).toBe(2);
      });

      it('MIB’s curve: full circuit faithful, CPR and CMD from the trapezoids', async () => {
        const result = await attributeEdges(model, batch, { method: 'eap' });
        const curve = await edgeCircuitCurve(model, batch, result, { fractions: [0.1, 0.5, 1] });
        expect(curve.requested).toEqual([0.1, 0.5, 1].map((f) => Math.floor(f * result.graph.nEdges)));
        expect(curve.kept[2]).toBe(result.graph.nEdges);
        expect(Math.abs(curve.faithfulness[2]! - 1)).toBeLessThan(1e-4);
        const f = curve.faithfulness;
        expect(curve.cpr).toBeCloseTo((0.4 * (f[0]! + f[1]!)) / 2 + (0.5 * (f[1]! + f[2]!)) / 2, 10);
        const json = edgeGraphJson(result, model.dims.dModel, pruneEdges(topEdges(result, 5)));
        expect(Object.keys(json.edges).length).toBe(result.graph.nEdges);
        expect(json.nodes.logits!.in_graph).toBe(true);
        expect(Object.values(json.edges).filter((e) => e.in_graph).length).toBeLessThanOrEqual(5);
        expect(json.cfg.n_layers).toBe(result.graph.nLayers);
      });

      it('bad circuit inputs are BAD_INPUT', async () => {
        const result = await attributeEdges(model, batch, { method: 'eap' });
        expect(() => topEdges(result, -1)).toThrow(/whole number/);
        await expect(edgeCircuitCurve(model, batch, result, { fractions: [0.5, 0.2] })).rejects.toMatchObject(
          {
            code: 'BAD_INPUT',
          },
        );
        await expect(
          evaluateEdgeSets(model, batch, [null], { ablation: 'zero' as 'mean' }),
        ).rejects.toMatchObject({ code: 'BAD_INPUT' });
      });
    },
    c.everyBackend ? undefined : ['cpu'],
  );
}
