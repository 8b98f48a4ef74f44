import { type NormName, plainSlots, type RuleSet, RunContext } from '@relp/core';
import { useBackend } from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  auditRuleSets,
  NONE,
  NORMS_BY_ARCHITECTURE,
  normSubsets,
  normsTreated,
  normsTreatedByPreset,
  RELP,
  RELP_AH,
  ruleCoverage,
} from '../src/index.js';
import { FAMILIES } from './families.js';

// The table of norms is what results record in their provenance; it must match the normalize calls the models
// actually make (the LN-rule treats every one of them).
describe('the norms each preset treats', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  for (const fam of FAMILIES.slice(0, 4)) {
    it(`${fam.name}: the table lists one name per normalize call of a forward`, () => {
      const model = fam.make(true);
      const norms = NORMS_BY_ARCHITECTURE[model.architecture];
      expect(norms, model.architecture).toBeDefined();
      const ctx = new RunContext({ rules: RELP });
      const tokens = tf.tensor2d([[1, 2, 3, 4]], [1, 4], 'int32');
      tf.tidy(() => model.forward({ tokens }, ctx));
      tokens.dispose();
      model.dispose();
      expect(ctx.slotCalls.normalize).toBe(model.dims.nLayers * norms!.perBlock.length + norms!.final.length);
    });
  }

  it('Gemma 3 treats the q/k norms and the final norm; GPT-2 its two LayerNorms and the final one', () => {
    expect(normsTreated('gemma3_text', RELP)).toEqual([
      'ln1',
      'q_norm',
      'k_norm',
      'post_attention_norm',
      'ln2',
      'post_feedforward_norm',
      'final',
    ]);
    expect(normsTreated('gpt2', RELP_AH)).toEqual(['ln1', 'ln2', 'final']);
    expect(normsTreated('gpt2', NONE)).toEqual([]);
    expect(normsTreated('some_new_family', RELP)).toEqual(['every norm']);
    expect(normsTreatedByPreset('llama')).toEqual({
      relp: ['ln1', 'ln2', 'final'],
      'relp-ah': ['ln1', 'ln2', 'final'],
      'relp-cp': ['ln1', 'ln2', 'final'],
      attnlrp: ['ln1', 'ln2', 'final'],
      none: [],
    });
  });
});

describe('norm names and audit rule sets', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  // The names the families hand the normalize slot are the ones the norm table (and lnRuleFor) uses, in order.
  for (const fam of FAMILIES.slice(0, 4)) {
    it(`${fam.name}: the normalize calls name the table's norms, block by block, then the final one`, () => {
      const model = fam.make(true);
      const seen: (NormName | undefined)[] = [];
      const recording: RuleSet = {
        name: 'recording',
        slots: {
          normalize: (xc, scale, norm) => {
            seen.push(norm);
            return plainSlots.normalize(xc, scale);
          },
        },
        missingRuleFor: () => null,
      };
      const tokens = tf.tensor2d([[1, 2, 3, 4]], [1, 4], 'int32');
      tf.tidy(() => model.forward({ tokens }, new RunContext({ rules: recording })));
      tokens.dispose();
      const norms = NORMS_BY_ARCHITECTURE[model.architecture]!;
      const expected = [
        ...Array.from({ length: model.dims.nLayers }, () => norms.perBlock).flat(),
        ...norms.final,
      ];
      model.dispose();
      expect([...seen].sort()).toEqual([...expected].sort());
      expect(seen.at(-1)).toBe('final');
    });
  }

  it('norm subsets: block, +final, +q/k, +post norms for Gemma 3; block and +final for GPT-2', () => {
    expect(normSubsets('gemma3_text').map((s) => s.label)).toEqual([
      'block',
      'block+final',
      'block+final+qk',
      'all',
    ]);
    expect(normSubsets('gemma3_text')[2]!.norms).toEqual(['ln1', 'ln2', 'final', 'q_norm', 'k_norm']);
    expect(normSubsets('gpt2').map((s) => s.label)).toEqual(['block', 'block+final']);
    const sets = auditRuleSets('gemma3_text');
    const names = sets.map((s) => s.rules.name);
    expect(names).toEqual(expect.arrayContaining(['relp', 'relp-ah', 'relp-cp', 'ladder: ln+identity']));
    expect(new Set(names).size).toBe(names.length);
    const qk = sets.find((s) => s.rules.name === 'relp, ln on block+final+qk')!.rules;
    expect(normsTreated('gemma3_text', qk)).toEqual(['ln1', 'q_norm', 'k_norm', 'ln2', 'final']);
  });

  it('coverage says which nonlinearities a rule set treats and which it leaves to the plain gradient', () => {
    const model = FAMILIES[3]!.make(false);
    const ladderLn = auditRuleSets(model.architecture).find((s) => s.rules.name === 'ladder: ln')!.rules;
    const cov = ruleCoverage(ladderLn, model.nonlinearities, model.architecture);
    const bySlot = Object.fromEntries(cov.entries.map((e) => [e.slot, e.rule]));
    expect(bySlot).toMatchObject({ normalize: 'ln', activation: null, gate_product: null });
    const block = auditRuleSets(model.architecture).find((s) => s.rules.name === 'relp, ln on block')!.rules;
    expect(ruleCoverage(block, model.nonlinearities, model.architecture).normsPlain).toEqual([
      'q_norm',
      'k_norm',
      'post_attention_norm',
      'post_feedforward_norm',
      'final',
    ]);
    model.dispose();
  });
});
