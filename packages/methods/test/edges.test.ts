import { EDGE_METHOD_KINDS, isRelpError } from '@relp/core';
import { RELP, RELP_AH } from '@relp/lrp-rules';
import { describe, expect, it } from 'vitest';
import { EDGE_METHOD_NAMES, EDGE_METHODS, edgeMethodByName, edgeMethodOptions } from '../src/index.js';

describe('the edge methods registry', () => {
  it('names each edge method once, covering every engine edge method', () => {
    expect(EDGE_METHODS.map((m) => m.name)).toEqual([...EDGE_METHOD_NAMES]);
    expect(new Set(EDGE_METHODS.map((m) => m.kind))).toEqual(new Set(EDGE_METHOD_KINDS));
  });

  it('maps names to engine options: RelP presets are EAP with rules, steps reach IG only', () => {
    expect(edgeMethodOptions('relp')).toEqual({ method: 'eap', label: 'relp', rules: RELP });
    expect(edgeMethodOptions('relp-ah', { steps: 5 })).toEqual({
      method: 'eap',
      label: 'relp-ah',
      rules: RELP_AH,
    });
    expect(edgeMethodOptions('eap-ig-inputs', { steps: 5, maxBatchRows: 16 })).toEqual({
      method: 'eap-ig-inputs',
      label: 'eap-ig-inputs',
      steps: 5,
      maxBatchRows: 16,
    });
    expect(edgeMethodOptions('edge-patching', { steps: 5 })).toEqual({
      method: 'edge-patching',
      label: 'edge-patching',
    });
  });

  it('refuses an unknown name with BAD_INPUT naming the choices', () => {
    try {
      edgeMethodByName('atp');
      throw new Error('expected BAD_INPUT');
    } catch (e) {
      expect(isRelpError(e, 'BAD_INPUT')).toBe(true);
      expect((e as Error).message).toMatch(/eap-ig-activations/);
    }
  });
});
