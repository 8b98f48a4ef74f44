// Measures the unembedding layout on the wasm (and cpu) backend: a [d,V] copy used without transpose flags
// versus the [V,d] embedding table used with transposeB, forward alone and forward + backward (grad w.r.t. x).
// Run (in packages/models-gpt2): npx vitest run --config bench/vitest.config.ts unembed
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { it } from 'vitest';
import '@relp/core';

function time(f: () => tf.Tensor, reps: number): number {
  tf.dispose(f()); // warm-up
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) {
    const y = f();
    y.dataSync();
    y.dispose();
  }
  return (performance.now() - t0) / reps;
}

async function main(): Promise<void> {
  const d = Number(process.env.D ?? 768);
  const V = Number(process.env.V ?? 50257);
  for (const backend of (process.env.BACKENDS ?? 'wasm').split(',')) {
    await tf.setBackend(backend);
    await tf.ready();
    const table = tf.randomNormal([V, d]) as tf.Tensor2D;
    const tableT = tf.transpose(table) as tf.Tensor2D;
    for (const n of [8, 128]) {
      const x = tf.randomNormal([n, d]) as tf.Tensor2D;
      const reps = n === 8 ? 10 : 3;
      const fwdT = time(() => tf.matMul(x, tableT), reps);
      const fwdB = time(() => tf.matMul(x, table, false, true), reps);
      const g = (w: tf.Tensor2D, tb: boolean) => () =>
        tf.grad((xx: tf.Tensor) => tf.sum(tf.matMul(xx as tf.Tensor2D, w, false, tb)))(x);
      const bwdT = time(g(tableT, false), reps);
      const bwdB = time(g(table, true), reps);
      console.log(
        `${backend} n=${n} d=${d} V=${V}: forward [d,V] ${fwdT.toFixed(1)} ms, [V,d]ᵀ ${fwdB.toFixed(1)} ms; ` +
          `forward+backward [d,V] ${bwdT.toFixed(1)} ms, [V,d]ᵀ ${bwdB.toFixed(1)} ms`,
      );
      x.dispose();
    }
    tf.dispose([table, tableT]);
  }
}

it('unembedding layout', main);
