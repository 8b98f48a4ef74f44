/** A minimal GGUF writer for tests: builds files (valid or deliberately broken) from a description. */
import { type GgufFile, type GgufValue, GgufValueType } from '../src/gguf/index.js';

export type TestValue =
  | { type: 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64'; value: number }
  | { type: 'u64' | 'i64'; value: bigint }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; items: TestValue[]; itemType: TestValue['type'] };

export interface TestTensor {
  name: string;
  dims: number[];
  type: number;
  data: Uint8Array;
  /** Override the offset written in the tensor info. */
  offset?: number;
}

export interface TestFile {
  version?: number;
  metadata?: [string, TestValue][];
  tensors?: TestTensor[];
  alignment?: number;
}

const TYPE_ID: Record<TestValue['type'], number> = {
  u8: GgufValueType.UINT8,
  i8: GgufValueType.INT8,
  u16: GgufValueType.UINT16,
  i16: GgufValueType.INT16,
  u32: GgufValueType.UINT32,
  i32: GgufValueType.INT32,
  f32: GgufValueType.FLOAT32,
  bool: GgufValueType.BOOL,
  string: GgufValueType.STRING,
  array: GgufValueType.ARRAY,
  u64: GgufValueType.UINT64,
  i64: GgufValueType.INT64,
  f64: GgufValueType.FLOAT64,
};

type NumberValue = Extract<TestValue, { value: number }>;
type BigIntValue = Extract<TestValue, { value: bigint }>;

/** Byte size and little-endian writer of each numeric type. */
const NUMBERS: Record<NumberValue['type'], [number, (d: DataView, x: number) => void]> = {
  u8: [1, (d, x) => d.setUint8(0, x)],
  i8: [1, (d, x) => d.setInt8(0, x)],
  u16: [2, (d, x) => d.setUint16(0, x, true)],
  i16: [2, (d, x) => d.setInt16(0, x, true)],
  u32: [4, (d, x) => d.setUint32(0, x, true)],
  i32: [4, (d, x) => d.setInt32(0, x, true)],
  f32: [4, (d, x) => d.setFloat32(0, x, true)],
  f64: [8, (d, x) => d.setFloat64(0, x, true)],
};
const BIGINTS: Record<BigIntValue['type'], (d: DataView, x: bigint) => void> = {
  u64: (d, x) => d.setBigUint64(0, x, true),
  i64: (d, x) => d.setBigInt64(0, x, true),
};

class Out {
  private chunks: Uint8Array[] = [];
  length = 0;
  bytes(b: Uint8Array): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  private dv(n: number, f: (v: DataView) => void): void {
    const b = new Uint8Array(n);
    f(new DataView(b.buffer));
    this.bytes(b);
  }
  u8 = (x: number) => this.dv(1, (v) => v.setUint8(0, x));
  u32 = (x: number) => this.dv(4, (v) => v.setUint32(0, x, true));
  u64 = (x: number | bigint) => this.dv(8, (v) => v.setBigUint64(0, BigInt(x), true));
  str(s: string): void {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  value(v: TestValue): void {
    switch (v.type) {
      case 'bool':
        this.u8(v.value ? 1 : 0);
        break;
      case 'string':
        this.str(v.value);
        break;
      case 'array':
        this.u32(TYPE_ID[v.itemType]);
        this.u64(v.items.length);
        for (const it of v.items) this.value(it);
        break;
      case 'u64':
      case 'i64': {
        const set = BIGINTS[v.type];
        this.dv(8, (d) => set(d, v.value));
        break;
      }
      default: {
        const [size, set] = NUMBERS[v.type];
        this.dv(size, (d) => set(d, v.value));
      }
    }
  }
  pad(align: number): void {
    const n = (align - (this.length % align)) % align;
    if (n > 0) this.bytes(new Uint8Array(n));
  }
  finish(): Uint8Array {
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

export function writeTestGguf(f: TestFile): Uint8Array {
  const align = f.alignment ?? 32;
  const metadata = [...(f.metadata ?? [])];
  if (f.alignment !== undefined) metadata.push(['general.alignment', { type: 'u32', value: align }]);
  const tensors = f.tensors ?? [];
  const o = new Out();
  o.bytes(new TextEncoder().encode('GGUF'));
  o.u32(f.version ?? 3);
  o.u64(tensors.length);
  o.u64(metadata.length);
  for (const [k, v] of metadata) {
    o.str(k);
    o.u32(TYPE_ID[v.type]);
    o.value(v);
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    offsets.push(offset);
    offset += Math.ceil(t.data.length / align) * align;
  }
  tensors.forEach((t, i) => {
    o.str(t.name);
    o.u32(t.dims.length);
    for (const d of t.dims) o.u64(d);
    o.u32(t.type);
    o.u64(t.offset ?? offsets[i]!);
  });
  o.pad(align);
  for (const t of tensors) {
    o.bytes(t.data);
    o.pad(align);
  }
  return o.finish();
}

export function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

const VALUE_TYPE_NAMES: Record<number, Exclude<TestValue['type'], 'array'>> = {
  [GgufValueType.UINT8]: 'u8',
  [GgufValueType.INT8]: 'i8',
  [GgufValueType.UINT16]: 'u16',
  [GgufValueType.INT16]: 'i16',
  [GgufValueType.UINT32]: 'u32',
  [GgufValueType.INT32]: 'i32',
  [GgufValueType.FLOAT32]: 'f32',
  [GgufValueType.BOOL]: 'bool',
  [GgufValueType.STRING]: 'string',
  [GgufValueType.UINT64]: 'u64',
  [GgufValueType.INT64]: 'i64',
  [GgufValueType.FLOAT64]: 'f64',
};

function testValue(type: number, itemType: number | undefined, value: GgufValue): TestValue {
  if (type === GgufValueType.ARRAY) {
    const items = Array.from(value as ArrayLike<GgufValue>, (x) => testValue(itemType!, undefined, x));
    return {
      type: 'array',
      itemType: itemType === GgufValueType.ARRAY ? 'array' : VALUE_TYPE_NAMES[itemType!]!,
      items,
    };
  }
  return { type: VALUE_TYPE_NAMES[type]!, value } as TestValue;
}

/**
 * A parsed GGUF file written again with edits: metadata set (added or replaced) or deleted (`undefined`), and
 * tensors' types changed (same bytes). For tests that need a real file with one thing wrong.
 */
export function rewriteGguf(
  file: GgufFile,
  edits: {
    metadata?: Record<string, TestValue | undefined>;
    tensorTypes?: Record<string, number>;
  },
): Uint8Array {
  const metadata: [string, TestValue][] = [];
  for (const [k, e] of file.metadata) {
    if (k === 'general.alignment' || (edits.metadata && k in edits.metadata)) continue;
    metadata.push([k, testValue(e.type, e.itemType, e.value)]);
  }
  for (const [k, v] of Object.entries(edits.metadata ?? {})) if (v !== undefined) metadata.push([k, v]);
  return writeTestGguf({
    version: file.version,
    alignment: file.alignment,
    metadata,
    tensors: file.tensors.map((t) => ({
      name: t.name,
      dims: [...t.dims],
      type: edits.tensorTypes?.[t.name] ?? t.type,
      data: file.tensorBytes(t),
    })),
  });
}
