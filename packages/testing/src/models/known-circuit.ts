/**
 * A GPT-2 whose weights are set by construction (no training) so that its circuit is known edge by edge: it does
 * induction on [BOS, x_0 … x_{n−1}, x_0 … x_m] and predicts x_{m+1}.
 *
 * The residual stream. Every write lives in its own block of orthonormal directions of R^d (rows of a Sylvester
 * Hadamard matrix other than the all-ones row, so each is orthogonal to the ones vector and to all the others):
 *   T   the current token (one direction per token)          written by the embedding `wte`
 *   P   the position (one per position)                      written by `wpe`
 *   PT  the previous token                                   written by a0.h1, the previous-token head
 *   O   the predicted token                                  written by a1.h2, the induction head
 *   S, B, D1, D2  distractor writes (unused by the circuit)  written by a0.h0, a0.h2, a1.h0, a1.h1
 *   Z   a constant of norm `anchor` (default 20)             written by `wpe` at every position
 * LayerNorm. With every direction orthogonal to ones, mean-centring changes nothing; every block holds one unit
 * copy (attention is nearly hard and copies one token), so ‖x‖ is the same at every position of every prompt,
 * clean or corrupt, and LayerNorm (γ = 1, β = 0) is x · √d/‖x‖ with a constant scale: the model is linear up to
 * its attention patterns. Z makes that survive ablation: a mean over prompts of one-hot copies is shorter than a
 * copy, which would rescale the norm (and the logits) under mean ablation; with ‖Z‖² = 400 against at most 8 for
 * the rest, the scale moves by < 1%. The MLPs are all zeros (they write exactly 0).
 *
 * The heads (h3 of each layer is all zeros):
 *   a0.h1  previous-token head: query P_t, key P_{j+1} (attends to t−1); value T → writes PT      (circuit)
 *   a1.h2  induction head: query T (current token), key PT (previous token): attends to the position after the
 *          earlier occurrence of the current token; value T → writes O, which the unembedding reads (circuit)
 *   a0.h0  self head: attends to itself, copies T into S                                          (distractor)
 *   a0.h2  sink head: attends to BOS (query from its bias), copies it into B: a constant          (distractor)
 *   a1.h0  previous-position head reading a0.h0's S (a second previous-token copy) → D1          (distractor)
 *   a1.h1  duplicate-token head: query T, key T, value PT (a0.h1's write) → D2                  (distractor)
 * The unembedding reads O only, so the logits are the induction head's copy and nothing else.
 *
 * The contrast circuit. Clean/corrupt pairs come in three kinds, one per input of the induction head, and the
 * answer changes in each (metric: logit(clean answer) − logit(corrupt answer) at the last position):
 *   query: the last token x_m becomes another first-half token x_k   → the head copies x_{k+1}
 *   key:   x_m and x_k swap places in the first half                 → the previous-token copy moves: x_{k+1}
 *   value: the first half's x_{m+1} becomes a fresh token y          → the head copies y
 * The edges that carry a clean/corrupt difference to the metric are then exactly KNOWN_CIRCUIT_EDGES. The
 * previous-token head's query and key edges (input → a0.h1<q>, <k>) are part of the mechanism but read only
 * positions, which no pair changes, so no ablation of them (corrupt or mean: same position) changes anything;
 * they are not in the contrast circuit.
 */
import type { LanguageModel, ModelFamily, TokenPair, WeightMap } from '@relp/core';
import { seededRandom } from '../index.js';

/** The construction's sizes. */
export const KNOWN_CIRCUIT = Object.freeze({
  /** Tokens: 0 is BOS, 1 … vocab−1 the random ones. */
  vocab: 12,
  bos: 0,
  dModel: 128,
  nHeads: 4,
  contextLength: 14,
  /** The repeated sequence's length n (the first half). */
  half: 6,
  /** The last token of the prompts is x_m (prompt length 1 + n + m + 1). */
  m: 3,
  /** Heads by role. */
  prevHead: 1,
  inductionHead: 2,
});

/** The edges through which the clean/corrupt difference reaches the metric (see the module comment). */
export const KNOWN_CIRCUIT_EDGES: readonly string[] = Object.freeze([
  'input->a0.h1<v>',
  'a0.h1->a1.h2<k>',
  'input->a1.h2<q>',
  'input->a1.h2<v>',
  'a1.h2->logits',
]);

/** The previous-token head's positional edges: in the mechanism, carrying no clean/corrupt difference. */
export const KNOWN_CIRCUIT_POSITION_EDGES: readonly string[] = Object.freeze([
  'input->a0.h1<q>',
  'input->a0.h1<k>',
]);

export interface KnownCircuitOptions {
  /** Attention-logit gap between the attended position and the others, layer 0 heads (default 30: hard). */
  readonly gap0?: number;
  /** The same for the layer-1 heads (default 12: the induction head puts ≥ 0.999 on its target). */
  readonly gap1?: number;
  /** The answer's logit (every other token's is 0). Default 10. */
  readonly logit?: number;
  /** Norm of the constant direction Z every position carries (default 20; see the module comment). */
  readonly anchor?: number;
}

/** Entry (i, j) of the d×d Sylvester Hadamard matrix, normalised: rows are orthonormal; row 0 is ones/√d. */
function hadamardRow(i: number, d: number): Float64Array {
  const row = new Float64Array(d);
  const s = 1 / Math.sqrt(d);
  for (let j = 0; j < d; j++) {
    let bits = i & j;
    let parity = 0;
    while (bits) {
      parity ^= bits & 1;
      bits >>>= 1;
    }
    row[j] = parity ? -s : s;
  }
  return row;
}

/** The config.json of the construction (GPT-2, untied unembedding, MLPs of width 4 that are all zero). */
export function knownCircuitConfig(): Record<string, unknown> {
  const k = KNOWN_CIRCUIT;
  return {
    model_type: 'gpt2',
    vocab_size: k.vocab,
    n_positions: k.contextLength,
    n_embd: k.dModel,
    n_layer: 2,
    n_head: k.nHeads,
    n_inner: 4,
    activation_function: 'gelu_new',
    layer_norm_epsilon: 1e-5,
    scale_attn_weights: true,
    scale_attn_by_inverse_layer_idx: false,
    tie_word_embeddings: false,
  };
}

/** The construction's weights, named as GPT2LMHeadModel saves them. */
export function knownCircuitWeights(options: KnownCircuitOptions = {}): WeightMap {
  const { vocab: V, dModel: d, nHeads: H, contextLength: C } = KNOWN_CIRCUIT;
  const dh = d / H;
  const gap0 = options.gap0 ?? 30;
  const gap1 = options.gap1 ?? 12;
  const logit = options.logit ?? 10;
  const z = options.anchor ?? 20;
  // Blocks of Hadamard rows (row 0, the ones vector, is never used).
  let next = 1;
  const block = (n: number) => Array.from({ length: n }, () => hadamardRow(next++, d));
  const T = block(V);
  const P = block(C);
  const PT = block(V);
  const O = block(V);
  const S = block(V);
  const B = block(V);
  const D1 = block(V);
  const D2 = block(V);
  const Z = hadamardRow(next++, d);
  // Every block holds one unit vector (attention nearly hard), so ‖x‖² is z² plus the number of blocks written so
  // far, and LayerNorm multiplies each coordinate by c = √d/‖x‖ (eps is negligible against ‖x‖²/d).
  const c0 = Math.sqrt(d / (z * z + 2)); // Z, T, P
  const c1 = Math.sqrt(d / (z * z + 5)); // + PT, S, B
  const cF = Math.sqrt(d / (z * z + 8)); // + D1, D2, O
  const scale = 1 / Math.sqrt(dh); // GPT-2's 1/√dh on the scores
  // A query reading u (norm-scaled by c) and a key reading u' give score β²c²·scale: β for a gap.
  const beta = (gap: number, cq: number, ck: number) => Math.sqrt(gap / (cq * ck * scale));

  const zeros = (...shape: number[]) => ({ shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
  const record: Record<string, { shape: number[]; data: Float32Array }> = {};
  const wte = zeros(V, d);
  const wpe = zeros(C, d);
  for (let v = 0; v < V; v++) for (let j = 0; j < d; j++) wte.data[v * d + j] = T[v]![j]!;
  for (let t = 0; t < C; t++) for (let j = 0; j < d; j++) wpe.data[t * d + j] = P[t]![j]! + z * Z[j]!;
  record['transformer.wte.weight'] = wte;
  record['transformer.wpe.weight'] = wpe;

  for (let l = 0; l < 2; l++) {
    const qkv = zeros(d, 3 * d);
    const qkvBias = zeros(3 * d);
    const proj = zeros(d, d);
    /** Adds w·u to column `col` of c_attn (u a residual direction): the column reads u. */
    const read = (col: number, u: Float64Array, w: number) => {
      for (let j = 0; j < d; j++) qkv.data[j * 3 * d + col] = qkv.data[j * 3 * d + col]! + w * u[j]!;
    };
    /** Head h's query (part 0), key (1) or value (2) coordinate i reads u with weight w. */
    const head = (h: number, part: number, i: number, u: Float64Array, w: number) =>
      read(part * d + h * dh + i, u, w);
    /** Head h's value coordinate i writes w·u to the residual. */
    const write = (h: number, i: number, u: Float64Array, w: number) => {
      const row = (h * dh + i) * d;
      for (let j = 0; j < d; j++) proj.data[row + j] = proj.data[row + j]! + w * u[j]!;
    };
    /** Value reads block `from` (norm-scaled by c), output writes block `to` with unit norm. */
    const copy = (h: number, from: Float64Array[], to: Float64Array[], c: number) => {
      for (let v = 0; v < V; v++) {
        head(h, 2, v, from[v]!, 1);
        write(h, v, to[v]!, 1 / c);
      }
    };
    /** Query at position t matches key at position t − shift (positions in P). */
    const byPosition = (h: number, shift: number, b: number) => {
      for (let t = 0; t < C; t++) {
        head(h, 0, t, P[t]!, b);
        if (t + shift < C) head(h, 1, t + shift, P[t]!, b);
      }
    };
    /** Query reading block `q` matches key reading block `k` where they hold the same token. */
    const byToken = (h: number, q: Float64Array[], k: Float64Array[], b: number) => {
      for (let v = 0; v < V; v++) {
        head(h, 0, v, q[v]!, b);
        head(h, 1, v, k[v]!, b);
      }
    };
    if (l === 0) {
      const b = beta(gap0, c0, c0);
      byPosition(0, 0, b); // self
      copy(0, T, S, c0);
      byPosition(1, 1, b); // previous token
      copy(1, T, PT, c0);
      // Sink: the query is a constant (its bias), the key reads BOS's token direction.
      qkvBias.data[0 * d + 2 * dh] = Math.sqrt(gap0 / (c0 * scale));
      head(2, 1, 0, T[KNOWN_CIRCUIT.bos]!, Math.sqrt(gap0 / (c0 * scale)));
      copy(2, T, B, c0);
    } else {
      const b = beta(gap1, c1, c1);
      byPosition(0, 1, b); // previous position, reading the self head's copy
      copy(0, S, D1, c1);
      byToken(1, T, T, b); // duplicate token, reading the previous-token head's copy
      copy(1, PT, D2, c1);
      byToken(2, T, PT, b); // induction
      copy(2, T, O, c1);
    }
    const p = `transformer.h.${l}.`;
    record[`${p}attn.c_attn.weight`] = qkv;
    record[`${p}attn.c_attn.bias`] = qkvBias;
    record[`${p}attn.c_proj.weight`] = proj;
    record[`${p}attn.c_proj.bias`] = zeros(d);
    for (const ln of ['ln_1', 'ln_2']) {
      record[`${p}${ln}.weight`] = { shape: [d], data: new Float32Array(d).fill(1) };
      record[`${p}${ln}.bias`] = zeros(d);
    }
    record[`${p}mlp.c_fc.weight`] = zeros(d, 4);
    record[`${p}mlp.c_fc.bias`] = zeros(4);
    record[`${p}mlp.c_proj.weight`] = zeros(4, d);
    record[`${p}mlp.c_proj.bias`] = zeros(d);
  }
  record['transformer.ln_f.weight'] = { shape: [d], data: new Float32Array(d).fill(1) };
  record['transformer.ln_f.bias'] = zeros(d);
  // The unembedding reads O: token v's logit is `logit` when O holds v (after the final norm's scale cF).
  const lmHead = zeros(V, d);
  for (let v = 0; v < V; v++) for (let j = 0; j < d; j++) lmHead.data[v * d + j] = (logit / cF) * O[v]![j]!;
  record['lm_head.weight'] = lmHead;
  return { get: (name) => record[name], names: () => Object.keys(record) };
}

/** The constructed model, built by a GPT-2 family (e.g. `gpt2Family` of @relp/models-gpt2). */
export function knownCircuitModel(family: ModelFamily, options?: KnownCircuitOptions): LanguageModel {
  return family.fromHfConfig(knownCircuitConfig(), knownCircuitWeights(options));
}

/** `count` distinct tokens from 1 … vocab−1, in random order. */
function distinctTokens(rand: () => number, count: number): number[] {
  const pool = Array.from({ length: KNOWN_CIRCUIT.vocab - 1 }, (_, i) => i + 1);
  for (let i = pool.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  return pool.slice(0, count);
}

/** Random repeated sequences [BOS, x_0 … x_{n−1}, x_0 … x_{n−1}] (distinct x_i), for the accuracy check. */
export function repeatedSequences(count: number, seed: number): number[][] {
  const rand = seededRandom(seed);
  const n = KNOWN_CIRCUIT.half;
  return Array.from({ length: count }, () => {
    const x = distinctTokens(rand, n);
    return [KNOWN_CIRCUIT.bos, ...x, ...x];
  });
}

export type KnownCircuitPairKind = 'query' | 'key' | 'value';

export interface KnownCircuitPair extends TokenPair {
  readonly kind: KnownCircuitPairKind;
}

/**
 * Clean/corrupt pairs, `perKind` of each kind in turn (query, key, value: see the module comment). Clean is
 * [BOS, x_0 … x_{n−1}, x_0 … x_m] with answer x_{m+1}; `wrong` is the corrupt prompt's induction answer.
 */
export function knownCircuitPairs(perKind: number, seed: number): KnownCircuitPair[] {
  const rand = seededRandom(seed);
  const { half: n, m, bos } = KNOWN_CIRCUIT;
  const pick = (options: number[]) => options[Math.floor(rand() * options.length)]!;
  const out: KnownCircuitPair[] = [];
  for (let i = 0; i < perKind; i++) {
    for (const kind of ['query', 'key', 'value'] as const) {
      const all = distinctTokens(rand, n + 1); // the last one is the value pairs' fresh token
      const x = all.slice(0, n);
      const clean = [bos, ...x, ...x.slice(0, m + 1)];
      const corrupt = [...clean];
      let wrong: number;
      if (kind === 'query') {
        // Another first-half token with a successor: the head copies x_{k+1}.
        const k = pick(Array.from({ length: n - 1 }, (_, j) => j).filter((j) => j !== m));
        corrupt[corrupt.length - 1] = x[k]!;
        wrong = x[k + 1]!;
      } else if (kind === 'key') {
        // Not adjacent to x_m, so x_{k+1} stays where it is.
        const k = pick(Array.from({ length: n - 1 }, (_, j) => j).filter((j) => Math.abs(j - m) >= 2));
        corrupt[1 + m] = x[k]!;
        corrupt[1 + k] = x[m]!;
        wrong = x[k + 1]!;
      } else {
        wrong = all[n]!;
        corrupt[1 + m + 1] = wrong;
      }
      out.push({ kind, clean, corrupt, answer: x[m + 1]!, wrong });
    }
  }
  return out;
}

/**
 * The area under the ROC curve of `scores` for the positives `labels`: the probability that a random positive
 * scores above a random negative, ties counting one half (the Mann–Whitney U statistic over n₊·n₋), exact.
 */
export function auroc(scores: readonly number[], labels: readonly boolean[]): number {
  if (scores.length !== labels.length) throw new Error('auroc: scores and labels differ in length');
  const order = scores.map((s, i) => [s, i] as const).sort((a, b) => a[0] - b[0]);
  // Mid-ranks (1-based) over ties.
  const rank = new Array<number>(scores.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && order[j + 1]![0] === order[i]![0]) j++;
    for (let k = i; k <= j; k++) rank[order[k]![1]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  const pos = labels.filter(Boolean).length;
  const neg = labels.length - pos;
  if (pos === 0 || neg === 0) throw new Error('auroc: needs at least one positive and one negative');
  const rankSum = labels.reduce((s, y, i) => (y ? s + rank[i]! : s), 0);
  return (rankSum - (pos * (pos + 1)) / 2) / (pos * neg);
}
