/**
 * Half-precision (IEEE 754 binary16, "F16") and bfloat16 ("BF16") to float32, and back with round-to-nearest-even.
 * Node 20 has no Float16Array, so these are bit manipulations over Uint16/Uint32 arrays. Conversions to float32 are
 * exact (every F16 and BF16 value is a float32 value) and keep the sign of zero, infinities and NaN payloads.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 bit pattern of the F16 value with bit pattern `h` (0 … 65535). */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) {
    // Infinity (mant 0) or NaN (payload moved to the top of the float32 mantissa, quiet bit kept).
    return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  }
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // Subnormal: normalise. value = mant · 2^-24; shift until the implicit bit (0x400) is set.
  let e = 113; // float32 exponent for 2^-14
  while ((mant & 0x400) === 0) {
    mant <<= 1;
    e -= 1;
  }
  return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
}

let table: Uint32Array | undefined;

/** 65536-entry table of float32 bit patterns, built on first use (256 KiB). */
function f16Table(): Uint32Array {
  if (table === undefined) {
    table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) table[h] = f16BitsToF32Bits(h);
  }
  return table;
}

/** The F16 value with bit pattern `h` as a number. */
export function f16ToF32(h: number): number {
  u32[0] = f16Table()[h & 0xffff]!;
  return f32[0]!;
}

/** The BF16 value with bit pattern `b` as a number (bfloat16 is the top half of a float32). */
export function bf16ToF32(b: number): number {
  u32[0] = (b & 0xffff) << 16;
  return f32[0]!;
}

/** Converts F16 bit patterns to float32 (into `out` when given). */
export function f16ArrayToF32(
  src: Uint16Array,
  out: Float32Array = new Float32Array(src.length),
): Float32Array {
  const t = f16Table();
  const o = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) o[i] = t[src[i]!]!;
  return out;
}

/** Converts BF16 bit patterns to float32 (into `out` when given). */
export function bf16ArrayToF32(
  src: Uint16Array,
  out: Float32Array = new Float32Array(src.length),
): Float32Array {
  const o = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) o[i] = src[i]! << 16;
  return out;
}

/** F16 bit pattern of the float32 value with bit pattern `x`, rounding to nearest, ties to even. */
export function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) {
    if (mant === 0) return sign | 0x7c00;
    // NaN: keep the top payload bits, force quiet so it stays NaN.
    return sign | 0x7e00 | (mant >>> 13);
  }
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow to infinity
  if (e <= 0) {
    // Subnormal or zero in F16.
    if (e < -10) return sign; // below half the smallest subnormal: rounds to zero
    const m = mant | 0x800000; // implicit bit
    const shift = 14 - e; // 14 … 24
    const half = 1 << (shift - 1);
    let r = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    if (rem > half || (rem === half && (r & 1) === 1)) r += 1;
    return sign | r; // r may carry into the exponent field: that is the correct smallest normal
  }
  let r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1) === 1)) r += 1; // may carry to infinity: correct
  return sign | r;
}

/** BF16 bit pattern of the float32 value with bit pattern `x`, rounding to nearest, ties to even. */
export function f32BitsToBf16Bits(x: number): number {
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return ((x >>> 16) | 0x40) & 0xffff; // quiet NaN
  const lsb = (x >>> 16) & 1;
  return ((x + 0x7fff + lsb) >>> 16) & 0xffff;
}

/** Converts float32 values to F16 bit patterns (round to nearest even). */
export function f32ArrayToF16(src: Float32Array, out?: Uint16Array): Uint16Array {
  return f32ArrayTo16Bits(src, out, f32BitsToF16Bits);
}

/** Converts float32 values to BF16 bit patterns (round to nearest even). */
export function f32ArrayToBf16(src: Float32Array, out?: Uint16Array): Uint16Array {
  return f32ArrayTo16Bits(src, out, f32BitsToBf16Bits);
}

function f32ArrayTo16Bits(
  src: Float32Array,
  out: Uint16Array | undefined,
  bits: (x: number) => number,
): Uint16Array {
  const o = out ?? new Uint16Array(src.length);
  const s = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < s.length; i++) o[i] = bits(s[i]!);
  return o;
}
