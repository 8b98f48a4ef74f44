// The input gradient of a linear layer on wasm: dy·Wᵀ with transposeB (what tf.grad does) versus dy·(Wᵀ copy).
// Run (in packages/models-gpt2): npx vitest run --config bench/vitest.config.ts backward-matmul
import { useBackend } from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { it } from 'vitest';

it('backward matmul layouts', async () => {
  await useBackend('wasm');
  for (const [n, i, o] of [
    [128, 768, 3072],
    [128, 3072, 768],
    [128, 768, 2304],
  ] as const) {
    const w = tf.randomNormal([i, o]) as tf.Tensor2D;
    const wt = tf.transpose(w) as tf.Tensor2D;
    const dy = tf.randomNormal([n, o]) as tf.Tensor2D;
    const time = (f: () => tf.Tensor) => {
      tf.dispose(f());
      const t0 = performance.now();
      for (let r = 0; r < 3; r++) {
        const y = f();
        y.dataSync();
        y.dispose();
      }
      return (performance.now() - t0) / 3;
    };
    const fwdX = tf.randomNormal([n, i]) as tf.Tensor2D;
    const fwd = time(() => tf.matMul(fwdX, w));
    const tb = time(() => tf.matMul(dy, w, false, true));
    const copy = time(() => tf.matMul(dy, wt));
    console.log(
      `[${n},${i}]·[${i},${o}]: forward ${fwd.toFixed(1)} ms; dx via transposeB ${tb.toFixed(1)} ms, via Wᵀ copy ${copy.toFixed(1)} ms`,
    );
    tf.dispose([w, wt, dy, fwdX]);
  }
});
