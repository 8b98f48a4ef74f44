import { readFileSync } from 'node:fs';
import {
  type LanguageModel,
  type ModelFamily,
  RunContext,
  type SiteKey,
  type SiteName,
  siteKey,
  siteLayers,
} from '@relp/core';
import { fixturePath, maxAbsDiff } from '@relp/testing';
import { readSafetensors, type SafetensorsFile } from '@relp/weights';
import * as tf from '@tensorflow/tfjs-core';

/**
 * Parity against the committed PyTorch fixtures (tools/oracles/{llama,gemma}_fixtures.py): the model from the
 * HF folder, the expected logits, site activations and site gradients of a logit difference.
 * Shared by the models-llama and models-gemma tests.
 */
export interface Fixture {
  readonly name: string;
  readonly config: Record<string, unknown>;
  readonly weights: SafetensorsFile;
  readonly expected: SafetensorsFile;
  readonly tokens: Int32Array;
  readonly answer: Int32Array;
  readonly wrong: Int32Array;
  readonly batch: number;
  readonly seq: number;
}

function int32(file: SafetensorsFile, name: string): { data: Int32Array; shape: readonly number[] } {
  const raw = file.raw(name);
  if (raw?.dtype !== 'I32') throw new Error(`fixture tensor ${name} missing or not I32`);
  const copy = new Uint8Array(raw.bytes); // a copy (Buffer.slice would be a view)
  return { data: new Int32Array(copy.buffer, 0, copy.byteLength / 4), shape: raw.shape };
}

export function loadFixture(name: string): Fixture {
  const config = JSON.parse(readFileSync(fixturePath('models', name, 'config.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  const weights = readSafetensors(readFileSync(fixturePath('models', name, 'model.safetensors')));
  const expected = readSafetensors(readFileSync(fixturePath('models', name, 'expected.safetensors')));
  const tokens = int32(expected, 'tokens');
  return {
    name,
    config,
    weights,
    expected,
    tokens: tokens.data,
    answer: int32(expected, 'answer').data,
    wrong: int32(expected, 'wrong').data,
    batch: tokens.shape[0]!,
    seq: tokens.shape[1]!,
  };
}

export function buildModel(family: ModelFamily, fx: Fixture): LanguageModel {
  return family.fromHfConfig(fx.config, fx.weights);
}

export function tokensTensor(fx: Fixture): tf.Tensor2D {
  return tf.tensor2d(fx.tokens, [fx.batch, fx.seq], 'int32');
}

/** Every (site, layer) key the model has. */
export function allSiteKeys(model: LanguageModel): SiteKey[] {
  const keys: SiteKey[] = [];
  for (const site of model.sites) {
    for (let l = 0; l < siteLayers(model.dims, site); l++) keys.push(siteKey(site, l));
  }
  return keys;
}

/** Max |Δ| of each cached site against the fixture; returns [key, diff] pairs (the caller asserts). */
export function siteDiffs(fx: Fixture, model: LanguageModel): { logits: number; sites: Map<string, number> } {
  const keys = allSiteKeys(model);
  const ctx = new RunContext({ cache: keys });
  const tokens = tokensTensor(fx);
  const logits = model.forward({ tokens }, ctx);
  const cache = ctx.takeCache();
  const out = new Map<string, number>();
  try {
    for (const key of keys) {
      const exp = fx.expected.get(key);
      const got = cache.get(key);
      if (!exp) throw new Error(`fixture lacks ${key}`);
      if (!got) throw new Error(`model did not record ${key}`);
      if (got.shape.join() !== exp.shape.join()) {
        throw new Error(`${key}: shape [${got.shape}] vs expected [${exp.shape}]`);
      }
      out.set(key, maxAbsDiff(got.dataSync(), exp.data));
    }
    return { logits: maxAbsDiff(logits.dataSync(), fx.expected.get('logits')!.data), sites: out };
  } finally {
    tf.dispose([tokens, logits, ...cache.values()]);
  }
}

/** The fixture's metric: Σ_b logits[b,−1,answer_b] − logits[b,−1,wrong_b], from [B,1,V] or [B,T,V] logits. */
export function logitDiff(fx: Fixture, logits: tf.Tensor3D): tf.Scalar {
  const [b, t, v] = logits.shape;
  const sign = new Float32Array(b * v);
  for (let i = 0; i < b; i++) {
    sign[i * v + fx.answer[i]!] = (sign[i * v + fx.answer[i]!] ?? 0) + 1;
    sign[i * v + fx.wrong[i]!] = (sign[i * v + fx.wrong[i]!] ?? 0) - 1;
  }
  const last = tf.reshape(tf.slice(logits, [0, t - 1, 0], [b, 1, v]), [b, v]);
  return tf.sum(tf.mul(last, tf.tensor2d(sign, [b, v])));
}

/** Gradients of the metric at the given sites (zero deltas), with readout at the last position. */
export function siteGradients(
  fx: Fixture,
  model: LanguageModel,
  sites: readonly SiteName[],
): { metric: number; grads: Map<SiteKey, tf.Tensor> } {
  const keys: SiteKey[] = [];
  for (const s of sites) for (let l = 0; l < model.dims.nLayers; l++) keys.push(siteKey(s, l));
  const tokens = tokensTensor(fx);
  const shapes = keys.map((k) => fx.expected.get(k)!.shape);
  const deltas = shapes.map((s) => tf.zeros([...s]));
  try {
    const f = (...ds: tf.Tensor[]) => {
      const ctx = new RunContext({ deltas: new Map(keys.map((k, i) => [k, ds[i]!])) });
      const readout = Array.from({ length: fx.batch }, () => fx.seq - 1);
      return logitDiff(fx, model.forward({ tokens }, ctx, { readout }));
    };
    const { value, grads } = tf.valueAndGrads(f)(deltas);
    const metric = value.dataSync()[0]!;
    value.dispose();
    return { metric, grads: new Map(keys.map((k, i) => [k, grads[i]!])) };
  } finally {
    tf.dispose([tokens, ...deltas]);
  }
}
