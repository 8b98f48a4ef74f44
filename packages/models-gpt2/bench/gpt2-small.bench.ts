// GPT-2 small with random weights on wasm: construction, forward and forward + backward times.
// Run (in packages/models-gpt2): npx vitest run --config bench/vitest.config.ts gpt2-small
import { RunContext, Site, siteKey } from '@relp/core';
import { useBackend } from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { it } from 'vitest';
import { randomGpt2Model } from '../src/index.js';

it('GPT-2 small, 8 × 16 tokens', async () => {
  await useBackend((process.env.BACKEND as 'wasm' | 'cpu') ?? 'wasm');
  let t0 = performance.now();
  const model = randomGpt2Model('small', 0);
  console.log(`build (random weights + upload): ${(performance.now() - t0).toFixed(0)} ms`);
  const tokens = tf.tensor2d(
    Array.from({ length: 128 }, (_, i) => (i * 7919) % 50257),
    [8, 16],
    'int32',
  );
  const readout = new Array(8).fill(15);
  for (let rep = 0; rep < 2; rep++) {
    t0 = performance.now();
    const logits = model.forward({ tokens }, new RunContext(), { readout });
    logits.dataSync();
    logits.dispose();
    const fwd = performance.now() - t0;
    t0 = performance.now();
    const deltas = Array.from({ length: 12 }, () => tf.zeros([8, 16, 768]));
    const grads = tf.grads((...ds: tf.Tensor[]) => {
      const ctx = new RunContext({ deltas: new Map(ds.map((d, l) => [siteKey(Site.AttnOut, l), d])) });
      return tf.sum(tf.slice(model.forward({ tokens }, ctx, { readout }), [0, 0, 0], [8, 1, 2]));
    })(deltas);
    for (const g of grads) g.dataSync();
    tf.dispose([...grads, ...deltas]);
    console.log(
      `forward (readout) ${fwd.toFixed(0)} ms; forward + backward ${(performance.now() - t0).toFixed(0)} ms`,
    );
  }
  tokens.dispose();
  model.dispose();
});
