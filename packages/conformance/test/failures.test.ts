import {
  type AttributeOptions,
  attribute,
  logitDiff,
  type Metric,
  makePairBatch,
  RunContext,
  Site,
} from '@relp/core';
import { presetByName } from '@relp/lrp-rules';
import { GPT2_TINY_CONFIG, gpt2Family, parseGpt2Config, randomGpt2Weights } from '@relp/models-gpt2';
import { installLeakGuard, useBackend } from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * A run that throws half-way — inside the forward pass that records gradients, or between steps of integrated
 * gradients or patching — must leave nothing behind: no live tensors, no patch or hook (the next plain forward
 * pass gives the same logits as before), no LRP rule (rules keep the forward exact, so a plain AtP run, whose
 * gradients a lingering rule would change, must give the same scores as before), and a later run of the same
 * job gives the same scores.
 */
installLeakGuard();

class MetricFailure extends Error {}

/** The logit difference, throwing on its `failAt`-th evaluation (1-based) and never afterwards. */
function failingMetric(failAt: number): Metric {
  let calls = 0;
  return {
    name: 'failing_logit_diff',
    readout: 'last',
    compute(logits, batch) {
      calls++;
      if (calls === failAt) throw new MetricFailure(`metric failure on call ${calls}`);
      return logitDiff.compute(logits, batch);
    },
  };
}

describe('runs that throw midway', () => {
  const config = parseGpt2Config(GPT2_TINY_CONFIG);
  let model: ReturnType<typeof gpt2Family.fromHfConfig>;
  const clean = [3, 9, 5, 14, 2, 30, 7, 1];
  const corrupt = [3, 9, 6, 14, 2, 30, 7, 1];
  const sites = [Site.ResidPre, Site.AttnOut, Site.MlpOut];

  beforeAll(async () => {
    await useBackend('cpu');
    model = gpt2Family.fromHfConfig(GPT2_TINY_CONFIG, randomGpt2Weights(config, 4));
  });
  afterAll(() => model.dispose());

  const cases = [
    { label: 'AtP, in the backward run', method: 'atp' as const, rules: false, failAt: 2 },
    { label: 'RelP, in the backward run', method: 'atp' as const, rules: true, failAt: 2 },
    { label: 'RelP, in the source run', method: 'atp' as const, rules: true, failAt: 1 },
    { label: 'IG, part-way through its steps', method: 'ig' as const, rules: false, failAt: 5 },
    { label: 'RelP-IG, later in its steps', method: 'ig' as const, rules: true, failAt: 6 },
    {
      label: 'activation patching, in a patched pass',
      method: 'activation-patching' as const,
      rules: false,
      failAt: 3,
    },
  ];

  for (const c of cases) {
    it(`${c.label}: the error reaches the caller; no tensor, rule or hook outlives it`, async () => {
      const batch = makePairBatch([{ clean, corrupt, answer: 10, wrong: 20 }], { dims: model.dims });
      const rules = c.rules ? { rules: presetByName('relp') } : {};
      const options: AttributeOptions =
        c.method === 'ig'
          ? { method: 'ig', sites, igSteps: 4, ...rules }
          : c.method === 'atp'
            ? { method: 'atp', sites, ...rules }
            : { method: c.method, sites };
      const plainLogits = () =>
        tf.tidy(() => model.forward({ tokens: tf.tensor2d([clean], [1, 8], 'int32') }, new RunContext()));
      const logitsBefore = plainLogits();
      const plainAtp = { method: 'atp' as const, sites };
      const atpBefore = await attribute(model, batch, plainAtp);
      const expected = await attribute(model, batch, options);
      const live = tf.memory().numTensors;

      await expect(
        attribute(model, batch, { ...options, metric: failingMetric(c.failAt) }),
      ).rejects.toBeInstanceOf(MetricFailure);
      expect(tf.memory().numTensors, 'tensors left by the failed run').toBe(live);

      const logitsAfter = plainLogits();
      expect(Array.from(await logitsAfter.data())).toEqual(Array.from(await logitsBefore.data()));
      tf.dispose([logitsBefore, logitsAfter]);

      const atpAfter = await attribute(model, batch, plainAtp);
      for (const s of sites) expect(atpAfter.scores[s]).toEqual(atpBefore.scores[s]);
      const again = await attribute(model, batch, options);
      for (const s of sites) expect(again.scores[s]).toEqual(expected.scores[s]);
    });
  }
});

/** The logit difference times NaN from its `nanAt`-th evaluation (1-based) on. */
function nanMetric(nanAt: number): Metric {
  let calls = 0;
  return {
    name: 'nan_logit_diff',
    readout: 'last',
    compute(logits, batch) {
      calls++;
      const m = logitDiff.compute(logits, batch);
      return calls >= nanAt ? tf.tidy(() => tf.mul(m, NaN) as tf.Scalar) : m;
    },
  };
}

describe('a metric that is not finite', () => {
  const config = parseGpt2Config(GPT2_TINY_CONFIG);
  let model: ReturnType<typeof gpt2Family.fromHfConfig>;
  const clean = [3, 9, 5, 14, 2, 30, 7, 1];
  const corrupt = [3, 9, 6, 14, 2, 30, 7, 1];
  const sites = [Site.ResidPre, Site.AttnOut];

  beforeAll(async () => {
    await useBackend('cpu');
    model = gpt2Family.fromHfConfig(GPT2_TINY_CONFIG, randomGpt2Weights(config, 4));
  });
  afterAll(() => model.dispose());

  const methods: AttributeOptions[] = [
    { method: 'atp', sites },
    { method: 'atp', sites, rules: presetByName('relp') },
    { method: 'ig', sites, igSteps: 3 },
    { method: 'activation-patching', sites },
  ];
  for (const options of methods) {
    // AtP and RelP evaluate the metric twice (source, base); IG and patching more often.
    for (const nanAt of options.method === 'atp' ? [1, 2] : [1, 2, 3]) {
      it(`${options.method}${'rules' in options ? '+rules' : ''}, NaN from evaluation ${nanAt}: NON_FINITE_METRIC, no tensor left`, async () => {
        const batch = makePairBatch([{ clean, corrupt, answer: 10, wrong: 20 }], { dims: model.dims });
        const live = tf.memory().numTensors;
        for (let run = 0; run < 3; run++) {
          await expect(
            attribute(model, batch, { ...options, metric: nanMetric(nanAt) }),
          ).rejects.toMatchObject({
            code: 'NON_FINITE_METRIC',
          });
        }
        expect(tf.memory().numTensors, 'tensors left by three failed runs').toBe(live);
      });
    }
  }
});
