import { badInput } from '@relp/core/errors';
import { f32ArrayToBf16, f32ArrayToF16 } from '../float.js';
import { dtypeSize, isSafetensorsDtype, type SafetensorsDtype } from './dtypes.js';

/**
 * A tensor to write. With `data` (float32 values), dtype is F32 (default), F16 or BF16 (rounded to nearest even)
 * or F64. With `bytes`, the bytes are written as they are (little endian) under any dtype.
 */
export type WritableTensor =
  | {
      readonly shape: readonly number[];
      readonly data: Float32Array;
      readonly dtype?: 'F32' | 'F16' | 'BF16' | 'F64';
    }
  | { readonly shape: readonly number[]; readonly bytes: Uint8Array; readonly dtype: SafetensorsDtype };

export interface SafetensorsWriteOptions {
  readonly metadata?: Readonly<Record<string, string>>;
}

function encode(name: string, t: WritableTensor): { dtype: SafetensorsDtype; bytes: Uint8Array } {
  for (const d of t.shape) {
    if (!Number.isSafeInteger(d) || d < 0)
      throw badInput(`tensor "${name}": shape [${t.shape.join(', ')}] is not non-negative integers`);
  }
  const size = t.shape.reduce((a, b) => a * b, 1);
  if ('bytes' in t) {
    if (!isSafetensorsDtype(t.dtype)) throw badInput(`tensor "${name}": unknown dtype ${String(t.dtype)}`);
    if (t.bytes.byteLength !== size * dtypeSize(t.dtype)) {
      throw badInput(
        `tensor "${name}": ${t.bytes.byteLength} bytes do not fit dtype ${t.dtype} × [${t.shape.join(', ')}]`,
      );
    }
    return { dtype: t.dtype, bytes: t.bytes };
  }
  if (t.data.length !== size)
    throw badInput(`tensor "${name}": ${t.data.length} values for shape [${t.shape.join(', ')}]`);
  const dtype = t.dtype ?? 'F32';
  let out: ArrayBufferView;
  switch (dtype) {
    case 'F32':
      out = t.data;
      break;
    case 'F16':
      out = f32ArrayToF16(t.data);
      break;
    case 'BF16':
      out = f32ArrayToBf16(t.data);
      break;
    case 'F64':
      out = Float64Array.from(t.data);
      break;
    default:
      throw badInput(`tensor "${name}": float data cannot be written as ${String(dtype)}`);
  }
  const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  return { dtype, bytes: littleEndian ? bytes : swap(bytes, dtypeSize(dtype)) };
}

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function swap(bytes: Uint8Array, elem: number): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i += elem)
    for (let j = 0; j < elem; j++) out[i + j] = bytes[i + elem - 1 - j]!;
  return out;
}

/**
 * Serialises tensors to the safetensors format: tensors in the order given, the JSON header padded with spaces to
 * a multiple of 8 bytes (as the reference writer does, so data starts aligned). Throws RelpError BAD_INPUT for
 * inconsistent shapes and data, duplicate names, or the reserved name `__metadata__`.
 */
export function writeSafetensors(
  tensors: Iterable<readonly [string, WritableTensor]> | Readonly<Record<string, WritableTensor>>,
  options: SafetensorsWriteOptions = {},
): Uint8Array {
  const entries: (readonly [string, WritableTensor])[] =
    Symbol.iterator in tensors
      ? [...(tensors as Iterable<readonly [string, WritableTensor]>)]
      : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (options.metadata !== undefined) header.__metadata__ = { ...options.metadata };
  const parts: Uint8Array[] = [];
  const seen = new Set<string>();
  let offset = 0;
  for (const [name, t] of entries) {
    if (name === '__metadata__') throw badInput('"__metadata__" is reserved and cannot name a tensor');
    if (seen.has(name)) throw badInput(`tensor "${name}" is given twice`);
    seen.add(name);
    const { dtype, bytes } = encode(name, t);
    header[name] = { dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes.byteLength] };
    parts.push(bytes);
    offset += bytes.byteLength;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded !== json.byteLength) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  out.set(json, 8);
  let at = 8 + json.byteLength;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
