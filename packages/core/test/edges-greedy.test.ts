import { describe, expect, it } from 'vitest';
import {
  allEdges,
  type EdgeScores,
  edgeGraph,
  greedyEdges,
  isRelpError,
  type ModelDims,
  topEdges,
} from '../src/index.js';

/** A result over every edge of a graph, with the given scores (only what greedy growth reads). */
function fakeResult(
  dims: Pick<ModelDims, 'nLayers' | 'nHeads' | 'nKvHeads'>,
  parallel: boolean,
  seed: number,
) {
  const graph = edgeGraph(dims as ModelDims, parallel);
  const index = allEdges(graph);
  let x = seed;
  const rand = () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x / 2 ** 31;
  };
  // Coarse values, so ties happen and their order is tested too.
  const scores = index.map(() => Math.round((rand() - 0.5) * 20) / 4);
  return { graph, index, scores } as unknown as EdgeScores & { scores: number[] };
}

/** Greedy growth read literally: every step rescans all edges for the best one that may join. */
function literalGreedy(r: EdgeScores & { scores: number[] }, n: number, by: 'abs' | 'signed'): string[] {
  const g = r.graph;
  const logits = g.downstream.length - 1;
  const key = (i: number) => (by === 'abs' ? Math.abs(r.scores[i]!) : r.scores[i]!);
  // A reader's writers, spelled from the names: a{l}.h{q}<q> → head q; <k>/<v> of KV head j → its query heads.
  const writers = (v: number): string[] => {
    const name = g.downstream[v]!;
    if (name === 'logits') return [];
    const m = /^([am])(\d+)(?:\.h(\d+)<([qkv])>)?$/.exec(name)!;
    if (m[1] === 'm') return [`m${m[2]}`];
    const h = Number(m[3]);
    if (m[4] === 'q') return [`a${m[2]}.h${h}`];
    const rep = g.nHeads / g.nKvHeads;
    return Array.from({ length: rep }, (_, i) => `a${m[2]}.h${h * rep + i}`);
  };
  const nodes = new Set<string>();
  const chosen = new Set<number>();
  const out: string[] = [];
  while (out.length < n) {
    let best = -1;
    r.index.forEach(([u, v], i) => {
      void u;
      if (chosen.has(i)) return;
      if (v !== logits && !writers(v).some((w) => nodes.has(w))) return;
      if (best < 0 || key(i) > key(best)) best = i;
    });
    if (best < 0) break;
    chosen.add(best);
    const [u, v] = r.index[best]!;
    nodes.add(g.upstream[u]!);
    out.push(`${g.upstream[u]}->${g.downstream[v]}`);
  }
  return out;
}

const names = (s: ReturnType<typeof greedyEdges>) =>
  s.edges.map(([u, v]) => `${s.graph.upstream[u]}->${s.graph.downstream[v]}`);

describe('greedy growth of an edge circuit from the logits', () => {
  for (const [label, dims, parallel] of [
    ['sequential, grouped-query attention', { nLayers: 3, nHeads: 4, nKvHeads: 2 }, false],
    ['parallel blocks', { nLayers: 2, nHeads: 3, nKvHeads: 3 }, true],
  ] as const) {
    it(`equals a literal rescan at every size (${label})`, () => {
      for (const seed of [1, 2, 3]) {
        const r = fakeResult(dims, parallel, seed);
        for (const by of ['abs', 'signed'] as const) {
          for (const n of [0, 1, 5, 20, 60, r.index.length + 5]) {
            expect(names(greedyEdges(r, n, by)), `seed ${seed} ${by} n ${n}`).toEqual(
              literalGreedy(r, n, by),
            );
          }
        }
      }
    });
  }

  it('starts at the logits and only takes an edge whose reader belongs to a writer chosen before it', () => {
    const r = fakeResult({ nLayers: 3, nHeads: 4, nKvHeads: 2 }, false, 7);
    const got = greedyEdges(r, 40);
    const g = got.graph;
    expect(g.downstream[got.edges[0]![1]]).toBe('logits');
    const chosenWriters = new Set<string>();
    for (const [u, v] of got.edges) {
      const reader = g.downstream[v]!;
      if (reader !== 'logits') {
        // a{l}.h{h}<q> belongs to head h; <k>/<v> of KV head j to its query heads; m{l} to the MLP.
        const m = /^([am])(\d+)(?:\.h(\d+)<([qkv])>)?$/.exec(reader)!;
        const rep = g.nHeads / g.nKvHeads;
        const owners =
          m[1] === 'm'
            ? [`m${m[2]}`]
            : m[4] === 'q'
              ? [`a${m[2]}.h${m[3]}`]
              : Array.from({ length: rep }, (_, i) => `a${m[2]}.h${Number(m[3]) * rep + i}`);
        expect(
          owners.some((w) => chosenWriters.has(w)),
          `${g.upstream[u]}->${reader}`,
        ).toBe(true);
      }
      chosenWriters.add(g.upstream[u]!);
    }
    // The best edge overall reads inside the model, so top-n and greedy growth differ here.
    const names = (e: readonly (readonly [number, number])[]) => e.map(([u, v]) => `${u}:${v}`);
    expect(names(got.edges)).not.toEqual(names(topEdges(r, 40).edges));
  });

  it('refuses a size that is not a whole number ≥ 0', () => {
    const r = fakeResult({ nLayers: 1, nHeads: 2, nKvHeads: 2 }, false, 1);
    for (const n of [-1, 1.5, Number.NaN]) {
      let caught: unknown;
      try {
        greedyEdges(r, n);
      } catch (e) {
        caught = e;
      }
      expect(isRelpError(caught) && caught.code === 'BAD_INPUT').toBe(true);
    }
  });
});
