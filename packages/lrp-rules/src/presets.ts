import {
  ErrorCodes,
  NO_RULES,
  type Nonlinearity,
  RelpError,
  type RuleSet,
  type SlotFunctions,
  SlotKind,
} from '@relp/core';
import {
  ahRule,
  cpGateRule,
  halfRule,
  identityRule,
  type LrpRule,
  lnRule,
  plainSoftmaxRule,
  uniformScoresRule,
  uniformValuesRule,
} from './rules.js';

/** A rule set built from named rules; `rules` lists them (one per slot at most). */
export interface LrpRuleSet extends RuleSet {
  readonly rules: readonly LrpRule[];
}

const RULE_FOR_SLOT: Readonly<Record<SlotKind, string>> = {
  [SlotKind.Normalize]: 'the LN-rule',
  [SlotKind.Activation]: 'the Identity-rule',
  [SlotKind.GateProduct]: 'the Half-rule',
  [SlotKind.AttentionSoftmax]: 'the AH-rule (or plain-softmax, to keep ordinary gradients on purpose)',
  [SlotKind.AttentionScores]: 'the uniform rule for q·kᵀ (attnlrp)',
  [SlotKind.AttentionValues]: 'the uniform rule for pattern·v (attnlrp)',
};

/**
 * Bundles rules into a rule set. At most one rule per slot (two would make the result depend on their order).
 * `missingRuleFor` flags every nonlinearity no rule covers: a slot left plain must be said so with a 0-rule
 * (e.g. `plainSoftmaxRule`), so a model with a new activation, normaliser or gate never runs silently with
 * the ordinary gradient where a rule was meant.
 */
export function composeRules(name: string, ...rules: LrpRule[]): LrpRuleSet {
  const bySlot = new Map<SlotKind, LrpRule>();
  for (const r of rules) {
    const other = bySlot.get(r.slot);
    if (other) {
      throw new RelpError(
        ErrorCodes.BadInput,
        `rule set '${name}': rules '${other.name}' and '${r.name}' both claim the ${r.slot} slot`,
        { details: { ruleSet: name, slot: r.slot, rules: [other.name, r.name] } },
      );
    }
    bySlot.set(r.slot, r);
  }
  const slots: Partial<SlotFunctions> = Object.assign({}, ...rules.map((r) => r.slots));
  const list = Object.freeze([...rules]);
  return Object.freeze({
    name,
    rules: list,
    slots: Object.freeze(slots),
    missingRuleFor(n: Nonlinearity): string | null {
      if (list.some((r) => r.covers(n))) return null;
      const present = bySlot.get(n.slot);
      if (present) {
        return `its ${n.slot} rule '${present.name}' does not know the kind '${n.kind}'`;
      }
      const known: readonly string[] = Object.values(SlotKind);
      if (!known.includes(n.slot)) return `'${String(n.slot)}' is not a rule slot relp knows`;
      return `no rule is set for the ${n.slot} slot (add ${RULE_FOR_SLOT[n.slot]})`;
    },
  });
}

/** The paper's IOI setting: LN + Identity + Half, ordinary gradients through the attention softmax. */
export const RELP: LrpRuleSet = composeRules('relp', lnRule, identityRule, halfRule, plainSoftmaxRule);

/** `relp` with the AH-rule: the attention pattern is a constant in the backward pass. */
export const RELP_AH: LrpRuleSet = composeRules('relp-ah', lnRule, identityRule, halfRule, ahRule);

/**
 * LN + Identity with the CP gate rule (docs/method.md §11.1): the activated gate of a gated MLP is a constant, so
 * relevance reaches `up` only; ordinary gradients through the attention softmax, as `relp`.
 */
export const RELP_CP: LrpRuleSet = composeRules(
  'relp-cp',
  lnRule,
  identityRule,
  cpGateRule,
  plainSoftmaxRule,
);

/**
 * AttnLRP (docs/method.md §11.3): `relp` with the uniform rule on the attention's two matrix products, pattern·v
 * (each factor ½) and q·kᵀ (each factor ½, so q and k get ¼ behind the plain softmax).
 */
export const ATTNLRP: LrpRuleSet = composeRules(
  'attnlrp',
  lnRule,
  identityRule,
  halfRule,
  plainSoftmaxRule,
  uniformScoresRule,
  uniformValuesRule,
);

/** No rules: plain gradients, i.e. attribution patching (core's NO_RULES). */
export const NONE: RuleSet = NO_RULES;

export const PRESET_NAMES = ['relp', 'relp-ah', 'relp-cp', 'attnlrp', 'none', 'atp'] as const;
export type PresetName = (typeof PRESET_NAMES)[number];

export function isPresetName(s: string): s is PresetName {
  return (PRESET_NAMES as readonly string[]).includes(s);
}

/** The preset for a name; 'atp' is an alias of 'none'. Unknown names raise a BAD_INPUT RelpError. */
export function presetByName(name: PresetName): RuleSet;
export function presetByName(name: string): RuleSet;
export function presetByName(name: string): RuleSet {
  switch (name) {
    case 'relp':
      return RELP;
    case 'relp-ah':
      return RELP_AH;
    case 'relp-cp':
      return RELP_CP;
    case 'attnlrp':
      return ATTNLRP;
    case 'none':
    case 'atp':
      return NONE;
    default:
      throw new RelpError(
        ErrorCodes.BadInput,
        `unknown rule preset '${name}' (known: ${PRESET_NAMES.join(', ')})`,
        { details: { preset: name, known: [...PRESET_NAMES] } },
      );
  }
}
