import type { HostTensor, WeightMap } from '@relp/core';
import { asBytes, badFile, unsupported } from '../errors.js';
import { bf16ArrayToF32, f16ArrayToF32 } from '../float.js';
import { dtypeSize, isFloatDtype, isSafetensorsDtype, type SafetensorsDtype } from './dtypes.js';
import { findDuplicateKey } from './json.js';

/** Headers larger than this are refused unless the caller raises the cap (the reference implementation uses 100 MB). */
export const DEFAULT_MAX_HEADER_BYTES = 100_000_000;

export interface SafetensorsReadOptions {
  /** Largest accepted JSON header, in bytes. Default 100 MB. */
  readonly maxHeaderBytes?: number;
  /** A name for error messages (a file name or path). */
  readonly source?: string;
}

/** One entry of the tensor table, with offsets made absolute (from the start of the file). */
export interface SafetensorsTensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** Number of elements (product of the shape). */
  readonly size: number;
  /** Absolute byte range [begin, end) of the tensor's data in the file. */
  readonly begin: number;
  readonly end: number;
}

export interface SafetensorsHeader {
  /** Tensors in file order (ascending offsets; ties between empty tensors by name). */
  readonly tensors: readonly SafetensorsTensorInfo[];
  /** The `__metadata__` string map, empty when absent. */
  readonly metadata: Readonly<Record<string, string>>;
  /** Byte offset where the data section starts (8 + header length). */
  readonly dataStart: number;
}

/** A tensor's bytes as stored (little endian), for dtypes that do not convert to float32. */
export interface RawTensor {
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  readonly bytes: Uint8Array;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Reads and validates the header of a safetensors file against the file's length. Enforces what the reference
 * implementation (huggingface/safetensors) enforces: a header length that fits the file and the cap, a UTF-8 JSON
 * object, known dtypes, non-negative integer shapes, offsets whose length is dtype size × element count, and data
 * regions that tile the data section exactly (no overlap, no gap, no trailing bytes); plus no duplicated names.
 * Throws RelpError BAD_MODEL_FILE for anything else.
 */
export function parseSafetensorsHeader(
  input: Uint8Array | ArrayBuffer,
  options: SafetensorsReadOptions = {},
): SafetensorsHeader {
  const bytes = asBytes(input);
  const src = options.source ?? 'safetensors file';
  const cap = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  if (bytes.byteLength === 0) throw badFile(`${src}: the file is empty (0 bytes)`, { fileBytes: 0 });
  if (bytes.byteLength < 8) {
    throw badFile(
      `${src}: ${bytes.byteLength} bytes is too short for a safetensors file (needs an 8-byte header length)`,
      {
        fileBytes: bytes.byteLength,
      },
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lo = view.getUint32(0, true);
  const hi = view.getUint32(4, true);
  const headerLen = hi * 2 ** 32 + lo; // exact below 2^53; anything with hi > 0 is refused by the cap anyway
  if (hi !== 0 || headerLen > cap) {
    throw badFile(`${src}: header length ${headerLen} exceeds the limit of ${cap} bytes`, {
      headerLength: headerLen,
      cap,
    });
  }
  if (8 + headerLen > bytes.byteLength) {
    throw badFile(
      `${src}: the file is truncated (or not safetensors): its header of ${headerLen} bytes needs ${8 + headerLen} bytes, the file has ${bytes.byteLength}`,
      { headerLength: headerLen, fileBytes: bytes.byteLength },
    );
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen));
  } catch {
    throw badFile(`${src}: header is not valid UTF-8`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw badFile(`${src}: header is not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (!isPlainObject(json)) throw badFile(`${src}: header is JSON but not an object`);
  const dup = findDuplicateKey(text);
  if (dup !== undefined) {
    throw badFile(
      dup.depth === 1
        ? `${src}: tensor "${dup.key}" appears twice in the header`
        : `${src}: key "${dup.key}" is duplicated in the header`,
      { name: dup.key },
    );
  }

  const dataStart = 8 + headerLen;
  const dataLen = bytes.byteLength - dataStart;
  let metadata: Record<string, string> = {};
  const tensors: SafetensorsTensorInfo[] = [];
  for (const [name, entry] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isPlainObject(entry)) throw badFile(`${src}: __metadata__ is not an object`);
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') throw badFile(`${src}: __metadata__["${k}"] is not a string`, { key: k });
      }
      metadata = entry as Record<string, string>;
      continue;
    }
    tensors.push(parseEntry(src, name, entry, dataStart));
  }
  tensors.sort(
    (a, b) => a.begin - b.begin || a.end - b.end || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
  let at = dataStart;
  for (const t of tensors) {
    if (t.begin < at) {
      throw badFile(`${src}: tensor "${t.name}" overlaps the data of another tensor`, { name: t.name });
    }
    if (t.begin > at) {
      throw badFile(`${src}: ${t.begin - at} bytes before tensor "${t.name}" belong to no tensor`, {
        name: t.name,
      });
    }
    at = t.end;
  }
  // The tensors tile the data from its start; ending past the file means the file was cut short.
  if (at > bytes.byteLength) {
    const cut = tensors.find((t) => t.end > bytes.byteLength)!;
    throw badFile(
      `${src}: the file is truncated: its header describes ${at - dataStart} data bytes, the file holds ${dataLen} (${at - bytes.byteLength} bytes missing, from tensor "${cut.name}" on)`,
      { name: cut.name, dataBytes: dataLen, expectedDataBytes: at - dataStart, fileBytes: bytes.byteLength },
    );
  }
  if (at !== bytes.byteLength) {
    throw badFile(
      `${src}: the tensors cover ${at - dataStart} data bytes but the file has ${dataLen}: ${dataLen - (at - dataStart)} trailing bytes belong to no tensor`,
      { covered: at - dataStart, dataBytes: dataLen },
    );
  }
  return { tensors, metadata, dataStart };
}

function parseEntry(src: string, name: string, entry: unknown, dataStart: number): SafetensorsTensorInfo {
  const where = `${src}: tensor "${name}"`;
  if (!isPlainObject(entry)) throw badFile(`${where} is not an object`, { name });
  const { dtype, shape, data_offsets: offsets } = entry;
  if (!isSafetensorsDtype(dtype)) {
    throw badFile(`${where} has unknown dtype ${JSON.stringify(dtype) ?? 'undefined'}`, { name, dtype });
  }
  if (!Array.isArray(shape)) throw badFile(`${where} has no shape array`, { name });
  const elemBytes = dtypeSize(dtype);
  let size = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw badFile(`${where} has a shape entry ${JSON.stringify(d)} that is not a non-negative integer`, {
        name,
      });
    }
    // Saturate far above any file (2^49 elements): the product stays exact, and × the dtype size a safe integer.
    size = Math.min(size * d, 2 ** 49);
  }
  if (shape.some((d) => d === 0)) size = 0;
  if (!Array.isArray(offsets) || offsets.length !== 2)
    throw badFile(`${where} needs data_offsets [begin, end]`, { name });
  const [b, e] = offsets as unknown[];
  if (
    typeof b !== 'number' ||
    typeof e !== 'number' ||
    !Number.isSafeInteger(b) ||
    !Number.isSafeInteger(e) ||
    b < 0 ||
    e < b
  ) {
    throw badFile(`${where} has data_offsets ${JSON.stringify(offsets)}, not 0 <= begin <= end integers`, {
      name,
    });
  }
  if (e - b !== size * elemBytes) {
    throw badFile(
      `${where}: data_offsets span ${e - b} bytes but dtype ${dtype} × shape [${shape.join(', ')}] needs ${size * elemBytes}`,
      { name, span: e - b },
    );
  }
  return { name, dtype, shape: shape as number[], size, begin: dataStart + b, end: dataStart + e };
}

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Bytes [begin, end) as a typed array of `T`: a view when aligned on a little-endian host, else an aligned copy. */
function aligned(
  bytes: Uint8Array,
  begin: number,
  end: number,
  elem: number,
): ArrayBuffer | { buffer: ArrayBufferLike; offset: number } {
  const off = bytes.byteOffset + begin;
  if (littleEndian && off % elem === 0) return { buffer: bytes.buffer, offset: off };
  return bytes.slice(begin, end).buffer;
}

function toF32(bytes: Uint8Array, t: SafetensorsTensorInfo): Float32Array {
  const n = t.size;
  if (!littleEndian && t.dtype !== 'F32') {
    // Big-endian host (rare): decode element by element.
    const dv = new DataView(bytes.buffer, bytes.byteOffset + t.begin, t.end - t.begin);
    const u16 = new Uint16Array(n);
    if (t.dtype === 'F64') return Float32Array.from({ length: n }, (_, i) => dv.getFloat64(i * 8, true));
    for (let i = 0; i < n; i++) u16[i] = dv.getUint16(i * 2, true);
    return t.dtype === 'F16' ? f16ArrayToF32(u16) : bf16ArrayToF32(u16);
  }
  switch (t.dtype) {
    case 'F32': {
      if (!littleEndian) {
        const dv = new DataView(bytes.buffer, bytes.byteOffset + t.begin, t.end - t.begin);
        return Float32Array.from({ length: n }, (_, i) => dv.getFloat32(i * 4, true));
      }
      const a = aligned(bytes, t.begin, t.end, 4);
      return a instanceof ArrayBuffer ? new Float32Array(a) : new Float32Array(a.buffer, a.offset, n);
    }
    case 'F64': {
      const a = aligned(bytes, t.begin, t.end, 8);
      const src = a instanceof ArrayBuffer ? new Float64Array(a) : new Float64Array(a.buffer, a.offset, n);
      return Float32Array.from(src);
    }
    case 'F16':
    case 'BF16': {
      const a = aligned(bytes, t.begin, t.end, 2);
      const src = a instanceof ArrayBuffer ? new Uint16Array(a) : new Uint16Array(a.buffer, a.offset, n);
      return t.dtype === 'F16' ? f16ArrayToF32(src) : bf16ArrayToF32(src);
    }
    default:
      throw unsupported(
        `tensor "${t.name}" has dtype ${t.dtype}, which does not convert to float32; use raw()`,
        {
          name: t.name,
          dtype: t.dtype,
        },
      );
  }
}

/**
 * A parsed safetensors file over its bytes, as a WeightMap. Tensors convert to float32 on first `get` and are
 * cached; F32 tensors at 4-aligned offsets are views of the file's bytes (no copy), so the file's buffer must not
 * be modified while the map is in use.
 */
export class SafetensorsFile implements WeightMap {
  readonly header: SafetensorsHeader;
  private readonly bytes: Uint8Array;
  private readonly byName: Map<string, SafetensorsTensorInfo>;
  private readonly cache = new Map<string, HostTensor>();

  private constructor(bytes: Uint8Array, header: SafetensorsHeader) {
    this.bytes = bytes;
    this.header = header;
    this.byName = new Map(header.tensors.map((t) => [t.name, t]));
  }

  /** Parses and validates the header (throws RelpError BAD_MODEL_FILE); tensor data is read lazily. */
  static from(input: Uint8Array | ArrayBuffer, options: SafetensorsReadOptions = {}): SafetensorsFile {
    const bytes = asBytes(input);
    return new SafetensorsFile(bytes, parseSafetensorsHeader(bytes, options));
  }

  get metadata(): Readonly<Record<string, string>> {
    return this.header.metadata;
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): SafetensorsTensorInfo | undefined {
    return this.byName.get(name);
  }

  /**
   * The tensor as float32, or undefined when the file has no such name. Throws RelpError UNSUPPORTED for dtypes
   * that are not floating point (integers, booleans, 8-bit floats): read those with raw().
   */
  get(name: string): HostTensor | undefined {
    const hit = this.cache.get(name);
    if (hit !== undefined) return hit;
    const t = this.byName.get(name);
    if (t === undefined) return undefined;
    const out: HostTensor = { shape: t.shape, data: toF32(this.bytes, t) };
    this.cache.set(name, out);
    return out;
  }

  /** The tensor's stored bytes (a view, little endian), whatever its dtype. */
  raw(name: string): RawTensor | undefined {
    const t = this.byName.get(name);
    if (t === undefined) return undefined;
    return { dtype: t.dtype, shape: t.shape, bytes: this.bytes.subarray(t.begin, t.end) };
  }

  /** Whether get() can convert this tensor. */
  isFloat(name: string): boolean {
    const t = this.byName.get(name);
    return t !== undefined && isFloatDtype(t.dtype);
  }
}

/** Parses a safetensors file (see SafetensorsFile.from). */
export function readSafetensors(
  input: Uint8Array | ArrayBuffer,
  options: SafetensorsReadOptions = {},
): SafetensorsFile {
  return SafetensorsFile.from(input, options);
}
