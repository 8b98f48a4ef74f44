import { readFileSync } from 'node:fs';
import { ErrorCodes, isRelpError } from '@relp/core/errors';
import { describe, expect, it } from 'vitest';
import {
  parseSafetensorsIndex,
  readSafetensors,
  readShardedSafetensors,
  writeSafetensors,
} from '../src/index.js';

const fixtures = new URL('../../../fixtures/weights/', import.meta.url);

function decodeExpected(v: number | string): number {
  if (v === 'nan') return Number.NaN;
  if (v === 'inf') return Number.POSITIVE_INFINITY;
  if (v === '-inf') return Number.NEGATIVE_INFINITY;
  if (v === '-0') return -0;
  return v as number;
}

/** Assembles a file from a header object (or raw header text) and a data section, bypassing the writer. */
function file(header: unknown, data: Uint8Array | number = 0, headerLength?: number): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + json.length + d.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength ?? json.length), true);
  out.set(json, 8);
  out.set(d, 8 + json.length);
  return out;
}

function expectBad(f: () => unknown, pattern: RegExp): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(isRelpError(err, ErrorCodes.BadModelFile), `expected BAD_MODEL_FILE, got ${String(err)}`).toBe(true);
  expect((err as Error).message).toMatch(pattern);
}

describe('safetensors reader against the Python reference writer', () => {
  const bytes = new Uint8Array(readFileSync(new URL('reference.safetensors', fixtures)));
  const expected = JSON.parse(readFileSync(new URL('reference.expected.json', fixtures), 'utf8')) as Record<
    string,
    { shape: number[]; dtype: string; f32?: (number | string)[]; values?: number[] }
  >;
  const st = readSafetensors(bytes);

  it('lists every tensor and the metadata', () => {
    expect(new Set(st.names())).toEqual(new Set(Object.keys(expected)));
    expect(st.metadata).toEqual({ format: 'pt', note: 'relp fixture' });
  });

  for (const [name, want] of Object.entries(expected)) {
    it(`reads ${name} (${want.dtype})`, () => {
      expect(st.info(name)?.shape).toEqual(want.shape);
      if (want.f32 !== undefined) {
        const t = st.get(name)!;
        expect(t.shape).toEqual(want.shape);
        expect(t.data.length).toBe(want.f32.length);
        want.f32.forEach((v, i) => {
          const w = Math.fround(decodeExpected(v));
          const g = t.data[i]!;
          if (Number.isNaN(w)) expect(Number.isNaN(g)).toBe(true);
          else expect(Object.is(g, w), `${name}[${i}]: ${g} vs ${w}`).toBe(true);
        });
        expect(st.get(name)).toBe(t); // cached
      } else {
        expect(() => st.get(name)).toThrow(expect.objectContaining({ code: ErrorCodes.Unsupported }));
        const raw = st.raw(name)!;
        const values =
          raw.dtype === 'I64'
            ? [...new BigInt64Array(raw.bytes.slice().buffer)].map(Number)
            : [...raw.bytes].map((b) => (raw.dtype === 'BOOL' ? b : b));
        expect(values).toEqual(want.values);
      }
    });
  }

  it('returns undefined for an absent name', () => {
    expect(st.get('nope')).toBeUndefined();
    expect(st.raw('nope')).toBeUndefined();
  });

  it('reads from an ArrayBuffer and from an unaligned view (copies instead of viewing)', () => {
    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    const a = readSafetensors(shifted.subarray(1));
    const b = readSafetensors(bytes.slice().buffer);
    for (const name of ['f32.matrix', 'f16.random', 'bf16.random', 'f64.vec']) {
      expect([...a.get(name)!.data]).toEqual([...st.get(name)!.data]);
      expect([...b.get(name)!.data]).toEqual([...st.get(name)!.data]);
    }
  });
});

describe('safetensors writer', () => {
  it('round-trips F32 exactly, F16/BF16 within rounding, and raw dtypes byte for byte', () => {
    const data = Float32Array.from({ length: 24 }, (_, i) => Math.sin(i) * 10 ** (i % 4));
    const out = writeSafetensors(
      {
        a: { shape: [2, 3, 4], data },
        h: { shape: [24], data, dtype: 'F16' },
        b: { shape: [4, 6], data, dtype: 'BF16' },
        d: { shape: [24], data, dtype: 'F64' },
        r: { shape: [3], bytes: new Uint8Array([1, 2, 3]), dtype: 'U8' },
        z: { shape: [0], data: new Float32Array(0) },
      },
      { metadata: { k: 'v' } },
    );
    expect((new DataView(out.buffer).getUint32(0, true) + 8) % 8).toBe(0); // data aligned
    const st = readSafetensors(out);
    expect(st.names()).toEqual(['a', 'h', 'b', 'd', 'r', 'z']);
    expect(st.metadata).toEqual({ k: 'v' });
    expect([...st.get('a')!.data]).toEqual([...data]);
    expect([...st.get('d')!.data]).toEqual([...data]);
    st.get('h')!.data.forEach((v, i) => {
      expect(Math.abs(v - data[i]!)).toBeLessThanOrEqual(Math.abs(data[i]!) * 2 ** -11 + 2 ** -25);
    });
    st.get('b')!.data.forEach((v, i) => {
      expect(Math.abs(v - data[i]!)).toBeLessThanOrEqual(Math.abs(data[i]!) * 2 ** -8);
    });
    expect([...st.raw('r')!.bytes]).toEqual([1, 2, 3]);
    expect(st.get('z')!.data.length).toBe(0);
  });

  it('refuses inconsistent input with BAD_INPUT', () => {
    const bad = [
      () => writeSafetensors({ a: { shape: [2], data: new Float32Array(3) } }),
      () => writeSafetensors({ a: { shape: [-1], data: new Float32Array(0) } }),
      () => writeSafetensors({ a: { shape: [2], bytes: new Uint8Array(3), dtype: 'F16' } }),
      () => writeSafetensors({ __metadata__: { shape: [0], data: new Float32Array(0) } }),
      () =>
        writeSafetensors([
          ['x', { shape: [0], data: new Float32Array(0) }],
          ['x', { shape: [0], data: new Float32Array(0) }],
        ]),
    ];
    for (const f of bad) expect(f).toThrow(expect.objectContaining({ code: ErrorCodes.BadInput }));
  });
});

describe('safetensors reader: malformed files give BAD_MODEL_FILE', () => {
  const ok = { t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  it('accepts the well-formed base case', () => {
    expect(readSafetensors(file(ok, 8)).get('t')!.data.length).toBe(2);
  });
  it('too short for a header length', () => expectBad(() => readSafetensors(new Uint8Array(5)), /too short/));
  it('an empty file says so', () =>
    expectBad(
      () => readSafetensors(new Uint8Array(0), { source: 'x.safetensors' }),
      /^x\.safetensors: the file is empty \(0 bytes\)$/,
    ));
  it('header length past the end of the file', () =>
    expectBad(() => readSafetensors(file(ok, 8, 10_000)), /the file is truncated \(or not safetensors\)/));
  it('absurd header length (2^40, 2^64-1, over the cap)', () => {
    const f = file(ok, 8);
    new DataView(f.buffer).setBigUint64(0, 2n ** 40n, true);
    expectBad(() => readSafetensors(f), /exceeds the limit/);
    new DataView(f.buffer).setBigUint64(0, 2n ** 64n - 1n, true);
    expectBad(() => readSafetensors(f), /exceeds the limit/);
    expectBad(() => readSafetensors(file(ok, 8), { maxHeaderBytes: 10 }), /exceeds the limit/);
  });
  it('header not JSON / not an object', () => {
    expectBad(() => readSafetensors(file('{"t": {', 0)), /not JSON/);
    expectBad(() => readSafetensors(file('[1,2]', 0)), /not an object/);
    expectBad(() => readSafetensors(file('null', 0)), /not an object/);
    expectBad(() => readSafetensors(file('42', 0)), /not an object/);
    const bytes = file('{}', 0);
    bytes[9] = 0xff; // invalid UTF-8 in the header
    expectBad(() => readSafetensors(bytes), /UTF-8/);
  });
  it('tensor entry not an object, unknown dtype, bad shapes', () => {
    expectBad(() => readSafetensors(file({ t: 3 }, 0)), /not an object/);
    expectBad(
      () => readSafetensors(file({ t: { dtype: 'F17', shape: [2], data_offsets: [0, 8] } }, 8)),
      /unknown dtype/,
    );
    expectBad(
      () => readSafetensors(file({ t: { dtype: 'toString', shape: [], data_offsets: [0, 4] } }, 4)),
      /unknown dtype/,
    );
    expectBad(
      () => readSafetensors(file({ t: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, 8)),
      /non-negative/,
    );
    expectBad(
      () => readSafetensors(file({ t: { dtype: 'F32', shape: [1.5], data_offsets: [0, 8] } }, 8)),
      /non-negative/,
    );
    expectBad(
      () => readSafetensors(file({ t: { dtype: 'F32', shape: ['2'], data_offsets: [0, 8] } }, 8)),
      /non-negative/,
    );
    expectBad(
      () => readSafetensors(file({ t: { dtype: 'F32', shape: 2, data_offsets: [0, 8] } }, 8)),
      /shape/,
    );
    expectBad(
      () =>
        readSafetensors(file({ t: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 8] } }, 8)),
      /needs/,
    );
  });
  it('offsets not matching dtype × shape', () =>
    expectBad(
      () => readSafetensors(file({ t: { dtype: 'F16', shape: [2], data_offsets: [0, 8] } }, 8)),
      /needs 4/,
    ));
  it('out-of-range, reversed, negative and fractional offsets', () => {
    expectBad(
      () => readSafetensors(file({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, 4)),
      /the file is truncated: its header describes 8 data bytes, the file holds 4 \(4 bytes missing, from tensor "t" on\)/,
    );
    expectBad(
      () => readSafetensors(file({ t: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, 8)),
      /begin <= end/,
    );
    expectBad(
      () => readSafetensors(file({ t: { dtype: 'F32', shape: [1], data_offsets: [-4, 0] } }, 8)),
      /begin <= end/,
    );
    expectBad(
      () => readSafetensors(file({ t: { dtype: 'F32', shape: [1], data_offsets: [0.5, 4.5] } }, 8)),
      /begin <= end/,
    );
    expectBad(
      () => readSafetensors(file({ t: { dtype: 'F32', shape: [1], data_offsets: [0] } }, 4)),
      /data_offsets/,
    );
  });
  it('overlapping tensors, gaps, and trailing bytes', () => {
    const two = (b: number) => ({
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      b: { dtype: 'F32', shape: [2], data_offsets: [b, b + 8] },
    });
    expectBad(() => readSafetensors(file(two(4), 12)), /overlaps/);
    expectBad(() => readSafetensors(file(two(0), 8)), /overlaps/);
    expectBad(() => readSafetensors(file(two(12), 20)), /belong to no tensor/);
    expectBad(() => readSafetensors(file(ok, 12)), /4 trailing bytes belong to no tensor/);
  });
  it('truncated file', () => {
    const full = file(ok, 8);
    for (let n = 0; n < full.length; n++) expectBad(() => readSafetensors(full.subarray(0, n)), /./);
    // Cut inside the data: which tensor, how many bytes expected and present.
    const two = file(
      {
        a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
        b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] },
      },
      24,
    );
    expectBad(
      () => readSafetensors(two.subarray(0, two.length - 10)),
      /truncated: its header describes 24 data bytes, the file holds 14 \(10 bytes missing, from tensor "b" on\)/,
    );
  });
  it('duplicate tensor names (JSON.parse would keep only the last)', () => {
    const text =
      '{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}';
    expectBad(() => readSafetensors(file(text, 4)), /appears twice/);
    const escaped =
      '{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"\\u0074":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}';
    expectBad(() => readSafetensors(file(escaped, 4)), /appears twice/);
    const inner = '{"t":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}';
    expectBad(() => readSafetensors(file(inner, 4)), /duplicated/);
  });
  it('bad __metadata__', () => {
    expectBad(() => readSafetensors(file({ __metadata__: [1] }, 0)), /__metadata__/);
    expectBad(() => readSafetensors(file({ __metadata__: { a: 1 } }, 0)), /__metadata__/);
  });
  it('zero-size tensors may share an offset', () => {
    const st = readSafetensors(
      file(
        {
          e: { dtype: 'F32', shape: [0, 3], data_offsets: [0, 0] },
          t: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
          f: { dtype: 'F16', shape: [0], data_offsets: [4, 4] },
        },
        4,
      ),
    );
    expect(st.get('e')!.shape).toEqual([0, 3]);
  });
});

describe('sharded safetensors', () => {
  const s1 = writeSafetensors({ a: { shape: [2], data: new Float32Array([1, 2]) } });
  const s2 = writeSafetensors({ b: { shape: [1], data: new Float32Array([3]), dtype: 'F16' } });
  const index = { metadata: { total_size: 10 }, weight_map: { a: 'm-1.safetensors', b: 'm-2.safetensors' } };

  it('reads tensors through the index', () => {
    const w = readShardedSafetensors(JSON.stringify(index), { 'm-1.safetensors': s1, 'm-2.safetensors': s2 });
    expect(w.names()).toEqual(['a', 'b']);
    expect([...w.get('a')!.data]).toEqual([1, 2]);
    expect([...w.get('b')!.data]).toEqual([3]);
    expect(w.get('c')).toBeUndefined();
    expect(parseSafetensorsIndex(index).shards).toEqual(['m-1.safetensors', 'm-2.safetensors']);
  });

  it('rejects indexes that lie or escape the folder', () => {
    const shards = new Map([
      ['m-1.safetensors', s1],
      ['m-2.safetensors', s2],
    ]);
    expectBad(() => readShardedSafetensors('{', shards), /not valid JSON/);
    expectBad(() => readShardedSafetensors('{"weight_map": []}', shards), /weight_map/);
    expectBad(
      () => readShardedSafetensors(JSON.stringify({ weight_map: { a: '../x' } }), shards),
      /safe relative/,
    );
    expectBad(
      () => readShardedSafetensors(JSON.stringify({ weight_map: { a: '/etc/passwd' } }), shards),
      /safe relative/,
    );
    expectBad(
      () => readShardedSafetensors(JSON.stringify({ weight_map: { a: 'm-3.safetensors' } }), shards),
      /not provided/,
    );
    expectBad(
      () =>
        readShardedSafetensors(
          JSON.stringify({ weight_map: { a: 'm-2.safetensors', b: 'm-2.safetensors' } }),
          shards,
        ),
      /lacks it|index says/,
    );
    const both = writeSafetensors({
      a: { shape: [2], data: new Float32Array([1, 2]) },
      b: { shape: [1], data: new Float32Array([3]) },
    });
    expectBad(
      () =>
        readShardedSafetensors(JSON.stringify({ weight_map: { a: 'm-1.safetensors' } }), {
          'm-1.safetensors': both,
        }),
      /index says nothing/,
    );
    const dupShard = writeSafetensors({ a: { shape: [2], data: new Float32Array([1, 2]) } });
    expectBad(
      () =>
        readShardedSafetensors(JSON.stringify(index), {
          'm-1.safetensors': s1,
          'm-2.safetensors': writeSafetensors({
            a: { shape: [2], data: new Float32Array([1, 2]) },
            b: { shape: [1], data: new Float32Array([3]) },
          }),
          x: dupShard,
        }),
      /two shards/,
    );
  });
});

describe('sharded safetensors: names that shadow Object.prototype', () => {
  it('a shard tensor named "constructor" that the index omits is refused cleanly', () => {
    const shard = writeSafetensors({ constructor: { shape: [1], data: new Float32Array([1]) } });
    const two = writeSafetensors({
      x: { shape: [1], data: new Float32Array([2]) },
      constructor: { shape: [1], data: new Float32Array([1]) },
    });
    expectBad(
      () =>
        readShardedSafetensors(JSON.stringify({ weight_map: { x: 'a.safetensors' } }), {
          'a.safetensors': two,
        }),
      /"constructor" is in shard a\.safetensors but the index says nothing about it/,
    );
    const ok = readShardedSafetensors(JSON.stringify({ weight_map: { constructor: 'a.safetensors' } }), {
      'a.safetensors': shard,
    });
    expect([...ok.get('constructor')!.data]).toEqual([1]);
    expect(ok.get('toString')).toBeUndefined();
  });
});
