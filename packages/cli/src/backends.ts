import { nativeBackendLoader } from '@relp/backend-native';
import { webgpuNodeBackendLoader } from '@relp/backend-webgpu-node';
import { type BackendChoice, type BackendLoader, selectBackend } from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';

/**
 * The backends the CLI can use. Importing a backend registers it with tfjs (a side effect), so each loader
 * imports its package only when selected. WebGPU comes first, but only with a hardware adapter.
 */
export function nodeBackendLoaders(
  env: Readonly<Record<string, string | undefined>> = process.env,
): BackendLoader[] {
  return [
    // Native kernels (OpenBLAS) when the addon is built; its probe says why not otherwise.
    nativeBackendLoader,
    // WebGPU through Dawn's Node bindings: a hardware adapter automatically, a software one only when named.
    webgpuNodeBackendLoader({ env: { ...env } }),
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
  const choice = await selectBackend({ loaders: nodeBackendLoaders(env), requested, env });
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
