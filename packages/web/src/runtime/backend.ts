import { type BackendChoice, type BackendLoader, selectBackend } from '@relp/core';

/**
 * Where the tfjs WASM binaries are served: a folder URL ending in "/" or one URL per file name
 * (`tfjs-backend-wasm.wasm`, `tfjs-backend-wasm-simd.wasm`, `tfjs-backend-wasm-threaded-simd.wasm`), as
 * `setWasmPaths` takes them. Absolute URLs: a worker resolves relative ones against its own script.
 */
export type WasmPaths = string | Readonly<Record<string, string>>;

interface GpuAdapterLike {
  readonly info?: { vendor?: string; architecture?: string; description?: string; device?: string };
  readonly isFallbackAdapter?: boolean;
}
interface GpuLike {
  requestAdapter(options?: { powerPreference?: string }): Promise<GpuAdapterLike | null>;
}

/** A human description of a WebGPU adapter ("google swiftshader (fallback)"). */
export function describeAdapter(a: GpuAdapterLike): string {
  const i = a.info ?? {};
  const parts = [i.vendor, i.architecture, i.device, i.description].filter(
    (s) => s !== undefined && s !== '',
  );
  return `${parts.join(' ') || 'unnamed adapter'}${a.isFallbackAdapter ? ' (fallback adapter)' : ''}`;
}

/**
 * The backends a page or worker can use, in core's order of preference: WebGPU when `navigator.gpu` gives an
 * adapter, WASM (with the binaries at `wasmPaths`, so the site serves them), plain-JavaScript CPU. Each
 * backend's package is imported only when it is chosen.
 */
export function browserBackendLoaders(options: { readonly wasmPaths?: WasmPaths } = {}): BackendLoader[] {
  return [
    {
      name: 'webgpu',
      async probe() {
        const gpu = (globalThis as { navigator?: { gpu?: GpuLike } }).navigator?.gpu;
        if (!gpu) return { ok: false, reason: 'this browser has no WebGPU (navigator.gpu is missing)' };
        const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
        if (!adapter) return { ok: false, reason: 'WebGPU is present but offers no adapter' };
        return { ok: true, detail: `WebGPU adapter: ${describeAdapter(adapter)}` };
      },
      async register() {
        await import('@tensorflow/tfjs-backend-webgpu');
      },
    },
    {
      name: 'wasm',
      async probe() {
        if (typeof WebAssembly !== 'object') return { ok: false, reason: 'this browser has no WebAssembly' };
        const threads =
          typeof SharedArrayBuffer === 'function' &&
          (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true;
        return {
          ok: true,
          detail: `WebAssembly${threads ? ' (multi-threaded)' : ' (single-threaded: the page is not cross-origin isolated)'}`,
        };
      },
      async register() {
        const wasm = await import('@tensorflow/tfjs-backend-wasm');
        if (options.wasmPaths !== undefined) {
          wasm.setWasmPaths(options.wasmPaths as string | Record<string, string>);
        }
      },
    },
    {
      name: 'cpu',
      async probe() {
        return { ok: true, detail: 'plain JavaScript kernels (slow)' };
      },
      async register() {
        await import('@tensorflow/tfjs-backend-cpu');
      },
    },
  ];
}

/** "auto" (or undefined) picks WebGPU → WASM → CPU; a backend name forces it (with an error if it cannot run). */
export async function selectBrowserBackend(options: {
  readonly requested?: string;
  readonly wasmPaths?: WasmPaths;
}): Promise<BackendChoice> {
  return selectBackend({
    loaders: browserBackendLoaders(options.wasmPaths === undefined ? {} : { wasmPaths: options.wasmPaths }),
    requested: options.requested === 'auto' ? undefined : options.requested,
  });
}
