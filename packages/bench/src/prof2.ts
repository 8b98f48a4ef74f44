import { nativeBackendLoader } from '@relp/backend-native';
import { attribute, makePairBatch, Site } from '@relp/core';
import { presetByName } from '@relp/lrp-rules';
import { GPT2_SMALL_CONFIG, randomGpt2Model } from '@relp/models-gpt2';
import * as tf from '@tensorflow/tfjs-core';
import { makePairs } from './workload.js';

await nativeBackendLoader.register();
await tf.setBackend('native');
const model = randomGpt2Model('small', 1);
const batch = makePairBatch(makePairs({ prompts: 8, tokens: 16, diffPos: 8, seed: 1 }, 50257), {
  dims: model.dims,
});
const PL = Number(process.env.PATCH ?? 0);
const pm = PL ? randomGpt2Model({ ...GPT2_SMALL_CONFIG, n_layer: PL }, 1) : model;
const run = () =>
  PL
    ? attribute(pm, batch, {
        method: 'activation-patching',
        sites: [Site.ResidPre, Site.AttnOut, Site.MlpOut],
      })
    : attribute(model, batch, {
        method: 'atp',
        sites: [Site.ResidPre, Site.AttnOut, Site.MlpOut],
        rules: presetByName('relp'),
      });
await run();
const info = await tf.profile(async () => {
  await run();
});
const agg = new Map<string, [number, number]>();
for (const k of info.kernels) {
  const key = `${k.name} ${JSON.stringify(k.inputShapes)}`;
  const a = agg.get(key) ?? [0, 0];
  a[0] += k.kernelTimeMs as number;
  a[1]++;
  agg.set(key, a);
}
for (const [n, [ms, c]] of [...agg].sort((x, y) => y[1][0] - x[1][0]).slice(0, Number(process.env.TOP ?? 40)))
  console.log(ms.toFixed(1), c, n);
