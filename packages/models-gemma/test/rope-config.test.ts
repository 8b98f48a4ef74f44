import { ErrorCodes } from '@relp/core';
import { expectRelpError, loadModelFixture } from '@relp/testing/models';
import { describe, expect, it } from 'vitest';
import { parseGemma3Config } from '../src/index.js';

// transformers' Gemma 3 rotates every head dimension: a partial_rotary_factor other than 1, in a layer kind's
// rope_parameters or at the top level (which transformers copies into each kind), is refused.
describe('partial_rotary_factor, wherever the config writes it', () => {
  const config = loadModelFixture('gemma3-a').config as Record<string, unknown>;

  it('at the top level: refused (it was ignored)', () => {
    expectRelpError(
      () => parseGemma3Config({ ...config, partial_rotary_factor: 0.5 }),
      ErrorCodes.Unsupported,
      /partial rotary embeddings \(partial_rotary_factor 0\.5\) are not supported for Gemma 3/,
    );
  });

  it('in a layer kind’s rope_parameters: refused; 1 there overrides the top level', () => {
    const params = config.rope_parameters as Record<string, Record<string, unknown>>;
    const withLocal = (factor: number) => ({
      ...params,
      sliding_attention: { ...params.sliding_attention, partial_rotary_factor: factor },
      full_attention: { ...params.full_attention, partial_rotary_factor: factor },
    });
    expectRelpError(
      () => parseGemma3Config({ ...config, rope_parameters: withLocal(0.5) }),
      ErrorCodes.Unsupported,
      /partial_rotary_factor 0\.5/,
    );
    const c = parseGemma3Config({ ...config, partial_rotary_factor: 0.5, rope_parameters: withLocal(1) });
    expect(c.ropeGlobal.dim).toBe(c.dHead);
  });
});
