import { RunContext } from '@relp/core';
import { useBackend } from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  NONE,
  NORMS_BY_ARCHITECTURE,
  normsTreated,
  normsTreatedByPreset,
  RELP,
  RELP_AH,
} from '../src/index.js';
import { FAMILIES } from './families.js';

// The table of norms is what results record in their provenance; it must match the normalize calls the models
// actually make (the LN-rule treats every one of them).
describe('the norms each preset treats', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  for (const fam of FAMILIES.slice(0, 4)) {
    it(`${fam.name}: the table lists one name per normalize call of a forward`, () => {
      const model = fam.make(true);
      const norms = NORMS_BY_ARCHITECTURE[model.architecture];
      expect(norms, model.architecture).toBeDefined();
      const ctx = new RunContext({ rules: RELP });
      const tokens = tf.tensor2d([[1, 2, 3, 4]], [1, 4], 'int32');
      tf.tidy(() => model.forward({ tokens }, ctx));
      tokens.dispose();
      model.dispose();
      expect(ctx.slotCalls.normalize).toBe(model.dims.nLayers * norms!.perBlock.length + norms!.final.length);
    });
  }

  it('Gemma 3 treats the q/k norms and the final norm; GPT-2 its two LayerNorms and the final one', () => {
    expect(normsTreated('gemma3_text', RELP)).toEqual([
      'ln1',
      'q_norm',
      'k_norm',
      'post_attention_norm',
      'ln2',
      'post_feedforward_norm',
      'final',
    ]);
    expect(normsTreated('gpt2', RELP_AH)).toEqual(['ln1', 'ln2', 'final']);
    expect(normsTreated('gpt2', NONE)).toEqual([]);
    expect(normsTreated('some_new_family', RELP)).toEqual(['every norm']);
    expect(normsTreatedByPreset('llama')).toEqual({
      relp: ['ln1', 'ln2', 'final'],
      'relp-ah': ['ln1', 'ln2', 'final'],
      none: [],
    });
  });
});
