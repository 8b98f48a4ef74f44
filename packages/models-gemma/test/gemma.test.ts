import { ErrorCodes, isRelpError, RunContext, Site, siteKey, weightMapFromRecord } from '@relp/core';
import { describeEachBackend, expectClose, installLeakGuard, maxAbsDiff } from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
// The parity helpers are shared with the Llama tests (same fixture format, tools/oracles/llama_fixtures.py).
import {
  buildModel,
  type Fixture,
  loadFixture,
  siteDiffs,
  siteGradients,
  tokensTensor,
} from '../../models-llama/test/parity-helper.js';
import { gemma3Family, parseGemma3Config } from '../src/index.js';

installLeakGuard();

const FIXTURES = ['gemma3-a', 'gemma3-legacy'] as const;
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

describeEachBackend('gemma 3 parity with transformers', () => {
  for (const name of FIXTURES) {
    it(`${name}: logits and every site within ${ATOL}`, () => {
      const f = fx(name);
      const model = buildModel(gemma3Family, f);
      try {
        const { logits, sites } = siteDiffs(f, model);
        expect(logits, `${name} logits`).toBeLessThanOrEqual(ATOL);
        expect(sites.size).toBeGreaterThan(model.dims.nLayers * 15);
        for (const [key, d] of sites) expect(d, `${name} ${key}`).toBeLessThanOrEqual(ATOL);
        const tokens = tokensTensor(f);
        const plain = model.forward({ tokens }, new RunContext());
        expectClose(plain.dataSync(), f.expected.get('logits')!.data, ATOL, `${name} plain logits`);
        // embed() is resid_pre.0 (scaled by √d).
        const emb = model.embed(tokens);
        expectClose(emb.dataSync(), f.expected.get('resid_pre.0')!.data, ATOL, 'embed');
        tf.dispose([tokens, plain, emb]);
      } finally {
        model.dispose();
      }
    });

    it(`${name}: site gradients of a logit difference within ${ATOL}`, () => {
      const f = fx(name);
      const model = buildModel(gemma3Family, f);
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

  it('local and global layers differ; slot calls cover every norm; readout and resid starts agree', () => {
    const f = fx('gemma3-a');
    const model = buildModel(gemma3Family, f);
    const tokens = tokensTensor(f);
    try {
      // A window of 3 < 9 tokens: the local layers' patterns are zero beyond the window, the global one's not.
      const ctx = new RunContext({
        cache: [siteKey(Site.Pattern, 0), siteKey(Site.Pattern, 1), siteKey(Site.ResidPre, 2)],
      });
      const full = model.forward({ tokens }, ctx);
      const L = model.dims.nLayers;
      // input, q, k, post-attention, pre- and post-feedforward norms per block, plus the final norm.
      expect(ctx.slotCalls).toEqual({
        normalize: 6 * L + 1,
        activation: L,
        gate_product: L,
        attention_softmax: L,
      });
      const cache = ctx.takeCache();
      const p0 = cache.get(siteKey(Site.Pattern, 0))!.arraySync() as number[][][][];
      const p1 = cache.get(siteKey(Site.Pattern, 1))!.arraySync() as number[][][][];
      expect(p0[0]![0]![8]![0]).toBe(0);
      expect(p1[0]![0]![8]![0]).toBeGreaterThan(0);
      const resid2 = cache.get(siteKey(Site.ResidPre, 2))! as tf.Tensor3D;
      const fromMid = model.forward({ resid: resid2, layer: 2 }, new RunContext());
      expectClose(fromMid.dataSync(), full.dataSync(), 1e-5, 'start at layer 2');
      const readout = Array.from({ length: f.batch }, (_, b) => f.seq - 1 - b);
      const ro = model.forward({ tokens }, new RunContext(), { readout });
      const fullData = full.arraySync() as number[][][];
      const roData = ro.arraySync() as number[][][];
      for (let b = 0; b < f.batch; b++)
        expectClose(roData[b]![0]!, fullData[b]![readout[b]!]!, 1e-5, 'readout row');
      // Final soft-capping bounds the logits.
      expect(Math.max(...full.dataSync().map(Math.abs))).toBeLessThan(4);
      tf.dispose([full, fromMid, ro, ...cache.values()]);
      const bad = tf.tensor2d([[0, model.dims.vocabSize]], [1, 2], 'int32');
      expectCode(() => model.forward({ tokens: bad }, new RunContext()), ErrorCodes.BadTokens);
      bad.dispose();
    } finally {
      tokens.dispose();
      model.dispose();
    }
  });
});

describeEachBackend('gemma 3 checkpoints and configs', () => {
  it('missing or misshapen weights raise BAD_MODEL_FILE; multimodal prefixes load', () => {
    const f = fx('gemma3-legacy');
    const record: Record<string, { shape: readonly number[]; data: Float32Array }> = {};
    for (const n of f.weights.names()) record[n] = f.weights.get(n)!;
    const without = { ...record };
    delete without['model.layers.2.self_attn.k_norm.weight'];
    expectCode(
      () => gemma3Family.fromHfConfig(f.config, weightMapFromRecord(without)),
      ErrorCodes.BadModelFile,
      /k_norm/,
    );
    const wrong = {
      ...record,
      'model.layers.0.post_feedforward_layernorm.weight': { shape: [2], data: new Float32Array(2) },
    };
    expectCode(
      () => gemma3Family.fromHfConfig(f.config, weightMapFromRecord(wrong)),
      ErrorCodes.BadModelFile,
      /post_feedforward/,
    );
    // Gemma3ForConditionalGeneration (transformers 5 names) with a text_config.
    const mm: typeof record = {};
    for (const [k, v] of Object.entries(record)) mm[k.replace(/^model\./, 'model.language_model.')] = v;
    const model = gemma3Family.fromHfConfig(
      { model_type: 'gemma3', text_config: f.config },
      weightMapFromRecord(mm),
    );
    const tokens = tokensTensor(f);
    const logits = model.forward({ tokens }, new RunContext());
    expectClose(logits.dataSync(), f.expected.get('logits')!.data, ATOL, 'multimodal prefix');
    tf.dispose([tokens, logits]);
    model.dispose();
  });

  it('config parsing: defaults, legacy spelling, errors naming fields', () => {
    const a = parseGemma3Config(fx('gemma3-a').config);
    expect(a.slidingLayers).toEqual([true, false, true]);
    expect(a.ropeGlobal).toEqual({ theta: 10000, dim: 16, scaling: { type: 'linear', factor: 2 } });
    expect(a.ropeLocal).toEqual({ theta: 100, dim: 16, scaling: { type: 'default' } });
    expect(a.finalLogitSoftcapping).toBe(4);
    const legacy = parseGemma3Config(fx('gemma3-legacy').config);
    expect(legacy.slidingLayers).toEqual([true, true, false]);
    expect(legacy.ropeGlobal.theta).toBe(1_000_000);
    expect(legacy.ropeLocal.theta).toBe(10_000);
    expect(legacy.tieWordEmbeddings).toBe(true);
    expect(legacy.activation).toBe('gelu_tanh');
    const base = fx('gemma3-a').config;
    const drop = (k: string) => {
      const c = { ...base };
      delete c[k];
      return c;
    };
    expectCode(
      () => parseGemma3Config(drop('intermediate_size')),
      ErrorCodes.BadModelFile,
      /intermediate_size/,
    );
    expectCode(
      () => parseGemma3Config({ ...base, layer_types: ['full_attention'] }),
      ErrorCodes.BadModelFile,
      /layer_types/,
    );
    expectCode(
      () => parseGemma3Config({ ...base, use_bidirectional_attention: true }),
      ErrorCodes.Unsupported,
    );
    expectCode(
      () =>
        parseGemma3Config({ ...base, rope_parameters: { full_attention: { rope_type: 'yarn', factor: 8 } } }),
      ErrorCodes.Unsupported,
      /yarn/,
    );
    expectCode(() => parseGemma3Config({ model_type: 'gemma3' }), ErrorCodes.BadModelFile, /text_config/);
  });
});
