import { checkRulesCover, isRelpError, type LanguageModel, NO_RULES, type RuleSet } from '@relp/core';
import {
  describeEachBackend,
  expectBitIdentical,
  installLeakGuard,
  maxAbsDiff,
  useBackend,
} from '@relp/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RELP, RELP_AH } from '../src/index.js';
import { FAMILIES, gemmaWithSoftcap } from './families.js';
import { logitsOf, type RunResult, runWithGrad, testBatch } from './harness.js';
import { dot64 } from './reference.js';

installLeakGuard();

const PRESETS: readonly RuleSet[] = [RELP, RELP_AH];

/** Both presets refuse the model's nonlinearities with MISSING_RULE naming `kind`. */
function expectMissingRule(model: LanguageModel, kind: RegExp): void {
  for (const rules of PRESETS) {
    let caught: unknown;
    try {
      checkRulesCover(rules, model.nonlinearities, model.architecture);
    } catch (e) {
      caught = e;
    }
    expect(isRelpError(caught, 'MISSING_RULE'), String(caught)).toBe(true);
    expect(String((caught as Error).message)).toMatch(kind);
  }
}

/** |Σ resid0 · grad − m| / |m|: how far Gradient×Input at resid_pre[0] is from the metric. */
function conservationError(r: RunResult): number {
  return Math.abs(dot64(r.resid0, r.grad) - r.metric) / Math.abs(r.metric);
}

describeEachBackend('rules on whole models', (backend) => {
  for (const family of FAMILIES) {
    describe(family.name, () => {
      let model: LanguageModel;
      let plain: RunResult;
      beforeAll(async () => {
        await useBackend(backend);
        model = family.make(true);
        plain = runWithGrad(model, testBatch(model));
      });
      afterAll(() => model?.dispose());

      it('plain run: every declared slot is used; the none preset changes nothing', () => {
        const batch = testBatch(model);
        const none = runWithGrad(model, batch, NO_RULES);
        expectBitIdentical(none.logits, plain.logits, 'logits');
        expectBitIdentical(none.grad, plain.grad, 'gradient');
        for (const n of model.nonlinearities) expect(plain.slotCalls[n.slot], n.slot).toBeGreaterThan(0);
      });

      for (const rules of PRESETS) {
        it(`${rules.name}: logits bit-identical, every slot used, gradient at resid_pre[0] changed`, () => {
          const batch = testBatch(model);
          const r = runWithGrad(model, batch, rules);
          expectBitIdentical(r.logits, plain.logits, 'logits with the rules (taped run)');
          expectBitIdentical(logitsOf(model, batch, rules), logitsOf(model, batch), 'logits, tape off');
          expect(r.slotCalls, 'the rules change no slot call').toEqual(plain.slotCalls);
          for (const n of model.nonlinearities) expect(r.slotCalls[n.slot], n.slot).toBeGreaterThan(0);
          const scale = Math.max(...Array.from(plain.grad, Math.abs));
          expect(maxAbsDiff(r.grad, plain.grad) / scale, 'relative change of the gradient').toBeGreaterThan(
            1e-3,
          );
        });

        it(`${rules.name}: the rules live in the run context only, so the model's next plain run is plain`, () => {
          const batch = testBatch(model);
          const ruled = runWithGrad(model, batch, rules);
          const after = runWithGrad(model, batch);
          expect(maxAbsDiff(ruled.grad, plain.grad), 'the rules were live in their run').toBeGreaterThan(
            1e-4,
          );
          expectBitIdentical(after.grad, plain.grad, 'gradient of the plain run after the ruled one');
          expectBitIdentical(after.logits, plain.logits, 'logits of the plain run after the ruled one');
          expect(after.slotCalls).toEqual(plain.slotCalls);
        });
      }

      it('MISSING_RULE names an activation the rules do not know', () => {
        const extended: LanguageModel = Object.create(model, {
          nonlinearities: { value: [...model.nonlinearities, { slot: 'activation', kind: 'softplus' }] },
        });
        expectMissingRule(extended, /softplus/);
        // AtP (no rules) has nothing to miss.
        expect(() => checkRulesCover(NO_RULES, extended.nonlinearities, extended.architecture)).not.toThrow();
      });
    });

    describe(`${family.name}, all biases zero`, () => {
      let model: LanguageModel;
      beforeAll(async () => {
        await useBackend(backend);
        model = family.make(false);
      });
      afterAll(() => model?.dispose());

      it('relp-ah conserves Gradient×Input from the metric to resid_pre[0]; relp and plain gradients do not', () => {
        const batch = testBatch(model);
        const ah = runWithGrad(model, batch, RELP_AH);
        const relp = runWithGrad(model, batch, RELP);
        const atp = runWithGrad(model, batch);
        const errAh = conservationError(ah);
        expect(Math.abs(ah.metric), 'a metric far enough from 0 to measure relative error').toBeGreaterThan(
          1e-2,
        );
        expect(errAh, `Σ resid0·grad = ${dot64(ah.resid0, ah.grad)}, m = ${ah.metric}`).toBeLessThan(1e-3);
        // Without the AH-rule the softmax (fed by q·kᵀ, quadratic in the residual) breaks conservation; the
        // plain gradient breaks it in the norms too.
        expect(conservationError(relp)).toBeGreaterThan(10 * errAh);
        expect(conservationError(atp)).toBeGreaterThan(10 * errAh);
      });
    });
  }
});

describe('Gemma 3 final-logit soft-capping', () => {
  it('is declared as a nonlinearity, so the presets stop with MISSING_RULE naming it', () => {
    const model = gemmaWithSoftcap();
    try {
      expect(model.nonlinearities).toContainEqual({ slot: 'activation', kind: 'final_logit_softcap' });
      expectMissingRule(model, /final_logit_softcap/);
    } finally {
      model.dispose();
    }
  });
});
