import type { Nonlinearity, NormName, RuleSet } from '@relp/core';
import { NORMS_BY_ARCHITECTURE } from './norms.js';
import { ATTNLRP, composeRules, type LrpRuleSet, RELP, RELP_AH, RELP_CP } from './presets.js';
import {
  ahRule,
  cpGateRule,
  halfRule,
  identityRule,
  isZeroRule,
  type LrpRule,
  lnRule,
  lnRuleFor,
  plainActivationRule,
  plainGateRule,
  plainNormRule,
  plainSoftmaxRule,
} from './rules.js';

/** Why a rule set is in an audit: a preset, a step of the cumulative ladder, one rule alone, or an LN-rule norm subset. */
export type AuditGroup = 'preset' | 'ladder' | 'single' | 'norms';

export interface AuditRuleSet {
  readonly group: AuditGroup;
  readonly rules: LrpRuleSet;
}

/** A rule set that says of every slot what it does: the given rules, and a 0-rule for every other slot. */
export function explicitRules(name: string, ...rules: LrpRule[]): LrpRuleSet {
  const zeros = [plainNormRule, plainActivationRule, plainGateRule, plainSoftmaxRule].filter(
    (z) => !rules.some((r) => r.slot === z.slot),
  );
  return composeRules(name, ...rules, ...zeros);
}

/**
 * The LN-rule's norm subsets an audit compares, each inside `relp` (Identity + Half, plain softmax): the block norms
 * (ln1, ln2), plus the final norm, plus Gemma 3's query/key norms, plus its post norms (= every norm, `relp`
 * itself). A subset that adds no norm this architecture has is left out; an architecture the norm table does not
 * know gets every step.
 */
export function normSubsets(architecture: string): { label: string; norms: readonly NormName[] }[] {
  const steps: { label: string; add: readonly NormName[] }[] = [
    { label: 'block', add: ['ln1', 'ln2'] },
    { label: 'block+final', add: ['final'] },
    { label: 'block+final+qk', add: ['q_norm', 'k_norm'] },
    { label: 'all', add: ['post_attention_norm', 'post_feedforward_norm'] },
  ];
  const table = NORMS_BY_ARCHITECTURE[architecture];
  const has = table ? new Set([...table.perBlock, ...table.final]) : undefined;
  const out: { label: string; norms: NormName[] }[] = [];
  let norms: NormName[] = [];
  for (const s of steps) {
    const added = has ? s.add.filter((n) => has.has(n)) : [...s.add];
    if (added.length === 0 && out.length > 0) continue;
    norms = [...norms, ...added];
    out.push({ label: s.label, norms });
  }
  return out;
}

/**
 * Every rule set a rule audit measures on a model of this architecture (docs/method.md §11.2): the presets (`none`,
 * `relp`, `relp-ah`, `relp-cp`, `attnlrp`), the cumulative ladder none → LN → +Identity → +Half → +AH, each rule alone, and
 * `relp` with the LN-rule on each norm subset of `normSubsets`. Every set states every slot (0-rules for the plain
 * ones), so it passes the coverage check of a run and says what it leaves plain.
 */
export function auditRuleSets(architecture: string): AuditRuleSet[] {
  const ladder: [string, LrpRule[]][] = [
    ['none', []],
    ['ln', [lnRule]],
    ['ln+identity', [lnRule, identityRule]],
    ['ln+identity+half', [lnRule, identityRule, halfRule]],
    ['ln+identity+half+ah', [lnRule, identityRule, halfRule, ahRule]],
  ];
  const single = [identityRule, halfRule, ahRule, cpGateRule];
  const subsets = normSubsets(architecture).filter((s) => s.label !== 'all');
  return [
    { group: 'preset', rules: explicitRules('none') },
    { group: 'preset', rules: RELP },
    { group: 'preset', rules: RELP_AH },
    { group: 'preset', rules: RELP_CP },
    { group: 'preset', rules: ATTNLRP },
    ...ladder.map(([name, rules]) => ({
      group: 'ladder' as const,
      rules: explicitRules(`ladder: ${name}`, ...rules),
    })),
    { group: 'single', rules: explicitRules('only ln', lnRule) },
    ...single.map((r) => ({ group: 'single' as const, rules: explicitRules(`only ${r.name}`, r) })),
    ...subsets.map((s) => ({
      group: 'norms' as const,
      rules: explicitRules(`relp, ln on ${s.label}`, lnRuleFor(s.norms), identityRule, halfRule),
    })),
  ];
}

/** What a rule set does to one nonlinearity of a model: the rule that treats it, or the plain gradient. */
export interface CoverageEntry {
  readonly slot: string;
  readonly kind: string;
  /** The rule's name; null when the plain gradient is used (a 0-rule, or no rule at all). */
  readonly rule: string | null;
  /** Why the plain gradient: a 0-rule on purpose, or the coverage check's reason. */
  readonly note?: string;
}

export interface RuleCoverage {
  readonly entries: readonly CoverageEntry[];
  /** Norm instances the rule set's LN-rule treats, and those it leaves with the plain gradient. */
  readonly normsTreated: readonly string[];
  readonly normsPlain: readonly string[];
}

function lrpRules(rules: RuleSet): readonly LrpRule[] {
  return (rules as Partial<LrpRuleSet>).rules ?? [];
}

/**
 * Which of a model's nonlinearities (its `nonlinearities`) a rule set treats and which it leaves to the plain
 * gradient, and which norm instances its LN-rule treats (by the architecture's norm table).
 */
export function ruleCoverage(
  rules: RuleSet,
  nonlinearities: readonly Nonlinearity[],
  architecture: string,
): RuleCoverage {
  const list = lrpRules(rules);
  const entries = nonlinearities.map((n): CoverageEntry => {
    const rule = list.find((r) => r.slot === n.slot && r.covers(n));
    if (rule && !isZeroRule(rule)) return { slot: n.slot, kind: n.kind, rule: rule.name };
    if (rule) return { slot: n.slot, kind: n.kind, rule: null, note: `0-rule '${rule.name}'` };
    const reason = rules.missingRuleFor(n);
    return { slot: n.slot, kind: n.kind, rule: null, note: reason ?? 'no rule (plain gradient)' };
  });
  const table = NORMS_BY_ARCHITECTURE[architecture];
  const all = table ? [...table.perBlock, ...table.final] : ['every norm'];
  const ln = list.find((r) => r.slot === 'normalize' && !isZeroRule(r));
  const treated =
    ln === undefined ? [] : ln.norms === undefined ? all : all.filter((n) => ln.norms!.includes(n));
  return { entries, normsTreated: treated, normsPlain: all.filter((n) => !treated.includes(n)) };
}
