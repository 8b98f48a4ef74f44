// A GGUF file that claims more than it holds, or stores a weight in a type that is no weight type, is refused with
// a typed error that says what is wrong, before anything sized by the claim is made.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, isRelpError } from '@relp/core/errors';
import { describe, expect, it } from 'vitest';
import { GgmlType, ggufConfig, ggufToWeightMap, parseGguf } from '../src/gguf/index.js';
import { rewriteGguf, type TestValue } from './gguf-writer.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), '../../../fixtures/gguf');
const tinyLlama = parseGguf(new Uint8Array(readFileSync(join(fixtures, 'tiny-llama.gguf'))));
const tinyGemma = parseGguf(new Uint8Array(readFileSync(join(fixtures, 'tiny-gemma3.gguf'))));

function expectBad(f: () => unknown, code: string, text: RegExp): void {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  expect(isRelpError(caught), String(caught)).toBe(true);
  expect((caught as { code: string }).code, String(caught)).toBe(code);
  expect((caught as Error).message).toMatch(text);
}

const u32 = (value: number): TestValue => ({ type: 'u32', value });

describe('GGUF weights stored in integer types', () => {
  it('a weight stored as I32 or I16 (the right byte size) is refused where a float weight is read', () => {
    const bytes = rewriteGguf(tinyLlama, {
      tensorTypes: { 'blk.0.attn_norm.weight': GgmlType.I32, 'blk.0.attn_output.weight': GgmlType.I16 },
    });
    const weights = ggufToWeightMap(bytes);
    expectBad(
      () => weights.get('model.layers.0.input_layernorm.weight'),
      ErrorCodes.BadModelFile,
      /tensor "blk\.0\.attn_norm\.weight" \(model\.layers\.0\.input_layernorm\.weight\) is stored as I32, an integer type/,
    );
    expectBad(() => weights.get('model.layers.0.self_attn.o_proj.weight'), ErrorCodes.BadModelFile, /as I16/);
    // `shape`, which a model's weight reader asks before anything is dequantised, refuses them alike.
    expectBad(
      () => weights.shape!('model.layers.0.input_layernorm.weight'),
      ErrorCodes.BadModelFile,
      /\(model\.layers\.0\.input_layernorm\.weight\) is stored as I32/,
    );
    expectBad(
      () => weights.shape!('model.layers.0.self_attn.o_proj.weight'),
      ErrorCodes.BadModelFile,
      /as I16/,
    );
    // Float and quantised weights of the same file still read.
    expect(weights.get('model.layers.1.input_layernorm.weight')?.shape).toEqual([32]);
    expect(weights.get('model.layers.0.self_attn.q_proj.weight')?.shape).toEqual([32, 32]);
    // Under their GGUF names (no model reads them), tensors are given as stored.
    expect(ggufToWeightMap(bytes, { names: 'gguf' }).get('blk.0.attn_norm.weight')?.shape).toEqual([32]);
  });
});

describe('GGUF metadata that the tensors do not back', () => {
  it('a block count above the blocks the tensors hold is refused at once, naming both', () => {
    for (const [file, key, n] of [
      [tinyLlama, 'llama.block_count', 2],
      [tinyGemma, 'gemma3.block_count', 6],
    ] as const) {
      for (const claimed of [n + 1, 1e9]) {
        const bytes = rewriteGguf(file, { metadata: { [key]: u32(claimed) } });
        const t0 = performance.now();
        expectBad(
          () => ggufConfig(bytes),
          ErrorCodes.BadModelFile,
          new RegExp(
            `"${key.replace('.', '\\.')}" says ${claimed} blocks, but the file holds tensors for ${n}`,
          ),
        );
        expect(performance.now() - t0).toBeLessThan(1000);
      }
    }
  });

  it('rope.dimension_count: 0, odd or above the head size refused; below it, a partial_rotary_factor', () => {
    for (const [file, arch, headDim] of [
      [tinyLlama, 'llama', 8],
      [tinyGemma, 'gemma3', 16],
    ] as const) {
      const key = `${arch}.rope.dimension_count`;
      for (const bad of [0, 1, headDim - 1, headDim + 2, 1000]) {
        expectBad(
          () => ggufConfig(rewriteGguf(file, { metadata: { [key]: u32(bad) } })),
          ErrorCodes.BadModelFile,
          new RegExp(
            `"${key.replaceAll('.', '\\.')}" = ${bad} is not a rotary dimension count for heads of ${headDim}`,
          ),
        );
      }
      const half = ggufConfig(rewriteGguf(file, { metadata: { [key]: u32(headDim / 2) } }));
      expect(half.partial_rotary_factor).toBe(0.5);
      expect(ggufConfig(rewriteGguf(file, { metadata: { [key]: u32(headDim) } })).partial_rotary_factor).toBe(
        undefined,
      );
      expect(ggufConfig(rewriteGguf(file, { metadata: { [key]: undefined } })).partial_rotary_factor).toBe(
        undefined,
      );
    }
  });
});
