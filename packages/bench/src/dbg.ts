import { nativeBackendLoader } from '@relp/backend-native';
import * as tf from '@tensorflow/tfjs-core';

await nativeBackendLoader.register();
await tf.setBackend('native');
const a = tf.randomNormal([8, 50257]);
const s = tf.cast(
  tf.sub(
    tf.oneHot(tf.tensor1d([1, 2, 3, 4, 5, 6, 7, 8], 'int32'), 50257),
    tf.oneHot(tf.tensor1d([11, 2, 3, 4, 5, 6, 7, 8], 'int32'), 50257),
  ),
  'float32',
);
const b = tf.backend() as unknown as { data: { get(id: unknown): { values: unknown } } };
console.log(s.dtype, (b.data.get(s.dataId).values as object).constructor.name);
for (let i = 0; i < 3; i++) {
  const t = performance.now();
  const m = tf.mul(a, s);
  console.log('mul', performance.now() - t);
  m.dispose();
}
const w = tf.randomNormal([768, 50257]);
const idx = tf.tensor1d(
  Array.from({ length: 128 }, (_, i) => i * 7),
  'int32',
);
for (let i = 0; i < 3; i++) {
  const t = performance.now();
  const g = tf.gather(w, idx, 1);
  console.log('gather', performance.now() - t);
  g.dispose();
}
for (let i = 0; i < 3; i++) {
  const t = performance.now();
  const g = tf.oneHot(idx, 50257);
  console.log('oneHot', performance.now() - t);
  g.dispose();
}
