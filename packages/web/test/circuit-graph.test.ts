import { RelpError } from '@relp/core/errors';
import { describe, expect, it } from 'vitest';
import { edgeCircuitGraph } from '../src/components/circuit-graph.js';

describe('edgeCircuitGraph', () => {
  it('reads upstream and downstream names into rows, columns and labelled edges', () => {
    const g = edgeCircuitGraph(
      [
        { from: 'input', to: 'a0.h1<k>', score: 0.5 },
        { from: 'a0.h1', to: 'm1', score: -0.25 },
        { from: 'm1', to: 'logits', score: 2 },
        { from: 'input', to: 'a1.h0<q>', score: 0.125 },
      ],
      { nLayers: 2, nHeads: 2 },
    );
    const byId = Object.fromEntries(g.nodes.map((n) => [n.id, [n.layer, n.column]]));
    expect(byId).toEqual({
      input: [-1, 0.5],
      'a0.h1': [0, 1],
      m1: [1, 2],
      logits: [2, 0.5],
      'a1.h0': [1, 0],
    });
    expect(g.edges).toEqual([
      { from: 'input', to: 'a0.h1', score: 0.5, label: 'k' },
      { from: 'a0.h1', to: 'm1', score: -0.25, label: undefined },
      { from: 'm1', to: 'logits', score: 2, label: undefined },
      { from: 'input', to: 'a1.h0', score: 0.125, label: 'q' },
    ]);
    expect(g.columns?.map((c) => c.label)).toEqual(['h0', 'h1', 'MLP']);
  });

  it.each([
    [{ from: 'logits', to: 'm0', score: 1 }, /not upstream/],
    [{ from: 'a0.h0<q>', to: 'm1', score: 1 }, /not upstream/],
    [{ from: 'input', to: 'a0.h0', score: 1 }, /not upstream/],
    [{ from: 'input', to: 'a0.h5<v>', score: 1 }, /head 5 of 2/],
    [{ from: 'm7', to: 'logits', score: 1 }, /past the last layer/],
    [{ from: 'input', to: 'm0', score: Number.NaN }, /score NaN/],
  ])('refuses %o as BAD_INPUT', (edge, message) => {
    let error: unknown;
    try {
      edgeCircuitGraph([edge], { nLayers: 2, nHeads: 2 });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(RelpError);
    expect((error as RelpError).code).toBe('BAD_INPUT');
    expect((error as RelpError).message).toMatch(message);
  });
});
