import { attribute, type HostTensor, makePairBatch, Site, type WeightMap } from '@relp/core';
import { GPT2_TINY_CONFIG, gpt2Family, parseGpt2Config, randomGpt2Weights } from '@relp/models-gpt2';
import { installLeakGuard, seededRandom, useBackend } from '@relp/testing';
import { expect, it } from 'vitest';

/**
 * Attribution patching is the first-order Taylor approximation of activation patching: when clean and corrupt
 * activations differ by a tiny δ, AtP must equal activation patching up to O(δ²). The model's token B embedding is
 * token A's plus ε·noise, so every activation downstream differs by O(ε).
 */
installLeakGuard();

const A = 5;
const B = 6;

function perturbedWeights(eps: number): WeightMap {
  const config = parseGpt2Config({ ...GPT2_TINY_CONFIG, initializer_range: 0.3 });
  const base = randomGpt2Weights(config, 11, { initializerRange: 0.3, biasStd: 0.1, layerNormStd: 0.1 });
  const name = 'transformer.wte.weight';
  const wte = base.get(name)!;
  const d = wte.shape[1]!;
  const data = Float32Array.from(wte.data);
  const rand = seededRandom(3);
  for (let i = 0; i < d; i++) data[B * d + i] = data[A * d + i]! + eps * (2 * rand() - 1);
  const patched: HostTensor = { shape: wte.shape, data };
  return { get: (n) => (n === name ? patched : base.get(n)), names: () => base.names() };
}

async function relativeError(eps: number): Promise<number> {
  const model = gpt2Family.fromHfConfig(
    { ...GPT2_TINY_CONFIG, initializer_range: 0.3 },
    perturbedWeights(eps),
  );
  try {
    const clean = [3, 9, A, 14, 2, 30, 7, 1];
    const corrupt = clean.map((t) => (t === A ? B : t));
    const batch = makePairBatch([{ clean, corrupt, answer: 10, wrong: 20 }], { dims: model.dims });
    const sites = [Site.ResidPre, Site.AttnOut, Site.MlpOut];
    const ap = await attribute(model, batch, { method: 'activation-patching', sites });
    const atp = await attribute(model, batch, { method: 'atp', sites });
    let err = 0;
    let scale = 0;
    for (const s of sites) {
      const a = (ap.scores[s] as number[][]).flat();
      const g = (atp.scores[s] as number[][]).flat();
      a.forEach((v, i) => {
        err = Math.max(err, Math.abs(v - g[i]!));
        scale = Math.max(scale, Math.abs(v));
      });
    }
    expect(scale).toBeGreaterThan(0);
    return err / scale;
  } finally {
    model.dispose();
  }
}

it('AtP equals activation patching to first order in the perturbation', async () => {
  await useBackend('cpu');
  const coarse = await relativeError(3e-2);
  const fine = await relativeError(3e-3);
  // O(δ²) error over O(δ) scores: the relative error shrinks about tenfold with δ.
  expect(fine).toBeLessThan(0.02);
  expect(fine).toBeLessThan(coarse / 4);
});
