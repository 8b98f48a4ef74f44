import { ErrorCodes, isRelpError, RunContext, Site, siteKey, weightMapFromRecord } from '@relp/core';
import { describeEachBackend, expectClose, installLeakGuard, maxAbsDiff } from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { type LlamaModel, llamaFamily, parseLlamaConfig } from '../src/index.js';
import {
  buildModel,
  type Fixture,
  loadFixture,
  siteDiffs,
  siteGradients,
  tokensTensor,
} from './parity-helper.js';

installLeakGuard();

const FIXTURES = ['llama-gqa', 'llama-tied', 'qwen2-bias'] as const;
const fixtures = new Map<string, Fixture>(FIXTURES.map((n) => [n, loadFixture(n)]));
const fx = (n: string) => fixtures.get(n)!;
const ATOL = 1e-4;

function expectCode(f: () => unknown, code: string, text?: RegExp): void {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  expect(isRelpError(caught), `expected RelpError ${code}, got ${String(caught)}`).toBe(true);
  expect((caught as { code: string }).code).toBe(code);
  if (text) expect((caught as Error).message).toMatch(text);
}

describeEachBackend('llama-family parity with transformers', () => {
  for (const name of FIXTURES) {
    it(`${name}: logits and every site within ${ATOL}`, () => {
      const f = fx(name);
      const model = buildModel(llamaFamily, f);
      try {
        const { logits, sites } = siteDiffs(f, model);
        expect(logits, `${name} logits`).toBeLessThanOrEqual(ATOL);
        expect(sites.size).toBeGreaterThan(model.dims.nLayers * 15);
        for (const [key, d] of sites) expect(d, `${name} ${key}`).toBeLessThanOrEqual(ATOL);
        // The plain path (no per-head results) gives the same logits.
        const tokens = tokensTensor(f);
        const plain = model.forward({ tokens }, new RunContext());
        expectClose(plain.dataSync(), f.expected.get('logits')!.data, ATOL, `${name} plain logits`);
        tf.dispose([tokens, plain]);
      } finally {
        model.dispose();
      }
    });

    it(`${name}: site gradients of a logit difference within ${ATOL}`, () => {
      const f = fx(name);
      const model = buildModel(llamaFamily, f);
      try {
        const { metric, grads } = siteGradients(f, model, [
          Site.ResidPre,
          Site.AttnOut,
          Site.MlpOut,
          Site.Z,
          Site.MlpPost,
        ]);
        expect(Math.abs(metric - f.expected.get('metric')!.data[0]!)).toBeLessThanOrEqual(ATOL);
        for (const [key, g] of grads) {
          const exp = f.expected.get(`grad.${key}`)!;
          expect(g.shape).toEqual([...exp.shape]);
          expect(maxAbsDiff(g.dataSync(), exp.data), `${name} grad.${key}`).toBeLessThanOrEqual(ATOL);
        }
        tf.dispose([...grads.values()]);
      } finally {
        model.dispose();
      }
    });
  }

  it('readout, a start from resid_pre, slot calls and abort', () => {
    const f = fx('llama-gqa');
    const model = buildModel(llamaFamily, f);
    const tokens = tokensTensor(f);
    try {
      const ctx = new RunContext({ cache: [siteKey(Site.ResidPre, 1)] });
      const full = model.forward({ tokens }, ctx);
      const L = model.dims.nLayers;
      expect(ctx.slotCalls).toEqual({
        normalize: 2 * L + 1,
        activation: L,
        gate_product: L,
        attention_softmax: L,
      });
      const resid1 = ctx.takeCache().get(siteKey(Site.ResidPre, 1))! as tf.Tensor3D;
      const readout = Array.from({ length: f.batch }, (_, b) => (b * 3) % f.seq);
      const ro = model.forward({ tokens }, new RunContext(), { readout });
      expect(ro.shape).toEqual([f.batch, 1, model.dims.vocabSize]);
      const fullData = full.arraySync() as number[][][];
      const roData = ro.arraySync() as number[][][];
      for (let b = 0; b < f.batch; b++)
        expectClose(roData[b]![0]!, fullData[b]![readout[b]!]!, 1e-5, 'readout row');
      const fromMid = model.forward({ resid: resid1, layer: 1 }, new RunContext());
      expectClose(fromMid.dataSync(), full.dataSync(), 1e-5, 'start at layer 1');
      const ac = new AbortController();
      ac.abort();
      expectCode(() => model.forward({ tokens }, new RunContext({ signal: ac.signal })), ErrorCodes.Aborted);
      tf.dispose([full, resid1, ro, fromMid]);
    } finally {
      tokens.dispose();
      model.dispose();
    }
  });

  it('rejects bad tokens, long inputs and unknown sites', () => {
    const f = fx('llama-tied');
    const model = buildModel(llamaFamily, f);
    try {
      const V = model.dims.vocabSize;
      const bad = tf.tensor2d([[0, V]], [1, 2], 'int32');
      expectCode(() => model.forward({ tokens: bad }, new RunContext()), ErrorCodes.BadTokens, /vocabulary/);
      expectCode(() => model.embed(bad), ErrorCodes.BadTokens);
      const neg = tf.tensor2d([[-1]], [1, 1], 'int32');
      expectCode(() => model.forward({ tokens: neg }, new RunContext()), ErrorCodes.BadTokens);
      const long = tf.zeros([1, model.dims.contextLength + 1], 'int32') as tf.Tensor2D;
      expectCode(() => model.forward({ tokens: long }, new RunContext()), ErrorCodes.BadTokens, /context/);
      const ok = tf.tensor2d([[1, 2]], [1, 2], 'int32');
      expectCode(
        () => model.forward({ tokens: ok }, new RunContext({ cache: [siteKey(Site.ResidPre, 9)] })),
        ErrorCodes.UnknownSite,
      );
      tf.dispose([bad, neg, long, ok]);
    } finally {
      model.dispose();
    }
  });
});

describeEachBackend('llama-family checkpoints and configs', () => {
  it('missing or misshapen weights raise BAD_MODEL_FILE naming the tensor', () => {
    const f = fx('llama-gqa');
    const record: Record<string, { shape: readonly number[]; data: Float32Array }> = {};
    for (const n of f.weights.names()) record[n] = f.weights.get(n)!;
    const without = { ...record };
    delete without['model.layers.1.mlp.up_proj.weight'];
    expectCode(
      () => llamaFamily.fromHfConfig(f.config, weightMapFromRecord(without)),
      ErrorCodes.BadModelFile,
      /model\.layers\.1\.mlp\.up_proj\.weight/,
    );
    const noHead = { ...record };
    delete noHead['lm_head.weight'];
    expectCode(
      () => llamaFamily.fromHfConfig(f.config, weightMapFromRecord(noHead)),
      ErrorCodes.BadModelFile,
      /lm_head/,
    );
    const wrong = { ...record, 'model.norm.weight': { shape: [3], data: new Float32Array(3) } };
    expectCode(
      () => llamaFamily.fromHfConfig(f.config, weightMapFromRecord(wrong)),
      ErrorCodes.BadModelFile,
      /model\.norm\.weight/,
    );
  });

  it('config errors name the field; unsupported options raise UNSUPPORTED', () => {
    const base = fx('llama-gqa').config;
    const drop = (k: string) => {
      const c = { ...base };
      delete c[k];
      return c;
    };
    expectCode(() => parseLlamaConfig(drop('hidden_size')), ErrorCodes.BadModelFile, /hidden_size/);
    expectCode(
      () => parseLlamaConfig({ ...base, num_attention_heads: 2.5 }),
      ErrorCodes.BadModelFile,
      /num_attention_heads/,
    );
    expectCode(
      () => parseLlamaConfig({ ...base, num_key_value_heads: 3 }),
      ErrorCodes.BadModelFile,
      /num_key_value_heads/,
    );
    expectCode(() => parseLlamaConfig({ ...base, hidden_act: 'mish' }), ErrorCodes.Unsupported, /mish/);
    expectCode(
      () => parseLlamaConfig({ ...base, rope_parameters: { rope_type: 'yarn', rope_theta: 1e4, factor: 4 } }),
      ErrorCodes.Unsupported,
      /yarn/,
    );
    expectCode(() => parseLlamaConfig({ ...base, model_type: 'gpt2' }), ErrorCodes.Unsupported);
    // Legacy spelling: rope_theta + rope_scaling.
    const legacy = parseLlamaConfig({
      ...drop('rope_parameters'),
      rope_theta: 500,
      rope_scaling: { type: 'linear', factor: 2 },
    });
    expect(legacy.rope).toEqual({ theta: 500, dim: 8, scaling: { type: 'linear', factor: 2 } });
    const cfg = parseLlamaConfig(base);
    expect(cfg.nKvHeads).toBe(2);
    expect(cfg.slidingWindows).toEqual([undefined, undefined]);
    expect(parseLlamaConfig(fx('qwen2-bias').config).slidingWindows).toEqual([undefined, 4]);
    const mistral = parseLlamaConfig({ ...base, model_type: 'mistral', sliding_window: 5 });
    expect(mistral.slidingWindows).toEqual([5, 5]);
  });

  it('dispose frees every weight tensor', () => {
    const before = tf.memory().numTensors;
    const f = fx('qwen2-bias');
    const model = buildModel(llamaFamily, f) as LlamaModel;
    expect(tf.memory().numTensors).toBeGreaterThan(before);
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(model.nonlinearities.map((n) => `${n.slot}:${n.kind}`)).toEqual([
      'normalize:rmsnorm',
      'activation:silu',
      'gate_product:gated_mlp',
      'attention_softmax:softmax',
    ]);
  });
});
