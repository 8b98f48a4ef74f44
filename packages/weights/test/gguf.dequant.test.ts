import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, isRelpError } from '@relp/core/errors';
import { describe, expect, it } from 'vitest';
import { canDequantize, dequantize, GgmlType, ggmlByteLength, ggmlTypeFromName } from '../src/gguf/index.js';

const dir = join(dirname(fileURLToPath(import.meta.url)), '../../../fixtures/gguf/quants');
const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Record<
  string,
  { type: number; elements: number; blocks: number; bytes: number }
>;

function read(name: string): Uint8Array {
  const b = readFileSync(join(dir, name));
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** Indices where two float32 arrays differ bit for bit (so -0 vs 0 and NaN payloads count). */
function bitDiffs(a: Float32Array, b: Float32Array): number[] {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  const out: number[] = [];
  for (let i = 0; i < a.length; i++) if (ua[i] !== ub[i]) out.push(i);
  return out;
}

describe('dequantisation against gguf-py (gguf.quants.dequantize)', () => {
  const required = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q4_K', 'Q5_K', 'Q6_K'];
  it('has oracle fixtures for every required type', () => {
    for (const t of required) expect(manifest[t], t).toBeDefined();
  });

  for (const [name, m] of Object.entries(manifest)) {
    it(`${name}: bit-identical to the oracle over ${m.blocks} random blocks`, () => {
      expect(ggmlTypeFromName(name)).toBe(m.type);
      const src = read(`${name}.bin`);
      const exp = read(`${name}.f32`);
      const expected = new Float32Array(exp.buffer.slice(exp.byteOffset, exp.byteOffset + exp.byteLength));
      expect(src.length).toBe(ggmlByteLength(m.type, m.elements));
      const got = dequantize(m.type, src, m.elements);
      expect(got.length).toBe(m.elements);
      const diffs = bitDiffs(got, expected);
      expect(diffs.slice(0, 5).map((i) => [i, got[i], expected[i]])).toEqual([]);
    });

    it(`${name}: works on an unaligned view and into a given output`, () => {
      const src = read(`${name}.bin`);
      const shifted = new Uint8Array(src.length + 1).subarray(1);
      shifted.set(src);
      const out = new Float32Array(m.elements + 3);
      const got = dequantize(m.type, shifted, m.elements, out);
      expect(got).toBe(out);
      expect(bitDiffs(got.subarray(0, m.elements), dequantize(m.type, src, m.elements))).toEqual([]);
    });
  }

  it('rejects short data with BAD_MODEL_FILE and unknown kernels with UNSUPPORTED', () => {
    const short = () => dequantize(GgmlType.Q4_K, new Uint8Array(143), 256);
    expect(short).toThrow(expect.objectContaining({ code: ErrorCodes.BadModelFile }));
    const partial = () => dequantize(GgmlType.Q8_0, new Uint8Array(34), 31);
    expect(partial).toThrow(expect.objectContaining({ code: ErrorCodes.BadModelFile }));
    expect(canDequantize(GgmlType.IQ2_XXS)).toBe(false);
    try {
      dequantize(GgmlType.IQ2_XXS, new Uint8Array(66), 256);
      expect.unreachable();
    } catch (e) {
      expect(isRelpError(e, ErrorCodes.Unsupported)).toBe(true);
    }
  });

  it('is fast enough for real tensors (Q4_K, 8M elements well under a few seconds)', () => {
    const n = 1 << 23;
    const src = new Uint8Array(ggmlByteLength(GgmlType.Q4_K, n));
    for (let i = 0; i < src.length; i++) src[i] = (i * 2654435761) >>> 24;
    const t0 = performance.now();
    const out = dequantize(GgmlType.Q4_K, src, n);
    const ms = performance.now() - t0;
    expect(out.length).toBe(n);
    expect(ms).toBeLessThan(5000);
  });
});
