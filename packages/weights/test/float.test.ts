import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  bf16ArrayToF32,
  bf16ToF32,
  f16ArrayToF32,
  f16BitsToF32Bits,
  f16ToF32,
  f32ArrayToBf16,
  f32ArrayToF16,
  f32BitsToBf16Bits,
  f32BitsToF16Bits,
} from '../src/index.js';

/** The literal definition of a binary floating-point format with `e` exponent and `m` mantissa bits. */
function literal(bits: number, e: number, m: number): number {
  const sign = (bits >>> (e + m)) & 1 ? -1 : 1;
  const exp = (bits >>> m) & ((1 << e) - 1);
  const mant = bits & ((1 << m) - 1);
  const bias = (1 << (e - 1)) - 1;
  if (exp === (1 << e) - 1) return mant === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  if (exp === 0) return sign * 2 ** (1 - bias) * (mant / 2 ** m);
  return sign * 2 ** (exp - bias) * (1 + mant / 2 ** m);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const bitsOf = (x: number) => {
  f32[0] = x;
  return u32[0]!;
};

describe('F16 → float32', () => {
  it('matches the literal definition for all 65536 bit patterns (incl. subnormals, ±0, ±inf, NaN)', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const fast = f16ArrayToF32(all);
    let nan = 0;
    for (let h = 0; h < 65536; h++) {
      const ref = literal(h, 5, 10);
      const got = fast[h]!;
      if (Number.isNaN(ref)) {
        nan++;
        expect(Number.isNaN(got)).toBe(true);
        // sign and payload survive
        expect(f16BitsToF32Bits(h) >>> 31).toBe(h >>> 15);
        expect((f16BitsToF32Bits(h) >>> 13) & 0x3ff).toBe(h & 0x3ff);
      } else if (!Object.is(got, ref) || !Object.is(f16ToF32(h), ref)) {
        throw new Error(`F16 0x${h.toString(16)}: got ${got}, want ${ref}`);
      }
    }
    expect(nan).toBe(2 * 1023);
  });

  it('spot values', () => {
    expect(f16ToF32(0x3c00)).toBe(1);
    expect(f16ToF32(0xc000)).toBe(-2);
    expect(f16ToF32(0x7bff)).toBe(65504);
    expect(f16ToF32(0x0001)).toBe(2 ** -24);
    expect(f16ToF32(0x03ff)).toBe(1023 * 2 ** -24);
    expect(f16ToF32(0x0400)).toBe(2 ** -14);
    expect(Object.is(f16ToF32(0x8000), -0)).toBe(true);
    expect(f16ToF32(0xfc00)).toBe(Number.NEGATIVE_INFINITY);
  });
});

describe('BF16 → float32', () => {
  it('matches the literal definition for all 65536 bit patterns', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const fast = bf16ArrayToF32(all);
    for (let b = 0; b < 65536; b++) {
      const ref = literal(b, 8, 7);
      const got = fast[b]!;
      if (Number.isNaN(ref)) expect(Number.isNaN(got) && Number.isNaN(bf16ToF32(b))).toBe(true);
      else if (!Object.is(got, ref) || !Object.is(bf16ToF32(b), ref))
        throw new Error(`BF16 0x${b.toString(16)}: ${got} vs ${ref}`);
    }
  });
});

/** Nearest value among the positive finite patterns 0 … maxBits (monotonic), ties to even, beyond → inf. */
function refRound(x: number, decode: (b: number) => number, maxBits: number, infBits: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (Number.isNaN(x)) return -1;
  const max = decode(maxBits);
  const halfUlp = (max - decode(maxBits - 1)) / 2;
  if (a >= max + halfUlp) return sign | infBits;
  let lo = 0;
  let hi = maxBits;
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (decode(mid) <= a) lo = mid;
    else hi = mid;
  }
  const dl = a - decode(lo);
  const dh = decode(hi) - a;
  const pick = dl < dh ? lo : dh < dl ? hi : lo % 2 === 0 ? lo : hi;
  return sign | pick;
}

describe('float32 → F16 / BF16 (round to nearest even)', () => {
  it('F16 round-trips every non-NaN pattern exactly', () => {
    for (let h = 0; h < 65536; h++) {
      if (Number.isNaN(f16ToF32(h))) {
        expect(Number.isNaN(f16ToF32(f32BitsToF16Bits(f16BitsToF32Bits(h))))).toBe(true);
        continue;
      }
      expect(f32BitsToF16Bits(f16BitsToF32Bits(h))).toBe(h);
    }
  });

  it('BF16 round-trips every non-NaN pattern exactly', () => {
    for (let b = 0; b < 65536; b++) {
      if (Number.isNaN(bf16ToF32(b))) expect(Number.isNaN(bf16ToF32(f32BitsToBf16Bits(b << 16)))).toBe(true);
      else expect(f32BitsToBf16Bits((b << 16) >>> 0)).toBe(b);
    }
  });

  it('F16 rounding agrees with a nearest-value search (random float32 values, halfway cases included)', () => {
    const decode = (b: number) => literal(b, 5, 10);
    const check = (x: number) => {
      const want = refRound(x, decode, 0x7bff, 0x7c00);
      expect(f32BitsToF16Bits(bitsOf(x))).toBe(want);
    };
    fc.assert(fc.property(fc.float({ noNaN: true }), check), { numRuns: 20000 });
    // exact midpoints between neighbouring F16 values, and around the overflow threshold
    for (let h = 0; h < 0x7bff; h += 7) check((decode(h) + decode(h + 1)) / 2);
    for (const x of [65504, 65519.99, 65520, 65536, 2 ** -25, 2 ** -25 * 1.0001, 2 ** -26, 3 * 2 ** -25]) {
      check(x);
      check(-x);
    }
    const arr = f32ArrayToF16(new Float32Array([1, 65520, 2 ** -25]));
    expect([...arr]).toEqual([0x3c00, 0x7c00, 0]);
  });

  it('BF16 rounding agrees with a nearest-value search', () => {
    const decode = (b: number) => literal(b, 8, 7);
    const check = (x: number) => {
      expect(f32BitsToBf16Bits(bitsOf(x))).toBe(refRound(Math.fround(x), decode, 0x7f7f, 0x7f80));
    };
    fc.assert(fc.property(fc.float({ noNaN: true }), check), { numRuns: 20000 });
    for (let b = 0; b < 0x7f7f; b += 13) check(Math.fround((decode(b) + decode(b + 1)) / 2));
    expect([...f32ArrayToBf16(new Float32Array([1, -2]))]).toEqual([0x3f80, 0xc000]);
  });
});
