import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describeEachBackend, expectBitIdentical, installLeakGuard } from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import {
  buildWeights,
  decoderDims,
  deferred,
  ErrorCodes,
  type HostTensor,
  isRelpError,
  linear,
  ropeInverseFrequencies,
  unembedLogits,
  type WeightMap,
  WeightReader,
  weightMapFromRecord,
} from '../src/index.js';

installLeakGuard();

function expectCode(f: () => unknown, code: string, text: RegExp): void {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  expect(isRelpError(caught), String(caught)).toBe(true);
  expect((caught as { code: string }).code).toBe(code);
  expect((caught as Error).message).toMatch(text);
}

const host = (shape: number[], from = 1): HostTensor => ({
  shape,
  data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => from + i),
});

describeEachBackend('WeightReader and buildWeights', () => {
  const weights = weightMapFromRecord({
    'body.fc.weight': host([3, 2]), // nn.Linear [out, in]
    'body.fc.bias': host([3], 10),
    'conv.weight': host([2, 3]), // Conv1D [in, out]
    'head.weight': host([4, 2]),
  });

  it('tries the prefixes and aliases in order; errors name the first candidate', () => {
    const r = new WeightReader(weights, { prefixes: ['body.', ''] });
    expect(r.host('fc.weight', [3, 2]).data[0]).toBe(1);
    expect(r.has('conv.weight')).toBe(true);
    expect(r.has('missing', { aliases: ['head.weight'] })).toBe(true);
    expect(r.has('head.weight', { root: true })).toBe(true);
    expect(r.has('fc.weight', { root: true })).toBe(false);
    expectCode(() => r.host('nothing', [1]), ErrorCodes.BadModelFile, /'body\.nothing' is missing/);
    expectCode(
      () => r.host('fc.weight', [2, 3]),
      ErrorCodes.BadModelFile,
      /'body\.fc\.weight' has shape \[3,2\], expected \[2,3\]/,
    );
  });

  it('linear layers from either storage are [in, out], with an exact transposed copy when asked', () => {
    const r = new WeightReader(weights, { transposedCopies: true });
    const { weights: w, tensors } = buildWeights({
      fc: r.linear('body.fc.weight', 2, 3, { bias: 'body.fc.bias' }),
      conv: r.linear('conv.weight', 2, 3, { stored: 'in_out', transposedCopy: false }),
    });
    expect(w.fc.w.shape).toEqual([2, 3]);
    expect(Array.from(w.fc.w.dataSync())).toEqual([1, 3, 5, 2, 4, 6]);
    expect(Array.from(w.fc.b!.dataSync())).toEqual([10, 11, 12]);
    expectBitIdentical(w.fc.wT!.dataSync() as Float32Array, weights.get('body.fc.weight')!.data, 'wT');
    expect(w.conv.wT).toBeUndefined();
    expect(Array.from(w.conv.w.dataSync())).toEqual([1, 2, 3, 4, 5, 6]);
    expect(tensors).toHaveLength(4);
    // The copy changes the backward pass's kernels only, not its values.
    const x = tf.tensor2d([0.5, -1, 2, 0.25], [2, 2]);
    const g = (layer: typeof w.fc) => tf.grad((v: tf.Tensor) => tf.sum(tf.square(linear(v, layer))))(x);
    const [withCopy, without] = [g(w.fc), g({ w: w.fc.w, b: w.fc.b })];
    expectBitIdentical(withCopy.dataSync() as Float32Array, without.dataSync() as Float32Array, 'grad');
    tf.dispose([x, withCopy, without, ...tensors]);
  });

  it('checks every weight before creating a tensor, and frees what it made when a creation fails', () => {
    const r = new WeightReader(weights);
    const before = tf.memory().numTensors;
    expectCode(
      () => buildWeights({ a: r.tensor('head.weight', [4, 2]), b: r.tensor('nope', [1]) }),
      ErrorCodes.BadModelFile,
      /nope/,
    );
    expect(tf.memory().numTensors).toBe(before);
    const plan = {
      a: r.tensor('head.weight', [4, 2]),
      layers: [r.vector('body.fc.bias', 3, (v) => v + 1)],
      broken: deferred(() => {
        throw new Error('out of memory');
      }),
    };
    expect(() => buildWeights(plan)).toThrow('out of memory');
    expect(tf.memory().numTensors).toBe(before);
  });
});

/**
 * A map as GGUF's: it tells shapes without data, and each `get` makes a fresh host array (dequantises) and keeps
 * nothing. Records the reads and, at each, how many tensors existed.
 */
function convertingMap(record: Readonly<Record<string, HostTensor>>) {
  const reads: { name: string; numTensors: number }[] = [];
  const made: { name: string; data: Float32Array }[] = [];
  const map: WeightMap = {
    get(name) {
      const t = record[name];
      if (t === undefined) return undefined;
      reads.push({ name, numTensors: tf.memory().numTensors });
      const data = Float32Array.from(t.data);
      made.push({ name, data });
      return { shape: t.shape, data };
    },
    shape: (name) => record[name]?.shape,
    names: () => Object.keys(record),
  };
  return { map, reads, made };
}

/** V8's gc, reachable without --expose-gc on the command line. */
function gcFunction(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

describeEachBackend('deferred reads (a map that tells shapes)', () => {
  const record = {
    'emb.weight': host([5, 2]),
    'norm.weight': host([2], 3),
    'fc.weight': host([3, 2], 7), // nn.Linear [out, in]
    'fc.bias': host([3], 20),
    'conv.weight': host([2, 3], 30), // Conv1D [in, out]
  };
  const planOf = (r: WeightReader, fcCopy = true) => ({
    emb: r.tensor<tf.Rank.R2>('emb.weight', [5, 2]),
    norm: r.vector('norm.weight', 2, (x) => 1 + x / 3),
    fc: r.linear('fc.weight', 2, 3, { bias: 'fc.bias', transposedCopy: fcCopy }),
    conv: r.linear('conv.weight', 2, 3, { stored: 'in_out' }),
  });

  it('checks shapes without reading data, reads each weight once as it builds it, and gives the same bits', () => {
    const { map, reads } = convertingMap(record);
    const r = new WeightReader(map, { transposedCopies: false });
    const plan = planOf(r);
    expect(reads).toEqual([]);
    expectCode(
      () => r.tensor('fc.weight', [2, 3]),
      ErrorCodes.BadModelFile,
      /'fc\.weight' has shape \[3,2\]/,
    );
    expectCode(() => r.vector('none.weight', 2), ErrorCodes.BadModelFile, /'none\.weight' is missing/);
    expect(r.has('conv.weight')).toBe(true);
    expect(reads).toEqual([]);

    const before = tf.memory().numTensors;
    const lazy = buildWeights(plan);
    expect(reads.map((x) => x.name)).toEqual([
      'emb.weight',
      'norm.weight',
      'fc.weight',
      'fc.bias',
      'conv.weight',
    ]);
    // Tensor by tensor: each weight is read only after the tensors before it were made.
    expect(reads.map((x) => x.numTensors - before)).toEqual([0, 1, 2, 3, 5]);

    const eager = buildWeights(
      planOf(new WeightReader(weightMapFromRecord(record), { transposedCopies: false })),
    );
    expect(lazy.tensors).toHaveLength(eager.tensors.length);
    lazy.tensors.forEach((t, i) => {
      expect(t.shape).toEqual(eager.tensors[i]!.shape);
      expectBitIdentical(
        t.dataSync() as Float32Array,
        eager.tensors[i]!.dataSync() as Float32Array,
        `tensor ${i}`,
      );
    });
    tf.dispose([...lazy.tensors, ...eager.tensors]);
  });

  it('a built plan, still held, keeps no host array it read', async () => {
    const gc = gcFunction();
    const { map, made } = convertingMap(record);
    const plan = planOf(new WeightReader(map, { transposedCopies: false }), false);
    const { tensors } = buildWeights(plan);
    // The [out, in] matrix is transposed into a new array for the tensor and no Wᵀ copy is kept: nothing needs
    // the array read any more.
    const released = new Set<string>();
    const registry = new FinalizationRegistry<string>((name) => released.add(name));
    for (const { name, data } of made.splice(0)) if (name === 'fc.weight') registry.register(data, name);
    for (let i = 0; i < 50 && !released.has('fc.weight'); i++) {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(released.has('fc.weight')).toBe(true);
    expect(Object.keys(plan)).toHaveLength(4); // the plan is still reachable here
    tf.dispose(tensors);
  });
});

describeEachBackend('decoder helpers', () => {
  it('a vocabulary-restricted unembedding has a gradient after its forward scope ends', () => {
    const table = tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2]);
    const vocab = tf.tensor1d([2, 0], 'int32');
    const x = tf.tensor3d([0.5, -1, 2, 0.25], [1, 2, 2]);
    // tf.tidy frees the gathered rows when the forward pass returns; the backward pass still needs them.
    const g = tf.grad((v: tf.Tensor) => tf.tidy(() => tf.sum(unembedLogits(v as tf.Tensor3D, table, vocab))))(
      x,
    );
    // d/dx Σ_j x·row_j = Σ of the chosen rows = [5+1, 6+2] at every position.
    expect(Array.from(g.dataSync())).toEqual([6, 8, 6, 8]);
    tf.dispose([table, vocab, x, g]);
  });

  it("GPT-NeoX's frequency divisor: int(dh·pct) may be odd while the rotated width is even", () => {
    const inv = ropeInverseFrequencies({
      theta: 10000,
      dim: 6,
      frequencyDim: 5,
      scaling: { type: 'default' },
    });
    const f = Math.fround;
    expect(Array.from(inv)).toEqual([0, 2, 4].map((e) => f(1 / f(10000 ** f(e / 5)))));
  });
});

describeEachBackend('config sizes and the checkpoint', () => {
  it('a layer the checkpoint lacks entirely is named with the checkpoint’s layer count', () => {
    const w = weightMapFromRecord({
      'model.layers.0.w': host([2]),
      'model.layers.1.w': host([2]),
      'model.layers.1.v': host([2]),
    });
    const r = new WeightReader(w);
    expectCode(
      () => r.host('model.layers.2.w', [2]),
      ErrorCodes.BadModelFile,
      /'model\.layers\.2\.w' is missing: the checkpoint has weights for 2 layers, fewer than the config declares/,
    );
    // A tensor missing inside a layer the checkpoint has is just missing.
    expectCode(
      () => r.host('model.layers.0.v', [2]),
      ErrorCodes.BadModelFile,
      /'model\.layers\.0\.v' is missing$/,
    );
  });

  it('decoderDims refuses sizes no checkpoint could hold, naming the size', () => {
    const ok = {
      nLayers: 2,
      dModel: 32,
      nHeads: 4,
      nKvHeads: 2,
      dHead: 8,
      dMlp: 64,
      vocabSize: 50,
      contextLength: 16,
    };
    expect(decoderDims(ok).nKvHeads).toBe(2);
    const cases: [Partial<typeof ok>, RegExp][] = [
      [{ nLayers: 1e9 }, /layer count \(nLayers\) is 1000000000, more than the largest supported \(4096\)/],
      [{ dModel: 2 ** 31 }, /model width \(dModel\) is 2147483648/],
      [{ dHead: 2 ** 31 }, /head width \(dHead\) is 2147483648/],
      [{ dHead: 1e9 }, /head width/],
      [{ dMlp: 1.5 }, /MLP width \(dMlp\) must be a positive integer/],
      [{ vocabSize: 2 ** 53 }, /vocabulary size/],
      [{ contextLength: 2 ** 31 }, /context length/],
      [{ nHeads: 4096, dHead: 4096 }, /4096 heads × head width 4096/],
      [{ vocabSize: 1 << 20, dModel: 1 << 12 }, /embedding \[vocab, width\] would have 4294967296 elements/],
      [{ nKvHeads: 3 }, /3 key\/value heads do not divide 4 heads/],
    ];
    for (const [change, text] of cases) {
      expectCode(() => decoderDims({ ...ok, ...change }), ErrorCodes.BadModelFile, text);
    }
  });
});
