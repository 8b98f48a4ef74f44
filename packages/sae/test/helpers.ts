import { readFileSync } from 'node:fs';
import {
  type LanguageModel,
  makePairBatch,
  type PairBatch,
  type Patch,
  type RunContext,
  type RunContextOptions,
  type SiteKey,
  type SiteName,
} from '@relp/core';
import { gemma3Family } from '@relp/models-gemma';
import { randomGpt2Model } from '@relp/models-gpt2';
import { llamaFamily } from '@relp/models-llama';
import { randomPythiaModel } from '@relp/models-pythia';
import { fixturePath, seededRandom } from '@relp/testing';
import { readSafetensors } from '@relp/weights';
import * as tf from '@tensorflow/tfjs-core';
import { type SaeActivation, SaeSplice, SparseAutoencoder } from '../src/index.js';

function fixtureModel(family: typeof llamaFamily | typeof gemma3Family, name: string): LanguageModel {
  const config = JSON.parse(readFileSync(fixturePath('models', name, 'config.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  const weights = readSafetensors(readFileSync(fixturePath('models', name, 'model.safetensors')));
  return family.fromHfConfig(config, weights);
}

/** Tiny random models of every family the project has. */
export const TINY_MODELS: readonly (readonly [string, () => LanguageModel])[] = [
  ['gpt2', () => randomGpt2Model('tiny', 4, { initializerRange: 0.3, biasStd: 0.1 })],
  ['pythia', () => randomPythiaModel('pythia-tiny', 4, { std: 0.3, biasStd: 0.1 })],
  ['llama', () => fixtureModel(llamaFamily, 'llama-gqa')],
  ['gemma', () => fixtureModel(gemma3Family, 'gemma3-a')],
];

/** A random SAE at a site (dense enough that many features fire). */
export function tinySae(
  dIn: number,
  dSae: number,
  site: SiteName,
  layer: number,
  seed: number,
  activation: SaeActivation = { kind: 'relu' },
  inputScale = 1,
): SparseAutoencoder {
  const r = seededRandom(seed);
  const n = (k: number, s: number) => Array.from({ length: k }, () => (r() * 2 - 1) * s);
  return new SparseAutoencoder(
    {
      wEnc: tf.tensor2d(n(dIn * dSae, 1 / Math.sqrt(dIn)), [dIn, dSae]),
      bEnc: tf.tensor1d(n(dSae, 0.1)),
      wDec: tf.tensor2d(n(dSae * dIn, 1 / Math.sqrt(dSae)), [dSae, dIn]),
      bDec: tf.tensor1d(n(dIn, 0.1)),
    },
    { hookPoint: { site, layer }, activation, inputScale },
  );
}

/** Three pairs of 7 tokens differing at position 3 or 4. */
export function tinyBatch(model: LanguageModel, size = 3, length = 7): PairBatch {
  const V = model.dims.vocabSize;
  const pairs = Array.from({ length: size }, (_, b) => {
    const clean = Array.from({ length: length - (b === 1 ? 1 : 0) }, (_, i) => (i * 13 + b * 5 + 1) % V);
    const corrupt = [...clean];
    corrupt[3 + (b % 2)] = (corrupt[3 + (b % 2)]! + 7) % V;
    return { clean, corrupt, answer: (b + 2) % V, wrong: (b + 9) % V };
  });
  return makePairBatch(pairs, { dims: model.dims });
}

export function flat(g: unknown): number[] {
  return Array.isArray(g) ? g.flatMap(flat) : [g as number];
}

/** What a test run does with one SAE's two sites (by the SAE's host key): patches, zero deltas, caching. */
export interface NodeOptions {
  readonly featurePatches?: readonly Patch[];
  readonly errorPatches?: readonly Patch[];
  readonly featureDelta?: tf.Tensor;
  readonly errorDelta?: tf.Tensor;
  readonly cache?: boolean;
}

/**
 * A run context with `saes` spliced in and the nodes' patches, deltas and caches set on the SAEs' sites, and `acts`
 * to take the recorded features and errors by host key (the caller disposes them).
 */
export function spliceContext(
  model: LanguageModel,
  saes: Iterable<SparseAutoencoder>,
  nodes: ReadonlyMap<SiteKey, NodeOptions> = new Map(),
  extra: RunContextOptions = {},
): { ctx: RunContext; acts: () => Map<SiteKey, { features: tf.Tensor; error: tf.Tensor }> } {
  const splice = new SaeSplice(model, [...saes]);
  const cache: SiteKey[] = [];
  const patches = new Map<SiteKey, Patch[]>();
  const deltas = new Map<SiteKey, tf.Tensor>();
  for (const [host, o] of nodes) {
    const s = splice.sites.get(host)!;
    if (o.cache) cache.push(s.featuresKey, s.errorKey);
    if (o.featurePatches) patches.set(s.featuresKey, [...o.featurePatches]);
    if (o.errorPatches) patches.set(s.errorKey, [...o.errorPatches]);
    if (o.featureDelta) deltas.set(s.featuresKey, o.featureDelta);
    if (o.errorDelta) deltas.set(s.errorKey, o.errorDelta);
  }
  const ctx = splice.context({ ...extra, cache, patches, deltas });
  const acts = () => {
    const taken = ctx.takeCache();
    const out = new Map<SiteKey, { features: tf.Tensor; error: tf.Tensor }>();
    for (const [host, s] of splice.sites) {
      const features = taken.get(s.featuresKey);
      const error = taken.get(s.errorKey);
      if (features && error) out.set(host, { features, error });
    }
    return out;
  };
  return { ctx, acts };
}
