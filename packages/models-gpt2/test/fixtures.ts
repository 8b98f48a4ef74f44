// Test helpers: the GPT-2 parity fixtures written by tools/oracles/gpt2_fixtures.py.
import { readFileSync } from 'node:fs';
import { fixturePath, readFixtureJson } from '@relp/testing';
import { readSafetensors, type SafetensorsFile } from '@relp/weights';

/** Fixture folders under fixtures/models/ (see tools/oracles/gpt2_fixtures.py). */
export const GPT2_FIXTURES = ['gpt2-a', 'gpt2-b', 'gpt2-c', 'gpt2-d'] as const;

export interface Gpt2Fixture {
  readonly name: string;
  readonly config: Record<string, unknown>;
  readonly weights: SafetensorsFile;
  readonly expected: SafetensorsFile;
}

export function loadFixture(name: string): Gpt2Fixture {
  const file = (f: string) => {
    const path = fixturePath('models', name, f);
    return readSafetensors(new Uint8Array(readFileSync(path)), { source: path });
  };
  return {
    name,
    config: readFixtureJson<Record<string, unknown>>('models', name, 'config.json'),
    weights: file('model.safetensors'),
    expected: file('expected.safetensors'),
  };
}

/** A float32 tensor of the expected activations. */
export function expectedF32(fx: Gpt2Fixture, key: string): { shape: readonly number[]; data: Float32Array } {
  const t = fx.expected.get(key);
  if (!t) throw new Error(`fixture ${fx.name} lacks ${key}`);
  return t;
}

/** An int32 tensor of the fixture (tokens, metric ids). */
export function expectedI32(fx: Gpt2Fixture, key: string): { shape: readonly number[]; data: Int32Array } {
  const raw = fx.expected.raw(key);
  if (raw?.dtype !== 'I32') throw new Error(`fixture ${fx.name} lacks int32 ${key}`);
  const data = new Int32Array(raw.bytes.slice().buffer);
  return { shape: raw.shape, data };
}
