/**
 * GGUF reader (versions 2 and 3, little-endian), for bytes that may be hostile.
 *
 * Layout: magic "GGUF", u32 version, u64 tensor count, u64 metadata count, the metadata key/values, the tensor
 * infos (name, u32 n_dims, u64 dims[n_dims] innermost first, u32 ggml type, u64 offset), padding to the alignment
 * (`general.alignment`, default 32), then the data section; tensor offsets are relative to its start.
 *
 * Every count, length and offset is checked against the bytes that remain before anything is allocated, so a
 * malformed file ends in a RelpError BAD_MODEL_FILE, never in a crash, a hang or an absurd allocation. The tensor
 * data are not copied: `GgufFile.tensorBytes` gives views into the input.
 */
import { asBytes, badFile } from '../errors.js';
import { GGML_TYPES, GGUF_VALUE_TYPE_NAMES, GgufValueType, ggmlTypeName } from './types.js';

export type GgufTypedArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array;

/**
 * A metadata value. Scalars: number (8–32-bit integers, floats), bigint (64-bit integers), boolean, string.
 * Arrays of numbers are typed arrays of the matching element type; arrays of booleans and strings are plain arrays;
 * arrays of arrays are plain arrays of those.
 */
export type GgufValue = number | bigint | boolean | string | GgufTypedArray | GgufArrayValue;
export type GgufArrayValue = readonly boolean[] | readonly string[] | readonly GgufValue[];

export interface GgufMetadataEntry {
  readonly type: GgufValueType;
  /** For arrays: the element type. */
  readonly itemType?: GgufValueType;
  readonly value: GgufValue;
}

export interface GgufTensorInfo {
  readonly name: string;
  /** ggml dimensions, innermost (contiguous) first, as stored in the file. */
  readonly dims: readonly number[];
  /** Row-major shape (the reverse of `dims`), as PyTorch / safetensors / HostTensor use it. */
  readonly shape: readonly number[];
  /** ggml type id (see GgmlType). */
  readonly type: number;
  readonly typeName: string;
  /** Offset in bytes from the start of the data section. */
  readonly offset: number;
  readonly byteLength: number;
  readonly numElements: number;
}

export interface GgufFile {
  readonly version: number;
  readonly alignment: number;
  readonly metadata: ReadonlyMap<string, GgufMetadataEntry>;
  readonly tensors: readonly GgufTensorInfo[];
  /** Absolute offset of the data section in `bytes`. */
  readonly dataOffset: number;
  /** The whole file (the input, not a copy). */
  readonly bytes: Uint8Array;
  tensor(name: string): GgufTensorInfo | undefined;
  /** A view (no copy) of a tensor's bytes. */
  tensorBytes(tensor: GgufTensorInfo | string): Uint8Array;
}

export interface GgufParseOptions {
  /** Largest string (key, value, tensor name) in bytes. Default 64 MiB. */
  maxStringBytes?: number;
  /** Most metadata entries. Default 1 << 20. */
  maxMetadataEntries?: number;
  /** Most tensors. Default 1 << 20. */
  maxTensors?: number;
  /** Deepest array nesting. Default 8. */
  maxArrayDepth?: number;
  /** Most JS values (strings, booleans, nested arrays) materialised from metadata arrays. Default 1 << 25. */
  maxArrayValues?: number;
}

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
export const GGUF_DEFAULT_ALIGNMENT = 32;
const MAX_DIMS = 4;
const MAX_TENSOR_NAME_BYTES = 4096;

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const utf8 = new TextDecoder('utf-8', { fatal: true });

class Cursor {
  pos = 0;
  readonly view: DataView;
  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  get remaining(): number {
    return this.bytes.length - this.pos;
  }
  need(n: number, what: string): void {
    if (n > this.remaining) throw this.truncated(what, n);
  }
  private left(): string {
    return this.remaining === 0 ? 'the file ends there' : `only ${this.remaining} bytes remain`;
  }
  /** BAD_MODEL_FILE: the file ends before `need` bytes of `what` at the current offset. */
  truncated(what: string, need: number): Error {
    return badFile(
      `GGUF: the file is truncated: ${what} needs ${need} bytes at offset ${this.pos}, but ${this.left()} (file size ${this.bytes.length})`,
      { offset: this.pos, need, present: this.remaining, fileSize: this.bytes.length },
    );
  }
  u8(what: string): number {
    this.need(1, what);
    return this.view.getUint8(this.pos++);
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  u64(what: string): bigint {
    this.need(8, what);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }
  /** A u64 that must be a safe integer no larger than `max`. */
  u64n(what: string, max: number): number {
    const at = this.pos;
    const v = this.u64(what);
    if (v > BigInt(max)) {
      throw badFile(`GGUF: ${what} ${v} is out of range (at most ${max})`, {
        offset: at,
        value: v.toString(),
      });
    }
    return Number(v);
  }
  /**
   * A count of items taking at least `itemBytes` each: at most `max` (a limit: out of range), and no more than
   * the rest of the file can hold (else the file is truncated).
   */
  count(what: string, itemBytes: number, max: number): number {
    const v = this.u64n(what, max);
    if (v * itemBytes > this.remaining) {
      throw badFile(
        `GGUF: the file is truncated: ${what} is ${v}, which needs at least ${v * itemBytes} bytes at offset ${this.pos}, but ${this.left()} (file size ${this.bytes.length})`,
        {
          offset: this.pos,
          count: v,
          need: v * itemBytes,
          present: this.remaining,
          fileSize: this.bytes.length,
        },
      );
    }
    return v;
  }
  string(what: string, maxBytes: number): string {
    const at = this.pos;
    const len = this.count(`${what} length`, 1, maxBytes);
    const sub = this.bytes.subarray(this.pos, this.pos + len);
    this.pos += len;
    let ascii = true;
    for (let i = 0; i < sub.length; i++) {
      if (sub[i]! >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii && len <= 1024) return String.fromCharCode(...sub);
    try {
      return utf8.decode(sub);
    } catch (e) {
      throw badFile(`GGUF: ${what} at offset ${at} is not valid UTF-8`, { offset: at, cause: String(e) });
    }
  }
}

type TypedCtor = {
  new (n: number): GgufTypedArray;
  readonly BYTES_PER_ELEMENT: number;
};

/**
 * The fixed-size value types: bytes per element, how one is read, and the typed array that holds an array of them
 * (all but BOOL, whose bytes are checked one by one).
 */
const SCALARS: Readonly<
  Record<number, { size: number; get: (v: DataView, p: number) => number | bigint; array?: TypedCtor }>
> = {
  [GgufValueType.UINT8]: { size: 1, get: (v, p) => v.getUint8(p), array: Uint8Array },
  [GgufValueType.INT8]: { size: 1, get: (v, p) => v.getInt8(p), array: Int8Array },
  [GgufValueType.UINT16]: { size: 2, get: (v, p) => v.getUint16(p, true), array: Uint16Array },
  [GgufValueType.INT16]: { size: 2, get: (v, p) => v.getInt16(p, true), array: Int16Array },
  [GgufValueType.UINT32]: { size: 4, get: (v, p) => v.getUint32(p, true), array: Uint32Array },
  [GgufValueType.INT32]: { size: 4, get: (v, p) => v.getInt32(p, true), array: Int32Array },
  [GgufValueType.FLOAT32]: { size: 4, get: (v, p) => v.getFloat32(p, true), array: Float32Array },
  [GgufValueType.BOOL]: { size: 1, get: (v, p) => v.getUint8(p) },
  [GgufValueType.UINT64]: { size: 8, get: (v, p) => v.getBigUint64(p, true), array: BigUint64Array },
  [GgufValueType.INT64]: { size: 8, get: (v, p) => v.getBigInt64(p, true), array: BigInt64Array },
  [GgufValueType.FLOAT64]: { size: 8, get: (v, p) => v.getFloat64(p, true), array: Float64Array },
};

interface ParseState {
  readonly opts: Required<GgufParseOptions>;
  values: number;
}

function valueType(c: Cursor, what: string): GgufValueType {
  const at = c.pos;
  const t = c.u32(what);
  if (GGUF_VALUE_TYPE_NAMES[t] === undefined) {
    throw badFile(`GGUF: unknown metadata value type ${t} for ${what}`, { offset: at, type: t });
  }
  return t as GgufValueType;
}

function readScalar(c: Cursor, type: GgufValueType, what: string): number | bigint | boolean {
  const scalar = SCALARS[type];
  if (scalar === undefined) throw badFile(`GGUF: value type ${type} is not a scalar (${what})`);
  c.need(scalar.size, what);
  const p = c.pos;
  c.pos += scalar.size;
  const x = scalar.get(c.view, p);
  if (type !== GgufValueType.BOOL) return x;
  if (x > 1) throw badFile(`GGUF: boolean ${what} has byte value ${x}`, { offset: p });
  return x === 1;
}

function readNumericArray(c: Cursor, type: GgufValueType, count: number): GgufTypedArray {
  const Ctor = SCALARS[type]!.array!;
  const size = Ctor.BYTES_PER_ELEMENT;
  const nbytes = count * size;
  const src = c.bytes.subarray(c.pos, c.pos + nbytes);
  c.pos += nbytes;
  const out = new Ctor(count);
  // Copy the bytes (the source may be unaligned); on a little-endian host the bytes are the values.
  new Uint8Array(out.buffer, out.byteOffset, nbytes).set(src);
  if (!LITTLE_ENDIAN_HOST && size > 1) {
    const u8 = new Uint8Array(out.buffer);
    for (let i = 0; i < nbytes; i += size) u8.subarray(i, i + size).reverse();
  }
  return out;
}

function readArray(
  c: Cursor,
  st: ParseState,
  what: string,
  depth: number,
): { itemType: GgufValueType; value: GgufValue } {
  if (depth > st.opts.maxArrayDepth) {
    throw badFile(`GGUF: arrays nested deeper than ${st.opts.maxArrayDepth} in ${what}`, { offset: c.pos });
  }
  const itemType = valueType(c, `${what} element type`);
  // Smallest encoded size of one element: a guard against counts the remaining bytes cannot hold.
  const minSize =
    itemType === GgufValueType.STRING ? 8 : itemType === GgufValueType.ARRAY ? 12 : SCALARS[itemType]!.size;
  const count = c.count(`${what} element count`, Math.max(1, minSize), Number.MAX_SAFE_INTEGER);
  if (SCALARS[itemType]?.array !== undefined) {
    c.need(count * SCALARS[itemType]!.size, what);
    return { itemType, value: readNumericArray(c, itemType, count) };
  }
  st.values += count;
  if (st.values > st.opts.maxArrayValues) {
    throw badFile(`GGUF: more than ${st.opts.maxArrayValues} array values in the metadata`, {
      offset: c.pos,
    });
  }
  if (itemType === GgufValueType.BOOL) {
    c.need(count, what);
    const out: boolean[] = new Array(count);
    for (let i = 0; i < count; i++) out[i] = readScalar(c, itemType, what) as boolean;
    return { itemType, value: out };
  }
  if (itemType === GgufValueType.STRING) {
    const out: string[] = new Array(count);
    for (let i = 0; i < count; i++) out[i] = c.string(`${what}[${i}]`, st.opts.maxStringBytes);
    return { itemType, value: out };
  }
  // Arrays of arrays.
  const out: GgufValue[] = new Array(count);
  for (let i = 0; i < count; i++) out[i] = readArray(c, st, `${what}[${i}]`, depth + 1).value;
  return { itemType, value: out };
}

function readValue(c: Cursor, st: ParseState, type: GgufValueType, what: string): GgufMetadataEntry {
  if (type === GgufValueType.STRING) return { type, value: c.string(what, st.opts.maxStringBytes) };
  if (type === GgufValueType.ARRAY) {
    const { itemType, value } = readArray(c, st, what, 1);
    return { type, itemType, value };
  }
  return { type, value: readScalar(c, type, what) };
}

function defaults(o: GgufParseOptions): Required<GgufParseOptions> {
  return {
    maxStringBytes: o.maxStringBytes ?? 64 * 1024 * 1024,
    maxMetadataEntries: o.maxMetadataEntries ?? 1 << 20,
    maxTensors: o.maxTensors ?? 1 << 20,
    maxArrayDepth: o.maxArrayDepth ?? 8,
    maxArrayValues: o.maxArrayValues ?? 1 << 25,
  };
}

/** True when the bytes start with the GGUF magic. */
export function isGguf(input: Uint8Array | ArrayBuffer | ArrayBufferView): boolean {
  const b = asBytes(input);
  return b.length >= 4 && b[0] === 0x47 && b[1] === 0x47 && b[2] === 0x55 && b[3] === 0x46;
}

/** Parses a GGUF file's header, metadata and tensor table; tensor data stay in `input` (no copy). */
export function parseGguf(
  input: Uint8Array | ArrayBuffer | ArrayBufferView,
  options: GgufParseOptions = {},
): GgufFile {
  const bytes = asBytes(input);
  const st: ParseState = { opts: defaults(options), values: 0 };
  const c = new Cursor(bytes);
  if (bytes.length === 0) throw badFile('GGUF: the file is empty (0 bytes)', { fileSize: 0 });
  if (bytes.length < 4 || c.u32('magic') !== GGUF_MAGIC) {
    throw badFile('GGUF: not a GGUF file (bad magic)', { fileSize: bytes.length });
  }
  const version = c.u32('version');
  if (version !== 2 && version !== 3) {
    const hint =
      version === 1
        ? ' (GGUF v1 is obsolete)'
        : (version & 0xffff) === 0 && version !== 0
          ? ' (a big-endian GGUF file; only little-endian files are supported)'
          : '';
    throw badFile(`GGUF: unsupported version ${version}${hint}`, { version });
  }
  // Each tensor info takes at least 8 (name) + 4 + 8 (one dim) + 4 + 8 bytes; each key/value at least 8 + 4 + 1.
  const tensorCount = c.count('tensor count', 32, st.opts.maxTensors);
  const kvCount = c.count('metadata count', 13, st.opts.maxMetadataEntries);

  const metadata = new Map<string, GgufMetadataEntry>();
  for (let i = 0; i < kvCount; i++) {
    const at = c.pos;
    const key = c.string(`metadata key ${i}`, Math.min(st.opts.maxStringBytes, 65535));
    if (metadata.has(key)) throw badFile(`GGUF: duplicate metadata key "${key}"`, { offset: at, key });
    const type = valueType(c, `metadata "${key}"`);
    metadata.set(key, readValue(c, st, type, `metadata "${key}"`));
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = metadata.get('general.alignment');
  if (al !== undefined) {
    const v = al.value;
    const n = typeof v === 'number' ? v : typeof v === 'bigint' && v <= 0xffffffffn ? Number(v) : Number.NaN;
    if (
      al.type === GgufValueType.ARRAY ||
      !Number.isInteger(n) ||
      n < 1 ||
      n > 1 << 30 ||
      (n & (n - 1)) !== 0
    ) {
      throw badFile(`GGUF: general.alignment must be a power of two, got ${String(v)}`, {
        alignment: String(v),
      });
    }
    alignment = n;
  }

  interface Raw {
    name: string;
    dims: number[];
    type: number;
    offset: number;
    at: number;
  }
  const raw: Raw[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const at = c.pos;
    const name = c.string(`tensor ${i} name`, MAX_TENSOR_NAME_BYTES);
    if (names.has(name)) throw badFile(`GGUF: duplicate tensor name "${name}"`, { offset: at, tensor: name });
    names.add(name);
    const nDims = c.u32(`tensor "${name}" dimension count`);
    if (nDims < 1 || nDims > MAX_DIMS) {
      throw badFile(`GGUF: tensor "${name}" has ${nDims} dimensions (1 to ${MAX_DIMS} allowed)`, {
        offset: at,
        tensor: name,
      });
    }
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++)
      dims.push(c.u64n(`tensor "${name}" dimension ${d}`, Number.MAX_SAFE_INTEGER));
    const type = c.u32(`tensor "${name}" type`);
    const offset = c.u64n(`tensor "${name}" offset`, Number.MAX_SAFE_INTEGER);
    raw.push({ name, dims, type, offset, at });
  }

  const dataOffset =
    tensorCount === 0 ? Math.min(align(c.pos, alignment), bytes.length) : align(c.pos, alignment);
  if (dataOffset > bytes.length) {
    throw badFile(
      `GGUF: the file is truncated: the tensor data should start at offset ${dataOffset}, past the end of the file (${bytes.length} bytes)`,
      { dataOffset, fileSize: bytes.length },
    );
  }
  const dataLength = bytes.length - dataOffset;

  const tensors: GgufTensorInfo[] = raw.map((r) => {
    const info = GGML_TYPES.get(r.type);
    if (info === undefined) {
      throw badFile(`GGUF: tensor "${r.name}" has unknown ggml type ${r.type}`, {
        tensor: r.name,
        type: r.type,
      });
    }
    let numElements = 1;
    for (const d of r.dims) {
      numElements *= d;
      // 2^45 elements take at most 2^48 bytes in any type: the products below stay exact.
      if (numElements > 2 ** 45) {
        throw badFile(
          `GGUF: tensor "${r.name}" dimensions [${r.dims.join(', ')}] are too large (over 2^45 elements)`,
          {
            tensor: r.name,
          },
        );
      }
    }
    if (r.dims[0]! % info.blockSize !== 0) {
      throw badFile(
        `GGUF: tensor "${r.name}" of type ${info.name}: innermost dimension ${r.dims[0]} is not a multiple of ${info.blockSize}`,
        { tensor: r.name },
      );
    }
    const byteLength = (numElements / info.blockSize) * info.typeSize;
    if (r.offset % alignment !== 0) {
      throw badFile(
        `GGUF: tensor "${r.name}" offset ${r.offset} is not a multiple of the alignment ${alignment}`,
        {
          tensor: r.name,
          offset: r.offset,
        },
      );
    }
    if (r.offset + byteLength > dataLength) {
      const start = dataOffset + r.offset;
      throw badFile(
        `GGUF: tensor "${r.name}" (${byteLength} bytes at offset ${start}) runs past the end of the file (${bytes.length} bytes): the file is truncated, ${start + byteLength - bytes.length} bytes are missing`,
        {
          tensor: r.name,
          offset: start,
          byteLength,
          fileSize: bytes.length,
          missing: start + byteLength - bytes.length,
        },
      );
    }
    return {
      name: r.name,
      dims: r.dims,
      shape: [...r.dims].reverse(),
      type: r.type,
      typeName: ggmlTypeName(r.type),
      offset: r.offset,
      byteLength,
      numElements,
    };
  });

  const byOffset = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < byOffset.length; i++) {
    const prev = byOffset[i - 1]!;
    const cur = byOffset[i]!;
    if (cur.offset < prev.offset + prev.byteLength) {
      throw badFile(`GGUF: tensors "${prev.name}" and "${cur.name}" overlap`, {
        tensors: [prev.name, cur.name],
      });
    }
  }

  const byName = new Map(tensors.map((t) => [t.name, t]));
  const file: GgufFile = {
    version,
    alignment,
    metadata,
    tensors,
    dataOffset,
    bytes,
    tensor: (name) => byName.get(name),
    tensorBytes: (t) => {
      const info = typeof t === 'string' ? byName.get(t) : t;
      if (info === undefined) throw badFile(`GGUF: no tensor named "${String(t)}"`, { tensor: String(t) });
      const start = dataOffset + info.offset;
      return bytes.subarray(start, start + info.byteLength);
    },
  };
  return file;
}

function align(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}
