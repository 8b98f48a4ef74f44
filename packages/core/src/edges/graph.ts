import { ErrorCodes, RelpError } from '../errors.js';
import type { LanguageModel, ModelDims } from '../model.js';
import { EDGE_SITES, Site, type SiteKey, siteKey } from '../sites.js';

/**
 * The computational graph of edge attribution (docs/method.md §17), with EAP-IG's node and edge names.
 *
 * Upstream nodes (writers to the residual stream), in this order: `input` (the embeddings, the residual entering
 * block 0), then per layer l the heads `a{l}.h{h}` (h < H) and the MLP `m{l}`. Downstream nodes (readers), in this
 * order: per layer l the query inputs `a{l}.h{h}<q>` (h < H), the key inputs `a{l}.h{g}<k>` and value inputs
 * `a{l}.h{g}<v>` (g < H_kv: one per key/value head under grouped-query attention), the MLP input `m{l}`; then
 * `logits`. An edge u→v exists when u writes before v reads: a reader at layer l's attention reads every writer of
 * the layers before l; layer l's MLP also reads layer l's heads unless the block is parallel (Pythia), where
 * attention and MLP both read the residual entering the block; `logits` reads every writer.
 */
export interface EdgeGraph {
  readonly nLayers: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  /** Attention and MLP read the same residual (GPT-NeoX's use_parallel_residual). */
  readonly parallel: boolean;
  readonly upstream: readonly string[];
  readonly downstream: readonly string[];
  /** prev[v]: how many upstream nodes (a prefix of `upstream`) write before downstream node v reads. */
  readonly prev: readonly number[];
  /** Number of edges: Σ_v prev[v]. */
  readonly nEdges: number;
}

/** Where a downstream node reads: the edge site (or resid_post of the last block for logits) and the unit there. */
export interface DownstreamRead {
  readonly key: SiteKey;
  /** The head (query or key/value head) on the site's head axis; undefined for sites without one. */
  readonly head: number | undefined;
  /** The block whose computation reads it. */
  readonly block: number;
}

/** Where an upstream node writes: its site key and head (see DownstreamRead). */
export interface UpstreamWrite {
  readonly key: SiteKey;
  readonly head: number | undefined;
  readonly block: number;
}

/** Whether a model's blocks feed attention and MLP from the same residual (no resid_mid site). */
export function hasParallelBlocks(model: Pick<LanguageModel, 'sites'>): boolean {
  return !model.sites.includes(Site.ResidMid);
}

/** The edge graph of a model's dims and block kind. */
export function edgeGraph(dims: ModelDims, parallel: boolean): EdgeGraph {
  const { nLayers: L, nHeads: H, nKvHeads: Hkv } = dims;
  const upstream = ['input'];
  const downstream: string[] = [];
  const prev: number[] = [];
  for (let l = 0; l < L; l++) {
    const before = upstream.length;
    for (let h = 0; h < H; h++) upstream.push(`a${l}.h${h}`);
    upstream.push(`m${l}`);
    for (const [letter, n] of [
      ['q', H],
      ['k', Hkv],
      ['v', Hkv],
    ] as const) {
      for (let h = 0; h < n; h++) {
        downstream.push(`a${l}.h${h}<${letter}>`);
        prev.push(before);
      }
    }
    downstream.push(`m${l}`);
    prev.push(parallel ? before : before + H);
  }
  downstream.push('logits');
  prev.push(upstream.length);
  return {
    nLayers: L,
    nHeads: H,
    nKvHeads: Hkv,
    parallel,
    upstream,
    downstream,
    prev,
    nEdges: prev.reduce((a, b) => a + b, 0),
  };
}

/** The graph of a model. */
export function modelEdgeGraph(model: Pick<LanguageModel, 'dims' | 'sites'>): EdgeGraph {
  return edgeGraph(model.dims, hasParallelBlocks(model));
}

/** Upstream node index → where it writes. */
export function upstreamWrite(g: EdgeGraph, u: number): UpstreamWrite {
  if (u === 0) return { key: siteKey(Site.ResidPre, 0), head: undefined, block: 0 };
  const l = Math.floor((u - 1) / (g.nHeads + 1));
  const i = (u - 1) % (g.nHeads + 1);
  return i < g.nHeads
    ? { key: siteKey(EDGE_SITES.head_out, l), head: i, block: l }
    : { key: siteKey(Site.MlpOut, l), head: undefined, block: l };
}

/** Downstream node index → where it reads. */
export function downstreamRead(g: EdgeGraph, v: number): DownstreamRead {
  const per = g.nHeads + 2 * g.nKvHeads + 1;
  if (v === g.nLayers * per) {
    return { key: siteKey(Site.ResidPost, g.nLayers - 1), head: undefined, block: g.nLayers - 1 };
  }
  const l = Math.floor(v / per);
  let i = v % per;
  if (i < g.nHeads) return { key: siteKey(EDGE_SITES.q_input, l), head: i, block: l };
  i -= g.nHeads;
  if (i < g.nKvHeads) return { key: siteKey(EDGE_SITES.k_input, l), head: i, block: l };
  i -= g.nKvHeads;
  if (i < g.nKvHeads) return { key: siteKey(EDGE_SITES.v_input, l), head: i, block: l };
  return { key: siteKey(EDGE_SITES.mlp_input, l), head: undefined, block: l };
}

/** The edge's name as EAP-IG writes it: `u->v` (v carries `<q>`, `<k>`, `<v>` for attention inputs). */
export function edgeName(g: EdgeGraph, u: number, v: number): string {
  return `${g.upstream[u]}->${g.downstream[v]}`;
}

/** Every edge as [u, v], grouped by downstream node (in `downstream` order), upstream nodes in order. */
export function allEdges(g: EdgeGraph): [number, number][] {
  const out: [number, number][] = [];
  g.downstream.forEach((_, v) => {
    for (let u = 0; u < g.prev[v]!; u++) out.push([u, v]);
  });
  return out;
}

const UP = /^(?:input|a(\d+)\.h(\d+)|m(\d+))$/;
const DOWN = /^(?:logits|a(\d+)\.h(\d+)<([qkv])>|m(\d+))$/;

/**
 * Parses `u->v` names into [u, v] indices, each checked (BAD_INPUT naming the first bad one): the syntax, layers
 * and heads in range (key/value inputs: a key/value head), and that the edge exists (u writes before v reads).
 */
export function parseEdges(g: EdgeGraph, names: readonly string[]): [number, number][] {
  const bad = (name: unknown, why: string): never => {
    throw new RelpError(ErrorCodes.BadInput, `edge '${String(name)}': ${why}`, {
      details: { edge: String(name) },
    });
  };
  const upIndex = new Map(g.upstream.map((n, i) => [n, i]));
  const downIndex = new Map(g.downstream.map((n, i) => [n, i]));
  const seen = new Set<string>();
  return names.map((name) => {
    if (typeof name !== 'string') return bad(name, 'an edge name is a string "u->v"');
    const parts = name.split('->');
    if (parts.length !== 2) return bad(name, 'expected "u->v", e.g. "a0.h1->m2" or "input->a1.h0<q>"');
    const [us, vs] = parts as [string, string];
    const um = UP.exec(us);
    if (!um) return bad(name, `'${us}' is not an upstream node (input, a{layer}.h{head}, m{layer})`);
    const vm = DOWN.exec(vs);
    if (!vm) {
      return bad(name, `'${vs}' is not a downstream node (a{layer}.h{head}<q|k|v>, m{layer}, logits)`);
    }
    const layerOf = (s: string | undefined) => (s === undefined ? undefined : Number(s));
    const checkLayer = (l: number | undefined) => {
      if (l !== undefined && l >= g.nLayers) bad(name, `layer ${l} is outside 0..${g.nLayers - 1}`);
    };
    checkLayer(layerOf(um[1] ?? um[3]));
    checkLayer(layerOf(vm[1] ?? vm[4]));
    if (um[2] !== undefined && Number(um[2]) >= g.nHeads) {
      bad(name, `head ${um[2]} is outside 0..${g.nHeads - 1}`);
    }
    if (vm[2] !== undefined) {
      const n = vm[3] === 'q' ? g.nHeads : g.nKvHeads;
      if (Number(vm[2]) >= n) {
        bad(name, `${vm[3] === 'q' ? 'head' : 'key/value head'} ${vm[2]} is outside 0..${n - 1}`);
      }
    }
    const u = upIndex.get(us);
    const v = downIndex.get(vs);
    // Leading zeros ("a01.h0") parse as numbers in range but are not the graph's names.
    if (u === undefined) return bad(name, `'${us}' is not written as the graph names it (${g.upstream[1]})`);
    if (v === undefined)
      return bad(name, `'${vs}' is not written as the graph names it (${g.downstream[0]})`);
    if (u >= g.prev[v]!) return bad(name, `${us} does not write before ${vs} reads: no such edge`);
    if (seen.has(name)) return bad(name, 'listed twice');
    seen.add(name);
    return [u, v];
  });
}
