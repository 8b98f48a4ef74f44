import type { LanguageModel } from '@relp/core';
import { describe, expect, it } from 'vitest';
import { type TrainOptions, validateTrainOptions } from '../src/train/spec.js';

const model = { dims: { nLayers: 2, dModel: 8, contextLength: 16 } } as unknown as LanguageModel;
const windows = (n: number, length = 8) => Array.from({ length: n }, () => new Int32Array(length));
const base: TrainOptions = {
  model,
  specs: [{ hookPoint: { site: 'resid_post', layer: 1 }, dSae: 16, arch: { kind: 'topk', k: 2 } }],
  windows: windows(8),
  tokens: 100,
};

describe('trainSaes refuses options no run can use, each with its reason, before any tensor', () => {
  it('accepts a valid run', () => {
    expect(() => validateTrainOptions(base)).not.toThrow();
  });

  it.each([
    // batchWindows 0 made the number of batches Infinity: the loop never ended.
    [{ batchWindows: 0 }, /batchWindows must be an integer ≥ 1 \(got 0\)/],
    [{ stepTokens: 0 }, /stepTokens must be an integer ≥ 1/],
    [{ tokens: 0 }, /tokens must be an integer ≥ 1/],
    [{ lr: Number.NaN }, /learning rate must be a number ≥ 0/],
    [{ windows: windows(8, 32) }, /windows of 32 tokens are longer than the model's context of 16 tokens/],
    [{ windows: windows(3) }, /3 training window\(s\) are fewer than one batch of 8 windows/],
    [{ evalWindows: windows(2, 5) }, /must all have the same length/],
    [
      { specs: [{ hookPoint: { site: 'resid_post', layer: 2 }, dSae: 16, arch: { kind: 'topk', k: 2 } }] },
      /site resid_post\.2: the model has 2 layers/,
    ],
  ] as [Partial<TrainOptions>, RegExp][])('%o', (change, message) => {
    expect(() => validateTrainOptions({ ...base, ...change })).toThrow(message);
  });
});
