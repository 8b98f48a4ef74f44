import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { type AddonStatus, loadAddon, type NativeAddon } from './addon.js';

/** The name the backend registers under (core's BACKEND_PREFERENCE puts it first). */
export const NATIVE_BACKEND_NAME = 'native';

type KernelArgs = Parameters<tf.KernelFunc>[0];
type TypedValues = Float32Array | Int32Array | Uint8Array;

/**
 * tfjs's CPU backend with the hot kernels replaced by native ones. Tensor data lives where the CPU backend
 * keeps it (typed arrays in `this.data`); a native kernel reads its inputs' arrays in place and writes a new
 * output array, so every kernel it does not override runs tfjs's own CPU implementation unchanged.
 */
export class NativeBackend extends MathBackendCPU {
  readonly addon: NativeAddon;
  /**
   * Output arrays of disposed tensors, by length, for the next native kernel that needs one of that length.
   * Without this every kernel allocates a fresh typed array and the old ones wait for V8's garbage
   * collector, whose mark-compact runs (triggered by the external memory they hold) measured ~1 s of a
   * 7 s SmolLM2 RelP pass under load. An array is reused only when (1) a native kernel allocated it here,
   * (2) no live tensor's values share its buffer (views of it, e.g. the CPU kernel's contiguous slices,
   * count as users) and (3) it never left the backend through readSync/read (dataSync(), data(),
   * bufferSync()): a caller may keep those after disposing the tensor.
   */
  private readonly pool = new Map<number, Float32Array[]>();
  /** The pooled arrays, oldest first: when the pool is full, the oldest make room (lengths in use stay). */
  private readonly pooledOrder = new Set<Float32Array>();
  private pooledBytes = 0;
  private poolLimit = POOL_MAX_BYTES;
  private readonly users = new WeakMap<ArrayBufferLike, number>();
  private readonly owned = new WeakSet<ArrayBufferLike>();
  private readonly escaped = new WeakSet<ArrayBufferLike>();

  constructor(addon: NativeAddon) {
    super();
    this.addon = addon;
    // MathBackendCPU warns on first use in Node that tfjs-node would be faster; this is the fast backend.
    (this as unknown as { firstUse: boolean }).firstUse = false;
  }

  /** A float32 array of length n for a kernel to overwrite entirely: a reused one (any contents) or a new one. */
  alloc(n: number): Float32Array {
    const reused = this.pool.get(n)?.pop();
    if (reused) {
      this.pooledOrder.delete(reused);
      this.pooledBytes -= reused.byteLength;
      return reused;
    }
    const a = new Float32Array(n);
    if (n >= POOL_MIN_LENGTH) this.owned.add(a.buffer);
    return a;
  }

  /** Bytes held for reuse (tests). */
  pooled(): number {
    return this.pooledBytes;
  }

  /** At most this many bytes of disposed arrays are kept (default RELP_NATIVE_POOL_MB, 512 MB); 0: none. */
  setPoolLimit(bytes: number): void {
    this.poolLimit = Math.max(0, bytes);
    this.evictFor(0);
  }

  /** Drops the oldest pooled arrays until `bytes` more fit under the limit. */
  private evictFor(bytes: number): void {
    for (const old of this.pooledOrder) {
      if (this.pooledBytes + bytes <= this.poolLimit) return;
      const list = this.pool.get(old.length)!;
      list.splice(list.indexOf(old), 1);
      if (list.length === 0) this.pool.delete(old.length);
      this.pooledOrder.delete(old);
      this.pooledBytes -= old.byteLength;
    }
  }

  private use(values: unknown, d: number): ArrayBufferLike | undefined {
    if (!ArrayBuffer.isView(values)) return undefined;
    const b = values.buffer;
    this.users.set(b, (this.users.get(b) ?? 0) + d);
    return b;
  }

  override write(values: tf.backend_util.BackendValues, shape: number[], dtype: tf.DataType): tf.DataId {
    this.use(values, 1);
    return super.write(values, shape, dtype);
  }

  override move(
    dataId: tf.DataId,
    values: tf.backend_util.BackendValues,
    shape: number[],
    dtype: tf.DataType,
    refCount: number,
  ): void {
    this.use(values, 1);
    super.move(dataId, values, shape, dtype, refCount);
  }

  override readSync(dataId: tf.DataId): tf.backend_util.BackendValues {
    const v = this.data.get(dataId)?.values;
    if (ArrayBuffer.isView(v)) this.escaped.add(v.buffer);
    return super.readSync(dataId);
  }

  override disposeData(dataId: tf.DataId, force = false): boolean {
    const entry = this.data.get(dataId);
    const done = super.disposeData(dataId, force);
    if (entry && !this.data.has(dataId)) {
      const v = entry.values;
      const b = this.use(v, -1);
      if (
        b !== undefined &&
        v instanceof Float32Array &&
        (this.users.get(b) ?? 0) <= 0 &&
        this.owned.has(b) &&
        !this.escaped.has(b) &&
        v.byteOffset === 0 &&
        v.byteLength === b.byteLength &&
        v.byteLength <= this.poolLimit
      ) {
        // Lengths change as the work does (a patching pass's rows, another model): the oldest arrays make room.
        this.evictFor(v.byteLength);
        let list = this.pool.get(v.length);
        if (!list) {
          list = [];
          this.pool.set(v.length, list);
        }
        list.push(v);
        this.pooledOrder.add(v);
        this.pooledBytes += v.byteLength;
      }
    }
    return done;
  }

  /** The float32 array holding a tensor's values, or undefined when it is not plain float32 data. */
  f32(t: tf.TensorInfo): Float32Array | undefined {
    if (t.dtype !== 'float32') return undefined;
    const entry = this.data.get(t.dataId);
    const v = entry?.values as TypedValues | undefined;
    if (v instanceof Float32Array) return v;
    // The CPU kernel casts int32/bool to float32 by keeping the integer array: store it as float32 once (the
    // same numbers; other tensors that shared the array keep their own entries).
    if (entry && (v instanceof Int32Array || v instanceof Uint8Array)) {
      const f = Float32Array.from(v);
      entry.values = f;
      return f;
    }
    return undefined;
  }
}

/** Arrays shorter than this are not kept for reuse (small allocations are cheap). */
const POOL_MIN_LENGTH = 4096;
/** At most this many bytes of disposed arrays are kept for reuse: RELP_NATIVE_POOL_MB, default 512 (0: none). */
const POOL_MAX_BYTES = poolLimit(process.env.RELP_NATIVE_POOL_MB);

function poolLimit(v: string | undefined): number {
  const mb = v === undefined || v === '' ? 512 : Number(v);
  return Number.isFinite(mb) && mb >= 0 ? mb * 1024 * 1024 : 512 * 1024 * 1024;
}

const cpuKernel = (name: string): tf.KernelFunc => {
  const k = tf.getKernel(name, 'cpu');
  if (!k) throw new Error(`relp native backend: tfjs's cpu backend has no ${name} kernel`);
  return k.kernelFunc;
};

function prod(xs: readonly number[]): number {
  let p = 1;
  for (const x of xs) p *= x;
  return p;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** BatchMatMul (also every matMul's gradient) through OpenBLAS sgemm. */
function batchMatMul(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as NativeBackend;
  const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
  const av = backend.f32(a);
  const bv = backend.f32(b);
  const ra = a.shape.length;
  const rb = b.shape.length;
  if (!av || !bv || ra < 2 || rb < 2) return cpuKernel('BatchMatMul')(args) as tf.TensorInfo;
  const k = transposeA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
  const kb = transposeB ? b.shape[rb - 1]! : b.shape[rb - 2]!;
  if (k !== kb) return cpuKernel('BatchMatMul')(args) as tf.TensorInfo; // tfjs raises its own error
  const m = transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
  const n = transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
  const outerA = a.shape.slice(0, -2);
  const outerB = b.shape.slice(0, -2);
  let outer: number[];
  try {
    outer = tf.backend_util.assertAndGetBroadcastShape(outerA, outerB);
  } catch {
    return cpuKernel('BatchMatMul')(args) as tf.TensorInfo;
  }
  const batch = prod(outer);
  const batchA = prod(outerA);
  const batchB = prod(outerB);
  // Only whole-tensor broadcasting (one matrix against a batch); anything finer goes to the CPU kernel.
  const okA = batchA === 1 || (batchA === batch && sameShape(outerA.slice(-outer.length), outer));
  const okB = batchB === 1 || (batchB === batch && sameShape(outerB.slice(-outer.length), outer));
  if (!okA || !okB) return cpuKernel('BatchMatMul')(args) as tf.TensorInfo;
  const out = backend.alloc(batch * m * n);
  backend.addon.sgemm(av, bv, out, batch, batchA, batchB, m, n, k, transposeA, transposeB);
  return backend.makeTensorInfo([...outer, m, n], 'float32', out);
}

function fallback(name: string, args: KernelArgs): tf.TensorInfo {
  return cpuKernel(name)(args) as tf.TensorInfo;
}

function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let d = shape.length - 2; d >= 0; d--) s[d] = s[d + 1]! * shape[d + 1]!;
  return s;
}

/** Strides of `shape` read as the broadcast `out` shape: 0 along axes it broadcasts over. */
function broadcastStrides(shape: readonly number[], out: readonly number[]): Int32Array {
  const own = stridesOf(shape);
  const r = new Int32Array(out.length);
  const lead = out.length - shape.length;
  for (let d = 0; d < out.length; d++) {
    const xd = d - lead;
    r[d] = xd < 0 || shape[xd] === 1 ? 0 : own[xd]!;
  }
  return r;
}

const BINARY_OPS: Record<string, number> = {
  Add: 0,
  Sub: 1,
  Multiply: 2,
  RealDiv: 3,
  Pow: 4,
  Maximum: 5,
  Minimum: 6,
  SquaredDifference: 7,
};

function binaryKernel(name: string, op: number): tf.KernelFunc {
  return ((args: KernelArgs) => {
    const backend = args.backend as NativeBackend;
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const av = backend.f32(a);
    const bv = backend.f32(b);
    if ((op === 0 || op === 1) && a.dtype === 'int32' && b.dtype === 'int32' && sameShape(a.shape, b.shape)) {
      // int32 + and − of equal shapes (one-hot sign matrices): what the CPU kernel stores, ToInt32(a ± b).
      // (tfjs's oneHot stores int32 results in a Float32Array: any typed array of integers will do.)
      const ai = backend.data.get(a.dataId)?.values as TypedValues | undefined;
      const bi = backend.data.get(b.dataId)?.values as TypedValues | undefined;
      if (ai !== undefined && bi !== undefined && ArrayBuffer.isView(ai) && ArrayBuffer.isView(bi)) {
        const r = new Int32Array(ai.length);
        if (op === 0) for (let i = 0; i < r.length; i++) r[i] = (ai[i]! + bi[i]!) | 0;
        else for (let i = 0; i < r.length; i++) r[i] = (ai[i]! - bi[i]!) | 0;
        return backend.makeTensorInfo(a.shape, 'int32', r);
      }
    }
    if (!av || !bv || a.shape.length > 16 || b.shape.length > 16) return fallback(name, args);
    let out: number[];
    try {
      out = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
    } catch {
      return fallback(name, args); // tfjs raises its own error
    }
    const values = backend.alloc(prod(out));
    if (out.length === 0) {
      // scalars: one element
      backend.addon.binary(op, av, bv, values, new Int32Array([1]), new Int32Array([0]), new Int32Array([0]));
    } else {
      backend.addon.binary(
        op,
        av,
        bv,
        values,
        Int32Array.from(out),
        broadcastStrides(a.shape, out),
        broadcastStrides(b.shape, out),
      );
    }
    return backend.makeTensorInfo(out, 'float32', values);
  }) as tf.KernelFunc;
}

const UNARY_OPS: Record<string, number> = {
  Tanh: 0,
  Exp: 1,
  Sqrt: 2,
  Neg: 3,
  Square: 4,
  Rsqrt: 5,
  Log: 6,
  Abs: 7,
  Relu: 8,
  Sigmoid: 9,
  Reciprocal: 10,
  Erf: 11,
  Sign: 12,
};

function unaryKernel(name: string, op: number): tf.KernelFunc {
  return ((args: KernelArgs) => {
    const backend = args.backend as NativeBackend;
    const { x } = args.inputs as { x: tf.TensorInfo };
    const xv = backend.f32(x);
    if (!xv) return fallback(name, args);
    const values = backend.alloc(xv.length);
    backend.addon.unary(op, xv, values);
    return backend.makeTensorInfo(x.shape, 'float32', values);
  }) as tf.KernelFunc;
}

type Four = Float32Array | Int32Array;

function four(backend: NativeBackend, t: tf.TensorInfo): Four | undefined {
  if (t.dtype !== 'float32' && t.dtype !== 'int32') return undefined;
  const v = backend.data.get(t.dataId)?.values as TypedValues | undefined;
  return v instanceof Float32Array || v instanceof Int32Array ? v : undefined;
}

/** An output array of v's type for a kernel that writes every element (float32 ones may be reused). */
function emptyLike(backend: NativeBackend, v: Four, n: number): Four {
  return v instanceof Float32Array ? backend.alloc(n) : new Int32Array(n);
}

function transposeValues(
  backend: NativeBackend,
  v: Four,
  shape: readonly number[],
  perm: readonly number[],
): Four {
  const out = emptyLike(backend, v, prod(shape));
  backend.addon.transpose(v, out, Int32Array.from(shape), Int32Array.from(perm));
  return out;
}

function transposeKernel(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as NativeBackend;
  const { x } = args.inputs as { x: tf.TensorInfo };
  const { perm } = args.attrs as { perm: number[] };
  const xv = four(backend, x);
  if (!xv || x.shape.length === 0 || x.shape.length > 16) return fallback('Transpose', args);
  const outShape = perm.map((p) => x.shape[p]!);
  return backend.makeTensorInfo(outShape, x.dtype, transposeValues(backend, xv, x.shape, perm));
}

function sliceInfo(
  backend: NativeBackend,
  x: tf.TensorInfo,
  begin: number[],
  size: number[],
): tf.TensorInfo | undefined {
  const xv = four(backend, x);
  if (!xv || x.shape.length === 0 || x.shape.length > 16) return undefined;
  // Contiguous slices are views in tfjs's CPU kernel already (no copy): leave those to it.
  if (tf.slice_util.isSliceContinous(x.shape, begin, size)) return undefined;
  const out = emptyLike(backend, xv, prod(size));
  backend.addon.slice(xv, out, Int32Array.from(x.shape), Int32Array.from(begin), Int32Array.from(size));
  return backend.makeTensorInfo(size, x.dtype, out);
}

function sliceKernel(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as NativeBackend;
  const { x } = args.inputs as { x: tf.TensorInfo };
  const { begin, size } = args.attrs as { begin: number | number[]; size: number | number[] };
  const [b, s] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, size) as [number[], number[]];
  tf.slice_util.assertParamsValid(x as tf.Tensor, b, s);
  return sliceInfo(backend, x, b, s) ?? fallback('Slice', args);
}

function splitVKernel(args: KernelArgs): tf.TensorInfo[] {
  const backend = args.backend as NativeBackend;
  const { x } = args.inputs as { x: tf.TensorInfo };
  const { numOrSizeSplits, axis } = args.attrs as { numOrSizeSplits: number | number[]; axis: number };
  if (!four(backend, x)) return cpuKernel('SplitV')(args) as tf.TensorInfo[];
  const ax = tf.util.parseAxisParam(axis, x.shape)[0]!;
  const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, ax);
  const begin = new Array<number>(x.shape.length).fill(0);
  const size = [...x.shape];
  return sizes.map((s) => {
    const sz = [...size];
    sz[ax] = s;
    const b = [...begin];
    const t =
      sliceInfo(backend, x, b, sz) ??
      (cpuKernel('Slice')({ inputs: { x }, backend, attrs: { begin: b, size: sz } }) as tf.TensorInfo);
    begin[ax]! += s;
    return t;
  });
}

function reduceKernel(name: string, op: number, axisAttr: 'axis' | 'reductionIndices'): tf.KernelFunc {
  return ((args: KernelArgs) => {
    const backend = args.backend as NativeBackend;
    const { x } = args.inputs as { x: tf.TensorInfo };
    const attrs = args.attrs as Record<string, unknown>;
    const keepDims = attrs.keepDims as boolean;
    const xv = backend.f32(x);
    if (!xv || x.shape.length > 16) return fallback(name, args);
    const rank = x.shape.length;
    const axes = tf.util.parseAxisParam(attrs[axisAttr] as number | number[], x.shape);
    const perm = tf.backend_util.getAxesPermutation(axes, rank);
    let shape = x.shape;
    let values: Float32Array = xv;
    let inner = axes;
    if (perm != null) {
      values = transposeValues(backend, xv, x.shape, perm) as Float32Array;
      shape = perm.map((p) => x.shape[p]!);
      inner = tf.backend_util.getInnerMostAxes(axes.length, rank);
    }
    const [outShape, reduceShape] = tf.backend_util.computeOutAndReduceShapes(shape, inner);
    const n = prod(reduceShape);
    const outer = prod(outShape);
    if (n === 0 && op !== 0 && op !== 3) return fallback(name, args);
    const out = new Float32Array(outer);
    backend.addon.reduce(op, values, out, outer, n);
    const finalShape = keepDims ? tf.backend_util.expandShapeToKeepDim(outShape, axes) : outShape;
    return backend.makeTensorInfo(finalShape, 'float32', out);
  }) as tf.KernelFunc;
}

function softmaxKernel(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as NativeBackend;
  const { logits } = args.inputs as { logits: tf.TensorInfo };
  const { dim } = args.attrs as { dim: number };
  const xv = backend.f32(logits);
  const rank = logits.shape.length;
  if (!xv || rank === 0 || (dim !== -1 && dim !== rank - 1)) return fallback('Softmax', args);
  const cols = logits.shape[rank - 1]!;
  const out = backend.alloc(xv.length);
  backend.addon.softmax(xv, out, cols === 0 ? 0 : xv.length / cols, cols);
  return backend.makeTensorInfo(logits.shape, 'float32', out);
}

/** GatherV2 along any axis with batchDims 0: whole rows copied with TypedArray.set (tfjs's is per element). */
function gatherKernel(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as NativeBackend;
  const { x, indices } = args.inputs as { x: tf.TensorInfo; indices: tf.TensorInfo };
  const { axis, batchDims } = args.attrs as { axis: number; batchDims: number };
  const xv = four(backend, x);
  const iv = backend.data.get(indices.dataId)?.values as TypedValues | undefined;
  if (!xv || !(iv instanceof Int32Array) || (batchDims ?? 0) !== 0) return fallback('GatherV2', args);
  const ax = tf.util.parseAxisParam(axis, x.shape)[0]!;
  const dim = x.shape[ax]!;
  for (let i = 0; i < iv.length; i++) {
    if (iv[i]! < 0 || iv[i]! >= dim) return fallback('GatherV2', args); // tfjs raises its error
  }
  const outer = prod(x.shape.slice(0, ax));
  const inner = prod(x.shape.slice(ax + 1));
  const out = emptyLike(backend, xv, outer * iv.length * inner);
  let o = 0;
  for (let r = 0; r < outer; r++) {
    const base = r * dim * inner;
    for (let i = 0; i < iv.length; i++) {
      const start = base + iv[i]! * inner;
      if (inner < 64) for (let j = 0; j < inner; j++) out[o + j] = xv[start + j]!;
      else out.set(xv.subarray(start, start + inner), o);
      o += inner;
    }
  }
  const shape = [...x.shape.slice(0, ax), ...indices.shape, ...x.shape.slice(ax + 1)];
  return backend.makeTensorInfo(shape, x.dtype, out);
}

const COMPARE_OPS: Record<string, number> = {
  Greater: 0,
  GreaterEqual: 1,
  Less: 2,
  LessEqual: 3,
  Equal: 4,
  NotEqual: 5,
};

function compareKernel(name: string, op: number): tf.KernelFunc {
  return ((args: KernelArgs) => {
    const backend = args.backend as NativeBackend;
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const av = backend.f32(a);
    const bv = backend.f32(b);
    if (!av || !bv || a.shape.length > 16 || b.shape.length > 16) return fallback(name, args);
    let out: number[];
    try {
      out = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
    } catch {
      return fallback(name, args);
    }
    const values = new Uint8Array(prod(out));
    const shape = out.length === 0 ? [1] : out;
    backend.addon.compare(
      op,
      av,
      bv,
      values,
      Int32Array.from(shape),
      broadcastStrides(a.shape, shape),
      broadcastStrides(b.shape, shape),
    );
    return backend.makeTensorInfo(out, 'bool', values);
  }) as tf.KernelFunc;
}

function tileKernel(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as NativeBackend;
  const { x } = args.inputs as { x: tf.TensorInfo };
  const { reps } = args.attrs as { reps: number[] };
  const raw = backend.data.get(x.dataId)?.values as TypedValues | undefined;
  if (x.dtype === 'bool' && raw instanceof Uint8Array && x.shape.length > 0 && x.shape.length <= 16) {
    const outShape = x.shape.map((n, i) => n * reps[i]!);
    const out = new Uint8Array(prod(outShape));
    backend.addon.tile(raw, out, Int32Array.from(x.shape), Int32Array.from(reps));
    return backend.makeTensorInfo(outShape, 'bool', out);
  }
  const xv = four(backend, x);
  if (!xv || x.shape.length === 0 || x.shape.length > 16 || reps.length !== x.shape.length) {
    return fallback('Tile', args);
  }
  const outShape = x.shape.map((n, i) => n * reps[i]!);
  const out = emptyLike(backend, xv, prod(outShape));
  backend.addon.tile(xv, out, Int32Array.from(x.shape), Int32Array.from(reps));
  return backend.makeTensorInfo(outShape, x.dtype, out);
}

function selectKernel(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as NativeBackend;
  const { condition, t, e } = args.inputs as { condition: tf.TensorInfo; t: tf.TensorInfo; e: tf.TensorInfo };
  const cv = backend.data.get(condition.dataId)?.values as TypedValues | undefined;
  const tv = four(backend, t);
  const ev = four(backend, e);
  if (
    !(cv instanceof Uint8Array) ||
    !tv ||
    !ev ||
    t.dtype !== e.dtype ||
    !sameShape(condition.shape, t.shape) ||
    !sameShape(t.shape, e.shape)
  ) {
    return fallback('Select', args);
  }
  const out = emptyLike(backend, tv, tv.length);
  backend.addon.select(cv, tv, ev, out);
  return backend.makeTensorInfo(t.shape, t.dtype, out);
}

/** Concat of same-dtype 4-byte tensors: blocks copied with TypedArray.set. */
function concatKernel(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as NativeBackend;
  const inputs = args.inputs as unknown as tf.TensorInfo[];
  const { axis } = args.attrs as { axis: number };
  const first = inputs[0];
  if (!first || first.shape.length === 0) return fallback('Concat', args);
  const vals = inputs.map((t) => four(backend, t));
  if (vals.some((v, i) => !v || inputs[i]!.dtype !== first.dtype)) return fallback('Concat', args);
  const ax = tf.util.parseAxisParam(axis, first.shape)[0]!;
  const rank = first.shape.length;
  for (const t of inputs) {
    if (t.shape.length !== rank || t.shape.some((n, d) => d !== ax && n !== first.shape[d])) {
      return fallback('Concat', args); // tfjs raises its error
    }
  }
  const outShape = [...first.shape];
  outShape[ax] = inputs.reduce((a, t) => a + t.shape[ax]!, 0);
  const outer = prod(first.shape.slice(0, ax));
  const out = emptyLike(backend, vals[0]!, prod(outShape));
  const blocks = inputs.map((t) => prod(t.shape.slice(ax)));
  const row = blocks.reduce((a, b) => a + b, 0);
  let col = 0;
  inputs.forEach((_, i) => {
    const v = vals[i]!;
    const n = blocks[i]!;
    // One native call per input: per-row TypedArray.set allocates a subarray view a row (rotary halves are
    // thousands of 16-element rows).
    if (n > 0 && outer > 0) backend.addon.copyRows(v, out, outer, n, 0, n, col, row);
    col += n;
  });
  return backend.makeTensorInfo(outShape, first.dtype, out);
}

/** PadV2 (constant padding, e.g. rotary halves): rows copied with TypedArray.set. */
function padKernel(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as NativeBackend;
  const { x } = args.inputs as { x: tf.TensorInfo };
  const { paddings, constantValue } = args.attrs as { paddings: [number, number][]; constantValue: number };
  const xv = four(backend, x);
  const rank = x.shape.length;
  if (!xv || rank === 0 || paddings.length !== rank || paddings.some(([a, b]) => a < 0 || b < 0)) {
    return fallback('PadV2', args);
  }
  const outShape = x.shape.map((n, i) => paddings[i]![0] + n + paddings[i]![1]);
  const out = emptyLike(backend, xv, prod(outShape));
  // (a reused array holds old values: fill even with 0)
  out.fill(constantValue);
  const inner = x.shape[rank - 1]!;
  const rows = inner === 0 ? 0 : xv.length / inner;
  if (paddings.every(([a, b], d) => d === rank - 1 || (a === 0 && b === 0))) {
    // Only the last axis is padded (a slice's gradient along it, e.g. rotary halves): one native call.
    if (rows > 0)
      backend.addon.copyRows(xv, out, rows, inner, 0, inner, paddings[rank - 1]![0], outShape[rank - 1]!);
    return backend.makeTensorInfo(outShape, x.dtype, out);
  }
  const outStrides = stridesOf(outShape);
  const idx = new Array<number>(rank - 1).fill(0);
  for (let r = 0; r < rows; r++) {
    let off = paddings[rank - 1]![0];
    for (let d = 0; d < rank - 1; d++) off += (idx[d]! + paddings[d]![0]) * outStrides[d]!;
    out.set(xv.subarray(r * inner, r * inner + inner), off);
    for (let d = rank - 2; d >= 0; d--) {
      if (++idx[d]! < x.shape[d]!) break;
      idx[d] = 0;
    }
  }
  return backend.makeTensorInfo(outShape, x.dtype, out);
}

/** The kernels the native backend overrides; all others are tfjs's CPU kernels. */
export const NATIVE_KERNELS: ReadonlyMap<string, tf.KernelFunc> = new Map<string, tf.KernelFunc>([
  ['BatchMatMul', batchMatMul as tf.KernelFunc],
  ...Object.entries(BINARY_OPS).map(([n, op]) => [n, binaryKernel(n, op)] as [string, tf.KernelFunc]),
  ...Object.entries(UNARY_OPS).map(([n, op]) => [n, unaryKernel(n, op)] as [string, tf.KernelFunc]),
  ['Transpose', transposeKernel as tf.KernelFunc],
  ['Slice', sliceKernel as tf.KernelFunc],
  ['SplitV', splitVKernel as unknown as tf.KernelFunc],
  ['Sum', reduceKernel('Sum', 0, 'axis')],
  ['Max', reduceKernel('Max', 1, 'reductionIndices')],
  ['Min', reduceKernel('Min', 2, 'axis')],
  ['Mean', reduceKernel('Mean', 3, 'axis')],
  ['Softmax', softmaxKernel as tf.KernelFunc],
  ['GatherV2', gatherKernel as tf.KernelFunc],
  ...Object.entries(COMPARE_OPS).map(([n, op]) => [n, compareKernel(n, op)] as [string, tf.KernelFunc]),
  ['Tile', tileKernel as tf.KernelFunc],
  ['Select', selectKernel as tf.KernelFunc],
  ['Concat', concatKernel as tf.KernelFunc],
  ['PadV2', padKernel as tf.KernelFunc],
]);

/**
 * RELP_NATIVE_CHECK=1: every native kernel also runs tfjs's CPU kernel on the same inputs and throws, naming
 * the kernel and shapes, when they differ by more than 1e-5 relative to the largest value (debugging aid).
 */
function checked(name: string, native: tf.KernelFunc): tf.KernelFunc {
  return ((args: KernelArgs) => {
    const backend = args.backend as NativeBackend;
    const got = native(args);
    const want = cpuKernel(name)(args);
    const gs = (Array.isArray(got) ? got : [got]) as tf.TensorInfo[];
    const ws = (Array.isArray(want) ? want : [want]) as tf.TensorInfo[];
    gs.forEach((g, i) => {
      const w = ws[i]!;
      const gv = backend.readSync(g.dataId) as TypedValues;
      const wv = backend.readSync(w.dataId) as TypedValues;
      let scale = 1e-30;
      for (let j = 0; j < wv.length; j++) scale = Math.max(scale, Math.abs(wv[j]!));
      let worst = 0;
      let at = -1;
      for (let j = 0; j < wv.length; j++) {
        const d = Math.abs(gv[j]! - wv[j]!);
        if (d > worst || (Number.isNaN(d) && !(Number.isNaN(gv[j]!) && Number.isNaN(wv[j]!)))) {
          worst = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
          at = j;
        }
      }
      if (
        !sameShape(g.shape, w.shape) ||
        g.dtype !== w.dtype ||
        gv.length !== wv.length ||
        worst > 1e-5 * scale
      ) {
        const shapes = Object.values(args.inputs).map(
          (t) => `${(t as tf.TensorInfo).dtype}[${(t as tf.TensorInfo).shape}]`,
        );
        throw new Error(
          `relp native check: ${name}(${shapes.join(', ')}; ${JSON.stringify(args.attrs)}) output ${i} ` +
            `${g.dtype}[${g.shape}] vs cpu ${w.dtype}[${w.shape}]: max |Δ| ${worst} at ${at} (scale ${scale})`,
        );
      }
    });
    for (const w of ws) backend.disposeIntermediateTensorInfo(w);
    return got;
  }) as tf.KernelFunc;
}

let registration: AddonStatus | undefined;

/**
 * Registers the `native` backend with tfjs (idempotent): tfjs's CPU backend's kernels, with the ones in
 * NATIVE_KERNELS replaced. Throws, with the reason, when the addon is not available here.
 */
export function registerNativeBackend(priority = 3): void {
  if (registration?.ok) return;
  const status = loadAddon();
  if (!status.ok) throw new Error(`relp native backend unavailable: ${status.reason}`);
  const { addon } = status;
  tf.registerBackend(NATIVE_BACKEND_NAME, () => new NativeBackend(addon), priority);
  for (const config of tf.getKernelsForBackend('cpu')) {
    if (NATIVE_KERNELS.has(config.kernelName)) continue;
    if (tf.getKernel(config.kernelName, NATIVE_BACKEND_NAME)) continue;
    tf.registerKernel({ ...config, backendName: NATIVE_BACKEND_NAME });
  }
  const check = process.env.RELP_NATIVE_CHECK === '1';
  for (const [kernelName, kernelFunc] of NATIVE_KERNELS) {
    if (!tf.getKernel(kernelName, NATIVE_BACKEND_NAME)) {
      tf.registerKernel({
        kernelName,
        backendName: NATIVE_BACKEND_NAME,
        kernelFunc: check ? checked(kernelName, kernelFunc) : kernelFunc,
      });
    }
  }
  registration = status;
}
