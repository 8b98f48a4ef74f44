import { ErrorCodes, weightMapFromRecord } from '@relp/core';
import { describeEachBackend, installLeakGuard } from '@relp/testing';
import { expectRelpError, loadModelFixture, modelFromFixture } from '@relp/testing/models';
import { expect, it } from 'vitest';
import { llamaFamily, parseLlamaConfig } from '../src/index.js';

// Parity, sites, inputs, rules, prefix and joined runs, fast patching, leaks and dispose: conformance.test.ts.
installLeakGuard();

const fx = loadModelFixture;

describeEachBackend('llama-family checkpoints and configs', () => {
  it('missing or misshapen weights raise BAD_MODEL_FILE naming the tensor', () => {
    const f = fx('llama-gqa');
    const record: Record<string, { shape: readonly number[]; data: Float32Array }> = {};
    for (const n of f.weights.names()) record[n] = f.weights.get(n)!;
    const without = { ...record };
    delete without['model.layers.1.mlp.up_proj.weight'];
    expectRelpError(
      () => llamaFamily.fromHfConfig(f.config, weightMapFromRecord(without)),
      ErrorCodes.BadModelFile,
      /model\.layers\.1\.mlp\.up_proj\.weight/,
    );
    const noHead = { ...record };
    delete noHead['lm_head.weight'];
    expectRelpError(
      () => llamaFamily.fromHfConfig(f.config, weightMapFromRecord(noHead)),
      ErrorCodes.BadModelFile,
      /lm_head/,
    );
    const wrong = { ...record, 'model.norm.weight': { shape: [3], data: new Float32Array(3) } };
    expectRelpError(
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
    expectRelpError(() => parseLlamaConfig(drop('hidden_size')), ErrorCodes.BadModelFile, /hidden_size/);
    expectRelpError(
      () => parseLlamaConfig({ ...base, num_attention_heads: 2.5 }),
      ErrorCodes.BadModelFile,
      /num_attention_heads/,
    );
    expectRelpError(
      () => parseLlamaConfig({ ...base, num_key_value_heads: 3 }),
      ErrorCodes.BadModelFile,
      /num_key_value_heads/,
    );
    expectRelpError(() => parseLlamaConfig({ ...base, hidden_act: 'mish' }), ErrorCodes.Unsupported, /mish/);
    expectRelpError(
      () => parseLlamaConfig({ ...base, rope_parameters: { rope_type: 'yarn', rope_theta: 1e4, factor: 4 } }),
      ErrorCodes.Unsupported,
      /yarn/,
    );
    expectRelpError(() => parseLlamaConfig({ ...base, model_type: 'gpt2' }), ErrorCodes.Unsupported);
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

  it('declares its nonlinearities', () => {
    const model = modelFromFixture(llamaFamily, 'qwen2-bias');
    expect(model.nonlinearities.map((n) => `${n.slot}:${n.kind}`)).toEqual([
      'normalize:rmsnorm',
      'activation:silu',
      'gate_product:gated_mlp',
      'attention_softmax:softmax',
    ]);
    model.dispose();
  });
});
