// Real-weights parity: loads a GGUF file with relp (@relp/weights ggufConfig + ggufToWeightMap, the
// Llama or Gemma 3 family), runs the prompts that tools/oracles/real_parity.py ran through transformers on the
// same file, and reports max |Δ| of the logits, of every site type (max over layers) and of the site gradients of
// the same logit difference. Target: 1e-3.
//
//   python3 tools/oracles/real_parity.py --gguf FILE.gguf --out DIR
//   node --conditions=source --import tsx packages/models-llama/scripts/real-parity.ts --gguf FILE.gguf --expected DIR \
//        [--backend wasm|cpu] [--prompts N]
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type LanguageModel,
  type ModelFamily,
  RunContext,
  Site,
  type SiteKey,
  type SiteName,
  siteKey,
  siteLayers,
} from '@relp/core';
import { gemma3Family } from '@relp/models-gemma';
import { ggufConfig, ggufToWeightMap, parseGguf, readSafetensors, type SafetensorsFile } from '@relp/weights';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { llamaFamily } from '../src/index.js';

function arg(name: string, fallback?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : fallback;
  if (v === undefined) throw new Error(`missing --${name}`);
  return v;
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
  }
  return m;
}

function maxAbsOf(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

function int32(file: SafetensorsFile, name: string): Int32Array {
  const raw = file.raw(name);
  if (raw?.dtype !== 'I32') throw new Error(`${name} missing or not I32`);
  const copy = new Uint8Array(raw.bytes);
  return new Int32Array(copy.buffer, 0, copy.byteLength / 4);
}

interface Manifest {
  model_type: string;
  prompts: { file: string; prompt: string; tokens: number[] }[];
}

async function main(): Promise<void> {
  const backend = arg('backend', 'wasm');
  await tf.setBackend(backend);
  await tf.ready();
  const expectedDir = arg('expected');
  const manifest = JSON.parse(readFileSync(join(expectedDir, 'manifest.json'), 'utf8')) as Manifest;
  const nPrompts = Math.min(Number(arg('prompts', '100')), manifest.prompts.length);
  const t0 = performance.now();
  const file = parseGguf(readFileSync(arg('gguf')));
  const config = ggufConfig(file) as unknown as Record<string, unknown>;
  const families: ModelFamily[] = [llamaFamily, gemma3Family];
  const family = families.find((f) => f.modelTypes.includes(String(config.model_type)));
  if (!family) throw new Error(`no family for model_type ${String(config.model_type)}`);
  const model: LanguageModel = family.fromHfConfig(config, ggufToWeightMap(file));
  console.log(
    `${model.architecture}: ${model.dims.nLayers} layers, d ${model.dims.dModel}, ${model.dims.nHeads}/${model.dims.nKvHeads} heads, ` +
      `vocab ${model.dims.vocabSize}; loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s on ${tf.getBackend()}`,
  );
  const keys: SiteKey[] = [];
  for (const site of model.sites)
    for (let l = 0; l < siteLayers(model.dims, site); l++) keys.push(siteKey(site, l));
  const gradSites: SiteName[] = [Site.ResidPre, Site.AttnOut, Site.MlpOut, Site.Z, Site.MlpPost];

  const perSite = new Map<string, number>();
  const scale = new Map<string, number>();
  let worstLogits = 0;
  let worstGrad = 0;
  let worstMetric = 0;
  for (const p of manifest.prompts.slice(0, nPrompts)) {
    const exp = readSafetensors(readFileSync(join(expectedDir, p.file)));
    const ids = int32(exp, 'tokens');
    const seq = ids.length;
    const tokens = tf.tensor2d(ids, [1, seq], 'int32');
    // Forward with every site cached.
    const ctx = new RunContext({ cache: keys });
    const t1 = performance.now();
    const logits = model.forward({ tokens }, ctx);
    const fwdMs = performance.now() - t1;
    const cache = ctx.takeCache();
    const dLogits = maxAbs(logits.dataSync(), exp.get('logits')!.data);
    worstLogits = Math.max(worstLogits, dLogits);
    let worstSite = ['', 0] as [string, number];
    for (const key of keys) {
      const e = exp.get(key);
      const g = cache.get(key);
      if (!e || !g) throw new Error(`${key}: missing (${!e ? 'expected' : 'relp'})`);
      const d = maxAbs(g.dataSync(), e.data);
      const type = key.slice(0, key.lastIndexOf('.'));
      perSite.set(type, Math.max(perSite.get(type) ?? 0, d));
      scale.set(type, Math.max(scale.get(type) ?? 0, maxAbsOf(e.data)));
      if (d > worstSite[1]) worstSite = [key, d];
    }
    tf.dispose([logits, ...cache.values()]);
    // Site gradients of the same logit difference (readout at the last position).
    const answer = int32(exp, 'answer')[0]!;
    const wrong = int32(exp, 'wrong')[0]!;
    const gKeys = gradSites.flatMap((s) =>
      Array.from({ length: model.dims.nLayers }, (_, l) => siteKey(s, l)),
    );
    const deltas = gKeys.map((k) => tf.zeros([...exp.get(k)!.shape]));
    const V = model.dims.vocabSize;
    const sign = new Float32Array(V);
    sign[answer] = 1;
    sign[wrong] = -1;
    const signT = tf.tensor3d(sign, [1, 1, V]);
    const { value, grads } = tf.valueAndGrads((...ds: tf.Tensor[]) => {
      const c = new RunContext({ deltas: new Map(gKeys.map((k, i) => [k, ds[i]!])) });
      return tf.sum(tf.mul(model.forward({ tokens }, c, { readout: [seq - 1] }), signT)) as tf.Scalar;
    })(deltas);
    const dMetric = Math.abs(value.dataSync()[0]! - exp.get('metric')!.data[0]!);
    worstMetric = Math.max(worstMetric, dMetric);
    let dGrad = 0;
    gKeys.forEach((k, i) => {
      const d = maxAbs(grads[i]!.dataSync(), exp.get(`grad.${k}`)!.data);
      dGrad = Math.max(dGrad, d);
      const type = `grad.${k.slice(0, k.lastIndexOf('.'))}`;
      perSite.set(type, Math.max(perSite.get(type) ?? 0, d));
      scale.set(type, Math.max(scale.get(type) ?? 0, maxAbsOf(exp.get(`grad.${k}`)!.data)));
    });
    worstGrad = Math.max(worstGrad, dGrad);
    tf.dispose([tokens, value, signT, ...grads, ...deltas]);
    console.log(
      `${JSON.stringify(p.prompt).slice(0, 48).padEnd(48)} T=${String(seq).padStart(2)}  logits ${dLogits.toExponential(2)}` +
        `  worst site ${worstSite[0]} ${worstSite[1].toExponential(2)}  metric ${dMetric.toExponential(2)}` +
        `  grads ${dGrad.toExponential(2)}  (forward ${fwdMs.toFixed(0)} ms)`,
    );
  }
  console.log('\nmax |Δ| per site type over layers and prompts (max |expected| in brackets):');
  for (const [type, d] of [...perSite].sort()) {
    console.log(`  ${type.padEnd(20)} ${d.toExponential(2)}  [${(scale.get(type) ?? 0).toPrecision(4)}]`);
  }
  console.log(
    `\nSUMMARY ${model.architecture} ${tf.getBackend()}: logits ${worstLogits.toExponential(2)}, metric ${worstMetric.toExponential(2)}, ` +
      `site gradients ${worstGrad.toExponential(2)} over ${nPrompts} prompts (target 1e-3)`,
  );
  model.dispose();
  if (worstLogits > 1e-3) process.exitCode = 1;
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(2);
});
