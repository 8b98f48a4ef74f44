/**
 * A model with a known circuit (@relp/testing/models, known-circuit.ts): a GPT-2 whose weights are set by
 * construction to do induction, so the edges that carry the clean/corrupt difference are known. Every edge method
 * is scored against them (AUROC of |score|), and the circuit is checked by ablation: the true edges alone recover
 * the clean metric, the rest recover nothing, and a circuit missing any one true edge — the key edge above all —
 * loses its share.
 */
import {
  attributeEdges,
  type EdgeGraph,
  type EdgeScores,
  type EdgeSet,
  evaluateEdgeSets,
  type LanguageModel,
  makePairBatch,
  modelEdgeGraph,
  type PairBatch,
  parseEdges,
  RunContext,
  topEdges,
} from '@relp/core';
import { presetByName } from '@relp/lrp-rules';
import { gpt2Family } from '@relp/models-gpt2';
import { installLeakGuard, useBackend } from '@relp/testing';
import {
  auroc,
  KNOWN_CIRCUIT,
  KNOWN_CIRCUIT_EDGES,
  type KnownCircuitPair,
  knownCircuitModel,
  knownCircuitPairs,
  repeatedSequences,
} from '@relp/testing/models';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

installLeakGuard();

const KEY_EDGE = 'a0.h1->a1.h2<k>';

let model: LanguageModel;
let g: EdgeGraph;
let pairs: KnownCircuitPair[];
let batch: PairBatch;
/** Every method's scores of every edge, by label. */
const results = new Map<string, EdgeScores>();

const set = (names: readonly string[]): EdgeSet => ({ graph: g, edges: parseEdges(g, names) });

/** Faithfulness (m(C) − m(∅)) / (m(M) − m(∅)) of each set on `on` (default: the whole batch). */
async function faithfulness(
  sets: readonly EdgeSet[],
  ablation: 'corrupt' | 'mean' = 'corrupt',
  on: PairBatch = batch,
): Promise<number[]> {
  const [full, none, ...ms] = await evaluateEdgeSets(model, on, [null, { graph: g, edges: [] }, ...sets], {
    ablation,
  });
  return ms.map((m) => (m - none!) / (full! - none!));
}

/** Argmax of the logits at every position, [B][T]. */
async function predictions(tokens: number[][]): Promise<number[][]> {
  const logits = tf.tidy(() =>
    tf.argMax(model.forward({ tokens: tf.tensor2d(tokens, undefined, 'int32') }, new RunContext()), 2),
  );
  try {
    return (await logits.array()) as number[][];
  } finally {
    logits.dispose();
  }
}

beforeAll(async () => {
  await useBackend('cpu');
  model = knownCircuitModel(gpt2Family);
  g = modelEdgeGraph(model);
  pairs = knownCircuitPairs(1, 1);
  batch = makePairBatch(pairs, { dims: model.dims });
  const eap = await attributeEdges(model, batch, { method: 'eap' });
  results.set('eap', eap);
  results.set('relp', await attributeEdges(model, batch, { method: 'eap', rules: presetByName('relp') }));
  results.set('eap-ig-inputs', await attributeEdges(model, batch, { method: 'eap-ig-inputs', steps: 5 }));
  results.set(
    'eap-ig-activations',
    await attributeEdges(model, batch, { method: 'eap-ig-activations', steps: 5 }),
  );
  results.set(
    'edge-patching',
    await attributeEdges(model, batch, { method: 'edge-patching', edges: eap.edges, maxBatchRows: 400 }),
  );
}, 240_000);

afterAll(() => model?.dispose());

describe('a model with a known circuit (induction, weights by construction)', () => {
  it('does induction: ≥ 0.95 of the next tokens right on 50 random repeated sequences, and on the pairs', async () => {
    const n = KNOWN_CIRCUIT.half;
    const seqs = repeatedSequences(50, 3);
    const pred = await predictions(seqs);
    let right = 0;
    let total = 0;
    // Position 1 + n + j holds x_j (j ≤ n − 2): the next token is x_{j+1} = seq[2 + j].
    for (const [b, s] of seqs.entries()) {
      for (let j = 0; j <= n - 2; j++, total++) if (pred[b]![1 + n + j] === s[2 + j]) right++;
    }
    expect(right / total).toBeGreaterThanOrEqual(0.95);
    // Each pair: the clean prompt predicts its answer, the corrupt one its `wrong` token.
    const last = pairs[0]!.clean.length - 1;
    const clean = await predictions(pairs.map((p) => [...p.clean]));
    const corrupt = await predictions(pairs.map((p) => [...p.corrupt]));
    pairs.forEach((p, i) => {
      expect(clean[i]![last], `${p.kind} clean`).toBe(p.answer);
      expect(corrupt[i]![last], `${p.kind} corrupt`).toBe(p.wrong);
    });
  });

  it('the true circuit is faithful (corrupt and mean ablation); its complement carries nothing', async () => {
    const truth = set(KNOWN_CIRCUIT_EDGES);
    const rest = {
      graph: g,
      edges: results.get('eap')!.index.filter(([u, v]) => !truth.edges.some(([a, b]) => a === u && b === v)),
    };
    const [t, c] = await faithfulness([truth, rest]);
    expect(Math.abs(t! - 1)).toBeLessThan(0.05);
    expect(Math.abs(c!)).toBeLessThan(0.05);
    const [tm] = await faithfulness([truth], 'mean');
    expect(Math.abs(tm! - 1)).toBeLessThan(0.05);
  });

  it('every true edge is needed: without the key edge the key pairs fail (and mean ablation loses most)', async () => {
    const without = (e: string) => set(KNOWN_CIRCUIT_EDGES.filter((x) => x !== e));
    // Each kind of pair routes through its own edges: dropping one loses at least that third of the batch.
    const fs = await faithfulness(KNOWN_CIRCUIT_EDGES.map(without));
    fs.forEach((f, i) => {
      expect(f, KNOWN_CIRCUIT_EDGES[i]).toBeLessThan(0.75);
    });
    const keyPairs = makePairBatch(
      pairs.filter((p) => p.kind === 'key'),
      { dims: model.dims },
    );
    const [onKeys] = await faithfulness([without(KEY_EDGE)], 'corrupt', keyPairs);
    expect(Math.abs(onKeys!)).toBeLessThan(0.1);
    // Mean ablation takes every prompt's previous-token copy away (the batch's mean keeps 1/3 of each prompt's
    // own: three prompts), so every kind of pair loses most of its induction.
    const [meanAll] = await faithfulness([without(KEY_EDGE)], 'mean');
    expect(meanAll!).toBeLessThan(0.5);
  });

  it('the methods rank the true edges first: AUROC of |score|', () => {
    const truth = new Set(KNOWN_CIRCUIT_EDGES);
    const area = (label: string) => {
      const r = results.get(label)!;
      return auroc(
        (r.scores as number[]).map(Math.abs),
        r.edges.map((e) => truth.has(e)),
      );
    };
    // Exact patching, EAP-IG (both) and RelP rank all five first.
    for (const label of ['edge-patching', 'eap-ig-inputs', 'eap-ig-activations', 'relp']) {
      expect(area(label), label).toBeGreaterThanOrEqual(0.99);
    }
    // EAP linearises the induction head's saturated softmax at the corrupt run: the query and key paths score
    // e^(−gap)-small, below LayerNorm's first-order noise on some distractor edges. It still ranks the value and
    // output edges first and the whole truth far above chance.
    expect(area('eap')).toBeGreaterThanOrEqual(0.9);
    const eap = results.get('eap')!;
    const exact = results.get('edge-patching')!;
    const score = (r: EdgeScores, e: string) => (r.scores as number[])[r.edges.indexOf(e)]!;
    expect(Math.abs(score(eap, KEY_EDGE))).toBeLessThan(0.01 * Math.abs(score(exact, KEY_EDGE)));
  });

  it('with a soft induction head (gap 4, not saturated) EAP ranks the true edges first too', async () => {
    const soft = knownCircuitModel(gpt2Family, { gap1: 4 });
    try {
      const r = await attributeEdges(soft, batch, { method: 'eap' });
      const truth = new Set(KNOWN_CIRCUIT_EDGES);
      expect(
        auroc(
          (r.scores as number[]).map(Math.abs),
          r.edges.map((e) => truth.has(e)),
        ),
      ).toBeGreaterThanOrEqual(0.99);
    } finally {
      soft.dispose();
    }
  });

  it('top-|truth| edges: exact patching, EAP-IG and RelP pick exactly the true circuit', async () => {
    const k = KNOWN_CIRCUIT_EDGES.length;
    const names = (s: EdgeSet) => s.edges.map(([u, v]) => `${g.upstream[u]}->${g.downstream[v]}`).sort();
    for (const label of ['edge-patching', 'eap-ig-inputs', 'eap-ig-activations', 'relp']) {
      expect(names(topEdges(results.get(label)!, k)), label).toEqual([...KNOWN_CIRCUIT_EDGES].sort());
    }
    const [eapTop] = await faithfulness([topEdges(results.get('eap')!, k)]);
    expect(eapTop!).toBeLessThan(0.5);
  });
});
