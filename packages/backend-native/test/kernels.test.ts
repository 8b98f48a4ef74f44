import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { NATIVE_KERNELS } from '../src/backend.js';
import {
  loadAddon,
  nativeAvailable,
  nativeBackendLoader,
  probeNative,
  resetAddonStatus,
} from '../src/index.js';

describe('fallback', () => {
  it('probe says why when the addon is switched off or missing, and never throws', async () => {
    const before = process.env.RELP_NATIVE;
    process.env.RELP_NATIVE = 'off';
    resetAddonStatus();
    try {
      const p = await probeNative();
      expect(p.ok).toBe(false);
      if (!p.ok) expect(p.reason).toMatch(/RELP_NATIVE=off/);
      expect(loadAddon().ok).toBe(false);
      await expect(nativeBackendLoader.register()).rejects.toThrow(/unavailable/);
    } finally {
      if (before === undefined) delete process.env.RELP_NATIVE;
      else process.env.RELP_NATIVE = before;
      resetAddonStatus();
    }
  });
});

/** Deterministic data with negative values, zeros and a wide range. */
function data(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 4294967296) * 4 - 2) * (i % 7 === 0 ? 10 : 1);
    if (i % 13 === 5) out[i] = 0;
  }
  return out;
}

type Case = [
  name: string,
  f: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
  shapes: number[][],
  tol?: number,
];

const pos = (x: tf.Tensor) => tf.add(tf.abs(x), 0.5);
const CASES: Case[] = [
  [
    'matMul',
    (a, b) => tf.matMul(a!, b!),
    [
      [5, 7],
      [7, 4],
    ],
    1e-5,
  ],
  [
    'matMul tA',
    (a, b) => tf.matMul(a!, b!, true),
    [
      [7, 5],
      [7, 4],
    ],
    1e-5,
  ],
  [
    'matMul tB',
    (a, b) => tf.matMul(a!, b!, false, true),
    [
      [5, 7],
      [4, 7],
    ],
    1e-5,
  ],
  [
    'matMul tA tB',
    (a, b) => tf.matMul(a!, b!, true, true),
    [
      [7, 5],
      [4, 7],
    ],
    1e-5,
  ],
  [
    'matMul batched',
    (a, b) => tf.matMul(a!, b!),
    [
      [3, 5, 7],
      [3, 7, 4],
    ],
    1e-5,
  ],
  [
    'matMul broadcast',
    (a, b) => tf.matMul(a!, b!),
    [
      [2, 3, 5, 7],
      [1, 7, 4],
    ],
    1e-5,
  ],
  [
    'matMul broadcast fine',
    (a, b) => tf.matMul(a!, b!),
    [
      [2, 1, 5, 7],
      [3, 7, 4],
    ],
    1e-5,
  ],
  [
    'matMul k=0',
    (a, b) => tf.matMul(a!, b!),
    [
      [3, 0],
      [0, 4],
    ],
  ],
  [
    'add',
    (a, b) => tf.add(a!, b!),
    [
      [4, 5],
      [4, 5],
    ],
  ],
  ['add row', (a, b) => tf.add(a!, b!), [[4, 5], [5]]],
  [
    'sub col',
    (a, b) => tf.sub(a!, b!),
    [
      [2, 4, 5],
      [2, 4, 1],
    ],
  ],
  [
    'mul outer',
    (a, b) => tf.mul(a!, b!),
    [
      [4, 1],
      [1, 5],
    ],
  ],
  [
    'div',
    (a, b) => tf.div(a!, pos(b!)),
    [
      [3, 4, 5],
      [1, 4, 1],
    ],
  ],
  ['scalar', (a, b) => tf.mul(a!, b!), [[], [3, 2]]],
  ['pow 3', (a) => tf.pow(a!, tf.scalar(3)), [[6, 7]]],
  ['pow 0.5', (a) => tf.pow(pos(a!), tf.scalar(0.5)), [[6, 7]]],
  ['maximum', (a, b) => tf.maximum(a!, b!), [[6, 7], [7]]],
  [
    'minimum',
    (a, b) => tf.minimum(a!, b!),
    [
      [6, 7],
      [6, 1],
    ],
  ],
  [
    'squaredDifference',
    (a, b) => tf.squaredDifference(a!, b!),
    [
      [6, 7],
      [6, 7],
    ],
  ],
  [
    'unary',
    (a) => [
      tf.tanh(a!),
      tf.exp(a!),
      tf.neg(a!),
      tf.square(a!),
      tf.abs(a!),
      tf.relu(a!),
      tf.sigmoid(a!),
      tf.sign(a!),
    ],
    [[9, 11]],
  ],
  [
    'unary positive',
    (a) => [tf.sqrt(pos(a!)), tf.rsqrt(pos(a!)), tf.log(pos(a!)), tf.reciprocal(pos(a!))],
    [[9, 11]],
  ],
  ['unary large', (a) => [tf.tanh(a!), tf.exp(tf.mul(a!, 0.1))], [[300, 257]]],
  ['transpose 2d', (a) => tf.transpose(a!), [[5, 7]]],
  ['transpose 4d', (a) => tf.transpose(a!, [0, 2, 1, 3]), [[2, 3, 4, 5]]],
  ['transpose 4d b', (a) => tf.transpose(a!, [3, 1, 0, 2]), [[2, 3, 4, 5]]],
  ['slice', (a) => tf.slice(a!, [1, 2, 0], [2, 3, 4]), [[3, 6, 4]]],
  ['slice contiguous', (a) => tf.slice(a!, [1, 0], [2, 6]), [[3, 6]]],
  ['split', (a) => tf.split(a!, [2, 3, 4], 1), [[5, 9]]],
  ['split last', (a) => tf.split(a!, 3, -1), [[2, 3, 6]]],
  ['sum', (a) => [tf.sum(a!), tf.sum(a!, -1), tf.sum(a!, 0, true), tf.sum(a!, [0, 2])], [[3, 4, 5]]],
  ['mean', (a) => [tf.mean(a!), tf.mean(a!, -1, true), tf.mean(a!, 1)], [[3, 4, 5]]],
  ['max min', (a) => [tf.max(a!, -1), tf.max(a!, 0, true), tf.min(a!, 1)], [[3, 4, 5]]],
  ['softmax', (a) => [tf.softmax(a!), tf.softmax(tf.mul(a!, 30))], [[3, 4, 17]]],
  [
    'gather',
    (a) => [
      tf.gather(a!, tf.tensor1d([3, 0, 3, 1], 'int32')),
      tf.gather(
        a!,
        tf.tensor2d(
          [
            [1, 2],
            [0, 0],
          ],
          [2, 2],
          'int32',
        ),
        1,
      ),
    ],
    [[5, 3, 2]],
  ],
  [
    'compare',
    (a, b) => [
      tf.greater(a!, b!),
      tf.greaterEqual(a!, 0),
      tf.less(a!, b!),
      tf.lessEqual(a!, b!),
      tf.equal(a!, 0),
      tf.notEqual(a!, b!),
    ],
    [[4, 6], [6]],
  ],
  [
    'tile',
    (a) => [
      tf.tile(a!, [2, 1, 3]),
      tf.broadcastTo(tf.scalar(2), [3, 4]),
      tf.tile(tf.greater(a!, 0), [1, 2, 1]),
    ],
    [[2, 3, 4]],
  ],
  [
    'where broadcast mask',
    (a, b) => tf.where(tf.greater(tf.sum(a!, -1, true), 0), a!, b!),
    [
      [4, 6, 5],
      [4, 6, 5],
    ],
  ],
  [
    'where',
    (a, b) => [
      tf.where(tf.greater(a!, 0), a!, b!),
      tf.where(tf.greaterEqual(a!, 0), tf.scalar(1e-6), tf.scalar(-1e-6)),
    ],
    [
      [4, 6],
      [4, 6],
    ],
  ],
  ['erf', (a) => tf.erf(a!), [[9, 11]]],
  [
    'pad',
    (a) => [
      tf.pad(a!, [
        [0, 0],
        [1, 0],
        [0, 3],
      ]),
      tf.pad(
        a!,
        [
          [1, 1],
          [0, 0],
          [2, 2],
        ],
        1.5,
      ),
      tf.pad(tf.reshape(a!, [24]), [[2, 1]]),
    ],
    [[2, 3, 4]],
  ],
  [
    'pad last axis only (a slice gradient: one native row copy)',
    (a) => [
      tf.pad(a!, [
        [0, 0],
        [0, 0],
        [0, 0],
        [0, 5],
      ]),
      tf.pad(
        a!,
        [
          [0, 0],
          [0, 0],
          [0, 0],
          [3, 2],
        ],
        -2,
      ),
      tf.pad(a!, [
        [0, 0],
        [0, 0],
        [0, 0],
        [4, 0],
      ]),
    ],
    [[2, 3, 2, 4]],
  ],
  [
    'concat last axis, unequal widths, int32 and empty parts (rotary halves)',
    (a, b) => [
      tf.concat(
        [tf.neg(tf.slice(a!, [0, 0, 0, 2], [2, 3, 2, 2])), tf.slice(a!, [0, 0, 0, 0], [2, 3, 2, 2])],
        3,
      ),
      tf.concat([a!, tf.slice(b!, [0, 0, 0, 0], [2, 3, 2, 1]), tf.slice(b!, [0, 0, 0, 0], [2, 3, 2, 0])], -1),
      tf.cast(tf.concat([tf.cast(a!, 'int32'), tf.cast(b!, 'int32')], 1), 'float32'),
    ],
    [
      [2, 3, 2, 4],
      [2, 3, 2, 4],
    ],
  ],
  [
    'concat',
    (a, b) => [tf.concat([a!, b!], 0), tf.concat([a!, b!], 1), tf.concat([a!, b!, a!], 2)],
    [
      [2, 3, 4],
      [2, 3, 4],
    ],
  ],
  [
    'int32 falls back',
    (a) => [
      tf.add(tf.cast(a!, 'int32'), tf.scalar(2, 'int32')),
      tf.sum(tf.cast(a!, 'int32'), 1),
      tf.transpose(tf.cast(a!, 'int32')),
    ],
    [[4, 6]],
  ],
];

async function runOn(
  backend: string,
  c: Case,
  seed: number,
): Promise<{ shape: number[]; dtype: string; values: number[] }[]> {
  await tf.setBackend(backend);
  const before = tf.memory().numTensors;
  const ins = c[2].map((s, i) =>
    tf.tensor(
      data(
        s.reduce((a, b) => a * b, 1),
        seed + i,
      ),
      s,
    ),
  );
  const out = tf.tidy(() => {
    const r = c[1](...ins);
    return Array.isArray(r) ? r : [r];
  });
  const res = await Promise.all(
    out.map(async (t) => ({ shape: t.shape, dtype: t.dtype, values: Array.from(await t.data()) })),
  );
  tf.dispose([...ins, ...out]);
  expect(tf.memory().numTensors).toBe(before);
  return res;
}

describe.skipIf(!nativeAvailable())('native kernels against tfjs cpu', () => {
  beforeAll(async () => {
    await nativeBackendLoader.register();
  });

  it('overrides the hot kernels and keeps every other cpu kernel', () => {
    for (const k of ['BatchMatMul', 'Add', 'Transpose', 'Softmax', 'Sum'])
      expect(NATIVE_KERNELS.has(k)).toBe(true);
    const cpu = tf.getKernelsForBackend('cpu').map((k) => k.kernelName);
    const native = new Set(tf.getKernelsForBackend('native').map((k) => k.kernelName));
    expect(cpu.filter((k) => !native.has(k))).toEqual([]);
  });

  for (const c of CASES) {
    it(c[0], async () => {
      const want = await runOn('cpu', c, 7);
      const got = await runOn('native', c, 7);
      expect(got.length).toBe(want.length);
      got.forEach((g, i) => {
        const w = want[i]!;
        expect(g.shape).toEqual(w.shape);
        expect(g.dtype).toBe(w.dtype);
        const tol = c[3] ?? 1e-6;
        let scale = 1;
        for (const v of w.values) scale = Math.max(scale, Math.abs(v));
        for (let j = 0; j < w.values.length; j++) {
          const a = g.values[j]!;
          const b = w.values[j]!;
          if (Number.isNaN(b)) expect(a).toBeNaN();
          else
            expect(Math.abs(a - b), `${c[0]} output ${i} element ${j}: ${a} vs ${b}`).toBeLessThanOrEqual(
              tol * scale,
            );
        }
      });
    });
  }

  it('copyRows copies rows between strided places and refuses to run past either array', () => {
    const s = loadAddon();
    if (!s.ok) throw new Error(s.reason);
    const x = Float32Array.from({ length: 12 }, (_, i) => i + 1);
    const out = new Float32Array(15);
    s.addon.copyRows(x, out, 3, 2, 1, 4, 2, 5);
    expect(Array.from(out)).toEqual([0, 0, 2, 3, 0, 0, 0, 6, 7, 0, 0, 0, 10, 11, 0]);
    expect(() => s.addon.copyRows(x, out, 3, 2, 1, 4, 2, 7)).toThrow(/out of bounds/);
    expect(() => s.addon.copyRows(x, out, 4, 2, 1, 4, 0, 2)).toThrow(/out of bounds/);
    expect(() => s.addon.copyRows(x, out, 1, 2, -1, 4, 0, 2)).toThrow(/bad arguments/);
  });

  it('sigmoid is bit-identical to the cpu kernel over the whole float range (vectorised exp)', () => {
    const s = loadAddon();
    if (!s.ok) throw new Error(s.reason);
    const n = 300_000;
    const x = new Float32Array(n);
    let seed = 12345;
    const rnd = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 4294967296;
    };
    for (let i = 0; i < n; i++) x[i] = (rnd() - 0.5) * [240, 40, 2, 1e-3][i % 4]!;
    // Specials, the clamps (±40, ±110), where float32 results turn subnormal or 0, and |x| where 1/(1+e^-x) → 1.
    x.set([Infinity, -Infinity, Number.NaN, 0, -0, 1e-45, -1e-45, 88.7, -88.7, 103.3, -103.3, 104, -104]);
    x.set([40, -40, 39.99, -40.01, 110, -110, 109.9, -110.1, 16.6, -16.6, 17.3, -17.3, 1e30, -1e30], 20);
    const got = new Float32Array(n);
    s.addon.unary(9, x, got);
    const want = new Float32Array(n);
    for (let i = 0; i < n; i++) want[i] = 1 / (1 + Math.exp(-x[i]!)); // tfjs's cpu kernel
    let mismatches = 0;
    for (let i = 0; i < n; i++) {
      const same = Number.isNaN(want[i]!) ? Number.isNaN(got[i]!) : Object.is(want[i], got[i]);
      if (!same) mismatches++;
    }
    expect(mismatches).toBe(0);
  });

  it('keeps at most the pool limit, making room by dropping the oldest arrays', async () => {
    await tf.setBackend('native');
    const backend = tf.backend() as unknown as { pooled(): number; setPoolLimit(bytes: number): void };
    const a = tf.tensor(data(64 * 128, 1), [64, 128]);
    const small = tf.tensor(data(64 * 64, 2), [64, 64]);
    const big = 64 * 128 * 4;
    try {
      backend.setPoolLimit(0);
      expect(backend.pooled()).toBe(0);
      backend.setPoolLimit(3 * big);
      tf.dispose([tf.neg(a), tf.neg(a), tf.neg(a)]);
      expect(backend.pooled()).toBe(3 * big);
      // A new length still gets in: the oldest array of the old length leaves.
      tf.neg(small).dispose();
      expect(backend.pooled()).toBe(2 * big + big / 2);
      // ... and the next kernel of that length reuses it.
      const again = tf.neg(small);
      expect(backend.pooled()).toBe(2 * big);
      expect(Array.from(again.dataSync())).toEqual(Array.from(small.dataSync()).map((q) => -q));
      again.dispose();
      backend.setPoolLimit(big);
      expect(backend.pooled()).toBeLessThanOrEqual(big);
    } finally {
      backend.setPoolLimit(512 * 1024 * 1024);
      tf.dispose([a, small]);
    }
  });

  it('reuses the arrays of disposed outputs, but never one that was read out or that a live view shares', async () => {
    await tf.setBackend('native');
    const backend = tf.backend() as unknown as { pooled(): number };
    const shape = [64, 128];
    const a = tf.tensor(data(64 * 128, 1), shape);
    const b = tf.tensor(data(64 * 128, 2), shape);
    const churn = () => {
      for (let i = 0; i < 8; i++) tf.dispose([tf.mul(a, b), tf.sub(a, b), tf.neg(a)]);
    };
    // An array handed out by dataSync() keeps its values after the tensor is disposed and others are made.
    const t = tf.add(a, b);
    const v = t.dataSync();
    const want = Array.from(v);
    t.dispose();
    churn();
    expect(Array.from(v)).toEqual(want);
    // A contiguous slice is a view of its input's array (the CPU kernel): disposing the input must not
    // hand that array to the next kernel while the view lives.
    const u = tf.add(a, b);
    const view = tf.slice(u, [0, 0], [32, 128]);
    u.dispose();
    churn();
    expect(Array.from(view.dataSync())).toEqual(want.slice(0, 32 * 128));
    view.dispose();
    // Outputs nobody read are reused: the pool fills on dispose and empties on the next allocation.
    const w = tf.mul(a, b);
    const before = backend.pooled();
    w.dispose();
    expect(backend.pooled()).toBe(before + 64 * 128 * 4);
    const x = tf.mul(a, a);
    expect(backend.pooled()).toBe(before);
    // ... and a reused array is overwritten entirely (padding too, which fills before copying).
    expect(Array.from(x.dataSync())).toEqual(Array.from(a.dataSync()).map((q) => Math.fround(q * q)));
    const p1 = tf.pad(tf.reshape(a, [64, 128]), [
      [0, 0],
      [0, 0],
    ]);
    tf.dispose([x, p1]);
    const padded = tf.pad(tf.slice(a, [0, 0], [64, 120]), [
      [0, 0],
      [3, 5],
    ]);
    const pv = padded.dataSync();
    for (let r = 0; r < 64; r++) {
      for (const c of [0, 1, 2, 123, 124, 125, 126, 127]) expect(pv[r * 128 + c]).toBe(0);
    }
    tf.dispose([padded, a, b]);
  });

  it('is deterministic: the same inputs give bit-identical results', async () => {
    const a = await runOn('native', CASES.find((c) => c[0] === 'matMul batched')!, 3);
    const b = await runOn('native', CASES.find((c) => c[0] === 'matMul batched')!, 3);
    expect(a).toEqual(b);
  });
});
