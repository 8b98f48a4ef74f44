import { readFileSync } from 'node:fs';
import type { HostTensor, LanguageModel, ModelFamily } from '@relp/core';
import { ErrorCodes, isRelpError, RelpError } from '@relp/core/errors';
import { fixturePath } from '@relp/testing';
import { writeSafetensors } from '@relp/weights';
import { describe, expect, it } from 'vitest';
import { createMemoryFs, loadModel } from '../src/index.js';
import { utf8 } from './helpers.js';

/** A family that reads `embed` and `model.layers.{l}.w` for l < config.n_layer, as real families read theirs. */
const layeredFamily: ModelFamily = {
  name: 'layered',
  modelTypes: ['layered'],
  fromHfConfig(config, weights): LanguageModel {
    const nLayers = config.n_layer as number;
    const need = (name: string) => {
      if (weights.get(name) === undefined) {
        throw new RelpError(ErrorCodes.BadModelFile, `weight '${name}' is missing`);
      }
    };
    need('embed');
    for (let l = 0; l < nLayers; l++) need(`model.layers.${l}.w`);
    return {
      architecture: 'layered',
      dims: {
        nLayers,
        dModel: 2,
        nHeads: 1,
        nKvHeads: 1,
        dHead: 2,
        dMlp: 2,
        vocabSize: 3,
        contextLength: 4,
      },
      sites: [],
      nonlinearities: [],
      embed: () => {
        throw new Error('not run');
      },
      forward: () => {
        throw new Error('not run');
      },
      dispose: () => {},
    };
  },
};

const tensor = (): HostTensor & { dtype: 'F32' } => ({ shape: [2], data: new Float32Array(2), dtype: 'F32' });

function folder(nLayer: number, names: readonly string[]) {
  return createMemoryFs({
    '/m/config.json': utf8(JSON.stringify({ model_type: 'layered', n_layer: nLayer })),
    '/m/model.safetensors': writeSafetensors(Object.fromEntries(names.map((n) => [n, tensor()]))),
  });
}

const layers = (n: number) => Array.from({ length: n }, (_, l) => `model.layers.${l}.w`);

describe('tensors the model does not use are reported as warnings, as transformers does', () => {
  it('a checkpoint that the model reads whole loads without warnings', async () => {
    const r = await loadModel('/m', { fs: folder(2, ['embed', ...layers(2)]), families: [layeredFamily] });
    expect(r.warnings).toEqual([]);
  });

  it('more layers in the checkpoint than the config declares: one warning naming both counts', async () => {
    const r = await loadModel('/m', { fs: folder(1, ['embed', ...layers(2)]), families: [layeredFamily] });
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toMatch(/weights for 2 layers but the config declares 1: layer 1 is not used/);
    const r3 = await loadModel('/m', { fs: folder(1, ['embed', ...layers(4)]), families: [layeredFamily] });
    expect(r3.warnings[0]).toMatch(/weights for 4 layers but the config declares 1: layers 1–3 are not used/);
  });

  it('other unused tensors: the count and the first few names', async () => {
    const extra = Array.from({ length: 7 }, (_, i) => `adapter.${i}.weight`);
    const r = await loadModel('/m', {
      fs: folder(2, ['embed', ...layers(2), ...extra]),
      families: [layeredFamily],
    });
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toMatch(/^\/m: 7 tensors in the checkpoint are not used by the model: /);
    expect(r.warnings[0]).toContain("'adapter.0.weight'");
    expect(r.warnings[0]).toMatch(/and 2 more$/);
  });

  it('buffers transformers also ignores (causal masks, rotary inverse frequencies, a tied lm_head) are not reported', async () => {
    const buffers = [
      'model.layers.0.attn.bias',
      'model.layers.0.attn.masked_bias',
      'model.layers.1.attention.bias',
      'model.layers.0.self_attn.rotary_emb.inv_freq',
      'lm_head.weight',
      'rope_freqs.weight',
    ];
    const r = await loadModel('/m', {
      fs: folder(2, ['embed', ...layers(2), ...buffers]),
      families: [layeredFamily],
    });
    expect(r.warnings).toEqual([]);
  });

  it('fewer layers in the checkpoint than the config declares is an error, not a warning', async () => {
    const err = await loadModel('/m', {
      fs: folder(3, ['embed', ...layers(2)]),
      families: [layeredFamily],
    }).catch((e: unknown) => e);
    expect(isRelpError(err) && err.code).toBe(ErrorCodes.BadModelFile);
  });
});

describe('GGUF files: config errors name the metadata key', () => {
  const gguf = readFileSync(fixturePath('gguf', 'tiny-llama.gguf'));

  it('a family error about a config field names the GGUF metadata key it came from', async () => {
    const strict: ModelFamily = {
      name: 'strict',
      modelTypes: ['llama'],
      fromHfConfig(config) {
        throw new RelpError(
          ErrorCodes.BadModelFile,
          `config field 'head_dim' is ${String(config.head_dim)}`,
          {
            details: { field: 'head_dim' },
          },
        );
      },
    };
    const err = await loadModel('/t.gguf', {
      fs: createMemoryFs({ '/t.gguf': gguf }),
      families: [strict],
    }).catch((e: unknown) => e);
    expect(isRelpError(err) && err.code).toBe(ErrorCodes.BadModelFile);
    expect((err as Error).message).toBe(
      `/t.gguf: GGUF metadata "llama.attention.key_length" (as config field head_dim): config field 'head_dim' is 8`,
    );
  });
});
