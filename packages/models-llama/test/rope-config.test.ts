import { ErrorCodes } from '@relp/core';
import { expectRelpError, loadModelFixture } from '@relp/testing/models';
import { describe, expect, it } from 'vitest';
import { parseLlamaConfig } from '../src/index.js';

// transformers reads partial_rotary_factor from rope_parameters, else from the top level; its Llama, Qwen2 and
// Mistral rotate every head dimension, so a factor other than 1 is refused wherever it is written.
describe('partial_rotary_factor, wherever the config writes it', () => {
  const config = loadModelFixture('llama-gqa').config as Record<string, unknown>;
  const params = config.rope_parameters as Record<string, unknown>;

  it('at the top level next to rope_parameters: refused (it was ignored)', () => {
    expectRelpError(
      () => parseLlamaConfig({ ...config, partial_rotary_factor: 0.5 }),
      ErrorCodes.Unsupported,
      /partial_rotary_factor 0\.5: 4 of 8 head dimensions/,
    );
  });

  it('in rope_parameters: refused, and it takes precedence over the top level', () => {
    expectRelpError(
      () => parseLlamaConfig({ ...config, rope_parameters: { ...params, partial_rotary_factor: 0.25 } }),
      ErrorCodes.Unsupported,
      /partial_rotary_factor 0\.25/,
    );
    const c = parseLlamaConfig({
      ...config,
      partial_rotary_factor: 0.5,
      rope_parameters: { ...params, partial_rotary_factor: 1 },
    });
    expect(c.rope.dim).toBe(8);
  });

  it('0, negative or not a number: BAD_MODEL_FILE naming the field', () => {
    for (const bad of [0, -1, 'half']) {
      expectRelpError(
        () => parseLlamaConfig({ ...config, partial_rotary_factor: bad }),
        ErrorCodes.BadModelFile,
        /partial_rotary_factor/,
      );
    }
  });
});
