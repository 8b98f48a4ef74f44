import { isRelpError } from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { webgpuNodeBackendLoader, webgpuUnavailableReason } from '../src/index.js';

// Real Dawn: needs the Vulkan loader and a driver (SwiftShader's from chromium-common on a machine without a GPU).
const missing = webgpuUnavailableReason(process.env);
if (missing) console.warn(`Dawn tests skipped: ${missing}`);

describe.skipIf(missing !== undefined)('tfjs WebGPU through Dawn in Node', () => {
  it('computes a product exactly as a literal loop, reads asynchronously, and refuses synchronous float reads', async () => {
    const loader = webgpuNodeBackendLoader();
    const probe = await loader.probe({ explicit: true });
    expect(probe.ok, probe.ok ? '' : probe.reason).toBe(true);
    await loader.register();
    expect(await tf.setBackend('webgpu')).toBe(true);
    // Small inputs would otherwise run on the host, and their results be readable synchronously.
    tf.env().set('WEBGPU_CPU_HANDOFF_SIZE_THRESHOLD', 0);
    const a = Array.from({ length: 6 * 5 }, (_, i) => ((i * 7) % 11) - 5);
    const b = Array.from({ length: 5 * 4 }, (_, i) => ((i * 3) % 7) - 3);
    const ta = tf.tensor2d(a, [6, 5]);
    const tb = tf.tensor2d(b, [5, 4]);
    const c = tf.matMul(ta, tb);
    const got = await c.data();
    for (let i = 0; i < 6; i++)
      for (let j = 0; j < 4; j++) {
        let s = 0;
        for (let k = 0; k < 5; k++) s += a[i * 5 + k]! * b[k * 4 + j]!;
        expect(got[i * 4 + j]).toBe(s);
      }
    // A result not yet read back lives only on the GPU (one read back asynchronously is cached on the host).
    const d = tf.add(c, 1);
    let caught: unknown;
    try {
      d.dataSync();
    } catch (e) {
      caught = e;
    }
    expect(isRelpError(caught) && caught.code === 'BACKEND', String(caught)).toBe(true);
    expect(Array.from(await d.data())).toEqual(Array.from(got, (x) => x + 1));
    // Token ids stay readable on the host after a kernel used them.
    const ids = tf.tensor2d([3, 1, 4, 1], [2, 2], 'int32');
    const picked = tf.gather(tf.range(0, 10, 1, 'float32'), ids);
    expect(Array.from(await picked.data())).toEqual([3, 1, 4, 1]);
    expect(Array.from(ids.dataSync())).toEqual([3, 1, 4, 1]);
    tf.dispose([ta, tb, c, d, ids, picked]);
  });
});
