import {
  badInput,
  type CircuitEvaluation,
  CircuitEvaluator,
  type CircuitNode,
  type CircuitScorer,
  type LanguageModel,
  type Metric,
  type PairBatch,
  type Progress,
  parseSiteKey,
  type SelectOptions,
  type SiteKey,
  type SweepPoint,
  selectNodes,
  sweepThresholds,
} from '@relp/core';
import type { FeatureAttributionResult, PositionMode } from './attribution.js';
import type { SparseAutoencoder } from './sae.js';
import { SaeSplice } from './splice.js';

/**
 * A node of a sparse feature circuit: one SAE feature, or the SAE's error term, at a site; at one position, or
 * (position undefined) at every position.
 */
export interface FeatureNode {
  readonly key: SiteKey;
  readonly kind: 'feature' | 'error';
  /** Feature index (0 for the error). */
  readonly index: number;
  readonly position?: number;
}

export interface ScoredFeatureNode extends FeatureNode {
  readonly score: number;
}

/** "resid_post.3/f123", "resid_post.3/err", with "@5" for a position. */
export function featureNodeId(n: FeatureNode): string {
  return `${n.key}/${n.kind === 'error' ? 'err' : `f${n.index}`}${n.position === undefined ? '' : `@${n.position}`}`;
}

/** Every feature and error node of an attribution result, with its score (the node universe). */
export function featureNodesFromResult(result: FeatureAttributionResult): ScoredFeatureNode[] {
  const out: ScoredFeatureNode[] = [];
  for (const s of result.sites) {
    if (result.positions === 'sum') {
      (s.features as number[]).forEach((score, index) => {
        out.push({ key: s.key, kind: 'feature', index, score });
      });
      out.push({ key: s.key, kind: 'error', index: 0, score: s.error as number });
    } else {
      (s.features as number[][]).forEach((row, position) => {
        row.forEach((score, index) => {
          out.push({ key: s.key, kind: 'feature', index, position, score });
        });
        out.push({ key: s.key, kind: 'error', index: 0, position, score: (s.error as number[])[position]! });
      });
    }
  }
  return out;
}

/** How a feature circuit is selected from scored nodes (core's node selection). */
export type FeatureSelect = SelectOptions;

/** Selects a circuit from scored feature nodes (ties in top-k broken by the nodes' order). */
export function selectFeatureNodes(
  nodes: readonly ScoredFeatureNode[],
  options: FeatureSelect,
): ScoredFeatureNode[] {
  return selectNodes(nodes, options);
}

export type FeatureCircuitEvaluation = CircuitEvaluation;

export interface FeatureCircuitEvalOptions {
  /** Nodes per feature summed over positions (default) or per position. */
  readonly positions?: PositionMode;
  readonly metric?: Metric;
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: Progress) => void;
}

/**
 * Faithfulness and completeness of sparse feature circuits (Marks et al. 2024; docs/method.md §15), by core's circuit
 * evaluator on the SAEs' sites. The node universe is every feature and error node of the SAEs; ablated nodes take
 * their mean over the discovery set's clean prompts (per position, over the prompts long enough to have it;
 * positions of the evaluation batch beyond the discovery set's longest prompt take the mean over all its tokens).
 * Runs are on the evaluation batch's clean prompts. m(M) is the run with nothing ablated (the model itself: the
 * splice is exact), m(∅) the run with every node ablated. A node summed over positions is the feature (or error)
 * at every position. Each `evaluate` costs two forward passes.
 */
export class FeatureCircuitEvaluator implements CircuitScorer<FeatureNode> {
  private constructor(
    private readonly core: CircuitEvaluator,
    private readonly splice: SaeSplice,
    readonly batch: PairBatch,
    readonly positions: PositionMode,
  ) {}

  get mFull(): number {
    return this.core.mFull;
  }

  get mEmpty(): number {
    return this.core.mEmpty;
  }

  get forwardPasses(): number {
    return this.core.forwardPasses;
  }

  /** `discovery`: where the means come from; `evaluation`: the held-out pairs the circuit is scored on. */
  static async create(
    model: LanguageModel,
    discovery: PairBatch,
    evaluation: PairBatch,
    saes: readonly SparseAutoencoder[],
    options: FeatureCircuitEvalOptions = {},
  ): Promise<FeatureCircuitEvaluator> {
    const positions = options.positions ?? 'sum';
    if (positions !== 'sum' && positions !== 'each') throw badInput(`positions must be 'sum' or 'each'`);
    const splice = new SaeSplice(model, saes);
    const universe = universeOf(splice, positions, evaluation.seqLen).flatMap((n) =>
      circuitNodes(splice, n, evaluation.seqLen),
    );
    const core = await CircuitEvaluator.create(model, evaluation, universe, {
      ablation: 'mean',
      meansFrom: discovery,
      ...(options.metric ? { metric: options.metric } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      extraSites: splice.extraSites,
      hooks: splice.hooks(),
    });
    return new FeatureCircuitEvaluator(core, splice, evaluation, positions);
  }

  /** Every node the evaluator ablates: features and errors of each SAE (per position of the evaluation batch). */
  universe(): FeatureNode[] {
    return universeOf(this.splice, this.positions, this.batch.seqLen);
  }

  /** m(C), m(M∖C), faithfulness and completeness of a circuit. */
  async evaluate(circuit: Iterable<FeatureNode>): Promise<FeatureCircuitEvaluation> {
    const ids = new Set<string>();
    const nodes: CircuitNode[] = [];
    for (const n of circuit) {
      const s = this.splice.sites.get(n.key);
      if (!s) throw badInput(`node ${featureNodeId(n)}: no SAE at ${n.key}`);
      if ((n.position === undefined) !== (this.positions === 'sum')) {
        throw badInput(
          `node ${featureNodeId(n)}: the evaluator's nodes are ${this.positions === 'sum' ? 'summed over positions' : 'per position'}`,
        );
      }
      if (n.kind === 'feature' && (!Number.isInteger(n.index) || n.index < 0 || n.index >= s.sae.dSae)) {
        throw badInput(`node ${featureNodeId(n)}: feature outside 0..${s.sae.dSae - 1}`);
      }
      if (n.position !== undefined && (n.position < 0 || n.position >= this.batch.seqLen)) {
        throw badInput(`node ${featureNodeId(n)}: position outside 0..${this.batch.seqLen - 1}`);
      }
      const id = featureNodeId(n.kind === 'error' ? { ...n, index: 0 } : n);
      if (ids.has(id)) continue;
      ids.add(id);
      nodes.push(...circuitNodes(this.splice, n, this.batch.seqLen));
    }
    return { ...(await this.core.evaluate(nodes)), nodes: ids.size };
  }

  dispose(): void {
    this.core.dispose();
  }
}

function universeOf(splice: SaeSplice, positions: PositionMode, T: number): FeatureNode[] {
  const out: FeatureNode[] = [];
  const ps = positions === 'each' ? Array.from({ length: T }, (_, t) => t) : [undefined];
  for (const [key, s] of splice.sites) {
    for (const p of ps) {
      const at = p === undefined ? {} : { position: p };
      for (let i = 0; i < s.sae.dSae; i++) out.push({ key, kind: 'feature', index: i, ...at });
      out.push({ key, kind: 'error', index: 0, ...at });
    }
  }
  return out;
}

/** The core circuit nodes of a feature node: at its position, or (summed over positions) at each position. */
function circuitNodes(splice: SaeSplice, n: FeatureNode, T: number): CircuitNode[] {
  const s = splice.sites.get(n.key)!;
  const site = n.kind === 'feature' ? s.features.name : s.error.name;
  const unit = n.kind === 'feature' ? { unit: n.index } : {};
  const ps = n.position === undefined ? Array.from({ length: T }, (_, t) => t) : [n.position];
  return ps.map((position) => ({ site, layer: 0, position, ...unit }));
}

export type FeatureSweepPoint = SweepPoint;

/**
 * The curve against the number of nodes: each threshold (or k) selects a circuit, evaluated by faithfulness and
 * completeness; a selection equal to the previous one reuses its evaluation.
 */
export async function sweepFeatureCircuits(
  evaluator: FeatureCircuitEvaluator,
  scored: readonly ScoredFeatureNode[],
  values: readonly number[],
  options: { mode?: 'threshold' | 'top-k'; by?: 'abs' | 'signed'; onProgress?: (p: Progress) => void } = {},
): Promise<FeatureSweepPoint[]> {
  return sweepThresholds(evaluator, scored, values, { ...options, phase: 'circuits' });
}

/** One top-activating context of a feature: tokens of a text window, the position, the activation. */
export interface FeatureContext {
  readonly tokens: readonly string[];
  readonly position: number;
  readonly activation: number;
}

/**
 * The feature circuit as a Graphviz digraph: one cluster per SAE site (in layer order), one box per node (red for
 * positive, blue for negative scores, darker for larger |score|), the error nodes as ellipses, the feature's top
 * context (the token in brackets) in its label, and edges from each site's nodes to the next site's (node-level
 * circuits carry no edge weights; edges show the direction information can flow).
 */
export function featureCircuitToDot(
  nodes: readonly ScoredFeatureNode[],
  options: {
    title?: string;
    contexts?: ReadonlyMap<string, readonly FeatureContext[]>;
    tokenLabels?: readonly string[];
    maxEdges?: number;
  } = {},
): string {
  const order: Record<string, number> = {
    resid_pre: 0,
    attn_out: 1,
    resid_mid: 2,
    mlp_out: 3,
    resid_post: 4,
  };
  const rank = (k: SiteKey) => {
    const { site, layer } = parseSiteKey(k);
    return layer * 10 + (order[site] ?? 5);
  };
  const esc = (s: string) => s.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n');
  const maxAbs = Math.max(1e-30, ...nodes.map((n) => Math.abs(n.score)));
  const lines = [
    'digraph features {',
    '  rankdir=BT;',
    '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
  ];
  if (options.title) lines.push(`  label="${esc(options.title)}"; labelloc=t;`);
  const bySite = new Map<SiteKey, ScoredFeatureNode[]>();
  for (const n of nodes) bySite.set(n.key, [...(bySite.get(n.key) ?? []), n]);
  const sites = [...bySite.keys()].sort((a, b) => rank(a) - rank(b));
  sites.forEach((key, i) => {
    lines.push(`  subgraph cluster_${i} {`, `    label="${esc(key)}"; color="#cccccc";`);
    for (const n of bySite.get(key)!) {
      const t = Math.abs(n.score) / maxAbs;
      const hex = Math.round(255 - 180 * t)
        .toString(16)
        .padStart(2, '0');
      const fill = n.score >= 0 ? `#ff${hex}${hex}` : `#${hex}${hex}ff`;
      const pos =
        n.position === undefined
          ? ''
          : ` @${n.position}${options.tokenLabels?.[n.position] !== undefined ? ` ${JSON.stringify(options.tokenLabels[n.position])}` : ''}`;
      let label = `${n.kind === 'error' ? 'error' : `f${n.index}`}${pos}\\n${n.score.toPrecision(3)}`;
      const ctx = options.contexts?.get(featureNodeId({ ...n, position: undefined } as FeatureNode))?.[0];
      if (ctx && n.kind === 'feature') {
        const lo = Math.max(0, ctx.position - 6);
        const text = ctx.tokens
          .slice(lo, ctx.position + 2)
          .map((tok, j) => (lo + j === ctx.position ? `[${tok}]` : tok))
          .join('');
        label += `\\n${esc(text.replaceAll('\n', ' ').slice(0, 60))}`;
      }
      const shape = n.kind === 'error' ? ', shape=ellipse' : '';
      lines.push(`    "${esc(featureNodeId(n))}" [label="${label}", fillcolor="${fill}"${shape}];`);
    }
    lines.push('  }');
  });
  const maxEdges = options.maxEdges ?? 1500;
  let edges = 0;
  outer: for (let i = 0; i + 1 < sites.length; i++) {
    for (const a of bySite.get(sites[i]!)!) {
      for (const b of bySite.get(sites[i + 1]!)!) {
        if (a.position !== undefined && b.position !== undefined && b.position < a.position) continue;
        if (edges++ >= maxEdges) break outer;
        lines.push(`  "${esc(featureNodeId(a))}" -> "${esc(featureNodeId(b))}" [color="#99999980"];`);
      }
    }
  }
  lines.push('}', '');
  return lines.join('\n');
}
