import type { SiteScores } from '../attribution/types.js';
import { badInput } from '../errors.js';
import type { Granularity, SiteKey } from '../sites.js';

/**
 * A circuit node (docs/method.md §14): a site at one layer and position, optionally one head or neuron of it
 * (`unit`). Nodes are identified by `nodeId`: "attn_out.3@5", "z.3@5#2".
 */
export interface CircuitNode {
  /** A model site's name, or a run-time site's (e.g. an SAE's features). */
  readonly site: string;
  readonly layer: number;
  readonly position: number;
  /** Head (z, result, q, k, v), neuron (mlp_pre, mlp_post) or feature index; absent for whole-position nodes. */
  readonly unit?: number;
}

export interface ScoredNode extends CircuitNode {
  readonly score: number;
}

export function nodeId(n: CircuitNode): string {
  return `${nodeKey(n)}@${n.position}${n.unit === undefined ? '' : `#${n.unit}`}`;
}

/** The site key a node sits at. */
export function nodeKey(n: CircuitNode): SiteKey {
  return `${n.site}.${n.layer}`;
}

/** Every cell of an attribution result's grids as a scored node (the node universe of a circuit search). */
export function nodesFromScores(
  scores: SiteScores,
  granularity: Partial<Record<string, Granularity>> = {},
): ScoredNode[] {
  const out: ScoredNode[] = [];
  for (const [site, grid] of Object.entries(scores)) {
    if (grid === undefined) continue;
    const g = granularity[site] ?? 'position';
    grid.forEach((row, layer) => {
      row.forEach((cell: number | number[], position: number) => {
        if (Array.isArray(cell)) {
          if (g === 'position')
            throw badInput(`scores of ${site} have a unit axis but granularity 'position'`);
          cell.forEach((score, unit) => {
            out.push({ site, layer, position, unit, score });
          });
        } else {
          out.push({ site, layer, position, score: cell });
        }
      });
    });
  }
  return out;
}

export type SelectBy = 'abs' | 'signed';

export interface SelectOptions {
  /** `threshold`: keep nodes whose |score| (or score) ≥ value; `top-k`: keep the value largest. */
  readonly mode: 'threshold' | 'top-k';
  readonly value: number;
  /** Rank by |score| (default) or by the signed score (only nodes that push the metric up count). */
  readonly by?: SelectBy;
}

const key = (by: SelectBy) => (n: { readonly score: number }) => (by === 'abs' ? Math.abs(n.score) : n.score);

/**
 * Selects a circuit from scored nodes (of any kind: an SAE's feature nodes too). Ties in top-k are broken by the
 * nodes' order (stable).
 */
export function selectNodes<N extends { readonly score: number }>(
  nodes: readonly N[],
  options: SelectOptions,
): N[] {
  const by = options.by ?? 'abs';
  if (by !== 'abs' && by !== 'signed')
    throw badInput(`node selection by '${String(by)}': choose abs or signed`);
  const k = key(by);
  if (options.mode === 'threshold') {
    if (!Number.isFinite(options.value))
      throw badInput(`threshold must be a finite number (got ${options.value})`);
    return nodes.filter((n) => Number.isFinite(n.score) && k(n) >= options.value);
  }
  if (options.mode === 'top-k') {
    if (!Number.isInteger(options.value) || options.value < 0) {
      throw badInput(`top-k needs a non-negative integer (got ${options.value})`);
    }
    return nodes
      .map((n, i) => [n, i] as const)
      .filter(([n]) => Number.isFinite(n.score))
      .sort((a, b) => k(b[0]) - k(a[0]) || a[1] - b[1])
      .slice(0, options.value)
      .map(([n]) => n);
  }
  throw badInput(`unknown selection mode '${String(options.mode)}': choose threshold or top-k`);
}

/** `steps` thresholds spaced logarithmically from `hi` down to `lo` (default 1 … 1e-4, 15 steps). */
export function logThresholds(lo = 1e-4, hi = 1, steps = 15): number[] {
  if (!(lo > 0 && hi > lo && Number.isInteger(steps) && steps >= 2)) {
    throw badInput(`thresholds need 0 < lo < hi and at least 2 steps (got ${lo}, ${hi}, ${steps})`);
  }
  const a = Math.log10(lo);
  const b = Math.log10(hi);
  return Array.from({ length: steps }, (_, i) => 10 ** (b - ((b - a) * i) / (steps - 1)));
}
