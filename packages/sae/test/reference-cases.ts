import type { LanguageModel, PairBatch } from '@relp/core';
import { makePairBatch, Site } from '@relp/core';
import { presetByName } from '@relp/lrp-rules';
import type { FeatureMethodOptions, SparseAutoencoder } from '../src/index.js';
import { TINY_MODELS, tinyBatch, tinySae } from './helpers.js';

/**
 * Feature-attribution and feature-circuit cases whose numbers were recorded (fixtures/feature-reference.json) from
 * the SAE package's own attribution engine before SAE nodes became sites of core's engine; the reference test
 * checks that core's engine gives the same numbers, bit for bit on the cpu backend.
 */
export interface AttributionCase {
  readonly name: string;
  readonly model: 'gpt2' | 'pythia' | 'llama';
  readonly method: 'activation-patching' | 'atp' | 'ig';
  readonly rules?: 'relp';
  readonly direction: 'denoising' | 'noising';
  readonly positions: 'sum' | 'each';
  readonly normalize?: boolean;
  readonly igSteps?: number;
  readonly maxBatchRows?: number;
}

export const ATTRIBUTION_CASES: readonly AttributionCase[] = (() => {
  const out: AttributionCase[] = [];
  for (const model of ['gpt2', 'llama'] as const) {
    for (const rules of [undefined, 'relp'] as const) {
      for (const direction of ['denoising', 'noising'] as const) {
        for (const positions of ['each', 'sum'] as const) {
          out.push({
            name: `atp ${model} ${rules ?? 'plain'} ${direction} ${positions}`,
            model,
            method: 'atp',
            ...(rules ? { rules } : {}),
            direction,
            positions,
          });
        }
      }
    }
  }
  out.push({
    name: 'atp gpt2 normalized',
    model: 'gpt2',
    method: 'atp',
    direction: 'denoising',
    positions: 'each',
    normalize: true,
  });
  for (const rules of [undefined, 'relp'] as const) {
    out.push({
      name: `ig llama ${rules ?? 'plain'}`,
      model: 'llama',
      method: 'ig',
      ...(rules ? { rules } : {}),
      direction: 'denoising',
      positions: 'each',
      igSteps: 4,
      maxBatchRows: 6,
    });
  }
  out.push({
    name: 'ig gpt2 noising sum',
    model: 'gpt2',
    method: 'ig',
    direction: 'noising',
    positions: 'sum',
    igSteps: 3,
  });
  for (const model of ['gpt2', 'pythia'] as const) {
    for (const positions of ['sum', 'each'] as const) {
      for (const direction of ['denoising', 'noising'] as const) {
        out.push({
          name: `patching ${model} ${direction} ${positions}`,
          model,
          method: 'activation-patching',
          direction,
          positions,
          maxBatchRows: 12,
        });
      }
    }
  }
  out.push({
    name: 'patching gpt2 normalized default rows',
    model: 'gpt2',
    method: 'activation-patching',
    direction: 'denoising',
    positions: 'each',
    normalize: true,
  });
  return out;
})();

export function caseModel(name: AttributionCase['model']): LanguageModel {
  return TINY_MODELS.find(([n]) => n === name)![1]();
}

/** A case's method, rules and the knobs that method takes. */
export function caseMethod(c: AttributionCase): FeatureMethodOptions {
  const rules = c.rules ? { rules: presetByName(c.rules) } : {};
  const rows = c.maxBatchRows ? { maxBatchRows: c.maxBatchRows } : {};
  if (c.method === 'ig')
    return { method: 'ig', ...rules, ...(c.igSteps ? { igSteps: c.igSteps } : {}), ...rows };
  if (c.method === 'atp') return { method: 'atp', ...rules };
  return { method: 'activation-patching', ...rows };
}

/** The SAEs of every attribution case: three sites of two blocks, two activations, one input scale. */
export function caseSaes(model: LanguageModel): SparseAutoencoder[] {
  const d = model.dims.dModel;
  return [
    tinySae(d, 24, Site.ResidPre, 1, 1),
    tinySae(d, 16, Site.AttnOut, 0, 2, { kind: 'topk', k: 5 }, 1.7),
    tinySae(d, 16, Site.MlpOut, 1, 3),
  ];
}

export function caseBatch(model: LanguageModel): PairBatch {
  return tinyBatch(model);
}

/** The circuit cases: discovery and evaluation batches on GPT-2 with two SAEs. */
export function circuitSetup(model: LanguageModel): {
  saes: SparseAutoencoder[];
  discovery: PairBatch;
  test: PairBatch;
} {
  const d = model.dims.dModel;
  const V = model.dims.vocabSize;
  return {
    saes: [tinySae(d, 12, Site.ResidPre, 1, 1), tinySae(d, 10, Site.MlpOut, 0, 2, { kind: 'topk', k: 3 })],
    discovery: tinyBatch(model, 4),
    test: makePairBatch(
      [0, 1, 2].map((b) => {
        const clean = Array.from({ length: 6 + b }, (_, i) => (i * 7 + b * 11 + 3) % V);
        const corrupt = [...clean];
        corrupt[2] = (corrupt[2]! + 5) % V;
        return { clean, corrupt, answer: (b + 4) % V, wrong: (b + 12) % V };
      }),
      { dims: model.dims },
    ),
  };
}
