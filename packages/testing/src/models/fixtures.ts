// The reference fixtures of the model families: fixtures/models/<name>/{config.json, model.safetensors,
// expected.safetensors}, written by tools/oracles/{gpt2,pythia,llama,gemma}_fixtures.py from the HF PyTorch models.
import { readFileSync } from 'node:fs';
import type { LanguageModel, ModelFamily } from '@relp/core';
import { readSafetensors, type SafetensorsFile } from '@relp/weights';
import * as tf from '@tensorflow/tfjs-core';
import { fixturePath, readFixtureJson } from '../index.js';

/**
 * One fixture: an HF config with random weights, and what the PyTorch model computes for its tokens (logits,
 * every site `site.layer`, the metric and its gradients `grad.site.layer` with respect to zero site deltas).
 */
export interface ModelFixture {
  readonly name: string;
  readonly config: Readonly<Record<string, unknown>>;
  readonly weights: SafetensorsFile;
  readonly expected: SafetensorsFile;
  readonly tokens: Int32Array;
  readonly batch: number;
  readonly seq: number;
  /** The metric's tokens: m = w · Σ_b logits[b, T−1, answer_b] − logits[b, T−1, wrong_b]. */
  readonly answer: Int32Array;
  readonly wrong: Int32Array;
  /** w: 1/B where the oracle takes the mean over the batch (the GPT-2 fixtures), 1 where it takes the sum. */
  readonly metricWeight: number;
}

/** An int32 tensor of a fixture file as a copy (a Buffer slice would be a view of the whole file). */
export function fixtureInt32(file: SafetensorsFile, name: string): Int32Array {
  const raw = file.raw(name);
  if (raw?.dtype !== 'I32') throw new Error(`fixture tensor ${name} missing or not I32`);
  const copy = new Uint8Array(raw.bytes);
  return new Int32Array(copy.buffer, 0, copy.byteLength / 4);
}

const cache = new Map<string, ModelFixture>();

/** Reads fixtures/models/<name> (once per test file). */
export function loadModelFixture(name: string): ModelFixture {
  let f = cache.get(name);
  if (f === undefined) {
    const file = (what: string) => {
      const path = fixturePath('models', name, what);
      return readSafetensors(new Uint8Array(readFileSync(path)), { source: path });
    };
    const expected = file('expected.safetensors');
    const shape = expected.info('tokens')?.shape;
    if (shape?.length !== 2) throw new Error(`fixture ${name} lacks tokens [B, T]`);
    const [batch, seq] = shape as [number, number];
    // gpt2_fixtures.py names the metric's tokens metric_answer/metric_wrong and averages over the batch; the
    // other oracles name them answer/wrong and sum (each file's own description says so).
    const mean = expected.has('metric_answer');
    f = {
      name,
      config: readFixtureJson<Record<string, unknown>>('models', name, 'config.json'),
      weights: file('model.safetensors'),
      expected,
      tokens: fixtureInt32(expected, 'tokens'),
      batch,
      seq,
      answer: fixtureInt32(expected, mean ? 'metric_answer' : 'answer'),
      wrong: fixtureInt32(expected, mean ? 'metric_wrong' : 'wrong'),
      metricWeight: mean ? 1 / batch : 1,
    };
    cache.set(name, f);
  }
  return f;
}

/** The fixture's model; `config` overrides config.json fields. */
export function modelFromFixture(
  family: ModelFamily,
  fx: ModelFixture | string,
  config: Readonly<Record<string, unknown>> = {},
): LanguageModel {
  const f = typeof fx === 'string' ? loadModelFixture(fx) : fx;
  return family.fromHfConfig({ ...f.config, ...config }, f.weights);
}

export function fixtureTokens(fx: ModelFixture): tf.Tensor2D {
  return tf.tensor2d(fx.tokens, [fx.batch, fx.seq], 'int32');
}

/** The expected float32 tensor `key` of the fixture (throws when absent). */
export function expectedTensor(
  fx: ModelFixture,
  key: string,
): { shape: readonly number[]; data: Float32Array } {
  const t = fx.expected.get(key);
  if (!t) throw new Error(`fixture ${fx.name} lacks ${key}`);
  return t;
}

/**
 * The metric as coefficients on logits [B, rows, V]: m = Σ logits · coefficients, read at the last of `rows`
 * positions (rows = 1 for logits read out at T−1, rows = T for the full logits).
 */
export function metricCoefficients(fx: ModelFixture, vocab: number, rows: number): tf.Tensor3D {
  const c = new Float32Array(fx.batch * rows * vocab);
  for (let b = 0; b < fx.batch; b++) {
    const at = (b * rows + rows - 1) * vocab;
    c[at + fx.answer[b]!]! += fx.metricWeight;
    c[at + fx.wrong[b]!]! -= fx.metricWeight;
  }
  return tf.tensor3d(c, [fx.batch, rows, vocab]);
}
