import { attribute, CircuitEvaluator, type CircuitNode, makePairBatch, Site } from '@relp/core';
import { randomGpt2Model } from '@relp/models-gpt2';
import { installLeakGuard, useBackend } from '@relp/testing';
import { expect, it } from 'vitest';

/**
 * Circuit evaluation with corrupt-value ablation, on per-head and per-neuron nodes of a real GPT-2: ablating one
 * node of the full model is activation patching in the noising direction, so m(M∖{n}) − m(M) must equal the
 * engine's noising score of that head or neuron; the full circuit is faithful (1) and the empty one is not (0).
 */
installLeakGuard();

it('ablating one head or neuron equals its noising activation-patching score', {
  timeout: 300_000,
}, async () => {
  await useBackend('cpu');
  const model = randomGpt2Model('tiny', 8, { initializerRange: 0.3, biasStd: 0.1 });
  const V = model.dims.vocabSize;
  const pairs = [0, 1].map((b) => {
    const clean = Array.from({ length: 6 }, (_, i) => (i * 11 + b * 3 + 2) % V);
    const corrupt = [...clean];
    corrupt[2] = (corrupt[2]! + 5) % V;
    return { clean, corrupt, answer: 7 + b, wrong: 40 + b };
  });
  const batch = makePairBatch(pairs, { dims: model.dims });
  const ap = await attribute(model, batch, {
    method: 'activation-patching',
    direction: 'noising',
    sites: [
      { site: Site.Z, granularity: 'head' },
      { site: Site.MlpPost, granularity: 'neuron', layers: [1] },
    ],
  });
  const universe: CircuitNode[] = [];
  for (let l = 0; l < model.dims.nLayers; l++)
    for (let p = 0; p < batch.seqLen; p++)
      for (let h = 0; h < model.dims.nHeads; h++)
        universe.push({ site: Site.Z, layer: l, position: p, unit: h });
  for (let p = 0; p < batch.seqLen; p++)
    for (const i of [0, 5, 17]) universe.push({ site: Site.MlpPost, layer: 1, position: p, unit: i });
  const ev = await CircuitEvaluator.create(model, batch, universe, { ablation: 'corrupt' });
  try {
    expect(ev.mFull).toBeCloseTo(ap.metric.clean, 5);
    expect(ev.mEmpty).not.toBeCloseTo(ev.mFull, 3);
    const full = await ev.evaluate(universe);
    expect(full.faithfulness).toBeCloseTo(1, 6);
    const none = await ev.evaluate([]);
    expect(none.faithfulness).toBeCloseTo(0, 6);
    const picks = [universe[9]!, universe[universe.length - 1]!, universe[4 * 4 + 2]!];
    let largest = 0;
    for (const n of picks) {
      const r = await ev.evaluate([n]);
      const grid = ap.scores[n.site] as number[][][];
      const want = grid[n.layer]![n.position]![n.unit!]!;
      largest = Math.max(largest, Math.abs(want));
      expect(r.mComplement - ev.mFull, `node ${n.site}.${n.layer}@${n.position}#${n.unit}`).toBeCloseTo(
        want,
        5,
      );
    }
    expect(largest, 'the picked nodes have effects').toBeGreaterThan(1e-4);
  } finally {
    ev.dispose();
    model.dispose();
  }
});
