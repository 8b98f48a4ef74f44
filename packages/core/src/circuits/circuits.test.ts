import { installLeakGuard, useBackend } from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import type { RunContext } from '../context.js';
import { makePairBatch, type TokenPair } from '../data.js';
import { isRelpError } from '../errors.js';
import type { ForwardOptions, LanguageModel, ModelInput } from '../model.js';
import type { SiteName } from '../sites.js';
import {
  CircuitEvaluator,
  type CircuitNode,
  circuitToDot,
  evaluateCircuit,
  logThresholds,
  nodeId,
  nodesFromScores,
  type ScoredNode,
  selectNodes,
  sweepThresholds,
} from './index.js';

/**
 * A one-layer toy whose every value can be worked out by hand (d_model = 1, vocabulary 4):
 *   r[t] = token id (resid_pre)        a[t] = Σ_{s≤t} r[s] (attn_out, causal)
 *   h[t] = r[t] + a[t]                 m[t] = h[t] (mlp_out)
 *   final = h + m at the readout;      logits = final² · [0, 1, 0, 0]
 * With answer 1 and wrong 0 the logit difference is final².
 */
function toyModel(): LanguageModel {
  const w = tf.keep(tf.tensor1d([0, 1, 0, 0]));
  return {
    architecture: 'toy',
    dims: {
      nLayers: 1,
      dModel: 1,
      nHeads: 1,
      nKvHeads: 1,
      dHead: 1,
      dMlp: 1,
      vocabSize: 4,
      contextLength: 8,
    },
    sites: ['resid_pre', 'attn_out', 'mlp_out'] as SiteName[],
    nonlinearities: [],
    embed: (tokens) => tf.tidy(() => tf.expandDims(tf.cast(tokens, 'float32'), 2) as tf.Tensor3D),
    forward(input: ModelInput, ctx: RunContext, options: ForwardOptions = {}) {
      return tf.tidy(() => {
        if (!('tokens' in input)) throw new Error('toy: tokens only');
        const r = ctx.site('resid_pre', 0, this.embed(input.tokens));
        const a = ctx.site('attn_out', 0, tf.cumsum(r, 1));
        const h = tf.add(r, a);
        const m = ctx.site('mlp_out', 0, h);
        const fin = tf.add(h, m) as tf.Tensor3D; // [B,T,1]
        const [b, t] = fin.shape;
        let out: tf.Tensor = fin;
        if (options.readout) {
          const oneHot = tf.oneHot(tf.tensor1d([...options.readout], 'int32'), t); // [B,T]
          out = tf.sum(tf.mul(fin, tf.expandDims(oneHot, 2)), 1, true); // [B,1,1]
        }
        void b;
        return tf.mul(tf.square(out), tf.reshape(w, [1, 1, 4])) as tf.Tensor3D;
      });
    },
    dispose: () => w.dispose(),
  };
}

const pairs: TokenPair[] = [
  { clean: [1, 2], corrupt: [1, 3], answer: 1, wrong: 0 },
  { clean: [2, 2], corrupt: [2, 1], answer: 1, wrong: 0 },
];

const universe: CircuitNode[] = (['resid_pre', 'attn_out', 'mlp_out'] as SiteName[]).flatMap((site) =>
  [0, 1].map((position) => ({ site, layer: 0, position })),
);
const n = (site: SiteName, position: number): CircuitNode => ({ site, layer: 0, position });

describe('circuit evaluation on a hand-computable toy model', () => {
  installLeakGuard();
  let model: LanguageModel;
  beforeAll(async () => {
    await useBackend('cpu');
    model = toyModel();
  });
  const batch = makePairBatch(pairs, { dims: { vocabSize: 4, contextLength: 8 } });

  // Clean row A [1,2]: r=[1,2], a=[1,3], h=[2,5], m=[2,5], final 10 → 100.
  // Clean row B [2,2]: r=[2,2], a=[2,4], h=[4,6], m=[4,6], final 12 → 144.   m(M) = 122.
  // Means over the clean rows: r=[1.5,2], a=[1.5,3.5], m=[3,5.5].
  // m(∅), mean: h1 = 2 + 3.5 = 5.5, m1 = 5.5 → final 11 → 121 for both rows.
  it('mean ablation: m(M) = 122, m(∅) = 121, and faithfulness / completeness of hand-worked circuits', async () => {
    const ev = await CircuitEvaluator.create(model, batch, universe, { ablation: 'mean' });
    try {
      expect(ev.mFull).toBeCloseTo(122, 4);
      expect(ev.mEmpty).toBeCloseTo(121, 4);
      // C = {r@0, a@1}: row A r=[1,2], a1 = 1+2 = 3, h1 = 5, m1 → 5.5, final 10.5 → 110.25;
      //                 row B r=[2,2], a1 = 4, h1 = 6, m1 → 5.5, final 11.5 → 132.25;  m(C) = 121.25 → F = 0.25.
      const c1 = await ev.evaluate([n('resid_pre', 0), n('attn_out', 1)]);
      expect(c1.nodes).toBe(2);
      expect(c1.mCircuit).toBeCloseTo(121.25, 4);
      expect(c1.faithfulness).toBeCloseTo(0.25, 4);
      // C = {r@0, a@1, m@1}: rows A and B are exactly their clean runs → m(C) = 122, F = 1.
      // Its complement ablated: r0 → 1.5, a1 → 3.5, m1 → 5.5; h1 = 2 + 3.5, final 11 → 121 → completeness 0.
      const c2 = await ev.evaluate([n('resid_pre', 0), n('attn_out', 1), n('mlp_out', 1)]);
      expect(c2.faithfulness).toBeCloseTo(1, 4);
      expect(c2.mComplement).toBeCloseTo(121, 4);
      expect(c2.completeness).toBeCloseTo(0, 4);
      // The empty circuit is m(∅), the whole universe is m(M).
      expect((await ev.evaluate([])).faithfulness).toBeCloseTo(0, 4);
      expect((await ev.evaluate(universe)).faithfulness).toBeCloseTo(1, 4);
      // mlp_out@1 alone: its input is ablated upstream (h1 = 5.5) → 121 → F = 0.
      expect((await ev.evaluate([n('mlp_out', 1)])).faithfulness).toBeCloseTo(0, 4);
    } finally {
      ev.dispose();
    }
  });

  // Corrupt rows: A [1,3]: r=[1,3], a=[1,4], m=[2,7], final 14 → 196; B [2,1]: r=[2,1], a=[2,3], m=[4,4], final 8 → 64.
  it('corrupt-value ablation: m(∅) is the corrupt run (130) and a single kept node gives F = 0.625', async () => {
    // C = {r@1}: row A r1 = 2 (clean), a1 → 4, m1 → 7: h1 = 6, final 13 → 169;
    //            row B r1 = 2, a1 → 3, m1 → 4: h1 = 5, final 9 → 81;  m(C) = 125 → F = (125−130)/(122−130).
    const res = await evaluateCircuit(model, batch, universe, [n('resid_pre', 1)], { ablation: 'corrupt' });
    expect(res.mFull).toBeCloseTo(122, 4);
    expect(res.mEmpty).toBeCloseTo(130, 4);
    expect(res.mCircuit).toBeCloseTo(125, 4);
    expect(res.faithfulness).toBeCloseTo(0.625, 4);
  });

  it('refuses nodes outside the universe and unknown sites', async () => {
    const ev = await CircuitEvaluator.create(model, batch, universe.slice(0, 2));
    try {
      await expect(ev.evaluate([n('mlp_out', 1)])).rejects.toThrow(/not in the node universe/);
    } finally {
      ev.dispose();
    }
    await expect(CircuitEvaluator.create(model, batch, [n('z', 0)])).rejects.toSatisfy((e) =>
      isRelpError(e, 'UNKNOWN_SITE'),
    );
  });

  it('sweeps thresholds: curves grow with the number of nodes and reuse evaluations of equal sets', async () => {
    const scored: ScoredNode[] = [
      { ...n('resid_pre', 0), score: 0.5 },
      { ...n('attn_out', 1), score: -0.05 },
      { ...n('mlp_out', 1), score: 0.005 },
      { ...n('resid_pre', 1), score: 0 },
      { ...n('attn_out', 0), score: 0 },
      { ...n('mlp_out', 0), score: 0 },
    ];
    const ev = await CircuitEvaluator.create(model, batch, universe, { ablation: 'mean' });
    const seen: number[] = [];
    try {
      const curve = await sweepThresholds(ev, scored, [1, 0.1, 0.01, 0.001], {
        onProgress: (p) => seen.push(p.done),
      });
      expect(curve.map((p) => p.nodes)).toEqual([0, 1, 2, 3]);
      expect(curve[2]!.faithfulness).toBeCloseTo(0.25, 4);
      expect(curve[3]!.faithfulness).toBeCloseTo(1, 4);
      expect(seen).toEqual([1, 2, 3, 4]);
    } finally {
      ev.dispose();
    }
  });
});

describe('node selection', () => {
  const scored: ScoredNode[] = [
    { site: 'attn_out', layer: 0, position: 0, score: 0.3 },
    { site: 'attn_out', layer: 0, position: 1, score: -0.9 },
    { site: 'mlp_out', layer: 1, position: 1, score: 0.1 },
    { site: 'mlp_out', layer: 1, position: 2, score: Number.NaN },
  ];
  it('by |score| or signed score, threshold or top-k', () => {
    const ids = (xs: ScoredNode[]) => xs.map(nodeId);
    expect(ids(selectNodes(scored, { mode: 'threshold', value: 0.2 }))).toEqual([
      'attn_out.0@0',
      'attn_out.0@1',
    ]);
    expect(ids(selectNodes(scored, { mode: 'threshold', value: 0.2, by: 'signed' }))).toEqual([
      'attn_out.0@0',
    ]);
    expect(ids(selectNodes(scored, { mode: 'top-k', value: 2 }))).toEqual(['attn_out.0@1', 'attn_out.0@0']);
    expect(ids(selectNodes(scored, { mode: 'top-k', value: 2, by: 'signed' }))).toEqual([
      'attn_out.0@0',
      'mlp_out.1@1',
    ]);
    expect(() => selectNodes(scored, { mode: 'top-k', value: 1.5 })).toThrow(/integer/);
  });

  it('turns result grids into nodes, per position and per head', () => {
    const nodes = nodesFromScores({ attn_out: [[1, 2]], z: [[[0.1, 0.2]], [[0.3, 0.4]]] }, { z: 'head' });
    expect(nodes.map(nodeId)).toEqual([
      'attn_out.0@0',
      'attn_out.0@1',
      'z.0@0#0',
      'z.0@0#1',
      'z.1@0#0',
      'z.1@0#1',
    ]);
    expect(nodes[5]!.score).toBe(0.4);
  });

  it('log-spaced thresholds 1 … 1e-4 in 15 steps', () => {
    const t = logThresholds();
    expect(t).toHaveLength(15);
    expect(t[0]).toBeCloseTo(1, 12);
    expect(t[14]).toBeCloseTo(1e-4, 12);
    expect(t[7]).toBeCloseTo(1e-2, 12);
  });

  it('exports a Graphviz digraph naming every node', () => {
    const dot = circuitToDot(scored.slice(0, 3), { title: 'x "y"', tokenLabels: ['a', ' b', 'c'] });
    expect(dot.startsWith('digraph circuit {')).toBe(true);
    for (const s of scored.slice(0, 3)) expect(dot).toContain(`"${nodeId(s)}" [label=`);
    expect(dot).toContain('label="x \\"y\\""');
    expect(dot).toContain('"attn_out.0@0" -> "mlp_out.1@1"');
    expect(dot).not.toContain('"attn_out.0@1" -> "attn_out.0@0"');
  });
});

describe('DOT edges', () => {
  it('draw the transitive reduction of residual-stream reachability', () => {
    const mk = (site: SiteName, layer: number, position: number): ScoredNode => ({
      site,
      layer,
      position,
      score: 1,
    });
    const dot = circuitToDot([
      mk('resid_pre', 0, 1),
      mk('attn_out', 0, 1),
      mk('mlp_out', 0, 2),
      mk('mlp_out', 0, 0),
    ]);
    const edges = [...dot.matchAll(/"([^"]+)" -> "([^"]+)"/g)].map((m) => `${m[1]}>${m[2]}`).sort();
    // resid_pre@1 → attn_out@1 → mlp_out@2; resid_pre@1 → mlp_out@2 is implied; mlp_out@0 is unreachable.
    expect(edges).toEqual(['attn_out.0@1>mlp_out.0@2', 'resid_pre.0@1>attn_out.0@1']);
  });
});
