import { isRelpError, type LanguageModel, RunContext, Site, siteKey } from '@relp/core';
import {
  describeEachBackend,
  expectBitIdentical,
  installLeakGuard,
  maxAbsDiff,
  useBackend,
} from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { contextWithRules, openRuleScope, RELP, RELP_AH, withRules } from '../src/index.js';
import { type RunResult, runWithGrad, testBatch, tokensOf } from './harness.js';
import { TOY_FAMILIES, ToyModel } from './toy-model.js';

installLeakGuard();

describeEachBackend('rule scopes', (backend) => {
  let model: LanguageModel;
  let plain: RunResult;
  beforeAll(async () => {
    await useBackend(backend);
    model = new ToyModel(TOY_FAMILIES[2]!, 5); // the Llama-like block: every slot kind
    plain = runWithGrad(model, testBatch(model));
  });
  afterAll(() => model?.dispose());

  it('after a scope that throws, the model gradients are the plain ones again', () => {
    const batch = testBatch(model);
    let seen: RunResult | undefined;
    expect(() =>
      withRules(model, RELP, (view) => {
        seen = runWithGrad(view, batch);
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(maxAbsDiff(seen!.grad, plain.grad), 'the rules were live inside the scope').toBeGreaterThan(1e-4);
    expectBitIdentical(runWithGrad(model, batch).grad, plain.grad, 'gradient after the scope');
  });

  it('an async scope ends when its promise settles, also on rejection', async () => {
    const batch = testBatch(model);
    let kept: LanguageModel | undefined;
    const value = await withRules(model, RELP_AH, async (view) => {
      kept = view;
      await Promise.resolve();
      return runWithGrad(view, batch).metric;
    });
    expect(value).toBeCloseTo(plain.metric, 5);
    expect(() => runWithGrad(kept!, batch)).toThrow(/scope 'relp-ah' has ended/);
    await expect(
      withRules(model, RELP, async () => {
        await Promise.resolve();
        throw new Error('late boom');
      }),
    ).rejects.toThrow('late boom');
    expectBitIdentical(runWithGrad(model, batch).grad, plain.grad, 'gradient after the async scopes');
  });

  it('a view refuses to run once its scope has ended', () => {
    const scope = openRuleScope(model, RELP);
    expect(scope.closed).toBe(false);
    expect(scope.model.architecture).toBe(model.architecture);
    expect(scope.model.nonlinearities).toBe(model.nonlinearities);
    scope.close();
    expect(scope.closed).toBe(true);
    const e = (() => {
      try {
        runWithGrad(scope.model, testBatch(model));
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    expect(isRelpError(e, 'BAD_INPUT'), String(e)).toBe(true);
  });

  it('the view shares the caller context: sites, deltas, caches and slot counts land in it', () => {
    const batch = testBatch(model);
    const tokens = tokensOf(batch);
    const key = siteKey(Site.MlpPost, 1);
    const ctx = new RunContext({ cache: [key] });
    const logits = withRules(model, RELP, (view) =>
      view.forward({ tokens }, ctx, { readout: batch.lastPositions }),
    );
    const cache = ctx.takeCache();
    expect(cache.get(key)?.shape).toEqual([2, 6, model.dims.dMlp]);
    expect(ctx.slotCalls).toEqual(plain.slotCalls);
    expect(ctx.rules.name).toBe('none'); // the caller's context itself is not changed
    tf.dispose([tokens, logits, ...cache.values()]);
  });

  it('a context carrying another rule set is refused; the same rule set passes through', () => {
    const ctx = new RunContext({ rules: RELP_AH });
    expect(contextWithRules(ctx, RELP_AH)).toBe(ctx);
    const e = (() => {
      try {
        contextWithRules(ctx, RELP);
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    expect(isRelpError(e, 'BAD_INPUT')).toBe(true);
    const scoped = contextWithRules(new RunContext(), RELP);
    expect(scoped.rules).toBe(RELP);
  });

  it('disposing the view leaves the model usable', () => {
    withRules(model, RELP, (view) => view.dispose());
    expectBitIdentical(runWithGrad(model, testBatch(model)).grad, plain.grad);
  });
});
