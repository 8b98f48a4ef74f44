import {
  isRelpError,
  type LanguageModel,
  makePairBatch,
  type PairBatch,
  Site,
  type SiteRequest,
} from '@relp/core';
import { RELP } from '@relp/lrp-rules';
import { randomGpt2Model } from '@relp/models-gpt2';
import { installLeakGuard, useBackend } from '@relp/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  auditRules,
  compareMethods,
  isBiasName,
  measureConservation,
  splitPairs,
  withZeroBiases,
} from '../src/index.js';

installLeakGuard();

/**
 * The rule audit is compareMethods per rule set on two splits: its numbers must be exactly those of a separate
 * comparison on the same split, activation patching must run once per split, and conservation must separate rule
 * sets that conserve (LN + Identity + AH on a bias-free GPT-2) from plain gradients.
 */
describe('auditRules', () => {
  let model: LanguageModel;
  let biasFree: LanguageModel;
  let batch: PairBatch;
  const sites: SiteRequest[] = [
    { site: Site.ResidPre },
    { site: Site.AttnOut },
    { site: Site.Z, granularity: 'head' },
  ];

  beforeAll(async () => {
    await useBackend('cpu');
    model = randomGpt2Model('tiny', 5, { initializerRange: 0.3, biasStd: 0.1, layerNormStd: 0.1 });
    biasFree = randomGpt2Model('tiny', 5, { initializerRange: 0.3, biasStd: 0, layerNormStd: 0 });
    const V = model.dims.vocabSize;
    const pairs = [0, 1, 2, 3, 4].map((b) => {
      const clean = Array.from({ length: 5 }, (_, i) => (i * 7 + b * 5 + 1) % V);
      const corrupt = [...clean];
      corrupt[1] = (corrupt[1]! + 9 + b) % V;
      return { clean, corrupt, answer: 4 + b, wrong: 30 + b };
    });
    batch = makePairBatch(pairs, { dims: model.dims });
  });
  afterAll(() => {
    model.dispose();
    biasFree.dispose();
  });

  it('splits deterministically and evenly; refuses a fraction outside (0, 1) or an empty side', () => {
    const s = splitPairs(batch, 0.4, model.dims);
    expect(s.calibrationPairs).toEqual([2, 4]);
    expect(s.heldOutPairs).toEqual([0, 1, 3]);
    expect(s.calibration.pairs).toEqual([batch.pairs[2], batch.pairs[4]]);
    expect(splitPairs(batch, 0.4, model.dims)).toEqual(s);
    for (const f of [0, 1, -0.5, Number.NaN, 0.1]) {
      let err: unknown;
      try {
        splitPairs(batch, f, model.dims);
      } catch (e) {
        err = e;
      }
      expect(isRelpError(err) && err.code, `fraction ${f}`).toBe('BAD_INPUT');
    }
  });

  it('equals a separate compareMethods run of relp on each split; activation patching runs once per split', {
    timeout: 120_000,
  }, async () => {
    const phases: string[] = [];
    const audit = await auditRules(model, batch, {
      sites,
      split: 0.6,
      biasFree,
      onProgress: (what) => phases.push(what),
    });
    const ap = new Set(phases.filter((p) => p.startsWith('activation patching')));
    expect([...ap]).toEqual(['activation patching (calibration)', 'activation patching (heldOut)']);
    const halves = splitPairs(batch, 0.6, model.dims);
    const relp = audit.rows.find((r) => r.name === 'relp')!;
    for (const [split, b] of [
      ['calibration', halves.calibration],
      ['heldOut', halves.heldOut],
    ] as const) {
      const cmp = await compareMethods(model, b, { methods: ['relp'], sites });
      expect(audit.reference[split].scores).toEqual(cmp.reference!.scores);
      const mine = relp.agreement.filter((a) => a.split === split);
      expect(mine.map((a) => [a.site, a.agreement])).toEqual(cmp.agreement.map((a) => [a.site, a.agreement]));
      expect(mine.map((a) => a.granularity)).toEqual(['position', 'position', 'head']);
    }
    // On GPT-2 (no gated MLP) the Half-rule changes nothing: the ladder steps with and without it reuse relp.
    const ladder = audit.rows.find((r) => r.name === 'ladder: ln+identity+half')!;
    expect(ladder.sameAs).toBe('relp');
    expect(audit.rows.find((r) => r.name === 'ladder: ln+identity')!.sameAs).toBe('relp');
    expect(audit.rows.find((r) => r.name === 'only half')!.sameAs).toBe('none');
    // The LN-rule on GPT-2's block norms and the final one is every norm GPT-2 has: relp itself.
    expect(audit.rows.find((r) => r.name === 'relp, ln on block+final')!.sameAs).toBe('relp');
    expect(audit.rows.find((r) => r.name === 'relp, ln on block')!.sameAs).toBeUndefined();
    // AtP (none) and RelP do differ on this model.
    const none = audit.rows.find((r) => r.name === 'none')!;
    expect(none.agreement.map((a) => a.agreement.pearson)).not.toEqual(
      relp.agreement.map((a) => a.agreement.pearson),
    );
    // Conservation on the bias-free copy: LN + Identity + AH conserve (up to the Identity-rule's 1e-6 and float32),
    // plain gradients do not.
    const ah = audit.rows.find((r) => r.name === 'relp-ah')!.conservation;
    expect(ah.biasesZeroed).toBe(true);
    expect(ah.relativeError).toBeLessThan(1e-3);
    expect(none.conservation.relativeError).toBeGreaterThan(1e-2);
    expect(relp.coverage.entries.map((e) => [e.slot, e.rule])).toEqual(
      model.nonlinearities.map((n) => [
        n.slot,
        n.slot === 'attention_softmax' ? null : n.slot === 'normalize' ? 'ln' : 'identity',
      ]),
    );
  });

  it('conservation needs the biases zeroed: with them, relp-ah is far from conserving', async () => {
    const ahRules = (await import('@relp/lrp-rules')).RELP_AH;
    const withBiases = await measureConservation(model, batch, ahRules, false);
    const zeroed = await measureConservation(biasFree, batch, ahRules, true);
    expect(zeroed.relativeError).toBeLessThan(1e-3);
    expect(withBiases.relativeError).toBeGreaterThan(1e-2);
    expect(zeroed.metric.length).toBe(batch.size);
    expect(RELP.name).toBe('relp');
  });

  it('withZeroBiases zeroes every bias tensor (LayerNorm β included) and passes the others through', () => {
    const t = (v: number[]) => ({ shape: [v.length], data: new Float32Array(v) });
    const record: Record<string, ReturnType<typeof t>> = {
      'h.0.attn.c_attn.bias': t([1, 2]),
      'transformer.ln_f.bias': t([3]),
      'transformer.ln_f.weight': t([4]),
      'model.layers.0.self_attn.q_proj.bias': t([5]),
      'h.0.attn.c_attn.weight': t([6, 7]),
    };
    const zeroed = withZeroBiases({ get: (n) => record[n], names: () => Object.keys(record) });
    for (const name of Object.keys(record)) {
      const expected = isBiasName(name)
        ? [0, 0].slice(0, record[name]!.data.length)
        : [...record[name]!.data];
      expect([...zeroed.get(name)!.data], name).toEqual(expected);
      expect(zeroed.get(name)!.shape).toEqual(record[name]!.shape);
    }
    expect(Object.keys(record).filter(isBiasName)).toHaveLength(3);
    expect([...record['h.0.attn.c_attn.bias']!.data]).toEqual([1, 2]);
    expect(zeroed.get('missing')).toBeUndefined();
  });
});
