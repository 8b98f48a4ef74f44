import type { HostTensor, ModelFamily, WeightMap } from '@relp/core';

/** Whether a checkpoint tensor is a bias (HF names: `….bias`, `…_bias`), LayerNorm's β included. */
export function isBiasName(name: string): boolean {
  return /(^|[._])bias$/.test(name);
}

/**
 * The same weights with every bias zeroed (docs/method.md §11.2's conservation check assumes a bias-free model):
 * each bias tensor becomes zeros of its shape, every other tensor is passed through untouched.
 */
export function withZeroBiases(weights: WeightMap): WeightMap {
  return {
    get(name: string): HostTensor | undefined {
      const t = weights.get(name);
      if (t === undefined || !isBiasName(name)) return t;
      return { shape: t.shape, data: new Float32Array(t.data.length) };
    },
    names: () => weights.names(),
  };
}

/** A family that builds its models from the checkpoint with every bias zeroed (`withZeroBiases`). */
export function zeroBiasFamily(family: ModelFamily): ModelFamily {
  return {
    name: family.name,
    modelTypes: family.modelTypes,
    fromHfConfig: (config, weights) => family.fromHfConfig(config, withZeroBiases(weights)),
  };
}
