import { ErrorCodes, RunContext, Site, siteKey, type WeightMap } from '@relp/core';
import {
  describeEachBackend,
  expectBitIdentical,
  expectClose,
  installLeakGuard,
  seededRandom,
  useBackend,
} from '@relp/testing';
import { expectRelpError } from '@relp/testing/models';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  GPT2_SMALL_CONFIG,
  GPT2_TINY_CONFIG,
  type Gpt2Model,
  gpt2Family,
  gpt2WeightShapes,
  parseGpt2Config,
  randomGpt2Model,
  randomGpt2Weights,
} from '../src/index.js';

installLeakGuard();

/** Larger-than-HF scales, so every nonlinearity does something. */
const SCALES = { initializerRange: 0.3, biasStd: 0.1, layerNormStd: 0.2 } as const;

function randomTokens(b: number, t: number, vocab: number, seed: number): tf.Tensor2D {
  const r = seededRandom(seed);
  return tf.tensor2d(
    Array.from({ length: b * t }, () => Math.floor(r() * vocab)),
    [b, t],
    'int32',
  );
}

describe('parseGpt2Config', () => {
  it('reads GPT-2 small and applies HF defaults', () => {
    const c = parseGpt2Config(GPT2_SMALL_CONFIG);
    expect(c).toMatchObject({
      vocabSize: 50257,
      contextLength: 1024,
      dModel: 768,
      nLayers: 12,
      nHeads: 12,
      dHead: 64,
      dMlp: 3072,
      activation: 'gelu_new',
      layerNormEps: 1e-5,
      tieWordEmbeddings: true,
    });
    const minimal = parseGpt2Config({ vocab_size: 10, n_positions: 4, n_embd: 8, n_layer: 1, n_head: 2 });
    expect(minimal).toMatchObject({ dMlp: 32, activation: 'gelu_new', scaleAttnWeights: true });
    const aliases = parseGpt2Config({
      vocab_size: 10,
      max_position_embeddings: 4,
      hidden_size: 8,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      n_inner: 20,
      activation_function: 'swish',
    });
    expect(aliases).toMatchObject({ contextLength: 4, dModel: 8, dMlp: 20, activation: 'silu' });
  });

  it('names missing or malformed fields (BAD_MODEL_FILE) and refuses unsupported options (UNSUPPORTED)', () => {
    const base = { ...GPT2_TINY_CONFIG } as Record<string, unknown>;
    for (const field of ['vocab_size', 'n_positions', 'n_embd', 'n_layer', 'n_head']) {
      const c = { ...base };
      delete c[field];
      expectRelpError(() => parseGpt2Config(c), ErrorCodes.BadModelFile, new RegExp(field));
    }
    expectRelpError(() => parseGpt2Config({ ...base, n_embd: 31.5 }), ErrorCodes.BadModelFile, /n_embd/);
    expectRelpError(() => parseGpt2Config({ ...base, n_head: 5 }), ErrorCodes.BadModelFile, /n_head/);
    expectRelpError(() => parseGpt2Config({ ...base, n_inner: -1 }), ErrorCodes.BadModelFile, /n_inner/);
    expectRelpError(
      () => parseGpt2Config({ ...base, layer_norm_epsilon: 'x' }),
      ErrorCodes.BadModelFile,
      /layer_norm_epsilon/,
    );
    expectRelpError(
      () => parseGpt2Config({ ...base, scale_attn_weights: 'yes' }),
      ErrorCodes.BadModelFile,
      /scale_attn_weights/,
    );
    expectRelpError(
      () => parseGpt2Config({ ...base, activation_function: 'tanh' }),
      ErrorCodes.Unsupported,
      /tanh/,
    );
    expectRelpError(() => parseGpt2Config({ ...base, model_type: 'llama' }), ErrorCodes.Unsupported, /llama/);
  });
});

describe('randomGpt2Weights', () => {
  it('is deterministic, complete and HF-shaped', () => {
    const c = parseGpt2Config(GPT2_TINY_CONFIG);
    const a = randomGpt2Weights(c, 7);
    const b = randomGpt2Weights(c, 7);
    const other = randomGpt2Weights(c, 8);
    const names = [...a.names()];
    expect(names).toEqual([...gpt2WeightShapes(c).keys()]);
    const w = 'transformer.h.1.attn.c_attn.weight';
    expect(a.get(w)!.shape).toEqual([32, 96]);
    expectBitIdentical(a.get(w)!.data, b.get(w)!.data);
    expect(a.get(w)!.data[0]).not.toBe(other.get(w)!.data[0]);
    const data = a.get(w)!.data;
    const sd = Math.sqrt(data.reduce((s, x) => s + x * x, 0) / data.length);
    expect(sd).toBeGreaterThan(0.015);
    expect(sd).toBeLessThan(0.025);
    expect(Array.from(a.get('transformer.ln_f.weight')!.data).every((x) => x === 1)).toBe(true);
    expect([...randomGpt2Weights(c, 7, { bareNames: true }).names()][0]).toBe('wte.weight');
  });
});

describeEachBackend('Gpt2Model', (backend) => {
  let model: Gpt2Model;
  let tokens: tf.Tensor2D;
  const B = 3;
  const T = 7;

  beforeAll(async () => {
    await useBackend(backend);
    model = randomGpt2Model('tiny', 1, SCALES);
    tokens = randomTokens(B, T, model.dims.vocabSize, 2);
  });
  afterAll(() => {
    model?.dispose();
    tokens?.dispose();
  });

  // Visiting each site with its shape, slot calls, per-head results, resid starts, readouts, bad inputs, abort
  // and leaks: the conformance suite.
  it('declares its sites and nonlinearities', () => {
    expect(model.sites).toHaveLength(16);
    expect(model.sites).not.toContain('nonexistent');
    expect(model.nonlinearities).toEqual([
      { slot: 'normalize', kind: 'layernorm' },
      { slot: 'activation', kind: 'gelu_new' },
      { slot: 'attention_softmax', kind: 'softmax' },
    ]);
  });

  it('site gradients match finite differences', () => {
    // d m / d (resid_pre.1, mlp_post.0, z.1) at a few coordinates, m = logit difference at the last position.
    const keys = [siteKey(Site.ResidPre, 1), siteKey(Site.MlpPost, 0), siteKey(Site.Z, 1)];
    const shapes = [
      [B, T, model.dims.dModel],
      [B, T, model.dims.dMlp],
      [B, T, model.dims.nHeads, model.dims.dHead],
    ];
    const metric = (ds: tf.Tensor[]) => {
      const ctx = new RunContext({ deltas: new Map(keys.map((k, i) => [k, ds[i]!])) });
      const logits = model.forward({ tokens }, ctx, { readout: [T - 1, T - 1, T - 1] });
      return tf.sub(
        tf.sum(tf.slice(logits, [0, 0, 5], [B, 1, 1])),
        tf.sum(tf.slice(logits, [0, 0, 9], [B, 1, 1])),
      ) as tf.Scalar;
    };
    const zeros = shapes.map((s) => tf.zeros(s));
    const grads = tf.grads((...ds: tf.Tensor[]) => metric(ds))(zeros);
    const eps = 1e-2;
    const r = seededRandom(3);
    for (let i = 0; i < keys.length; i++) {
      const g = grads[i]!.dataSync();
      const n = g.length;
      for (let trial = 0; trial < 4; trial++) {
        const j = Math.floor(r() * n);
        const bump = (sign: number) =>
          tf.tidy(() => {
            const onehot = tf.reshape(
              tf.cast(tf.oneHot(tf.tensor1d([j], 'int32'), n), 'float32'),
              shapes[i]!,
            );
            const ds = zeros.map((z, k) => (k === i ? tf.mul(onehot, sign * eps) : z));
            return metric(ds).dataSync()[0]!;
          });
        const fd = (bump(1) - bump(-1)) / (2 * eps);
        expect(Math.abs(fd - g[j]!), `${keys[i]}[${j}]: fd ${fd} vs grad ${g[j]}`).toBeLessThanOrEqual(
          2e-3 * Math.max(1, Math.abs(fd)),
        );
      }
    }
    tf.dispose([...zeros, ...grads]);
  });

  it('holds transposed weight copies by default only on wasm', () => {
    const tensorsOf = (options: { transposedCopies?: boolean }) => {
      const before = tf.memory().numTensors;
      const m = randomGpt2Model('tiny', 1, { ...SCALES, ...options });
      const n = tf.memory().numTensors - before;
      m.dispose();
      return n;
    };
    const without = tensorsOf({ transposedCopies: false });
    const withCopies = tensorsOf({ transposedCopies: true });
    expect(withCopies - without).toBe(4 * model.dims.nLayers);
    expect(tensorsOf({})).toBe(backend === 'wasm' ? withCopies : without);
  });

  it('transposed weight copies change only the speed of the backward pass', () => {
    const plain = randomGpt2Model('tiny', 1, { ...SCALES, transposedCopies: false });
    const copied = randomGpt2Model('tiny', 1, { ...SCALES, transposedCopies: true });
    const run = (m: Gpt2Model) => {
      const d = tf.zeros([B, T, model.dims.dModel]);
      const { value, grad } = tf.valueAndGrad((x: tf.Tensor) =>
        tf.sum(
          m.forward({ tokens }, new RunContext({ deltas: new Map([[siteKey(Site.ResidPre, 0), x]]) }), {
            readout: [6, 5, 4],
          }),
        ),
      )(d);
      const out = { value: value.dataSync() as Float32Array, grad: grad.dataSync() as Float32Array };
      tf.dispose([d, value, grad]);
      return out;
    };
    const a = run(copied);
    const b = run(plain);
    plain.dispose();
    copied.dispose();
    expectBitIdentical(a.value, b.value, 'forward');
    const largest = b.grad.reduce((m, g) => Math.max(m, Math.abs(g)), 0);
    expectClose(a.grad, b.grad, 1e-5 * largest, 'gradient (other summation order)');
  });
});

describeEachBackend('gpt2Family.fromHfConfig', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });

  const config = { ...GPT2_TINY_CONFIG, n_layer: 1 };
  const parsed = parseGpt2Config(config);

  function without(w: WeightMap, drop: string): WeightMap {
    return {
      get: (n) => (n === drop ? undefined : w.get(n)),
      names: () => [...w.names()].filter((n) => n !== drop),
    };
  }

  it('reads both weight name styles and untied unembeddings, and dispose frees the weights', () => {
    const before = tf.memory().numTensors;
    const tokens = randomTokens(2, 5, parsed.vocabSize, 4);
    const a = gpt2Family.fromHfConfig(config, randomGpt2Weights(parsed, 3, SCALES));
    const b = gpt2Family.fromHfConfig(config, randomGpt2Weights(parsed, 3, { ...SCALES, bareNames: true }));
    const la = a.forward({ tokens }, new RunContext());
    const lb = b.forward({ tokens }, new RunContext());
    expectBitIdentical(
      la.dataSync() as Float32Array,
      lb.dataSync() as Float32Array,
      'prefixed vs bare names',
    );
    const untiedConfig = { ...config, tie_word_embeddings: false };
    const untiedWeights = randomGpt2Weights(parseGpt2Config(untiedConfig), 3, SCALES);
    expect(untiedWeights.get('lm_head.weight')).toBeDefined();
    const u = gpt2Family.fromHfConfig(untiedConfig, untiedWeights);
    const lu = u.forward({ tokens }, new RunContext());
    expect(lu.shape).toEqual(la.shape);
    expectRelpError(
      () => gpt2Family.fromHfConfig(untiedConfig, without(untiedWeights, 'lm_head.weight')),
      ErrorCodes.BadModelFile,
      /lm_head\.weight/,
    );
    tf.dispose([la, lb, lu, tokens]);
    a.dispose();
    b.dispose();
    u.dispose();
    u.dispose(); // idempotent
    expect(tf.memory().numTensors).toBe(before);
    const one = tf.zeros([1, 1], 'int32') as tf.Tensor2D;
    expectRelpError(() => u.embed(one), ErrorCodes.BadInput, /disposed/);
    one.dispose();
  });

  it('names a missing weight and reports expected vs actual shapes', () => {
    const w = randomGpt2Weights(parsed, 5);
    expectRelpError(
      () => gpt2Family.fromHfConfig(config, without(w, 'transformer.h.0.mlp.c_fc.bias')),
      ErrorCodes.BadModelFile,
      /transformer\.h\.0\.mlp\.c_fc\.bias/,
    );
    const wrong: WeightMap = {
      get: (n) =>
        n === 'transformer.h.0.attn.c_attn.weight'
          ? { shape: [96, 32], data: new Float32Array(96 * 32) }
          : w.get(n),
      names: () => w.names(),
    };
    expectRelpError(
      () => gpt2Family.fromHfConfig(config, wrong),
      ErrorCodes.BadModelFile,
      /\[96, ?32\].*\[32, ?96\]/,
    );
  });
});
