import { readFileSync } from 'node:fs';
import type { WeightMap } from '@relp/core';
import { fixturePath, readFixtureJson } from '@relp/testing';
import { readSafetensors, type SafetensorsFile } from '@relp/weights';
import * as tf from '@tensorflow/tfjs-core';
import { type PythiaModel, pythiaFamily } from '../src/index.js';

export const FIXTURES = [
  'pythia-tiny-par',
  'pythia-full-rotary',
  'pythia-one-token',
  'pythia-sequential',
] as const;
export type FixtureName = (typeof FIXTURES)[number];

export interface Fixture {
  readonly name: FixtureName;
  readonly config: Record<string, unknown>;
  readonly weights: SafetensorsFile;
  readonly expected: SafetensorsFile;
  readonly batch: number;
  readonly seq: number;
}

const cache = new Map<FixtureName, Fixture>();

export function loadFixture(name: FixtureName): Fixture {
  let f = cache.get(name);
  if (f === undefined) {
    const config = readFixtureJson<Record<string, unknown>>('models', name, 'config.json');
    const weights = readSafetensors(readFileSync(fixturePath('models', name, 'model.safetensors')));
    const expected = readSafetensors(readFileSync(fixturePath('models', name, 'expected.safetensors')));
    const [batch, seq] = expected.info('tokens')!.shape as [number, number];
    f = { name, config, weights, expected, batch, seq };
    cache.set(name, f);
  }
  return f;
}

export function int32(file: SafetensorsFile, name: string): Int32Array {
  const raw = file.raw(name)!;
  return new Int32Array(new Uint8Array(raw.bytes).buffer);
}

export function tokensOf(f: Fixture): tf.Tensor2D {
  return tf.tensor2d(int32(f.expected, 'tokens'), [f.batch, f.seq], 'int32');
}

export function modelOf(f: Fixture, weights: WeightMap = f.weights): PythiaModel {
  return pythiaFamily.fromHfConfig(f.config, weights) as PythiaModel;
}

/** sum_b logits[b, T-1, answer_b] − logits[b, T-1, wrong_b] (the oracle's metric), as coefficients [B,T,V]. */
export function metricCoefficients(f: Fixture, vocab: number, rows = f.seq): tf.Tensor3D {
  const answer = int32(f.expected, 'answer');
  const wrong = int32(f.expected, 'wrong');
  const c = new Float32Array(f.batch * rows * vocab);
  for (let b = 0; b < f.batch; b++) {
    const at = (b * rows + rows - 1) * vocab;
    c[at + answer[b]!] = 1;
    c[at + wrong[b]!] = -1;
  }
  return tf.tensor3d(c, [f.batch, rows, vocab]);
}
