/**
 * One method's scores over a data set scored in batches: what each batch adds, kept so that batches, shards and
 * resumed runs combine exactly into the result one pass over every batch gives.
 *
 * A batch's result is a mean over its n pairs (docs/method.md §6), of the raw metric. The totals keep n times
 * each of its numbers (scores, the metric on clean and corrupt, IG's completeness delta) as exact sums
 * (exact-sum.ts), and the pair count; the result divides by the total count, and, when normalised, by
 * m_clean − m_corrupt of the whole data set. Positions are absolute (pairs are right-padded, and padding after a
 * prompt scores exactly 0), so a batch's grid adds cell by cell into the first T_b positions of the totals.
 */
import type { AttributionResult, Direction, Granularity } from '@relp/core';
import { badInput } from '@relp/core/errors';
import { addExact, exactValue, mergeExact } from './exact-sum.js';

/** Exact partials of one cell. */
type Cell = number[];

export interface MethodTotals {
  readonly method: string;
  readonly label: string;
  readonly rules: string;
  readonly direction: Direction;
  readonly metricName: string;
  /** Pairs scored. */
  pairs: number;
  /** Batches that scored at least one pair. */
  batches: number;
  metricClean: Cell;
  metricCorrupt: Cell;
  /** Per site: [layer][position][unit] cells (one unit when the grid has no unit axis). */
  readonly scores: Record<string, Cell[][][]>;
  /** Whether a site's grid has a unit axis (head, neuron, feature). */
  readonly units: Record<string, boolean>;
  readonly granularity: Record<string, Granularity>;
  convergenceDelta?: Cell;
  readonly cost: {
    forwardPasses: number;
    backwardPasses: number;
    forwardEquivalents: Cell;
    seconds: Cell;
    peakTensorBytes: number;
  };
  /** The longest batch's positions, and the smallest first difference (-1 before any batch). */
  seqLen: number;
  firstDiff: number;
}

export function emptyTotals(r: AttributionResult): MethodTotals {
  return {
    method: r.method,
    label: r.label,
    rules: r.rules,
    direction: r.direction,
    metricName: r.metric.name,
    pairs: 0,
    batches: 0,
    metricClean: [],
    metricCorrupt: [],
    scores: {},
    units: {},
    granularity: {},
    cost: { forwardPasses: 0, backwardPasses: 0, forwardEquivalents: [], seconds: [], peakTensorBytes: 0 },
    seqLen: 0,
    firstDiff: -1,
  };
}

function cellsOf(t: MethodTotals, site: string, layers: number, units: number): Cell[][][] {
  let g = t.scores[site];
  if (!g) {
    g = Array.from({ length: layers }, () => []);
    t.scores[site] = g;
  }
  if (g.length !== layers) throw new Error(`internal: ${site} has ${g.length} layers, a batch ${layers}`);
  for (const row of g) {
    if (row.length > 0 && row[0]!.length !== units)
      throw new Error(`internal: ${site} has ${row[0]!.length} units, a batch ${units}`);
  }
  return g;
}

/** Grows a layer's positions to `positions` with empty cells of `units` units. */
function grow(row: Cell[][], positions: number, units: number): void {
  while (row.length < positions) row.push(Array.from({ length: units }, () => []));
}

/** Adds one batch's result (a mean over `n` pairs, raw metric) to the totals. */
export function addBatch(t: MethodTotals, r: AttributionResult, n: number): void {
  if (r.metric.normalized) throw new Error('internal: batches are scored on the raw metric');
  t.pairs += n;
  t.batches += 1;
  addExact(t.metricClean, r.metric.clean * n);
  addExact(t.metricCorrupt, r.metric.corrupt * n);
  for (const [site, grid] of Object.entries(r.scores)) {
    const layersGrid = grid as unknown as (number | number[])[][];
    const hasUnits = Array.isArray(layersGrid[0]?.[0]);
    const units = hasUnits ? (layersGrid[0]![0] as number[]).length : 1;
    const cells = cellsOf(t, site, layersGrid.length, units);
    t.units[site] = hasUnits;
    t.granularity[site] = r.granularity[site]!;
    layersGrid.forEach((row, l) => {
      grow(cells[l]!, row.length, units);
      row.forEach((v, p) => {
        const target = cells[l]![p]!;
        if (hasUnits) for (const [u, x] of (v as number[]).entries()) addExact(target[u]!, x * n);
        else addExact(target[0]!, (v as number) * n);
      });
    });
  }
  if (r.convergenceDelta !== undefined) {
    t.convergenceDelta ??= [];
    addExact(t.convergenceDelta, r.convergenceDelta * n);
  }
  t.cost.forwardPasses += r.cost.forwardPasses;
  t.cost.backwardPasses += r.cost.backwardPasses;
  addExact(t.cost.forwardEquivalents, r.cost.forwardEquivalents);
  addExact(t.cost.seconds, r.cost.seconds);
  t.cost.peakTensorBytes = Math.max(t.cost.peakTensorBytes, r.cost.peakTensorBytes);
  t.seqLen = Math.max(t.seqLen, r.seqLen);
  t.firstDiff = t.firstDiff < 0 ? r.firstDiff : Math.min(t.firstDiff, r.firstDiff);
}

/** Adds totals `from` (another shard, or batches of the same run) into `into`, exactly. */
export function mergeTotals(into: MethodTotals, from: MethodTotals): void {
  into.pairs += from.pairs;
  into.batches += from.batches;
  mergeExact(into.metricClean, from.metricClean);
  mergeExact(into.metricCorrupt, from.metricCorrupt);
  for (const [site, grid] of Object.entries(from.scores)) {
    const units = grid.find((row) => row.length > 0)?.[0]?.length ?? 1;
    const cells = cellsOf(into, site, grid.length, units);
    into.units[site] = from.units[site]!;
    into.granularity[site] = from.granularity[site]!;
    grid.forEach((row, l) => {
      grow(cells[l]!, row.length, units);
      row.forEach((unitCells, p) => {
        for (const [u, c] of unitCells.entries()) mergeExact(cells[l]![p]![u]!, c);
      });
    });
  }
  if (from.convergenceDelta) {
    into.convergenceDelta ??= [];
    mergeExact(into.convergenceDelta, from.convergenceDelta);
  }
  into.cost.forwardPasses += from.cost.forwardPasses;
  into.cost.backwardPasses += from.cost.backwardPasses;
  mergeExact(into.cost.forwardEquivalents, from.cost.forwardEquivalents);
  mergeExact(into.cost.seconds, from.cost.seconds);
  into.cost.peakTensorBytes = Math.max(into.cost.peakTensorBytes, from.cost.peakTensorBytes);
  into.seqLen = Math.max(into.seqLen, from.seqLen);
  if (from.firstDiff >= 0)
    into.firstDiff = into.firstDiff < 0 ? from.firstDiff : Math.min(into.firstDiff, from.firstDiff);
}

/** What `relp attribute` reports of a method, from its totals (the fields of an AttributionResult). */
export interface FinishedMethod {
  readonly method: string;
  readonly label: string;
  readonly rules: string;
  readonly direction: Direction;
  readonly metric: { name: string; clean: number; corrupt: number; normalized: boolean };
  readonly scores: Record<string, number[][] | number[][][]>;
  readonly granularity: Record<string, Granularity>;
  readonly cost: {
    forwardPasses: number;
    backwardPasses: number;
    forwardEquivalents: number;
    seconds: number;
    peakTensorBytes: number;
  };
  readonly batchSize: number;
  readonly seqLen: number;
  readonly firstDiff: number;
  readonly convergenceDelta?: number;
}

/**
 * The result of the whole data set: every sum divided by the pair count (and by m_clean − m_corrupt when
 * normalised); grids padded with zeros to the longest batch's positions. BAD_INPUT when no pair was scored or the
 * metric cannot be normalised.
 */
export function finishTotals(t: MethodTotals, normalize: boolean): FinishedMethod {
  if (t.pairs === 0) throw badInput('no usable pairs in the data set: nothing was scored');
  const mean = (c: readonly number[]) => exactValue(c) / t.pairs;
  const clean = mean(t.metricClean);
  const corrupt = mean(t.metricCorrupt);
  const span = clean - corrupt;
  if (normalize && (span === 0 || !Number.isFinite(span))) {
    throw badInput(`cannot normalise: the metric is ${clean} on clean and ${corrupt} on corrupt prompts`);
  }
  const value = (c: readonly number[]) => (normalize ? mean(c) / span : mean(c));
  const scores: Record<string, number[][] | number[][][]> = {};
  for (const [site, grid] of Object.entries(t.scores)) {
    const units = grid.find((row) => row.length > 0)?.[0]?.length ?? 1;
    for (const row of grid) grow(row, t.seqLen, units);
    scores[site] = t.units[site]
      ? grid.map((row) => row.map((cells) => cells.map(value)))
      : grid.map((row) => row.map((cells) => value(cells[0]!)));
  }
  return {
    method: t.method,
    label: t.label,
    rules: t.rules,
    direction: t.direction,
    metric: { name: t.metricName, clean, corrupt, normalized: normalize },
    scores,
    granularity: t.granularity,
    cost: {
      forwardPasses: t.cost.forwardPasses,
      backwardPasses: t.cost.backwardPasses,
      forwardEquivalents: exactValue(t.cost.forwardEquivalents),
      seconds: exactValue(t.cost.seconds),
      peakTensorBytes: t.cost.peakTensorBytes,
    },
    batchSize: t.pairs,
    seqLen: t.seqLen,
    firstDiff: t.firstDiff,
    ...(t.convergenceDelta ? { convergenceDelta: value(t.convergenceDelta) } : {}),
  };
}
