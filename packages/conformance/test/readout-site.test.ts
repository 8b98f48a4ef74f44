import { attribute, type LanguageModel, type MethodOptions, makePairBatch, Site } from '@relp/core';
import { RELP } from '@relp/lrp-rules';
import { randomGpt2Model } from '@relp/models-gpt2';
import { installLeakGuard, useBackend } from '@relp/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The final norm's scale exists only at each row's readout position. Every method scores it as a [1][T] row with
 * each pair's score at its own readout position (activation patching patches the rows that read out there). The
 * metric is a mean over pairs, so a gradient method's row for a batch is the mean of its pairs' rows taken one at a
 * time. Under RelP the LN-rule holds every norm's scale constant in the backward pass: its score is exactly 0.
 */
installLeakGuard();

describe('ln_final_scale: each pair scored at its readout position', () => {
  let model: LanguageModel;
  // Three pairs of different lengths (right-padded), the first difference at position 2.
  const pairs = [
    { clean: [5, 9, 14, 3, 8, 21], corrupt: [5, 9, 17, 3, 8, 21], answer: 4, wrong: 30 },
    { clean: [7, 2, 11, 6], corrupt: [7, 2, 12, 6], answer: 5, wrong: 31 },
    { clean: [1, 2, 40, 3, 33, 12], corrupt: [1, 2, 41, 3, 33, 12], answer: 6, wrong: 32 },
  ];
  beforeAll(async () => {
    await useBackend('cpu');
    model = randomGpt2Model('tiny', 12, { initializerRange: 0.3, biasStd: 0.1 });
  });
  afterAll(() => model.dispose());

  const methods: [string, MethodOptions][] = [
    ['atp', { method: 'atp' }],
    ['ig', { method: 'ig', igSteps: 4 }],
  ];
  for (const [name, options] of methods) {
    it(`${name}: a [1][T] row, nonzero only at readout positions, the mean of the pairs' own rows`, async () => {
      const run = async (ps: typeof pairs) => {
        const batch = makePairBatch(ps, { dims: model.dims });
        const r = await attribute(model, batch, { ...options, sites: [Site.LnFinalScale] });
        return { grid: r.scores.ln_final_scale as number[][], batch };
      };
      const { grid, batch } = await run(pairs);
      expect(batch.firstDiff).toBe(2);
      expect(grid).toHaveLength(1);
      expect(grid[0]).toHaveLength(batch.seqLen);
      const expected = new Array<number>(batch.seqLen).fill(0);
      for (const p of pairs) {
        const one = await run([p]);
        const at = p.clean.length - 1;
        expect(one.grid[0]!.filter((v, t) => t !== at && v !== 0)).toEqual([]);
        expect(one.grid[0]![at]).not.toBe(0);
        expected[at]! += one.grid[0]![at]! / pairs.length;
      }
      for (let t = 0; t < batch.seqLen; t++) {
        if (expected[t] === 0) expect(grid[0]![t]).toBe(0);
        else expect(grid[0]![t]).toBeCloseTo(expected[t]!, 5);
      }
    });
  }

  it('relp: exactly 0 everywhere (the LN-rule takes no gradient through a norm scale)', async () => {
    const batch = makePairBatch(pairs, { dims: model.dims });
    const r = await attribute(model, batch, { method: 'atp', rules: RELP, sites: [Site.LnFinalScale] });
    expect(r.scores.ln_final_scale).toEqual([new Array(batch.seqLen).fill(0)]);
  });

  it('activation patching gives the same layout', async () => {
    const batch = makePairBatch(pairs, { dims: model.dims });
    const r = await attribute(model, batch, { method: 'activation-patching', sites: [Site.LnFinalScale] });
    const grid = r.scores.ln_final_scale as number[][];
    expect(grid).toHaveLength(1);
    expect(grid[0]).toHaveLength(batch.seqLen);
    const last = new Set(batch.lastPositions);
    for (let t = 0; t < batch.seqLen; t++) if (!last.has(t)) expect(grid[0]![t]).toBe(0);
  });
});
