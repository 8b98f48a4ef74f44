import type { Cost, Direction, Progress } from '../attribution/types.js';
import type { Metric } from '../metrics.js';
import type { RuleSet } from '../slots.js';
import type { EdgeGraph } from './graph.js';

/**
 * The edge attribution methods (docs/method.md §17): `eap` (EAP; RelP on edges when `rules` are given),
 * `eap-ig-inputs` and `eap-ig-activations` (integrated gradients along the input embeddings, or along each upstream
 * layer's activations), and `edge-patching` (exact: the ground truth, on a sample of edges).
 */
export type EdgeMethodKind = 'eap' | 'eap-ig-inputs' | 'eap-ig-activations' | 'edge-patching';

export const EDGE_METHOD_KINDS: readonly EdgeMethodKind[] = [
  'eap',
  'eap-ig-inputs',
  'eap-ig-activations',
  'edge-patching',
];

export interface EdgeAttributeOptions {
  readonly method: EdgeMethodKind;
  /** LRP rules of the backward passes (gradient methods only): `eap` with rules is RelP on edges. */
  readonly rules?: RuleSet;
  /** Integrated gradients' steps N (α_k = k/N, k = 1..N); default 10. */
  readonly steps?: number;
  readonly direction?: Direction;
  /** Scores of the normalised metric (m − m_corrupt)/(m_clean − m_corrupt). */
  readonly normalize?: boolean;
  /** Default: logit difference at the last position. */
  readonly metric?: Metric;
  /** Scores summed over positions (default), or one per position. */
  readonly positions?: 'sum' | 'each';
  /**
   * The edges to score, as `u->v` names (EAP-IG's). Required for `edge-patching` (one patched copy per edge, or per
   * edge and position); for the gradient methods a subset of the result (default: every edge).
   */
  readonly edges?: readonly string[];
  /** The most patched batch rows per pass (edge patching; the steps of IG); default 64. */
  readonly maxBatchRows?: number;
  /**
   * The most bytes the method's largest tensors may take together (the upstream differences, the downstream
   * gradients and the score matrix); a larger graph is refused before any run (BAD_INPUT). Default 2 GiB.
   */
  readonly maxBytes?: number;
  readonly label?: string;
  readonly onProgress?: (p: Progress) => void;
  readonly signal?: AbortSignal;
}

/** One method's edge scores. */
export interface EdgeScores {
  readonly method: EdgeMethodKind;
  /** "eap", "relp", "relp-ah", "eap-ig-inputs", … */
  readonly label: string;
  readonly rules: string;
  readonly direction: Direction;
  readonly metric: {
    readonly name: string;
    readonly clean: number;
    readonly corrupt: number;
    readonly normalized: boolean;
  };
  readonly graph: EdgeGraph;
  /** The scored edges' names, `u->v`. */
  readonly edges: readonly string[];
  /** [u, v] indices into graph.upstream / graph.downstream, aligned with `edges`. */
  readonly index: readonly (readonly [number, number])[];
  readonly positions: 'sum' | 'each';
  /** Per edge: a number ('sum'), or one per position [T] ('each'; 0 before the first difference). */
  readonly scores: readonly number[] | readonly (readonly number[])[];
  readonly batchSize: number;
  readonly seqLen: number;
  readonly firstDiff: number;
  readonly cost: Cost;
}
