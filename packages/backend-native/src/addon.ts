import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export type FourByteArray = Float32Array | Int32Array | Uint32Array;

/** The functions the compiled addon (native/relp_native.cc) exports. */
export interface NativeAddon {
  /**
   * out[i] = op(a[i or 0]) · op(b[i or 0]) for i < batch, row-major, computed in place in `out`. `batchA` and
   * `batchB` are `batch` or 1 (broadcast). `a` is [batchA, M, K] ([batchA, K, M] when transA), `b` is
   * [batchB, K, N] ([batchB, N, K] when transB).
   */
  sgemm(
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    batch: number,
    batchA: number,
    batchB: number,
    m: number,
    n: number,
    k: number,
    transA: boolean,
    transB: boolean,
  ): void;
  /** out = a ∘ b with broadcasting: strides are per output axis, 0 along broadcast axes. */
  binary(
    op: number,
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    shape: Int32Array,
    stridesA: Int32Array,
    stridesB: Int32Array,
  ): void;
  unary(op: number, x: Float32Array, out: Float32Array): void;
  /** Any 4-byte element type. */
  transpose(x: FourByteArray, out: FourByteArray, shape: Int32Array, perm: Int32Array): void;
  slice(x: FourByteArray, out: FourByteArray, shape: Int32Array, begin: Int32Array, size: Int32Array): void;
  /**
   * Copies `rows` rows of `len` elements: x[xOffset + r·xStride …] → out[outOffset + r·outStride …]
   * (Concat's blocks, PadV2 on the last axis). Throws when a row would fall outside either array.
   */
  copyRows(
    x: FourByteArray,
    out: FourByteArray,
    rows: number,
    len: number,
    xOffset: number,
    xStride: number,
    outOffset: number,
    outStride: number,
  ): void;
  /** Reduces each of `outer` contiguous rows of `inner` values: 0 sum, 1 max, 2 min, 3 mean. */
  reduce(op: number, x: Float32Array, out: Float32Array, outer: number, inner: number): void;
  softmax(x: Float32Array, out: Float32Array, rows: number, cols: number): void;
  /** out = a ⋚ b (0 >, 1 >=, 2 <, 3 <=, 4 ==, 5 !=) as 0/1 bytes, with broadcasting strides as `binary`. */
  compare(
    op: number,
    a: Float32Array,
    b: Float32Array,
    out: Uint8Array,
    shape: Int32Array,
    stridesA: Int32Array,
    stridesB: Int32Array,
  ): void;
  /** 4-byte elements, or bool bytes when both are Uint8Arrays. */
  tile(
    x: FourByteArray | Uint8Array,
    out: FourByteArray | Uint8Array,
    shape: Int32Array,
    reps: Int32Array,
  ): void;
  /** out[i] = cond[i] === 1 ? t[i] : e[i]. */
  select(cond: Uint8Array, t: FourByteArray, e: FourByteArray, out: FourByteArray): void;
  /**
   * Sets the thread count of OpenBLAS and of the element-wise kernels' OpenMP loops (default: all cores, or
   * OPENBLAS_NUM_THREADS / OMP_NUM_THREADS).
   */
  setThreads(n: number): void;
  info(): { threads: number; blas: string; core: string };
}

export type AddonStatus =
  | { readonly ok: true; readonly addon: NativeAddon; readonly path: string }
  | { readonly ok: false; readonly reason: string };

const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** Where `pnpm --filter @relp/backend-native build:native` puts the addon. */
export const ADDON_PATH: string = join(packageRoot, 'native', 'build', 'Release', 'relp_native.node');
const STATUS_PATH = join(packageRoot, 'build', 'native-status.json');
const HOW_TO_BUILD =
  'build it with `pnpm --filter @relp/backend-native build:native` (needs a C++ compiler and OpenBLAS: ' +
  'apt-get install -y g++ make libopenblas-dev)';

let cached: AddonStatus | undefined;

/**
 * Loads the compiled addon once. Never throws: when it is missing, cannot load, or is switched off with
 * RELP_NATIVE=off, the status says why (the last build attempt's reason included).
 */
export function loadAddon(): AddonStatus {
  if (cached) return cached;
  if (process.env.RELP_NATIVE === 'off' || process.env.RELP_NATIVE === '0') {
    cached = { ok: false, reason: 'switched off by RELP_NATIVE=off' };
    return cached;
  }
  if (!existsSync(ADDON_PATH)) {
    let last = '';
    try {
      const s = JSON.parse(readFileSync(STATUS_PATH, 'utf8')) as { ok?: boolean; reason?: string };
      if (s.ok === false && s.reason) last = ` (last build attempt: ${s.reason})`;
    } catch {
      // never attempted
    }
    cached = { ok: false, reason: `the native addon is not built${last}; ${HOW_TO_BUILD}` };
    return cached;
  }
  try {
    // OpenMP's worker threads (element-wise kernels) sleep between kernels instead of spinning against
    // OpenBLAS's threads; libgomp reads this when the addon loads.
    process.env.OMP_WAIT_POLICY ??= 'PASSIVE';
    const addon = createRequire(import.meta.url)(ADDON_PATH) as NativeAddon;
    if (typeof addon.sgemm !== 'function') throw new Error('it exports no sgemm');
    cached = { ok: true, addon, path: ADDON_PATH };
  } catch (e) {
    cached = {
      ok: false,
      reason: `the native addon failed to load: ${e instanceof Error ? e.message : String(e)}; rebuild: ${HOW_TO_BUILD}`,
    };
  }
  return cached;
}

/** Forgets the loaded status so that the next loadAddon() looks again (tests of the fallback). */
export function resetAddonStatus(): void {
  cached = undefined;
}

/** True when the addon is built and loads here (synchronous; registers nothing). */
export function nativeAvailable(): boolean {
  return loadAddon().ok;
}
