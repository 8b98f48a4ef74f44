import { nativeBackendLoader } from '@relp/backend-native';
import { type BackendChoice, type BackendLoader, selectBackend } from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';

interface GpuLike {
  requestAdapter(): Promise<{ info?: { vendor?: string; description?: string } } | null>;
}

/**
 * The backends the CLI can use. Importing a backend registers it with tfjs (a side effect), so each loader
 * imports its package only when selected. WebGPU is probed through navigator.gpu, which Node does not have.
 */
export function nodeBackendLoaders(): BackendLoader[] {
  return [
    // Native kernels (OpenBLAS) when the addon is built; its probe says why not otherwise.
    nativeBackendLoader,
    {
      name: 'webgpu',
      async probe() {
        const gpu = (globalThis as { navigator?: { gpu?: GpuLike } }).navigator?.gpu;
        if (!gpu) {
          return {
            ok: false,
            reason:
              'no navigator.gpu: WebGPU is not available in Node (use the browser build, or --backend wasm)',
          };
        }
        const adapter = await gpu.requestAdapter();
        if (!adapter) return { ok: false, reason: 'navigator.gpu.requestAdapter() returned no adapter' };
        const info = adapter.info;
        return { ok: true, detail: `adapter ${info?.vendor ?? ''} ${info?.description ?? ''}`.trim() };
      },
      async register() {
        await import('@tensorflow/tfjs-backend-webgpu');
      },
    },
    {
      name: 'wasm',
      async probe() {
        return typeof WebAssembly === 'object'
          ? { ok: true, detail: 'WebAssembly (single-threaded in Node)' }
          : { ok: false, reason: 'no WebAssembly' };
      },
      async register() {
        await import('@tensorflow/tfjs-backend-wasm');
      },
    },
    {
      name: 'cpu',
      async probe() {
        return { ok: true, detail: 'plain JavaScript kernels' };
      },
      async register() {
        await import('@tensorflow/tfjs-backend-cpu');
      },
    },
  ];
}

/** --backend (or RELP_BACKEND, else the first that works), through core's selectBackend. */
export async function chooseBackend(
  requested: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
): Promise<BackendChoice> {
  const choice = await selectBackend({ loaders: nodeBackendLoaders(), requested, env });
  // tfjs's CPU-derived backends print an advertisement for tfjs-node (which cannot install here, and which
  // the native backend replaces) on their first tensor write: make that write here, quietly.
  const warn = console.warn;
  console.warn = () => {};
  try {
    tf.dispose(tf.tensor1d([0]));
  } finally {
    console.warn = warn;
  }
  return choice;
}
