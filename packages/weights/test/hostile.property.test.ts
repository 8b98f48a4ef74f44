import { ErrorCodes, isRelpError } from '@relp/core/errors';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  bf16ToF32,
  dtypeSize,
  f16ToF32,
  isFloatDtype,
  readSafetensors,
  SAFETENSORS_DTYPES,
  type SafetensorsDtype,
  type SafetensorsFile,
  writeSafetensors,
} from '../src/index.js';

const dtypes = Object.keys(SAFETENSORS_DTYPES) as SafetensorsDtype[];

const tensorArb = fc.record({
  dtype: fc.constantFrom(...dtypes),
  shape: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }),
  seed: fc.integer(),
});

/** Random valid files: names, dtypes, shapes, bytes and metadata. */
const fileArb = fc
  .record({
    tensors: fc.uniqueArray(fc.tuple(fc.string({ maxLength: 8 }), tensorArb), {
      selector: ([n]) => n,
      maxLength: 6,
    }),
    metadata: fc.option(
      fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 }),
      {
        nil: undefined,
      },
    ),
  })
  .filter(({ tensors }) => tensors.every(([n]) => n !== '__metadata__'))
  .map(({ tensors, metadata }) => {
    const spec = tensors.map(([name, t]) => {
      const size = t.shape.reduce((a, b) => a * b, 1);
      const bytes = new Uint8Array(size * dtypeSize(t.dtype));
      let s = t.seed >>> 0;
      for (let i = 0; i < bytes.length; i++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        bytes[i] = s >>> 24;
      }
      return { name, dtype: t.dtype, shape: t.shape, bytes };
    });
    const bytes = writeSafetensors(
      spec.map((t) => [t.name, { shape: t.shape, bytes: t.bytes, dtype: t.dtype }] as const),
      metadata === undefined ? {} : { metadata },
    );
    return { spec, bytes, metadata };
  });

function expectedF32(dtype: SafetensorsDtype, bytes: Uint8Array): number[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.length / dtypeSize(dtype);
  return Array.from({ length: n }, (_, i) => {
    switch (dtype) {
      case 'F32':
        return dv.getFloat32(i * 4, true);
      case 'F64':
        return Math.fround(dv.getFloat64(i * 8, true));
      case 'F16':
        return f16ToF32(dv.getUint16(i * 2, true));
      default:
        return bf16ToF32(dv.getUint16(i * 2, true));
    }
  });
}

const sameFloat = (a: number, b: number) => (Number.isNaN(a) && Number.isNaN(b)) || Object.is(a, b);

/** Everything a parsed file claims must hold for its bytes; reading every tensor must not throw but UNSUPPORTED. */
function checkSelfConsistent(st: SafetensorsFile, fileBytes: number): void {
  const names = st.names();
  expect(new Set(names).size).toBe(names.length);
  let covered = 0;
  for (const name of names) {
    const info = st.info(name)!;
    const size = info.shape.reduce((a, b) => a * b, 1);
    expect(info.size).toBe(size);
    expect(info.end - info.begin).toBe(size * dtypeSize(info.dtype));
    expect(info.begin).toBeGreaterThanOrEqual(st.header.dataStart);
    expect(info.end).toBeLessThanOrEqual(fileBytes);
    covered += info.end - info.begin;
    expect(st.raw(name)!.bytes.length).toBe(info.end - info.begin);
    if (isFloatDtype(info.dtype)) expect(st.get(name)!.data.length).toBe(size);
    else expect(() => st.get(name)).toThrow(expect.objectContaining({ code: ErrorCodes.Unsupported }));
  }
  expect(st.header.dataStart + covered).toBe(fileBytes);
}

/** Parsing must succeed self-consistently or throw RelpError BAD_MODEL_FILE, never anything else. */
function parseOrBad(bytes: Uint8Array): void {
  let st: SafetensorsFile;
  try {
    st = readSafetensors(bytes);
  } catch (e) {
    if (!isRelpError(e, ErrorCodes.BadModelFile)) throw new Error(`unexpected ${String(e)}`, { cause: e });
    return;
  }
  checkSelfConsistent(st, bytes.length);
}

describe('property: valid files round-trip', () => {
  it('names, dtypes, shapes, metadata, raw bytes and float32 values survive write → read', () => {
    fc.assert(
      fc.property(fileArb, ({ spec, bytes, metadata }) => {
        const st = readSafetensors(bytes);
        expect(new Set(st.names())).toEqual(new Set(spec.map((t) => t.name)));
        expect(st.names().length).toBe(spec.length);
        expect(st.metadata).toEqual(metadata ?? {});
        for (const t of spec) {
          expect(st.info(t.name)!.dtype).toBe(t.dtype);
          expect(st.info(t.name)!.shape).toEqual(t.shape);
          expect([...st.raw(t.name)!.bytes]).toEqual([...t.bytes]);
          if (isFloatDtype(t.dtype)) {
            const got = st.get(t.name)!.data;
            const want = expectedF32(t.dtype, t.bytes);
            expect(got.length).toBe(want.length);
            want.forEach((w, i) => {
              if (!sameFloat(got[i]!, w)) throw new Error(`${t.name}[${i}]: ${got[i]} vs ${w}`);
            });
          }
        }
        checkSelfConsistent(st, bytes.length);
      }),
      { numRuns: 300 },
    );
  });
});

describe('property: hostile bytes give a typed error or a self-consistent parse', () => {
  it('bit flips', () => {
    fc.assert(
      fc.property(
        fileArb,
        fc.array(fc.nat(), { minLength: 1, maxLength: 4 }),
        fc.nat(7),
        ({ bytes }, positions, bit) => {
          const b = bytes.slice();
          for (const p of positions) b[p % b.length]! ^= 1 << bit;
          parseOrBad(b);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('byte overwrites inside the header', () => {
    fc.assert(
      fc.property(fileArb, fc.nat(), fc.integer({ min: 0, max: 255 }), ({ bytes }, pos, value) => {
        const b = bytes.slice();
        const headerLen = new DataView(b.buffer).getUint32(0, true);
        b[8 + (pos % Math.max(headerLen, 1))] = value;
        parseOrBad(b);
      }),
      { numRuns: 1000 },
    );
  });

  it('truncations and extensions', () => {
    fc.assert(
      fc.property(fileArb, fc.nat(), fc.uint8Array({ maxLength: 16 }), ({ bytes }, cut, extra) => {
        parseOrBad(bytes.subarray(0, cut % (bytes.length + 1)));
        const longer = new Uint8Array(bytes.length + extra.length);
        longer.set(bytes);
        longer.set(extra, bytes.length);
        if (extra.length > 0) expect(() => readSafetensors(longer)).toThrow(/trailing/);
      }),
      { numRuns: 500 },
    );
  });

  it('every cut of a valid file says the file is empty, too short or truncated', () => {
    fc.assert(
      fc.property(fileArb, fc.nat(), ({ bytes }, cutAt) => {
        const n = cutAt % bytes.length;
        expect(() => readSafetensors(bytes.subarray(0, n))).toThrow(
          n === 0 ? /the file is empty \(0 bytes\)/ : n < 8 ? /too short/ : /the file is truncated/,
        );
      }),
      { numRuns: 500 },
    );
  });

  it('header length prefix edits', () => {
    fc.assert(
      fc.property(fileArb, fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), ({ bytes }, len) => {
        const b = bytes.slice();
        new DataView(b.buffer).setBigUint64(0, len, true);
        parseOrBad(b);
      }),
      { numRuns: 500 },
    );
  });

  it('structured header edits: arbitrary JSON in place of entries, fields, offsets and shapes', () => {
    const edit = fc.oneof(
      fc.record({ kind: fc.constant('entry' as const), value: fc.jsonValue({ maxDepth: 3 }) }),
      fc.record({
        kind: fc.constant('field' as const),
        field: fc.constantFrom('dtype', 'shape', 'data_offsets', '__proto__', 'extra'),
        value: fc.oneof(
          fc.jsonValue({ maxDepth: 2 }),
          fc.constantFrom(...dtypes, 'F4', 'Q4_0', ''),
          fc.array(fc.oneof(fc.integer({ min: -10, max: 200 }), fc.double(), fc.constant(2 ** 53)), {
            maxLength: 4,
          }),
        ),
      }),
      fc.record({ kind: fc.constant('metadata' as const), value: fc.jsonValue({ maxDepth: 2 }) }),
    );
    fc.assert(
      fc.property(fileArb, fc.nat(), edit, ({ bytes }, which, e) => {
        const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
        const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen))) as Record<
          string,
          unknown
        >;
        const data = bytes.subarray(8 + headerLen);
        const names = Object.keys(header).filter((n) => n !== '__metadata__');
        if (e.kind === 'metadata') header.__metadata__ = e.value;
        else if (names.length > 0) {
          const name = names[which % names.length]!;
          if (e.kind === 'entry') header[name] = e.value;
          else (header[name] as Record<string, unknown>)[e.field] = e.value;
        }
        const json = new TextEncoder().encode(JSON.stringify(header));
        const out = new Uint8Array(8 + json.length + data.length);
        new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
        out.set(json, 8);
        out.set(data, 8 + json.length);
        parseOrBad(out);
      }),
      { numRuns: 1000 },
    );
  });

  it('random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.string({ maxLength: 40 }), (raw, text) => {
        parseOrBad(raw);
        const json = new TextEncoder().encode(text);
        const b = new Uint8Array(8 + json.length);
        new DataView(b.buffer).setUint32(0, json.length, true);
        b.set(json, 8);
        parseOrBad(b);
      }),
      { numRuns: 1000 },
    );
  });
});
