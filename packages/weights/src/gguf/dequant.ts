/**
 * Dequantisation of ggml tensor data to float32, block by block as ggml lays them out (ggml-common.h) and with the
 * float32 arithmetic of gguf-py's `gguf.quants.dequantize` (what transformers uses), so results match it bit for bit:
 * every intermediate product is rounded to float32 (Math.fround) in the same order as numpy computes it.
 *
 * Supported: F32, F16, BF16, F64, I8, I16, I32, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
 */
import { ErrorCodes, RelpError } from '@relp/core/errors';
import { badFile } from '../errors.js';
import { f16ArrayToF32, f16ToF32 } from '../float.js';
import { GGML_TYPES, GgmlType, ggmlTypeName } from './types.js';

const fr = Math.fround;
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function f16At(src: Uint8Array, o: number): number {
  return f16ToF32(src[o]! | (src[o + 1]! << 8));
}

function i8(b: number): number {
  return (b << 24) >> 24;
}

type Kernel = (src: Uint8Array, out: Float32Array, nBlocks: number) => void;

const KERNELS: ReadonlyMap<number, Kernel> = new Map<number, Kernel>([
  [GgmlType.F32, dequantF32],
  [GgmlType.F16, dequantF16],
  [GgmlType.BF16, dequantBF16],
  [GgmlType.F64, (s, o, n) => plain(s, o, n, 8, (v, p) => v.getFloat64(p, true))],
  [GgmlType.I8, (s, o, n) => plain(s, o, n, 1, (v, p) => v.getInt8(p))],
  [GgmlType.I16, (s, o, n) => plain(s, o, n, 2, (v, p) => v.getInt16(p, true))],
  [GgmlType.I32, (s, o, n) => plain(s, o, n, 4, (v, p) => v.getInt32(p, true))],
  [GgmlType.Q4_0, dequantQ4_0],
  [GgmlType.Q4_1, dequantQ4_1],
  [GgmlType.Q5_0, dequantQ5_0],
  [GgmlType.Q5_1, dequantQ5_1],
  [GgmlType.Q8_0, dequantQ8_0],
  [GgmlType.Q2_K, dequantQ2_K],
  [GgmlType.Q3_K, dequantQ3_K],
  [GgmlType.Q4_K, (src, out, n) => dequantQ45_K(src, out, n, false)],
  [GgmlType.Q5_K, (src, out, n) => dequantQ45_K(src, out, n, true)],
  [GgmlType.Q6_K, dequantQ6_K],
]);

/** ggml types that `dequantize` supports. */
export const DEQUANTIZABLE_TYPES: readonly number[] = [...KERNELS.keys()];

export function canDequantize(type: number): boolean {
  return KERNELS.has(type);
}

/** UNSUPPORTED for a type without a kernel (what `dequantize` would throw), before any data is read. */
export function requireDequantizable(type: number): void {
  if (!KERNELS.has(type)) {
    throw new RelpError(ErrorCodes.Unsupported, `GGUF: dequantising ${ggmlTypeName(type)} is not supported`, {
      details: { type, typeName: ggmlTypeName(type), supported: DEQUANTIZABLE_TYPES.map(ggmlTypeName) },
    });
  }
}

/** Bytes that `numElements` elements of `type` take (numElements must be a multiple of the block size). */
export function ggmlByteLength(type: number, numElements: number): number {
  const info = GGML_TYPES.get(type);
  if (info === undefined) throw badFile(`GGUF: unknown ggml type ${type}`, { type });
  if (numElements % info.blockSize !== 0) {
    throw badFile(
      `GGUF: ${numElements} elements is not a whole number of ${info.name} blocks (${info.blockSize})`,
    );
  }
  return (numElements / info.blockSize) * info.typeSize;
}

/**
 * Dequantises `numElements` elements of ggml type `type` from `src` to float32 (into `out` when given).
 * Throws UNSUPPORTED for types without a kernel (the IQ* and TQ* families, Q8_1, Q8_K, I64, MXFP4) and
 * BAD_MODEL_FILE when `src` is too short.
 */
export function dequantize(
  type: number,
  src: Uint8Array,
  numElements: number,
  out?: Float32Array,
): Float32Array {
  requireDequantizable(type);
  const kernel = KERNELS.get(type)!;
  const info = GGML_TYPES.get(type)!;
  const nbytes = ggmlByteLength(type, numElements);
  if (src.length < nbytes) {
    throw badFile(
      `GGUF: ${info.name} data of ${numElements} elements needs ${nbytes} bytes, got ${src.length}`,
    );
  }
  const result = out ?? new Float32Array(numElements);
  if (result.length < numElements) {
    throw new RelpError(
      ErrorCodes.Internal,
      `dequantize: output holds ${result.length} < ${numElements} elements`,
    );
  }
  kernel(src, result, numElements / info.blockSize);
  return result;
}

function dequantF32(src: Uint8Array, out: Float32Array, n: number): void {
  const nbytes = n * 4;
  if (LITTLE_ENDIAN_HOST) {
    new Uint8Array(out.buffer, out.byteOffset, nbytes).set(src.subarray(0, nbytes));
    return;
  }
  plain(src, out, n, 4, (v, p) => v.getFloat32(p, true));
}

function dequantF16(src: Uint8Array, out: Float32Array, n: number): void {
  if (LITTLE_ENDIAN_HOST) {
    const aligned = src.byteOffset % 2 === 0;
    const u16 = aligned
      ? new Uint16Array(src.buffer, src.byteOffset, n)
      : new Uint16Array(src.slice(0, n * 2).buffer, 0, n);
    f16ArrayToF32(u16, out.subarray(0, n));
    return;
  }
  for (let i = 0; i < n; i++) out[i] = f16At(src, 2 * i);
}

function dequantBF16(src: Uint8Array, out: Float32Array, n: number): void {
  const o = new Uint32Array(out.buffer, out.byteOffset, n);
  for (let i = 0; i < n; i++) o[i] = ((src[2 * i]! | (src[2 * i + 1]! << 8)) << 16) >>> 0;
}

function plain(
  src: Uint8Array,
  out: Float32Array,
  n: number,
  size: number,
  get: (v: DataView, p: number) => number,
): void {
  const v = new DataView(src.buffer, src.byteOffset, n * size);
  for (let i = 0; i < n; i++) out[i] = get(v, i * size);
}

// ---- 32-element blocks -------------------------------------------------------------------------------------------

function dequantQ4_0(src: Uint8Array, out: Float32Array, nBlocks: number): void {
  for (let b = 0; b < nBlocks; b++) {
    const base = b * 18;
    const d = f16At(src, base);
    const o = b * 32;
    for (let j = 0; j < 16; j++) {
      const q = src[base + 2 + j]!;
      out[o + j] = d * ((q & 0x0f) - 8);
      out[o + j + 16] = d * ((q >> 4) - 8);
    }
  }
}

function dequantQ4_1(src: Uint8Array, out: Float32Array, nBlocks: number): void {
  for (let b = 0; b < nBlocks; b++) {
    const base = b * 20;
    const d = f16At(src, base);
    const m = f16At(src, base + 2);
    const o = b * 32;
    for (let j = 0; j < 16; j++) {
      const q = src[base + 4 + j]!;
      out[o + j] = fr(d * (q & 0x0f)) + m;
      out[o + j + 16] = fr(d * (q >> 4)) + m;
    }
  }
}

function dequantQ5_0(src: Uint8Array, out: Float32Array, nBlocks: number): void {
  for (let b = 0; b < nBlocks; b++) {
    const base = b * 22;
    const d = f16At(src, base);
    const qh =
      (src[base + 2]! | (src[base + 3]! << 8) | (src[base + 4]! << 16) | (src[base + 5]! << 24)) >>> 0;
    const o = b * 32;
    for (let j = 0; j < 16; j++) {
      const q = src[base + 6 + j]!;
      const h0 = ((qh >>> j) & 1) << 4;
      const h1 = ((qh >>> (j + 16)) & 1) << 4;
      out[o + j] = d * (((q & 0x0f) | h0) - 16);
      out[o + j + 16] = d * (((q >> 4) | h1) - 16);
    }
  }
}

function dequantQ5_1(src: Uint8Array, out: Float32Array, nBlocks: number): void {
  for (let b = 0; b < nBlocks; b++) {
    const base = b * 24;
    const d = f16At(src, base);
    const m = f16At(src, base + 2);
    const qh =
      (src[base + 4]! | (src[base + 5]! << 8) | (src[base + 6]! << 16) | (src[base + 7]! << 24)) >>> 0;
    const o = b * 32;
    for (let j = 0; j < 16; j++) {
      const q = src[base + 8 + j]!;
      const h0 = ((qh >>> j) & 1) << 4;
      const h1 = ((qh >>> (j + 16)) & 1) << 4;
      out[o + j] = fr(d * ((q & 0x0f) | h0)) + m;
      out[o + j + 16] = fr(d * ((q >> 4) | h1)) + m;
    }
  }
}

function dequantQ8_0(src: Uint8Array, out: Float32Array, nBlocks: number): void {
  for (let b = 0; b < nBlocks; b++) {
    const base = b * 34;
    const d = f16At(src, base);
    const o = b * 32;
    for (let j = 0; j < 32; j++) out[o + j] = d * i8(src[base + 2 + j]!);
  }
}

// ---- 256-element super-blocks (k-quants) -----------------------------------------------------------------------

function dequantQ2_K(src: Uint8Array, out: Float32Array, nBlocks: number): void {
  // block_q2_K: scales[16] (low nibble scale, high nibble min), qs[64] (2 bits), d, dmin.
  for (let b = 0; b < nBlocks; b++) {
    const base = b * 84;
    const d = f16At(src, base + 80);
    const dmin = f16At(src, base + 82);
    const o = b * 256;
    for (let sub = 0; sub < 16; sub++) {
      const sc = src[base + sub]!;
      const dl = fr(d * (sc & 0x0f));
      const ml = fr(dmin * (sc >> 4));
      for (let k = 0; k < 16; k++) {
        const i = sub * 16 + k;
        const h = i >> 7;
        const j = i & 127;
        const q = (src[base + 16 + h * 32 + (j & 31)]! >> (2 * (j >> 5))) & 3;
        out[o + i] = fr(dl * q) - ml;
      }
    }
  }
}

function dequantQ3_K(src: Uint8Array, out: Float32Array, nBlocks: number): void {
  // block_q3_K: hmask[32], qs[64] (low 2 bits), scales[12] (16 × 6-bit), d.
  for (let b = 0; b < nBlocks; b++) {
    const base = b * 110;
    const d = f16At(src, base + 108);
    const sb = base + 96;
    const o = b * 256;
    for (let sub = 0; sub < 16; sub++) {
      const lsc = (src[sb + (sub & 7)]! >> (4 * (sub >> 3))) & 0x0f;
      const hsc = (src[sb + 8 + (sub & 3)]! >> (2 * (sub >> 2))) & 0x03;
      const dl = fr(d * ((lsc | (hsc << 4)) - 32));
      for (let k = 0; k < 16; k++) {
        const i = sub * 16 + k;
        const h = i >> 7;
        const j = i & 127;
        const ql = (src[base + 32 + h * 32 + (j & 31)]! >> (2 * (j >> 5))) & 3;
        const hbit = (src[base + (i & 31)]! >> (i >> 5)) & 1;
        out[o + i] = dl * (ql - ((hbit ^ 1) << 2));
      }
    }
  }
}

/** The j-th (0 … 7) 6-bit scale and min of a Q4_K / Q5_K super-block whose 12 scale bytes start at `s`. */
function scaleMinK4(src: Uint8Array, s: number, j: number): [number, number] {
  if (j < 4) return [src[s + j]! & 63, src[s + j + 4]! & 63];
  return [
    (src[s + j + 4]! & 0x0f) | ((src[s + j - 4]! >> 6) << 4),
    (src[s + j + 4]! >> 4) | ((src[s + j]! >> 6) << 4),
  ];
}

/**
 * Q4_K and Q5_K share a layout: d, dmin, scales[12], then (Q5_K only) qh[32], then qs[128]. Q5_K's fifth bit of
 * element l of sub-block j is bit j of qh[l].
 */
function dequantQ45_K(src: Uint8Array, out: Float32Array, nBlocks: number, fifthBit: boolean): void {
  const blockBytes = fifthBit ? 176 : 144;
  const qsAt = fifthBit ? 48 : 16;
  for (let b = 0; b < nBlocks; b++) {
    const base = b * blockBytes;
    const d = f16At(src, base);
    const dmin = f16At(src, base + 2);
    const o = b * 256;
    for (let j = 0; j < 8; j++) {
      const [sc, m] = scaleMinK4(src, base + 4, j);
      const d1 = fr(d * sc);
      const m1 = fr(dmin * m);
      const qs = base + qsAt + (j >> 1) * 32;
      const shift = 4 * (j & 1);
      for (let l = 0; l < 32; l++) {
        const high = fifthBit ? ((src[base + 16 + l]! >> j) & 1) << 4 : 0;
        out[o + j * 32 + l] = fr(d1 * (((src[qs + l]! >> shift) & 0x0f) | high)) - m1;
      }
    }
  }
}

function dequantQ6_K(src: Uint8Array, out: Float32Array, nBlocks: number): void {
  // block_q6_K: ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (int8), d.
  for (let b = 0; b < nBlocks; b++) {
    const base = b * 210;
    const d = f16At(src, base + 208);
    const o = b * 256;
    for (let sub = 0; sub < 16; sub++) {
      const ds = fr(d * i8(src[base + 192 + sub]!));
      for (let k = 0; k < 16; k++) {
        const i = sub * 16 + k;
        const h = i >> 7;
        const j = i & 127;
        const ql = (src[base + h * 64 + (j & 63)]! >> (4 * (j >> 6))) & 0x0f;
        const qh = (src[base + 128 + h * 32 + (j & 31)]! >> (2 * (j >> 5))) & 0x03;
        out[o + i] = ds * ((ql | (qh << 4)) - 32);
      }
    }
  }
}
