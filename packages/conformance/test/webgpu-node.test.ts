import { webgpuNodeBackendLoader, webgpuUnavailableReason } from '@relp/backend-webgpu-node';
import {
  type AttributeOptions,
  attribute,
  attributeEdges,
  type EdgeAttributeOptions,
  type LanguageModel,
  type ModelFamily,
  makePairBatch,
  RunContext,
  Site,
  type SiteRequest,
} from '@relp/core';
import { RELP, RELP_AH } from '@relp/lrp-rules';
import { gemma3Family } from '@relp/models-gemma';
import { gpt2Family } from '@relp/models-gpt2';
import { llamaFamily } from '@relp/models-llama';
import { pythiaFamily } from '@relp/models-pythia';
import { maxAbsDiff, useBackend as useNodeBackend } from '@relp/testing';
import {
  declaredSiteKeys,
  expectedTensor,
  fixtureTokens,
  loadModelFixture,
  modelFromFixture,
} from '@relp/testing/models';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The exactness checks every backend passes, on tfjs's WebGPU backend in Node (Dawn; SwiftShader's software
 * Vulkan driver on a machine without a GPU): logits equal PyTorch's reference, the rule presets leave the
 * forward pass bit-identical, and AtP, RelP, IG and activation patching equal the cpu backend's scores. Node's
 * WebGPU has no synchronous reads, so everything here reads with `await data()`.
 */
const skip = webgpuUnavailableReason(process.env);
if (skip !== undefined) console.warn(`webgpu-node suite skipped: ${skip}`);

let webgpuRegistered: Promise<void> | undefined;

/** testing's backends, and WebGPU through Dawn (named, so SwiftShader serves where there is no GPU). */
async function useBackend(name: 'cpu' | 'webgpu'): Promise<void> {
  if (name === 'cpu') return useNodeBackend('cpu');
  await useNodeBackend('cpu');
  webgpuRegistered ??= (async () => {
    const loader = webgpuNodeBackendLoader();
    const probe = await loader.probe({ explicit: true });
    if (!probe.ok) throw new Error(`webgpu cannot run: ${probe.reason}`);
    await loader.register();
  })();
  await webgpuRegistered;
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs could not start webgpu');
  await tf.ready();
}

const FIXTURES: readonly { name: string; family: ModelFamily }[] = [
  { name: 'gpt2-a', family: gpt2Family },
  { name: 'pythia-tiny-par', family: pythiaFamily },
  { name: 'llama-gqa', family: llamaFamily },
  { name: 'qwen2-bias', family: llamaFamily },
  { name: 'gemma3-legacy', family: gemma3Family },
];

const SITES: SiteRequest[] = [
  { site: Site.ResidPre },
  { site: Site.AttnOut },
  { site: Site.MlpOut },
  { site: Site.Z, granularity: 'head' },
];

const METHODS: readonly { label: string; options: AttributeOptions }[] = [
  { label: 'AtP', options: { method: 'atp', sites: SITES } },
  { label: 'RelP', options: { method: 'atp', rules: RELP, sites: SITES } },
  { label: 'RelP (AH)', options: { method: 'atp', rules: RELP_AH, sites: SITES } },
  // Ten steps of two pairs stack 20 rows: WebGPU's many-input AddN once broke IG's summed metric here.
  { label: 'IG (10 steps)', options: { method: 'ig', igSteps: 10, sites: SITES } },
  { label: 'activation patching', options: { method: 'activation-patching', sites: SITES } },
];

// Edge methods: EAP with 10 IG steps over 2 pairs stacks 20 rows, as node IG does.
const EDGE_METHODS: readonly { label: string; options: EdgeAttributeOptions }[] = [
  { label: 'EAP', options: { method: 'eap' } },
  { label: 'RelP on edges', options: { method: 'eap', rules: RELP } },
  { label: 'EAP-IG inputs (10 steps)', options: { method: 'eap-ig-inputs', steps: 10 } },
];

async function read(t: tf.Tensor): Promise<Float32Array> {
  try {
    return (await t.data()) as Float32Array;
  } finally {
    t.dispose();
  }
}

function flatten(x: unknown, out: number[] = []): number[] {
  if (typeof x === 'number') out.push(x);
  else if (Array.isArray(x)) for (const v of x) flatten(v, out);
  else if (x && typeof x === 'object') for (const v of Object.values(x)) flatten(v, out);
  return out;
}

function pairsFor(model: LanguageModel) {
  const V = model.dims.vocabSize;
  return [0, 1].map((b) => {
    const clean = Array.from({ length: 6 }, (_, i) => (i * 7 + b * 5 + 3) % V);
    const corrupt = [...clean];
    corrupt[2] = (corrupt[2]! + 3 + b) % V;
    return { clean, corrupt, answer: (11 + b) % V, wrong: (17 + b) % V };
  });
}

describe.skipIf(skip !== undefined)('WebGPU in Node', () => {
  for (const { name, family } of FIXTURES) {
    describe(name, () => {
      let model: LanguageModel;
      let cpuModel: LanguageModel;
      beforeAll(async () => {
        await useBackend('cpu');
        cpuModel = modelFromFixture(family, name);
        await useBackend('webgpu');
        model = modelFromFixture(family, name);
      });
      afterAll(async () => {
        await useBackend('webgpu');
        model?.dispose();
        await useBackend('cpu');
        cpuModel?.dispose();
      });

      it('logits match PyTorch within 1e-4, with and without every site recorded', async () => {
        await useBackend('webgpu');
        const before = tf.memory().numTensors;
        const fx = loadModelFixture(name);
        const tokens = fixtureTokens(fx);
        const want = expectedTensor(fx, 'logits');
        const plain = await read(model.forward({ tokens }, new RunContext()));
        expect(maxAbsDiff(plain, want.data), 'logits').toBeLessThanOrEqual(1e-4);
        const ctx = new RunContext({ cache: declaredSiteKeys(model) });
        const recorded = await read(model.forward({ tokens }, ctx));
        expect(maxAbsDiff(recorded, want.data), 'logits, sites recorded').toBeLessThanOrEqual(1e-4);
        const cache = ctx.takeCache();
        let checked = 0;
        for (const [key, t] of cache) {
          if (!fx.expected.has(key)) continue;
          const d = maxAbsDiff((await t.data()) as Float32Array, expectedTensor(fx, key).data);
          expect(d, key).toBeLessThanOrEqual(1e-4);
          checked++;
        }
        expect(checked, 'sites compared with the reference').toBeGreaterThan(5);
        tf.dispose([...cache.values()]);
        ctx.dispose();
        tokens.dispose();
        expect(tf.memory().numTensors, 'tensors left').toBe(before);
      });

      it('the rule presets leave the forward pass bit-identical', async () => {
        await useBackend('webgpu');
        const fx = loadModelFixture(name);
        const tokens = fixtureTokens(fx);
        const plain = await read(model.forward({ tokens }, new RunContext()));
        for (const rules of [RELP, RELP_AH]) {
          // A preset that refuses one of the model's nonlinearities on purpose is not run on it.
          if (model.nonlinearities.some((n) => rules.missingRuleFor(n) !== null)) continue;
          const got = await read(model.forward({ tokens }, new RunContext({ rules })));
          expect(maxAbsDiff(got, plain), rules.name).toBe(0);
        }
        tokens.dispose();
      });

      for (const { label, options } of METHODS) {
        it(`${label} scores equal the cpu backend's`, async () => {
          await useBackend('cpu');
          const cpuBatch = makePairBatch(pairsFor(cpuModel), { dims: cpuModel.dims });
          const want = await attribute(cpuModel, cpuBatch, options);
          await useBackend('webgpu');
          const before = tf.memory().numTensors;
          const batch = makePairBatch(pairsFor(model), { dims: model.dims });
          const got = await attribute(model, batch, options);
          const w = flatten(want.scores);
          const g = flatten(got.scores);
          expect(g.length).toBe(w.length);
          const scale = Math.max(1e-6, ...w.map(Math.abs));
          expect(maxAbsDiff(g, w) / scale, 'relative to the largest score').toBeLessThanOrEqual(1e-4);
          expect(Math.abs(got.metric.clean - want.metric.clean)).toBeLessThanOrEqual(
            1e-4 * (1 + Math.abs(want.metric.clean)),
          );
          expect(tf.memory().numTensors, 'tensors left').toBe(before);
        });
      }

      for (const { label, options } of EDGE_METHODS) {
        it(`${label} edge scores equal the cpu backend's`, async () => {
          await useBackend('cpu');
          const want = await attributeEdges(
            cpuModel,
            makePairBatch(pairsFor(cpuModel), { dims: cpuModel.dims }),
            options,
          );
          await useBackend('webgpu');
          const got = await attributeEdges(
            model,
            makePairBatch(pairsFor(model), { dims: model.dims }),
            options,
          );
          const w = flatten(want.scores);
          const g = flatten(got.scores);
          expect(got.edges).toEqual(want.edges);
          const scale = Math.max(1e-6, ...w.map(Math.abs));
          expect(maxAbsDiff(g, w) / scale, 'relative to the largest score').toBeLessThanOrEqual(1e-4);
        });
      }
    });
  }
});
