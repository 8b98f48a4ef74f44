import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, isRelpError } from '@relp/core/errors';
import { describe, expect, it } from 'vitest';
import {
  GgmlType,
  GgufValueType,
  ggufTensorToHost,
  ggufToWeightMap,
  isGguf,
  metadataToJson,
  metaNumber,
  metaString,
  parseGguf,
} from '../src/gguf/index.js';
import { f32Bytes, type TestFile, writeTestGguf } from './gguf-writer.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), '../../../fixtures/gguf');
const load = (name: string) => new Uint8Array(readFileSync(join(fixtures, name)));

function badFile(bytes: Uint8Array, message?: RegExp): void {
  try {
    parseGguf(bytes);
  } catch (e) {
    expect(isRelpError(e, ErrorCodes.BadModelFile), String(e)).toBe(true);
    if (message) expect((e as Error).message).toMatch(message);
    return;
  }
  throw new Error('expected BAD_MODEL_FILE, but the file parsed');
}

describe('parseGguf on a file written by gguf-py (GGUFWriter)', () => {
  const bytes = load('tiny.gguf');
  const file = parseGguf(bytes);
  const expected = JSON.parse(readFileSync(join(fixtures, 'tiny.expected.json'), 'utf8')) as Record<
    string,
    { type: string; shape: number[]; values?: number[]; sum?: number; samples?: [number, number][] }
  >;

  it('reads the header and the custom alignment', () => {
    expect(isGguf(bytes)).toBe(true);
    expect(file.version).toBe(3);
    expect(file.alignment).toBe(64);
    expect(file.dataOffset % 64).toBe(0);
    expect(metaString(file, 'general.architecture')).toBe('tinyarch');
    expect(metaString(file, 'general.name')).toBe('tiny fixture');
  });

  it('reads every metadata value type', () => {
    const v = (k: string) => file.metadata.get(k)!;
    expect(v('t.u8')).toEqual({ type: GgufValueType.UINT8, value: 200 });
    expect(v('t.i8').value).toBe(-100);
    expect(v('t.u16').value).toBe(60000);
    expect(v('t.i16').value).toBe(-30000);
    expect(v('t.u32').value).toBe(4000000000);
    expect(v('t.i32').value).toBe(-2000000000);
    expect(v('t.f32').value).toBe(Math.fround(0.1));
    expect(v('t.bool').value).toBe(true);
    expect(v('t.string').value).toBe('héllo ✓ GGUF');
    expect(v('t.u64')).toEqual({ type: GgufValueType.UINT64, value: 2n ** 63n + 5n });
    expect(v('t.i64').value).toBe(-(2n ** 62n));
    expect(v('t.f64').value).toBe(-1e300);
    expect(v('t.arr_i32')).toEqual({
      type: GgufValueType.ARRAY,
      itemType: GgufValueType.INT32,
      value: new Int32Array([1, -2, 3]),
    });
    expect(v('t.arr_f32').value).toEqual(new Float32Array([0.5, -1.25]));
    expect(v('t.arr_str').value).toEqual(['a', '', 'ü']);
    expect(v('t.arr_bool').value).toEqual([true, false, true]);
    const nested = v('t.arr_nested');
    expect(nested.itemType).toBe(GgufValueType.ARRAY);
    expect((nested.value as unknown[]).map((x) => Array.from(x as ArrayLike<unknown>).map(Number))).toEqual([
      [1, 2],
      [3],
    ]);
    expect(() => metaNumber(file, 't.u64')).toThrow(/safe integer/);
    expect(metadataToJson(file)['t.u64']).toBe('9223372036854775813');
  });

  it('reads the tensor table and every tensor value', () => {
    expect(file.tensors.map((t) => t.name)).toEqual(Object.keys(expected));
    for (const t of file.tensors) {
      const e = expected[t.name]!;
      expect(t.typeName).toBe(e.type);
      expect(t.shape).toEqual(e.shape);
      expect(t.offset % 64).toBe(0);
      const host = ggufTensorToHost(file, t);
      expect(host.shape).toEqual(e.shape);
      if (e.values) {
        expect(Array.from(host.data)).toEqual(e.values.map(Math.fround));
      } else {
        for (const [i, x] of e.samples!) expect(host.data[i]).toBe(Math.fround(x));
        const sum = host.data.reduce((a, b) => a + b, 0);
        expect(Math.abs(sum - e.sum!)).toBeLessThan(1e-3 * (1 + Math.abs(e.sum!)));
      }
    }
  });

  it('keeps tensor data as views into the input (no copy)', () => {
    const view = file.tensorBytes('q8_0');
    expect(view.buffer).toBe(bytes.buffer);
    const map = ggufToWeightMap(file, { names: 'gguf' });
    expect([...map.names()]).toEqual(Object.keys(expected));
    // The map keeps nothing it dequantised (a model builds each tensor from one read): a second read is a fresh
    // array with the same values.
    const a = map.get('f32')!;
    const b = map.get('f32')!;
    expect(b).not.toBe(a);
    expect(b.data).not.toBe(a.data);
    expect(b.data).toEqual(a.data);
    expect(map.get('nope')).toBeUndefined();
  });

  it('accepts an ArrayBuffer and a version 2 file', () => {
    const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    expect(parseGguf(ab).tensors.length).toBe(file.tensors.length);
    const v2 = bytes.slice();
    v2[4] = 2;
    expect(parseGguf(v2).version).toBe(2);
  });
});

describe('parseGguf rejects malformed files with BAD_MODEL_FILE', () => {
  const ok: TestFile = {
    metadata: [
      ['general.architecture', { type: 'string', value: 'llama' }],
      ['x', { type: 'array', itemType: 'u8', items: [{ type: 'u8', value: 1 }] }],
    ],
    tensors: [
      { name: 'a', dims: [4], type: GgmlType.F32, data: f32Bytes([1, 2, 3, 4]) },
      { name: 'b', dims: [2, 2], type: GgmlType.F32, data: f32Bytes([5, 6, 7, 8]) },
    ],
  };

  it('the base file parses', () => {
    const f = parseGguf(writeTestGguf(ok));
    expect(Array.from(ggufTensorToHost(f, 'b').data)).toEqual([5, 6, 7, 8]);
    expect(f.tensor('b')!.shape).toEqual([2, 2]);
  });

  it('bad magic, versions, truncation', () => {
    const good = writeTestGguf(ok);
    const m = good.slice();
    m[0] = 0x48;
    badFile(m, /magic/);
    badFile(new Uint8Array(0), /^GGUF: the file is empty \(0 bytes\)$/);
    badFile(writeTestGguf({ ...ok, version: 1 }), /version 1.*obsolete/);
    badFile(writeTestGguf({ ...ok, version: 0x03000000 }), /big-endian/);
    badFile(writeTestGguf({ ...ok, version: 4 }), /version 4/);
    for (const n of [5, 12, 23, 40, good.length - 17]) badFile(good.subarray(0, n), /the file is truncated/);
    // Cut inside the tensor data: which tensor, where, and how many bytes are missing.
    badFile(
      good.subarray(0, good.length - 17),
      /tensor "b" \(16 bytes at offset \d+\) runs past the end of the file \(\d+ bytes\): the file is truncated, 1 bytes are missing/,
    );
  });

  it('absurd counts and lengths fail before allocating', () => {
    const good = writeTestGguf(ok);
    const huge = (at: number, v: bigint) => {
      const b = good.slice();
      new DataView(b.buffer).setBigUint64(at, v, true);
      return b;
    };
    badFile(huge(8, 2n ** 63n), /tensor count/);
    badFile(huge(16, 2n ** 60n), /metadata count/);
    badFile(huge(24, 2n ** 40n), /length/); // first key length
    badFile(writeTestGguf({ metadata: [['s', { type: 'string', value: 'x' }]] }).slice(0, 30));
  });

  it('array element counts are checked against the remaining bytes', () => {
    const good = writeTestGguf({ metadata: [['x', { type: 'array', itemType: 'u32', items: [] }]] });
    const b = good.slice();
    // header 24 + key (8 + 1) + type 4 + item type 4 → count at 41
    new DataView(b.buffer).setBigUint64(41, 1n << 40n, true);
    badFile(
      b,
      /the file is truncated: metadata "x" element count is 1099511627776, which needs at least 4398046511104 bytes at offset 49, but only 15 bytes remain \(file size 64\)/,
    );
    const nested = writeTestGguf({
      metadata: [['x', { type: 'array', itemType: 'array', items: [] }]],
    });
    const c = nested.slice();
    new DataView(c.buffer).setBigUint64(41, 1n << 30n, true);
    badFile(c, /element count/);
  });

  it('deep nesting, bad value types, bad booleans, invalid UTF-8', () => {
    let v: import('./gguf-writer.js').TestValue = { type: 'u8', value: 1 };
    for (let i = 0; i < 12; i++) v = { type: 'array', itemType: v.type, items: [v] };
    badFile(writeTestGguf({ metadata: [['deep', v]] }), /nested deeper/);
    const t = writeTestGguf({ metadata: [['k', { type: 'u8', value: 1 }]] });
    const bt = t.slice();
    new DataView(bt.buffer).setUint32(24 + 9, 13, true);
    badFile(bt, /unknown metadata value type 13/);
    const bb = writeTestGguf({ metadata: [['k', { type: 'bool', value: true }]] });
    bb[24 + 9 + 4] = 2;
    badFile(bb, /boolean/);
    const bu = writeTestGguf({ metadata: [['k', { type: 'string', value: 'aé' }]] });
    bu[24 + 9 + 4 + 8 + 2] = 0xff;
    badFile(bu, /UTF-8/);
  });

  it('duplicate keys and tensor names', () => {
    badFile(
      writeTestGguf({
        metadata: [
          ['k', { type: 'u8', value: 1 }],
          ['k', { type: 'u8', value: 2 }],
        ],
      }),
      /duplicate metadata key/,
    );
    badFile(
      writeTestGguf({ tensors: [ok.tensors![0]!, { ...ok.tensors![1]!, name: 'a' }] }),
      /duplicate tensor/,
    );
  });

  it('bad alignment values', () => {
    for (const a of [0, 3, 48]) {
      badFile(
        writeTestGguf({ ...ok, metadata: [['general.alignment', { type: 'u32', value: a }]] }),
        /alignment/,
      );
    }
    badFile(
      writeTestGguf({ ...ok, metadata: [['general.alignment', { type: 'string', value: '32' }]] }),
      /alignment/,
    );
  });

  it('bad tensor infos: dims, types, block multiples, offsets, overlaps, bounds', () => {
    const t = (over: Partial<import('./gguf-writer.js').TestTensor>) =>
      writeTestGguf({ tensors: [{ ...ok.tensors![0]!, ...over }] });
    badFile(t({ dims: [] }), /dimensions/);
    badFile(t({ dims: [1, 1, 1, 1, 4] }), /dimensions/);
    badFile(t({ type: 77 }), /unknown ggml type 77/);
    badFile(t({ type: GgmlType.Q8_0, dims: [4] }), /multiple of 32/);
    badFile(t({ offset: 8 }), /alignment/);
    badFile(
      t({ offset: 64 }),
      /tensor "a" \(16 bytes at offset 128\) runs past the end of the file \(96 bytes\): the file is truncated, 48 bytes are missing/,
    );
    badFile(t({ dims: [2 ** 40] }), /tensor "a" \(4398046511104 bytes at offset \d+\) runs past the end/);
    badFile(t({ dims: [2 ** 26, 2 ** 26, 2 ** 26] }), /too large/);
    badFile(writeTestGguf({ tensors: [ok.tensors![0]!, { ...ok.tensors![1]!, offset: 0 }] }), /overlap/);
  });

  it('a file with no tensors may end right after the metadata', () => {
    const f = parseGguf(writeTestGguf({ metadata: [['k', { type: 'u8', value: 7 }]] }));
    expect(f.tensors).toEqual([]);
    expect(f.metadata.get('k')!.value).toBe(7);
  });
});
