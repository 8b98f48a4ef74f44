import { ErrorCodes, RunContext, Site, siteKey, weightMapFromRecord } from '@relp/core';
import { describeEachBackend, expectClose, installLeakGuard } from '@relp/testing';
import { expectRelpError, fixtureTokens, loadModelFixture, modelFromFixture } from '@relp/testing/models';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { gemma3Family, parseGemma3Config } from '../src/index.js';

// Parity, sites, slot calls, inputs, rules, resid starts, readouts, prefix and joined runs, fast patching, leaks
// and dispose: conformance.test.ts.
installLeakGuard();

const fx = loadModelFixture;
const ATOL = 1e-4;

describeEachBackend('gemma 3 layers', () => {
  it('local and global layers differ; final soft-capping bounds the logits', () => {
    const f = fx('gemma3-a');
    const model = modelFromFixture(gemma3Family, f);
    const tokens = fixtureTokens(f);
    try {
      // A window of 3 < 9 tokens: the local layers' patterns are zero beyond the window, the global one's not.
      const ctx = new RunContext({ cache: [siteKey(Site.Pattern, 0), siteKey(Site.Pattern, 1)] });
      const full = model.forward({ tokens }, ctx);
      const cache = ctx.takeCache();
      const p0 = cache.get(siteKey(Site.Pattern, 0))!.arraySync() as number[][][][];
      const p1 = cache.get(siteKey(Site.Pattern, 1))!.arraySync() as number[][][][];
      expect(p0[0]![0]![8]![0]).toBe(0);
      expect(p1[0]![0]![8]![0]).toBeGreaterThan(0);
      expect(Math.max(...full.dataSync().map(Math.abs))).toBeLessThan(4);
      tf.dispose([full, ...cache.values()]);
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
    expectRelpError(
      () => gemma3Family.fromHfConfig(f.config, weightMapFromRecord(without)),
      ErrorCodes.BadModelFile,
      /k_norm/,
    );
    const wrong = {
      ...record,
      'model.layers.0.post_feedforward_layernorm.weight': { shape: [2], data: new Float32Array(2) },
    };
    expectRelpError(
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
    const tokens = fixtureTokens(f);
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
    expectRelpError(
      () => parseGemma3Config(drop('intermediate_size')),
      ErrorCodes.BadModelFile,
      /intermediate_size/,
    );
    expectRelpError(
      () => parseGemma3Config({ ...base, layer_types: ['full_attention'] }),
      ErrorCodes.BadModelFile,
      /layer_types/,
    );
    expectRelpError(
      () => parseGemma3Config({ ...base, use_bidirectional_attention: true }),
      ErrorCodes.Unsupported,
    );
    expectRelpError(
      () =>
        parseGemma3Config({ ...base, rope_parameters: { full_attention: { rope_type: 'yarn', factor: 8 } } }),
      ErrorCodes.Unsupported,
      /yarn/,
    );
    expectRelpError(
      () => parseGemma3Config({ model_type: 'gemma3' }),
      ErrorCodes.BadModelFile,
      /text_config/,
    );
  });
});
