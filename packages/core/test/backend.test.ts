import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { describe, expect, it } from 'vitest';
import {
  BACKEND_PREFERENCE,
  type BackendLoader,
  describeAdapter,
  isSoftwareAdapter,
  type ProbeContext,
  selectBackend,
} from '../src/backend.js';

/** A loader that records what its probe was told, ok or not; `cpu` registers tfjs's real cpu backend. */
function loader(name: BackendLoader['name'], ok: (c: ProbeContext | undefined) => boolean) {
  const seen: (ProbeContext | undefined)[] = [];
  const l: BackendLoader = {
    name,
    async probe(context) {
      seen.push(context);
      return ok(context) ? { ok: true, detail: `${name} here` } : { ok: false, reason: `${name} refused` };
    },
    async register() {
      if (name !== 'cpu') tf.registerBackend(name, () => tf.findBackendFactory('cpu')!() as tf.KernelBackend);
    },
  };
  return { l, seen };
}

describe('selectBackend', () => {
  it('prefers a GPU first, then native kernels, WASM, plain JavaScript', () => {
    expect([...BACKEND_PREFERENCE]).toEqual(['webgpu', 'native', 'wasm', 'cpu']);
  });

  it('tells a probe whether it was asked for by name, and skips what refuses on automatic choice', async () => {
    // A WebGPU loader that, like the Node one, takes a (software) adapter only when named.
    const gpu = loader('webgpu', (c) => c?.explicit === true);
    const cpu = loader('cpu', () => true);
    const auto = await selectBackend({ loaders: [gpu.l, cpu.l] });
    expect(auto.name).toBe('cpu');
    expect(auto.reason).toMatch(/skipped webgpu: webgpu refused/);
    expect(gpu.seen).toEqual([{ explicit: false }]);
    const named = await selectBackend({ loaders: [gpu.l, cpu.l], requested: 'webgpu' });
    expect(named.name).toBe('webgpu');
    expect(gpu.seen.at(-1)).toEqual({ explicit: true });
    const fromEnv = await selectBackend({ loaders: [gpu.l, cpu.l], env: { RELP_BACKEND: 'webgpu' } });
    expect(fromEnv.name).toBe('webgpu');
    expect(gpu.seen.at(-1)).toEqual({ explicit: true });
    await tf.setBackend('cpu');
    tf.removeBackend('webgpu');
  });
});

describe('adapters', () => {
  it('calls software rasterisers and fallback adapters software, GPUs hardware', () => {
    expect(isSoftwareAdapter({ vendor: 'google', architecture: 'swiftshader' })).toBe(true);
    expect(isSoftwareAdapter({ vendor: 'mesa', description: 'llvmpipe (LLVM 15.0.6, 256 bits)' })).toBe(true);
    expect(isSoftwareAdapter({ vendor: 'microsoft', description: 'Microsoft Basic Render Driver' })).toBe(
      true,
    );
    expect(isSoftwareAdapter({ vendor: 'nvidia', architecture: 'hopper' }, true)).toBe(true);
    expect(isSoftwareAdapter({ vendor: 'nvidia', architecture: 'hopper', description: 'NVIDIA H100' })).toBe(
      false,
    );
    expect(isSoftwareAdapter({ vendor: 'apple', architecture: 'metal-3' })).toBe(false);
    expect(isSoftwareAdapter(undefined)).toBe(false);
    expect(describeAdapter({ vendor: 'google', architecture: 'swiftshader' })).toBe(
      'google swiftshader (software)',
    );
    expect(describeAdapter({})).toBe('unnamed adapter');
  });
});
