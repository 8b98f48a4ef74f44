import * as tf from '@tensorflow/tfjs-core';
import { wantsTransposedWeightCopies } from './backend.js';
import type { Linear } from './decoder.js';
import { ErrorCodes, RelpError } from './errors.js';
import { checkpointLayerCount, layerIndexOf } from './weight-names.js';
import type { HostTensor, WeightMap } from './weights.js';

/**
 * Reading a checkpoint's weights into tensors in two phases, so a bad file leaks nothing: a family's weight
 * mapping checks every host tensor first (missing or misshapen → BAD_MODEL_FILE naming the tensor) and describes
 * each tensor as a `Deferred`; `buildWeights` then creates them all, and frees those it made if one fails. The
 * model frees the returned list on dispose.
 *
 * Where the weight map tells shapes without data (`WeightMap.shape`, e.g. GGUF's, which dequantises on `get`),
 * the first phase checks shapes only and each deferred tensor reads its host data when it is built, and holds
 * no reference to it afterwards: a load holds the model's float32 weights about once (on the CPU backends the
 * tensor keeps the very array it was made from), not every host array plus the tensors made from them.
 */

/** A weight that exists with exactly this shape (BAD_MODEL_FILE otherwise). */
export function requireWeight(weights: WeightMap, name: string, shape: readonly number[]): HostTensor {
  const t = weights.get(name);
  if (t === undefined) {
    const layer = layerIndexOf(name);
    const count = layer === undefined ? undefined : checkpointLayerCount(weights);
    // A whole missing layer usually means the config claims more layers than the checkpoint holds.
    const why =
      count !== undefined && layer! >= count
        ? `: the checkpoint has weights for ${count} layer${count === 1 ? '' : 's'}, fewer than the config declares`
        : '';
    throw new RelpError(ErrorCodes.BadModelFile, `weight '${name}' is missing${why}`, {
      details: { tensor: name, ...(count !== undefined ? { checkpointLayers: count } : {}) },
    });
  }
  return checkShape(name, t, shape);
}

function checkShape(name: string, t: HostTensor, shape: readonly number[]): HostTensor {
  const same = t.shape.length === shape.length && t.shape.every((s, i) => s === shape[i]);
  if (!same || t.data.length !== shape.reduce((a, c) => a * c, 1)) {
    throw new RelpError(
      ErrorCodes.BadModelFile,
      `weight '${name}' has shape [${t.shape}], expected [${shape}]`,
      { details: { tensor: name, shape: [...t.shape], expected: [...shape] } },
    );
  }
  return t;
}

/** `checkShape` for a shape told without data. */
function checkShapeOnly(name: string, actual: readonly number[], shape: readonly number[]): void {
  const same = actual.length === shape.length && actual.every((s, i) => s === shape[i]);
  if (!same) {
    throw new RelpError(
      ErrorCodes.BadModelFile,
      `weight '${name}' has shape [${actual}], expected [${shape}]`,
      {
        details: { tensor: name, shape: [...actual], expected: [...shape] },
      },
    );
  }
}

const DEFERRED: unique symbol = Symbol('deferred weight');

/** A tensor (or tensors, e.g. a `Linear`) described by checked host data, created by `buildWeights`. */
export interface Deferred<T> {
  readonly [DEFERRED]: () => T;
}

/** Defers any creation from checked host data (e.g. a reordered matrix). */
export function deferred<T>(make: () => T): Deferred<T> {
  return { [DEFERRED]: make };
}

/** A weight plan (objects and arrays of `Deferred`s) with every deferred weight created. */
export type Built<T> =
  T extends Deferred<infer R>
    ? R
    : T extends readonly (infer E)[]
      ? Built<E>[]
      : T extends object
        ? { readonly [K in keyof T]: Built<T[K]> }
        : T;

function isDeferred(x: unknown): x is Deferred<unknown> {
  return typeof x === 'object' && x !== null && DEFERRED in x;
}

/**
 * Creates every deferred weight of `plan` and returns the built tree and every tensor made (the owner's to
 * dispose). If a creation fails, the tensors made so far are freed.
 */
export function buildWeights<T>(plan: T): { weights: Built<T>; tensors: tf.Tensor[] } {
  const tensors: tf.Tensor[] = [];
  const collect = (x: unknown): void => {
    if (x instanceof tf.Tensor) tensors.push(x);
    else if (typeof x === 'object' && x !== null) for (const v of Object.values(x)) collect(v);
  };
  const build = (x: unknown): unknown => {
    if (isDeferred(x)) {
      const made = x[DEFERRED]();
      collect(made);
      return made;
    }
    if (Array.isArray(x)) return x.map(build);
    if (typeof x === 'object' && x !== null) {
      return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, build(v)]));
    }
    return x;
  };
  try {
    return { weights: build(plan) as Built<T>, tensors };
  } catch (e) {
    tf.dispose(tensors);
    throw e;
  }
}

export interface WeightReaderOptions {
  /**
   * Prefixes a name may carry in the file, tried in order (default ['']): e.g. ['transformer.', ''] reads
   * GPT2LMHeadModel and bare GPT2Model names. Errors name the first.
   */
  readonly prefixes?: readonly string[];
  /** Hold Wᵀ with every `Linear` for the backward pass (see `Linear`). Default: `wantsTransposedWeightCopies()`. */
  readonly transposedCopies?: boolean | undefined;
}

export interface ReadOptions {
  /** Other names of the same weight, tried after `name` (each under every prefix). */
  readonly aliases?: readonly string[];
  /** The name is not under the prefixes (e.g. an lm_head next to the body). */
  readonly root?: boolean;
}

export interface LinearReadOptions extends ReadOptions {
  /** The bias's name (read with the same prefixes), when the layer has one. */
  readonly bias?: string | undefined;
  /** How the file stores the matrix: nn.Linear's [out, in] (default) or Conv1D's [in, out]. */
  readonly stored?: 'out_in' | 'in_out';
  /** Overrides the reader's `transposedCopies` for this layer (e.g. an unembedding that never needs it). */
  readonly transposedCopy?: boolean;
}

/** Where a deferred tensor's host data comes from: read now (a map without `shape`) or when it is built. */
type HostSource = () => Float32Array;

/** Checked host reads of one checkpoint, returning `Deferred` tensors for `buildWeights`. */
export class WeightReader {
  private readonly prefixes: readonly string[];
  readonly transposedCopies: boolean;

  constructor(
    private readonly weights: WeightMap,
    options: WeightReaderOptions = {},
  ) {
    this.prefixes = options.prefixes ?? [''];
    this.transposedCopies = options.transposedCopies ?? wantsTransposedWeightCopies();
  }

  private candidates(name: string, options: ReadOptions): string[] {
    const names = [name, ...(options.aliases ?? [])];
    return options.root ? names : names.flatMap((n) => this.prefixes.map((p) => p + n));
  }

  /** Whether the file holds the weight (under any prefix or alias). */
  has(name: string, options: ReadOptions = {}): boolean {
    const shapeOf = this.weights.shape?.bind(this.weights);
    return this.candidates(name, options).some((n) =>
      shapeOf !== undefined ? shapeOf(n) !== undefined : this.weights.get(n) !== undefined,
    );
  }

  /** The host tensor, checked against `shape` (BAD_MODEL_FILE naming the tensor). */
  host(name: string, shape: readonly number[], options: ReadOptions = {}): HostTensor {
    const names = this.candidates(name, options);
    for (const n of names) {
      const t = this.weights.get(n);
      if (t !== undefined) return checkShape(n, t, shape);
    }
    return requireWeight(this.weights, names[0]!, shape);
  }

  /**
   * The weight's host data as a function for build time, its shape checked now: with a map that tells shapes,
   * the data is read (dequantised) only when the function is called, and nothing here keeps it.
   */
  private source(name: string, shape: readonly number[], options: ReadOptions = {}): HostSource {
    const shapeOf = this.weights.shape?.bind(this.weights);
    if (shapeOf === undefined) {
      const { data } = this.host(name, shape, options);
      return () => data;
    }
    const names = this.candidates(name, options);
    for (const n of names) {
      const s = shapeOf(n);
      if (s === undefined) continue;
      checkShapeOnly(n, s, shape);
      const weights = this.weights;
      return () => {
        const t = weights.get(n);
        if (t === undefined) {
          throw new RelpError(ErrorCodes.BadModelFile, `weight '${n}' has a shape but no data`, {
            details: { tensor: n },
          });
        }
        return checkShape(n, t, shape).data;
      };
    }
    // No shape under any name: missing (BAD_MODEL_FILE), unless `get` still finds it.
    const { data } = requireWeight(this.weights, names[0]!, shape);
    return () => data;
  }

  /** A weight as stored, as a tensor of `shape`. */
  tensor<R extends tf.Rank>(
    name: string,
    shape: readonly number[],
    options: ReadOptions = {},
  ): Deferred<tf.Tensor<R>> {
    const read = this.source(name, shape, options);
    return deferred(() => {
      const t: tf.Tensor = tf.tensor(read(), [...shape], 'float32');
      return t as tf.Tensor<R>;
    });
  }

  /** A 1-D weight (bias, norm weight), optionally transformed element-wise in float32 (e.g. Gemma's 1 + w). */
  vector(
    name: string,
    n: number,
    map?: (x: number) => number,
    options: ReadOptions = {},
  ): Deferred<tf.Tensor1D> {
    const read = this.source(name, [n], options);
    if (map === undefined) return deferred(() => tf.tensor1d(read(), 'float32'));
    return deferred(() => {
      const src = read();
      const dst = new Float32Array(n);
      for (let i = 0; i < n; i++) dst[i] = Math.fround(map(src[i]!));
      return tf.tensor1d(dst, 'float32');
    });
  }

  /** A linear layer [in, out] (+ bias), from nn.Linear's [out, in] or Conv1D's [in, out] storage. */
  linear(name: string, inDim: number, outDim: number, options: LinearReadOptions = {}): Deferred<Linear> {
    const outIn = (options.stored ?? 'out_in') === 'out_in';
    const read = this.source(name, outIn ? [outDim, inDim] : [inDim, outDim], options);
    const bias = options.bias === undefined ? undefined : this.source(options.bias, [outDim]);
    // Transposed when built, not now, so the host holds one transposed copy at a time. The file's [out, in]
    // matrix is Wᵀ itself.
    return this.linearFrom(
      () => {
        const src = read();
        return outIn ? { w: transposeHost(src, outDim, inDim), wT: src } : { w: src };
      },
      inDim,
      outDim,
      bias,
      options.transposedCopy ?? this.transposedCopies,
    );
  }

  /**
   * A linear layer from host data W [in, out] (row-major, or a function computing it when built) and an optional
   * bias, e.g. after reordering columns; `wT` may pass W's transpose when the host already has it.
   */
  linearOf(
    w: Float32Array | (() => Float32Array),
    inDim: number,
    outDim: number,
    bias?: Float32Array,
    transposedCopy = this.transposedCopies,
    wT?: Float32Array,
  ): Deferred<Linear> {
    return this.linearFrom(
      () => ({ w: typeof w === 'function' ? w() : w, wT }),
      inDim,
      outDim,
      bias === undefined ? undefined : () => bias,
      transposedCopy,
    );
  }

  /** The deferred layer: host W (and Wᵀ when at hand) and the bias read when built, dropped once made. */
  private linearFrom(
    host: () => { w: Float32Array; wT?: Float32Array | undefined },
    inDim: number,
    outDim: number,
    bias: HostSource | undefined,
    transposedCopy: boolean,
  ): Deferred<Linear> {
    return deferred(() => {
      const made: tf.Tensor[] = [];
      try {
        const { w, wT } = host();
        const layer: { w: tf.Tensor2D; b?: tf.Tensor1D; wT?: tf.Tensor2D } = {
          w: keepIn(made, tf.tensor2d(w, [inDim, outDim], 'float32')),
        };
        if (bias !== undefined) layer.b = keepIn(made, tf.tensor1d(bias(), 'float32'));
        if (transposedCopy) {
          layer.wT = keepIn(
            made,
            wT === undefined ? tf.transpose(layer.w) : tf.tensor2d(wT, [outDim, inDim], 'float32'),
          );
        }
        return layer;
      } catch (e) {
        tf.dispose(made);
        throw e;
      }
    });
  }
}

function keepIn<T extends tf.Tensor>(list: tf.Tensor[], t: T): T {
  list.push(t);
  return t;
}

/** The transpose [cols, rows] of a row-major host matrix [rows, cols] (an exact copy of every value). */
export function transposeHost(src: Float32Array, rows: number, cols: number): Float32Array {
  const dst = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const row = r * cols;
    for (let c = 0; c < cols; c++) dst[c * rows + r] = src[row + c]!;
  }
  return dst;
}
