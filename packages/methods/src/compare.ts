import {
  type Agreement,
  type AttributionResult,
  attribute,
  badInput,
  type CommonAttributeOptions,
  compareGrids,
  type LanguageModel,
  type PairBatch,
  type Progress,
} from '@relp/core';
import {
  checkSettings,
  type MethodSettings,
  methodByName,
  methodOptions,
  type NamedMethod,
} from './registry.js';

export interface CompareOptions extends Omit<CommonAttributeOptions, 'label' | 'onProgress'> {
  /** Names (or aliases) or registry entries; each runs once, in this order, activation patching first. */
  readonly methods: readonly (string | NamedMethod)[];
  /**
   * `always` (default): activation patching runs as the reference even when `methods` leaves it out;
   * `if-listed`: only when listed (without it there is no agreement to report).
   */
  readonly reference?: 'always' | 'if-listed';
  /** Knobs for the methods that take them; one that none of the methods takes is BAD_INPUT. */
  readonly settings?: MethodSettings;
  /** k of the top-k agreement (default 10). */
  readonly topK?: number;
  readonly onStart?: (method: NamedMethod) => void;
  readonly onProgress?: (method: NamedMethod, p: Progress) => void;
  readonly onResult?: (method: NamedMethod, result: AttributionResult) => void;
}

/** One method's agreement with activation patching on one site (docs/method.md §13). */
export interface MethodAgreement {
  readonly method: string;
  readonly site: string;
  readonly agreement: Agreement;
}

export interface Comparison {
  /** Activation patching's result, when it ran. */
  readonly reference: AttributionResult | undefined;
  /** The other methods' results, in the order asked for. */
  readonly results: readonly AttributionResult[];
  /** Per method and site of the reference, in that order; empty without a reference. */
  readonly agreement: readonly MethodAgreement[];
}

const REFERENCE = methodByName('activation-patching');

/**
 * The methods a comparison runs, in order: activation patching first (always, or only when listed with
 * `if-listed`), then each other method once.
 */
export function comparedMethods(
  methods: readonly (string | NamedMethod)[],
  reference: CompareOptions['reference'] = 'always',
): NamedMethod[] {
  const listed = [...new Set(methods.map((m) => (typeof m === 'string' ? methodByName(m) : m)))];
  if (listed.length === 0 && reference === 'if-listed') throw badInput('choose at least one method');
  const withReference = reference !== 'if-listed' || listed.includes(REFERENCE);
  return [...(withReference ? [REFERENCE] : []), ...listed.filter((m) => m !== REFERENCE)];
}

/**
 * Every method on the same batch with `attribute`, and each one's agreement with activation patching per site:
 * the comparison the CLI's compare and demo commands and the browser demo report.
 */
export async function compareMethods(
  model: LanguageModel,
  batch: PairBatch,
  options: CompareOptions,
): Promise<Comparison> {
  const {
    methods: asked,
    reference,
    settings = {},
    topK,
    onStart,
    onProgress,
    onResult,
    ...common
  } = options;
  const run = comparedMethods(asked, reference);
  const withReference = run[0] === REFERENCE;
  checkSettings(run, settings);
  const ran: AttributionResult[] = [];
  for (const m of run) {
    onStart?.(m);
    const r = await attribute(model, batch, {
      ...methodOptions(m, settings),
      ...common,
      ...(onProgress ? { onProgress: (p: Progress) => onProgress(m, p) } : {}),
    });
    onResult?.(m, r);
    ran.push(r);
  }
  const ref = withReference ? ran[0] : undefined;
  const results = withReference ? ran.slice(1) : ran;
  const agreement: MethodAgreement[] = [];
  if (ref) {
    for (const r of results) {
      for (const site of Object.keys(ref.scores)) {
        const est = r.scores[site];
        if (est === undefined) continue;
        agreement.push({ method: r.label, site, agreement: compareGrids(est, ref.scores[site]!, topK) });
      }
    }
  }
  return { reference: ref, results, agreement };
}
