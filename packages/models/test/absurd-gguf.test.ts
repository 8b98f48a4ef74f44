import { readFileSync } from 'node:fs';
import { isRelpError } from '@relp/core';
import { createMemoryFs, loadModel } from '@relp/loader';
import { fixturePath } from '@relp/testing';
import { describe, expect, it } from 'vitest';
import { MODEL_FAMILIES } from '../src/index.js';

// GGUF metadata that claims absurd sizes (the per-family config checks run on config.json in each family's
// conformance suite) is refused through the loader with a typed error, in well under a second each.

/** The file with the u32 metadata value of `key` replaced (every key patched here is stored as u32). */
function withU32(bytes: Uint8Array, key: string, value: number): Uint8Array {
  const name = new TextEncoder().encode(key);
  const out = bytes.slice();
  const view = new DataView(out.buffer);
  for (let i = 8; i + name.length + 8 <= out.length; i++) {
    if (view.getBigUint64(i - 8, true) !== BigInt(name.length)) continue;
    if (!name.every((b, j) => out[i + j] === b)) continue;
    const at = i + name.length;
    expect(view.getUint32(at, true), `${key} is a u32`).toBe(4);
    view.setUint32(at + 4, value, true);
    return out;
  }
  throw new Error(`no metadata key ${key}`);
}

const CASES: readonly [string, string, number][] = [
  ['tiny-llama', 'llama.embedding_length', 2 ** 31],
  ['tiny-llama', 'llama.block_count', 1e9],
  ['tiny-llama', 'llama.feed_forward_length', 2 ** 31],
  ['tiny-llama', 'llama.context_length', 2 ** 31],
  ['tiny-llama', 'llama.attention.head_count', 2 ** 31],
  ['tiny-llama', 'llama.rope.dimension_count', 1000],
  ['tiny-gemma3', 'gemma3.attention.key_length', 1e9],
  ['tiny-gemma3', 'gemma3.embedding_length', 2 ** 31],
  ['tiny-gemma3', 'gemma3.block_count', 1e9],
  ['tiny-gemma3', 'gemma3.attention.sliding_window', 2 ** 31],
];

describe('GGUF metadata with absurd sizes', () => {
  for (const [fixture, key, value] of CASES) {
    it(`${fixture}: ${key} = ${value} is refused with a typed error at once`, async () => {
      const bytes = withU32(new Uint8Array(readFileSync(fixturePath('gguf', `${fixture}.gguf`))), key, value);
      const t0 = performance.now();
      const err = await loadModel('/m.gguf', {
        fs: createMemoryFs({ '/m.gguf': bytes }),
        families: MODEL_FAMILIES,
      }).catch((e: unknown) => e);
      expect(isRelpError(err), String(err)).toBe(true);
      expect(performance.now() - t0).toBeLessThan(1000);
    });
  }
});
