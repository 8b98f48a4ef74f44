import type { RuleSet } from '@relp/core';
import { ATTNLRP, type LrpRuleSet, NONE, RELP, RELP_AH, RELP_CP } from './presets.js';
import { isZeroRule, type LrpRule } from './rules.js';

/**
 * The norms of one architecture, in the order a block runs them. Every one is a call of the `normalize` slot, so
 * the LN-rule treats all of them (docs/method.md §10.6). `ln1` is the norm before attention (site `ln1_scale`),
 * `ln2` the one before the MLP (`ln2_scale`); Gemma 3 adds the query and key norms (over one head's d_h) and the
 * post-attention and post-feedforward norms; `final` is the norm before the unembedding.
 */
export interface ModelNorms {
  readonly perBlock: readonly string[];
  readonly final: readonly string[];
}

const TWO_PER_BLOCK: ModelNorms = { perBlock: ['ln1', 'ln2'], final: ['final'] };

/** By `LanguageModel.architecture`. The lrp-rules tests check each list against the normalize calls of a forward. */
export const NORMS_BY_ARCHITECTURE: Readonly<Record<string, ModelNorms>> = {
  gpt2: TWO_PER_BLOCK,
  gpt_neox: TWO_PER_BLOCK,
  llama: TWO_PER_BLOCK,
  qwen2: TWO_PER_BLOCK,
  mistral: TWO_PER_BLOCK,
  gemma3_text: {
    perBlock: ['ln1', 'q_norm', 'k_norm', 'post_attention_norm', 'ln2', 'post_feedforward_norm'],
    final: ['final'],
  },
};

/** The rule set's LN-rule (the full one, or a norm subset's), if it holds one. */
function lnRuleOf(rules: RuleSet): LrpRule | undefined {
  return ((rules as Partial<LrpRuleSet>).rules ?? []).find((r) => r.slot === 'normalize' && !isZeroRule(r));
}

/**
 * The norms a rule set treats in a model of this architecture: every norm (per block, then the final one) when
 * it holds the LN-rule, the listed ones of those for a norm-subset LN-rule (`lnRuleFor`), none otherwise. An
 * architecture this table does not know gets ['every norm'] under the full LN-rule (it still treats every
 * normalize call) and the subset's own list under a subset, so a result never claims a list it cannot vouch for.
 */
export function normsTreated(architecture: string, rules: RuleSet): readonly string[] {
  const ln = lnRuleOf(rules);
  if (!ln) return [];
  const norms = NORMS_BY_ARCHITECTURE[architecture];
  if (!norms) return ln.norms ?? ['every norm'];
  const all = [...norms.perBlock, ...norms.final];
  return ln.norms ? all.filter((n) => ln.norms!.includes(n)) : all;
}

/** Which norms each rule preset treats in a model of this architecture, for a result's provenance. */
export function normsTreatedByPreset(
  architecture: string,
): Record<'relp' | 'relp-ah' | 'relp-cp' | 'attnlrp' | 'none', readonly string[]> {
  return {
    relp: normsTreated(architecture, RELP),
    'relp-ah': normsTreated(architecture, RELP_AH),
    'relp-cp': normsTreated(architecture, RELP_CP),
    attnlrp: normsTreated(architecture, ATTNLRP),
    none: normsTreated(architecture, NONE),
  };
}
