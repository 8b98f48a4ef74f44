import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, isRelpError } from '@relp/core/errors';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  canDequantize,
  GGML_TYPES,
  type GgufFile,
  ggufConfig,
  ggufTensorToHost,
  ggufTokenizerMetadata,
  ggufToWeightMap,
  parseGguf,
} from '../src/gguf/index.js';
import { type TestValue, writeTestGguf } from './gguf-writer.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), '../../../fixtures/gguf');
const seeds = ['tiny.gguf', 'tiny-llama.gguf', 'tiny-gemma3.gguf'].map(
  (n) => new Uint8Array(readFileSync(join(fixtures, n))),
);

/** Parses and, when that works, uses everything downstream; returns the error code when something refused. */
function exercise(bytes: Uint8Array): string | undefined {
  let file: GgufFile;
  try {
    file = parseGguf(bytes);
  } catch (e) {
    if (isRelpError(e, ErrorCodes.BadModelFile)) return e.code;
    throw e; // anything else (TypeError, RangeError, Internal) fails the property
  }
  for (const t of file.tensors) {
    if (canDequantize(t.type)) {
      const h = ggufTensorToHost(file, t);
      if (h.data.length !== t.numElements) throw new Error('wrong element count');
    }
  }
  const useMap = () => {
    const m = ggufToWeightMap(file);
    for (const n of m.names()) m.get(n); // UNSUPPORTED for types without a kernel
  };
  for (const f of [() => ggufConfig(file), () => ggufTokenizerMetadata(file), useMap]) {
    try {
      f();
    } catch (e) {
      if (!isRelpError(e, ErrorCodes.BadModelFile) && !isRelpError(e, ErrorCodes.Unsupported)) throw e;
    }
  }
  return undefined;
}

const scalar: fc.Arbitrary<TestValue> = fc.oneof(
  fc.record({ type: fc.constant('u8' as const), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ type: fc.constant('i16' as const), value: fc.integer({ min: -32768, max: 32767 }) }),
  fc.record({ type: fc.constant('u32' as const), value: fc.nat() }),
  fc.record({ type: fc.constant('f32' as const), value: fc.float({ noNaN: true }) }),
  fc.record({ type: fc.constant('u64' as const), value: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
  fc.record({ type: fc.constant('bool' as const), value: fc.boolean() }),
  fc.record({ type: fc.constant('string' as const), value: fc.string({ maxLength: 12 }) }),
);
const value: fc.Arbitrary<TestValue> = fc.oneof(
  scalar,
  scalar.chain((s) =>
    fc
      .array(fc.constant(s), { maxLength: 5 })
      .map((items): TestValue => ({ type: 'array', itemType: s.type, items })),
  ),
);

const typeIds = [...GGML_TYPES.keys()];
const tensorSpec = fc.record({
  type: fc.constantFrom(...typeIds),
  blocks: fc.integer({ min: 1, max: 3 }),
  rows: fc.integer({ min: 1, max: 3 }),
  seed: fc.integer({ min: 0, max: 255 }),
});

const validFile = fc
  .record({
    metadata: fc.uniqueArray(fc.tuple(fc.string({ minLength: 1, maxLength: 8 }), value), {
      maxLength: 6,
      selector: ([k]) => k,
    }),
    tensors: fc.array(tensorSpec, { maxLength: 4 }),
    alignment: fc.constantFrom(undefined, 8, 32, 64),
    arch: fc.constantFrom(undefined, 'llama', 'gemma3', 'qwen2'),
  })
  .map(({ metadata, tensors, alignment, arch }) => {
    const meta: [string, TestValue][] = metadata.filter(([k]) => k !== 'general.alignment');
    if (arch) meta.push(['general.architecture', { type: 'string', value: arch }]);
    return writeTestGguf({
      metadata: meta,
      alignment,
      tensors: tensors.map((t, i) => {
        const info = GGML_TYPES.get(t.type)!;
        const n = t.blocks * info.blockSize;
        const data = new Uint8Array(t.blocks * t.rows * info.typeSize);
        for (let j = 0; j < data.length; j++) data[j] = (j * 131 + t.seed) & 0xff;
        return { name: i % 2 ? `blk.${i}.attn_q.weight` : `t${i}`, dims: [n, t.rows], type: t.type, data };
      }),
    });
  });

describe('GGUF property tests: parse or BAD_MODEL_FILE, never anything else', () => {
  it('valid generated files parse and round-trip their metadata and tensors', () => {
    fc.assert(
      fc.property(validFile, (bytes) => {
        const f = parseGguf(bytes);
        for (const t of f.tensors) {
          expect(f.tensorBytes(t).length).toBe(t.byteLength);
          if (canDequantize(t.type)) ggufTensorToHost(f, t);
        }
        expect(exercise(bytes)).toBeUndefined();
      }),
      { numRuns: 300 },
    );
  });

  it('every cut of a valid file is refused saying the file is empty or truncated (or too short for the magic), or still holds every tensor', () => {
    fc.assert(
      fc.property(validFile, fc.nat(), (bytes, cutAt) => {
        const cut = bytes.subarray(0, cutAt % bytes.length);
        let file: GgufFile | undefined;
        try {
          file = parseGguf(cut);
        } catch (e) {
          expect(isRelpError(e, ErrorCodes.BadModelFile), String(e)).toBe(true);
          expect((e as Error).message).toMatch(
            cut.length === 0
              ? /^GGUF: the file is empty \(0 bytes\)$/
              : cut.length < 4
                ? /bad magic/
                : /^GGUF: .*the file is truncated/,
          );
        }
        // Only the padding after the last tensor was cut.
        if (file !== undefined) {
          const full = parseGguf(bytes);
          expect(file.tensors.length).toBe(full.tensors.length);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), fc.boolean(), (bytes, magic) => {
        if (magic && bytes.length >= 8) {
          bytes.set([0x47, 0x47, 0x55, 0x46, 3, 0, 0, 0]);
        }
        exercise(bytes);
      }),
      { numRuns: 2000 },
    );
  });

  const mutation = fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
    fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
    fc.record({
      kind: fc.constant('u64' as const),
      at: fc.nat(),
      v: fc.oneof(
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        fc.constantFrom(0n, 1n, 2n ** 32n, 2n ** 63n, 2n ** 64n - 1n),
      ),
    }),
    fc.record({ kind: fc.constant('u32' as const), at: fc.nat(), v: fc.nat() }),
  );
  type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

  /** Applies one mutation at byte `at` (in place, or by truncating); returns the bytes after it. */
  const mutate = (b: Uint8Array, m: Mutation, at: number): Uint8Array => {
    if (m.kind === 'flip') b[at]! ^= 1 << m.bit;
    else if (m.kind === 'truncate') return b.subarray(0, at);
    else if (m.kind === 'u64' && at + 8 <= b.length)
      new DataView(b.buffer, b.byteOffset).setBigUint64(at, m.v, true);
    else if (m.kind === 'u32' && at + 4 <= b.length)
      new DataView(b.buffer, b.byteOffset).setUint32(at, m.v, true);
    return b;
  };

  it('mutated real files (byte flips, truncation, overwritten counts and offsets)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(0, 1, 2),
        fc.array(mutation, { minLength: 1, maxLength: 4 }),
        (which, muts) => {
          let b: Uint8Array = seeds[which]!.slice();
          // Mutate mostly the header region, where counts, lengths and offsets live.
          const headerEnd = Math.min(b.length, 4096);
          for (const m of muts) b = mutate(b, m, m.at % headerEnd);
          exercise(b);
        },
      ),
      { numRuns: 1500 },
    );
  });

  it('mutated generated files', () => {
    fc.assert(
      fc.property(validFile, fc.array(mutation, { minLength: 1, maxLength: 3 }), (bytes, muts) => {
        let b = bytes;
        for (const m of muts) {
          if (b.length === 0) break;
          b = mutate(b, m, m.at % b.length);
        }
        exercise(b);
      }),
      { numRuns: 1000 },
    );
  });
});
