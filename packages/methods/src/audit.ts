import {
  type Agreement,
  type AttributionResult,
  attribute,
  badInput,
  batchTokens,
  type CommonAttributeOptions,
  checkRulesCover,
  compareGrids,
  ErrorCodes,
  type Granularity,
  isRelpError,
  type LanguageModel,
  makePairBatch,
  type PairBatch,
  type Progress,
  type RuleSet,
  RunContext,
  Site,
  siteKey,
} from '@relp/core';
import {
  type AuditGroup,
  type AuditRuleSet,
  auditRuleSets,
  isZeroRule,
  type LrpRuleSet,
  normsTreated,
  RELP,
  type RuleCoverage,
  ruleCoverage,
} from '@relp/lrp-rules';
import * as tf from '@tensorflow/tfjs-core';

/** The two halves of a batch a rule audit compares on: rules are chosen on one and checked on the other. */
export interface SplitBatches {
  readonly calibration: PairBatch;
  readonly heldOut: PairBatch;
  /** Indices into the original batch's pairs. */
  readonly calibrationPairs: readonly number[];
  readonly heldOutPairs: readonly number[];
}

/**
 * Splits a batch deterministically: pair i goes to calibration when ⌊(i+1)·f⌋ > ⌊i·f⌋, so ⌊N·f⌋ pairs, spread
 * evenly over the data (a file ordered by template still lands on both sides), the rest held out. BAD_INPUT when
 * f is not in (0, 1) or one side would be empty.
 */
export function splitPairs(batch: PairBatch, fraction = 0.5, dims = batchDims(batch)): SplitBatches {
  if (!(fraction > 0 && fraction < 1)) {
    throw badInput(`the calibration fraction must be between 0 and 1 (got ${fraction})`, { fraction });
  }
  const calibrationPairs: number[] = [];
  const heldOutPairs: number[] = [];
  for (let i = 0; i < batch.size; i++) {
    (Math.floor((i + 1) * fraction) > Math.floor(i * fraction) ? calibrationPairs : heldOutPairs).push(i);
  }
  if (calibrationPairs.length === 0 || heldOutPairs.length === 0) {
    throw badInput(
      `${batch.size} pairs split at ${fraction} leave the ${calibrationPairs.length === 0 ? 'calibration' : 'held-out'} split empty; give more pairs or another fraction`,
      { pairs: batch.size, fraction },
    );
  }
  const sub = (idx: number[]) =>
    makePairBatch(
      idx.map((i) => batch.pairs[i]!),
      { dims, padId: batch.padId },
    );
  return { calibration: sub(calibrationPairs), heldOut: sub(heldOutPairs), calibrationPairs, heldOutPairs };
}

/** Dims that accept every pair of an already validated batch (its own tokens and length). */
function batchDims(batch: PairBatch): { vocabSize: number; contextLength: number } {
  let maxId = batch.padId;
  for (const p of batch.pairs)
    for (const t of [...p.clean, ...p.corrupt, p.answer, p.wrong]) maxId = Math.max(maxId, t);
  return { vocabSize: maxId + 1, contextLength: batch.seqLen };
}

export type SplitName = 'calibration' | 'heldOut';

/** One rule set's agreement with activation patching on one site of one split. */
export interface AuditAgreement {
  readonly split: SplitName;
  readonly site: string;
  readonly granularity: Granularity | undefined;
  readonly agreement: Agreement;
}

/**
 * How far a rule set is from conserving relevance on a model (docs/method.md §11.2): per clean prompt b,
 * S_b = Σ (resid_pre.0 · ∂̃m_b/∂resid_pre.0) against the logit difference m_b itself; relativeError =
 * Σ_b |S_b − m_b| / Σ_b |m_b|. Exactly conserving rules give 0 on a bias-free model.
 */
export interface Conservation {
  readonly relativeError: number;
  readonly inputRelevance: readonly number[];
  readonly metric: readonly number[];
  /** Whether it ran on a copy of the model with every bias zeroed (`biasFree`), as conservation assumes. */
  readonly biasesZeroed: boolean;
}

export interface RuleAuditRow {
  readonly name: string;
  readonly group: AuditGroup;
  /** The rules it holds, 0-rules included ('plain-softmax', …). */
  readonly rules: readonly string[];
  /** The earlier row with the same effective rules on this model, whose runs this row reuses. */
  readonly sameAs?: string;
  /** Why the rule set did not run on this model (it lacks a rule for a nonlinearity the model has). */
  readonly skipped?: string;
  readonly agreement: readonly AuditAgreement[];
  readonly conservation: Conservation;
  readonly coverage: RuleCoverage;
}

export interface RuleAudit {
  readonly architecture: string;
  readonly fraction: number;
  readonly calibrationPairs: readonly number[];
  readonly heldOutPairs: readonly number[];
  /** Activation patching on each split (run once each, shared by every row). */
  readonly reference: Readonly<Record<SplitName, AttributionResult>>;
  readonly rows: readonly RuleAuditRow[];
}

export interface AuditOptions extends Omit<CommonAttributeOptions, 'label' | 'onProgress'> {
  /** Fraction of the pairs in the calibration split (default 0.5); the rest is held out. */
  readonly split?: number;
  /** The rule sets to audit (default `auditRuleSets(model.architecture)`). */
  readonly ruleSets?: readonly AuditRuleSet[];
  /** k of the top-k agreement (default 10, as compareMethods). */
  readonly topK?: number;
  /** Activation patching's rows per forward pass. */
  readonly maxBatchRows?: number;
  /** The same model with every bias zeroed, for the conservation check; without it the model itself is used. */
  readonly biasFree?: LanguageModel;
  readonly onProgress?: (what: string, p: Progress) => void;
}

/**
 * What a rule set changes on this model: its rules that are not 0-rules and whose slot the model has, a norm
 * subset as the norms of this architecture it treats. Two rule sets with the same key run the same backward pass.
 */
function effectiveKey(rules: RuleSet, model: LanguageModel): string {
  const slots = new Set<string>(model.nonlinearities.map((n) => n.slot));
  // The attention's two products go through their slots wherever there is attention (core's shared attention).
  if (slots.has('attention_softmax')) for (const s of ['attention_scores', 'attention_values']) slots.add(s);
  const list = (rules as Partial<LrpRuleSet>).rules;
  if (list === undefined) return `opaque:${rules.name}`;
  return list
    .filter((r) => !isZeroRule(r) && slots.has(r.slot))
    .map((r) =>
      r.norms && !treatsEveryNorm(rules, model.architecture)
        ? `ln[${normsTreated(model.architecture, rules).join(',')}]`
        : r.norms
          ? 'ln'
          : r.name,
    )
    .sort()
    .join('+');
}

const NOT_MEASURED: Conservation = {
  relativeError: Number.NaN,
  inputRelevance: [],
  metric: [],
  biasesZeroed: false,
};

/** The coverage check's message when a rule set cannot run on this model (MISSING_RULE), else undefined. */
function missingRule(rules: RuleSet, model: LanguageModel): string | undefined {
  try {
    checkRulesCover(rules, model.nonlinearities, model.architecture);
    return undefined;
  } catch (e) {
    if (isRelpError(e) && e.code === ErrorCodes.MissingRule) return e.message;
    throw e;
  }
}

/** Whether a norm-subset LN-rule treats every norm this architecture has (it is then the LN-rule itself). */
function treatsEveryNorm(rules: RuleSet, architecture: string): boolean {
  const all = normsTreated(architecture, RELP);
  return !all.includes('every norm') && normsTreated(architecture, rules).length === all.length;
}

/**
 * The rule audit (docs/method.md §11.2): on a calibration and a held-out split of the pairs, every rule set's
 * RelP scores against activation patching per site (compareGrids, as compareMethods), its conservation on the
 * clean prompts, and which of the model's nonlinearities it treats. Activation patching runs once per split; rule
 * sets with the same effective rules on this model share their runs.
 */
export async function auditRules(
  model: LanguageModel,
  batch: PairBatch,
  options: AuditOptions,
): Promise<RuleAudit> {
  const {
    split: fraction = 0.5,
    ruleSets = auditRuleSets(model.architecture),
    topK,
    maxBatchRows,
    biasFree,
    onProgress,
    ...common
  } = options;
  if (ruleSets.length === 0) throw badInput('no rule sets to audit');
  const halves = splitPairs(batch, fraction, model.dims);
  const splits: [SplitName, PairBatch][] = [
    ['calibration', halves.calibration],
    ['heldOut', halves.heldOut],
  ];
  const progress = (what: string) => (onProgress ? { onProgress: (p: Progress) => onProgress(what, p) } : {});
  const reference = {} as Record<SplitName, AttributionResult>;
  for (const [name, b] of splits) {
    reference[name] = await attribute(model, b, {
      ...common,
      method: 'activation-patching',
      label: 'activation-patching',
      ...(maxBatchRows === undefined ? {} : { maxBatchRows }),
      ...progress(`activation patching (${name})`),
    });
  }
  const byKey = new Map<string, RuleAuditRow>();
  const rows: RuleAuditRow[] = [];
  for (const { group, rules } of ruleSets) {
    const key = effectiveKey(rules, model);
    const same = byKey.get(key);
    const base = {
      name: rules.name,
      group,
      rules: rules.rules.map((r) => r.name),
      coverage: ruleCoverage(rules, model.nonlinearities, model.architecture),
    };
    if (same) {
      rows.push({ ...base, sameAs: same.name, agreement: same.agreement, conservation: same.conservation });
      continue;
    }
    const missing = missingRule(rules, model);
    if (missing !== undefined) {
      rows.push({ ...base, skipped: missing, agreement: [], conservation: NOT_MEASURED });
      continue;
    }
    const agreement: AuditAgreement[] = [];
    for (const [name, b] of splits) {
      const ref = reference[name];
      const r = await attribute(model, b, {
        ...common,
        method: 'atp',
        rules,
        label: rules.name,
        ...progress(`${rules.name} (${name})`),
      });
      for (const site of Object.keys(ref.scores)) {
        const est = r.scores[site];
        if (est === undefined) continue;
        agreement.push({
          split: name,
          site,
          granularity: ref.granularity[site],
          agreement: compareGrids(est, ref.scores[site]!, topK),
        });
      }
    }
    const conservation = await measureConservation(biasFree ?? model, batch, rules, biasFree !== undefined);
    const row: RuleAuditRow = { ...base, agreement, conservation };
    byKey.set(key, row);
    rows.push(row);
  }
  return {
    architecture: model.architecture,
    fraction,
    calibrationPairs: halves.calibrationPairs,
    heldOutPairs: halves.heldOutPairs,
    reference,
    rows,
  };
}

/**
 * Conservation of a rule set on the clean prompts (see `Conservation`): one forward and one backward pass with a
 * zero delta at resid_pre.0, the metric Σ_b m_b (so each pair's gradient is its own, the rows being independent).
 */
export async function measureConservation(
  model: LanguageModel,
  batch: PairBatch,
  rules: RuleSet,
  biasesZeroed: boolean,
): Promise<Conservation> {
  const key = siteKey(Site.ResidPre, 0);
  const tokens = batchTokens(batch, 'clean');
  const delta = tf.zeros([batch.size, batch.seqLen, model.dims.dModel]);
  // A float32 ±1 matrix picks answer − wrong per row (an exact product, as core's logitDiff).
  const v = model.dims.vocabSize;
  const signs = new Float32Array(batch.size * v);
  batch.pairs.forEach((p, b) => {
    signs[b * v + p.answer]! += 1;
    signs[b * v + p.wrong]! -= 1;
  });
  const sign = tf.tensor2d(signs, [batch.size, v]);
  let ctx: RunContext | undefined;
  let perPair: tf.Tensor | undefined;
  let resid: tf.Tensor | undefined;
  try {
    const { sums, metric } = tf.tidy(() => {
      const { grad } = tf.valueAndGrad((d: tf.Tensor) => {
        ctx = new RunContext({ rules, deltas: new Map([[key, d]]), cache: [key] });
        const logits = model.forward({ tokens }, ctx, { readout: [...batch.lastPositions] });
        const m = tf.sum(tf.mul(tf.reshape(logits, [batch.size, v]), sign), 1);
        perPair = tf.keep(tf.clone(m));
        return tf.sum(m) as tf.Scalar;
      })(delta);
      resid = ctx!.takeCache().get(key);
      return { sums: tf.sum(tf.mul(resid!, grad), [1, 2]), metric: perPair! };
    });
    const s = Array.from(await sums.data());
    const m = Array.from(await metric.data());
    tf.dispose([sums, metric]);
    let num = 0;
    let den = 0;
    s.forEach((x, b) => {
      num += Math.abs(x - m[b]!);
      den += Math.abs(m[b]!);
    });
    return {
      relativeError: den === 0 ? Number.NaN : num / den,
      inputRelevance: s,
      metric: m,
      biasesZeroed,
    };
  } finally {
    ctx?.dispose();
    tf.dispose([tokens, delta, sign, ...(perPair ? [perPair] : []), ...(resid ? [resid] : [])]);
  }
}
