import { ErrorCodes, type HostTensor, RunContext, type WeightMap } from '@relp/core';
import { describeEachBackend, expectBitIdentical, expectClose, installLeakGuard } from '@relp/testing';
import {
  expectRelpError,
  loadModelFixture as loadFixture,
  type ModelFixture,
  fixtureTokens as tokensOf,
} from '@relp/testing/models';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import {
  PYTHIA_PRESETS,
  PythiaModel,
  parsePythiaConfig,
  pythiaConfigJson,
  pythiaFamily,
  randomPythiaModel,
  randomPythiaWeights,
} from '../src/index.js';

installLeakGuard();

const modelOf = (f: ModelFixture, weights: WeightMap = f.weights): PythiaModel =>
  pythiaFamily.fromHfConfig(f.config, weights) as PythiaModel;

function renamed(w: WeightMap, rename: (n: string) => string | undefined): WeightMap {
  const m = new Map<string, HostTensor>();
  for (const n of w.names()) {
    const to = rename(n);
    if (to !== undefined) m.set(to, w.get(n)!);
  }
  return { get: (n) => m.get(n), names: () => m.keys() };
}

describe('parsePythiaConfig', () => {
  const base = loadFixture('pythia-tiny-par').config;

  it('reads both rotary spellings with transformers precedence', () => {
    expect(parsePythiaConfig(base)).toMatchObject({
      rotaryPct: 0.25,
      rotaryBase: 10000,
      parallelResidual: true,
    });
    const legacy = parsePythiaConfig(loadFixture('pythia-sequential').config);
    expect(legacy).toMatchObject({ rotaryPct: 0.5, rotaryBase: 1000, parallelResidual: false });
    const both = { ...base, rotary_pct: 1, rotary_emb_base: 7 };
    expect(parsePythiaConfig(both)).toMatchObject({ rotaryPct: 0.25, rotaryBase: 10000 });
    const { rope_parameters: _, ...none } = base;
    expect(parsePythiaConfig(none)).toMatchObject({ rotaryPct: 0.25, rotaryBase: 10000 });
    expect(
      parsePythiaConfig({ ...none, rope_scaling: { type: 'default', partial_rotary_factor: 1 } }).rotaryPct,
    ).toBe(1);
    expect(parsePythiaConfig(pythiaConfigJson(PYTHIA_PRESETS['pythia-160m']))).toEqual(
      PYTHIA_PRESETS['pythia-160m'],
    );
  });

  it('names missing and invalid fields; refuses unsupported options', () => {
    const { hidden_size: _, ...noHidden } = base;
    expectRelpError(() => parsePythiaConfig(noHidden), ErrorCodes.BadModelFile, /hidden_size/);
    expectRelpError(
      () => parsePythiaConfig({ ...base, vocab_size: 'x' }),
      ErrorCodes.BadModelFile,
      /vocab_size/,
    );
    expectRelpError(
      () => parsePythiaConfig({ ...base, num_attention_heads: 5 }),
      ErrorCodes.BadModelFile,
      /heads/,
    );
    expectRelpError(
      () => parsePythiaConfig({ ...base, rope_parameters: { rope_type: 'linear', factor: 2 } }),
      ErrorCodes.Unsupported,
      /rope_type/,
    );
    expectRelpError(
      () => parsePythiaConfig({ ...base, hidden_act: 'gelu_fast' }),
      ErrorCodes.Unsupported,
      /gelu_fast/,
    );
    expectRelpError(
      () => parsePythiaConfig({ ...base, model_type: 'llama' }),
      ErrorCodes.Unsupported,
      /llama/,
    );
    expectRelpError(
      () => parsePythiaConfig({ ...base, use_parallel_residual: 'yes' }),
      ErrorCodes.BadModelFile,
      /use_parallel_residual/,
    );
    expect(parsePythiaConfig({ ...base, hidden_act: 'gelu_new' }).activation).toBe('gelu_new');
  });
});

describeEachBackend('PythiaModel', () => {
  it('declares its sites and nonlinearities (no resid_mid when parallel)', () => {
    const par = modelOf(loadFixture('pythia-tiny-par'));
    const seq = modelOf(loadFixture('pythia-sequential'));
    expect(par.sites).not.toContain('resid_mid');
    expect(seq.sites).toContain('resid_mid');
    expect(par.nonlinearities).toEqual(
      expect.arrayContaining([
        { slot: 'normalize', kind: 'layernorm' },
        { slot: 'activation', kind: 'gelu' },
        { slot: 'attention_softmax', kind: 'softmax' },
      ]),
    );
    expect(pythiaFamily.modelTypes).toEqual(['gpt_neox']);
    par.dispose();
    seq.dispose();
  });

  it('accepts weights with or without the gpt_neox. prefix, and lm_head.weight', () => {
    const f = loadFixture('pythia-tiny-par');
    const tokens = tokensOf(f);
    const a = modelOf(f);
    const b = modelOf(
      f,
      renamed(f.weights, (n) => (n === 'embed_out.weight' ? 'lm_head.weight' : n.replace(/^gpt_neox\./, ''))),
    );
    const la = a.forward({ tokens }, new RunContext());
    const lb = b.forward({ tokens }, new RunContext());
    expectBitIdentical(la.dataSync() as Float32Array, lb.dataSync() as Float32Array);
    // Without per-head results (a plain run), logits still match transformers.
    expectClose(la.dataSync(), f.expected.get('logits')!.data, 1e-4, 'plain-run logits');
    tf.dispose([tokens, la, lb]);
    a.dispose();
    b.dispose();
  });

  it('reports missing and misshapen weights', () => {
    const f = loadFixture('pythia-tiny-par');
    const noUnembed = renamed(f.weights, (n) => (n === 'embed_out.weight' ? undefined : n));
    expectRelpError(() => modelOf(f, noUnembed), ErrorCodes.BadModelFile, /embed_out\.weight/);
    const noQkv = renamed(f.weights, (n) =>
      n.includes('layers.1.attention.query_key_value.bias') ? undefined : n,
    );
    expectRelpError(
      () => modelOf(f, noQkv),
      ErrorCodes.BadModelFile,
      /layers\.1\.attention\.query_key_value\.bias/,
    );
    const wrong: WeightMap = {
      get: (n) => {
        const t = f.weights.get(n);
        if (n.endsWith('layers.0.mlp.dense_h_to_4h.weight') && t)
          return { shape: [t.shape[1]!, t.shape[0]!], data: t.data };
        return t;
      },
      names: () => f.weights.names(),
    };
    expectRelpError(() => modelOf(f, wrong), ErrorCodes.BadModelFile, /shape \[32,64\], expected \[64,32\]/);
  });

  // Bad tokens, unknown sites, readouts, start layers, abort, dispose and leaks: the conformance suite.
  it('gives the same logits and gradients with and without backward copies', () => {
    const f = loadFixture('pythia-full-rotary');
    const tokens = tokensOf(f);
    const run = (copies: boolean): [Float32Array, Float32Array] => {
      const model = new PythiaModel(parsePythiaConfig(f.config), f.weights, { transposedCopies: copies });
      const zero = tf.zeros([f.batch, f.seq, model.dims.dModel]);
      let logits: Float32Array = new Float32Array();
      const g = tf.grad((d: tf.Tensor) => {
        const out = model.forward({ tokens }, new RunContext({ deltas: new Map([['resid_pre.0', d]]) }));
        logits = out.dataSync() as Float32Array;
        return tf.sum(tf.square(out));
      })(zero);
      const gd = g.dataSync() as Float32Array;
      tf.dispose([g, zero]);
      model.dispose();
      return [logits, gd];
    };
    const [la, ga] = run(true);
    const [lb, gb] = run(false);
    expectBitIdentical(la, lb, 'logits');
    const scale = Math.max(...Array.from(gb, Math.abs));
    expectClose(ga, gb, 1e-5 * scale, 'gradients');
    tokens.dispose();
  });

  it('builds seeded random models from presets', () => {
    const a = randomPythiaModel('pythia-tiny', 7, { biasStd: 0.1, lnStd: 0.1, std: 0.2 });
    const b = pythiaFamily.fromHfConfig(
      pythiaConfigJson(PYTHIA_PRESETS['pythia-tiny']),
      randomPythiaWeights(PYTHIA_PRESETS['pythia-tiny'], 7, { biasStd: 0.1, lnStd: 0.1, std: 0.2 }),
    );
    expect(b).toBeInstanceOf(PythiaModel);
    const tokens = tf.tensor2d([[1, 2, 3, 96]], [1, 4], 'int32');
    const la = a.forward({ tokens }, new RunContext());
    const lb = b.forward({ tokens }, new RunContext());
    expectBitIdentical(la.dataSync() as Float32Array, lb.dataSync() as Float32Array);
    expect(la.shape).toEqual([1, 4, 97]);
    expect(Number.isFinite(la.dataSync()[0]!)).toBe(true);
    tf.dispose([tokens, la, lb]);
    a.dispose();
    b.dispose();
    expect(PYTHIA_PRESETS['pythia-160m']).toMatchObject({
      nLayers: 12,
      dModel: 768,
      nHeads: 12,
      vocabSize: 50304,
    });
  });
});
