import {
  ACTIVATIONS,
  checkRulesCover,
  isRelpError,
  NO_RULES,
  type Nonlinearity,
  type RuleSet,
} from '@relp/core';
import { describe, expect, it } from 'vitest';
import {
  ahRule,
  composeRules,
  halfRule,
  identityRule,
  lnRule,
  NONE,
  PRESET_NAMES,
  plainSoftmaxRule,
  presetByName,
  RELP,
  RELP_AH,
} from '../src/index.js';

const LAYERNORM: Nonlinearity = { slot: 'normalize', kind: 'layernorm' };
const RMSNORM: Nonlinearity = { slot: 'normalize', kind: 'rmsnorm' };
const SOFTMAX: Nonlinearity = { slot: 'attention_softmax', kind: 'softmax' };
const GATE: Nonlinearity = { slot: 'gate_product', kind: 'gated_mlp' };
const act = (kind: string): Nonlinearity => ({ slot: 'activation', kind });

/** Every nonlinearity of GPT-2, Pythia, Llama/Qwen (SiLU gates) and Gemma 3 (gelu_tanh gates, RMSNorm). */
const KNOWN: readonly Nonlinearity[] = [LAYERNORM, RMSNORM, SOFTMAX, GATE, ...ACTIVATIONS.map(act)];

function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('presets', () => {
  it('relp = LN + Identity + Half with the softmax plain on purpose; relp-ah adds the AH-rule', () => {
    expect(RELP.rules.map((r) => r.name)).toEqual(['ln', 'identity', 'half', 'plain-softmax']);
    expect(RELP_AH.rules.map((r) => r.name)).toEqual(['ln', 'identity', 'half', 'ah']);
    expect(Object.keys(RELP.slots).sort()).toEqual(['activation', 'gateProduct', 'normScale', 'normalize']);
    expect(Object.keys(RELP_AH.slots).sort()).toEqual([
      'activation',
      'attentionSoftmax',
      'gateProduct',
      'normScale',
      'normalize',
    ]);
    expect(RELP.slots.attentionSoftmax).toBeUndefined();
    expect(RELP_AH.slots.attentionSoftmax).toBe(ahRule.slots.attentionSoftmax);
  });

  for (const rules of [RELP, RELP_AH] as const) {
    it(`${rules.name} covers every nonlinearity of GPT-2, Pythia, Llama and Gemma 3`, () => {
      for (const n of KNOWN) expect(rules.missingRuleFor(n), `${n.slot} ${n.kind}`).toBeNull();
    });

    it(`${rules.name} flags what it has no rule for`, () => {
      expect(rules.missingRuleFor(act('softplus'))).toMatch(/softplus/);
      expect(
        rules.missingRuleFor({ slot: 'normalize', kind: 'groupnorm' } as unknown as Nonlinearity),
      ).toMatch(/groupnorm/);
      expect(rules.missingRuleFor({ slot: 'gate_product', kind: 'glu3' } as unknown as Nonlinearity)).toMatch(
        /glu3/,
      );
    });
  }

  it('a rule set composed without the Half-rule flags a gated MLP; without a softmax rule, the softmax', () => {
    const noHalf = composeRules('no-half', lnRule, identityRule, plainSoftmaxRule);
    expect(noHalf.missingRuleFor(GATE)).toMatch(/gate_product.*Half-rule/);
    expect(noHalf.missingRuleFor(LAYERNORM)).toBeNull();
    const noSoftmax = composeRules('no-softmax', lnRule, identityRule, halfRule);
    expect(noSoftmax.missingRuleFor(SOFTMAX)).toMatch(/attention_softmax/);
    const e = thrown(() => checkRulesCover(noHalf, [LAYERNORM, act('silu'), GATE], 'llama'));
    expect(isRelpError(e, 'MISSING_RULE')).toBe(true);
    expect(String(e)).toMatch(/no-half.*gate_product.*gated_mlp.*llama/);
  });

  it('checkRulesCover names the missing activation', () => {
    const e = thrown(() => checkRulesCover(RELP, [LAYERNORM, act('softplus'), SOFTMAX], 'toy'));
    expect(isRelpError(e, 'MISSING_RULE')).toBe(true);
    expect((e as Error).message).toMatch(/softplus/);
    expect(() => checkRulesCover(RELP, KNOWN, 'all')).not.toThrow();
  });

  it('two rules for one slot are refused', () => {
    const e = thrown(() => composeRules('both', ahRule, plainSoftmaxRule));
    expect(isRelpError(e, 'BAD_INPUT')).toBe(true);
    expect(String(e)).toMatch(/ah.*plain-softmax/);
  });

  it('presetByName resolves every name, atp is none, unknown names are a typed error', () => {
    const byName: Record<string, RuleSet> = {};
    for (const n of PRESET_NAMES) byName[n] = presetByName(n);
    expect(byName.relp).toBe(RELP);
    expect(byName['relp-ah']).toBe(RELP_AH);
    expect(byName.none).toBe(NO_RULES);
    expect(byName.atp).toBe(NO_RULES);
    expect(NONE).toBe(NO_RULES);
    const e = thrown(() => presetByName('relp-lite'));
    expect(isRelpError(e, 'BAD_INPUT')).toBe(true);
    expect((e as { details: Record<string, unknown> }).details.preset).toBe('relp-lite');
  });
});
