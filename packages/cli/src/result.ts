/**
 * `relp attribute`'s result.json from partial results: one (an unsplit run, its totals), or every shard of a
 * split run (`relp merge`). Shards must come from the same run (identity), each once, all of them, complete;
 * their totals then add up exactly to the unsplit run's (totals.ts), so the result is the same.
 */
import { badInput } from '@relp/core/errors';
import { type CheckedPairs, type DroppedPair, describeDropped } from '@relp/tasks';
import { identityDifference, isComplete, type Partial } from './partial.js';
import { shardName } from './shard.js';
import { finishTotals, type MethodTotals, mergeTotals } from './totals.js';

export interface Combined {
  readonly totals: (MethodTotals | null)[];
  readonly dropped: DroppedPair[];
  readonly labels: string[] | null;
}

/** Partials of one run, in shard order, checked to cover it once; BAD_INPUT (details.reason) otherwise. */
export function checkShards(parts: readonly { path: string; partial: Partial }[]): Partial[] {
  if (parts.length === 0) throw badInput('no partial results to merge');
  const [first, ...rest] = parts;
  for (const p of rest) {
    const diff = identityDifference(first!.partial.identity, p.partial.identity);
    if (diff) {
      throw badInput(
        `${p.path} and ${first!.path} are from different runs: their ${diff.key} differ (${diff.reason})`,
        { reason: diff.reason, key: diff.key, paths: [first!.path, p.path] },
      );
    }
    if (p.partial.shard.count !== first!.partial.shard.count) {
      throw badInput(
        `${p.path} is shard ${shardName(p.partial.shard)}, ${first!.path} shard ${shardName(first!.partial.shard)}: a run's shards share one n`,
        { reason: 'different-shard-count', paths: [first!.path, p.path] },
      );
    }
  }
  const n = first!.partial.shard.count;
  const byIndex = new Map<number, { path: string; partial: Partial }>();
  for (const p of parts) {
    const other = byIndex.get(p.partial.shard.index);
    if (other) {
      throw badInput(`${p.path} and ${other.path} are both shard ${shardName(p.partial.shard)}`, {
        reason: 'overlapping-shards',
        paths: [other.path, p.path],
      });
    }
    byIndex.set(p.partial.shard.index, p);
  }
  const missing = [...Array(n).keys()].filter((i) => !byIndex.has(i));
  if (missing.length > 0) {
    throw badInput(
      `missing shard${missing.length > 1 ? 's' : ''} ${missing
        .slice(0, 10)
        .map((i) => `${i}/${n}`)
        .join(', ')}${missing.length > 10 ? ', …' : ''} of ${n}`,
      { reason: 'missing-shards', missing },
    );
  }
  const ordered = [...Array(n).keys()].map((i) => byIndex.get(i)!);
  for (const p of ordered) {
    if (!isComplete(p.partial)) {
      const b = p.partial.batches;
      throw badInput(
        `${p.path} (shard ${shardName(p.partial.shard)}) is unfinished: ${b.next - b.first} of ${b.end - b.first} batches; run that shard again to finish it`,
        { reason: 'incomplete-shard', path: p.path },
      );
    }
  }
  return ordered.map((p) => p.partial);
}

/** Adds the partials' totals in shard order (exact sums: any order gives the same result). */
export function combine(parts: readonly Partial[]): Combined {
  const totals: (MethodTotals | null)[] = parts[0]!.totals.map(() => null);
  const dropped: DroppedPair[] = [];
  let labels: string[] | null = null;
  for (const p of parts) {
    p.totals.forEach((t, i) => {
      if (!t) return;
      if (!totals[i]) totals[i] = structuredClone(t);
      else mergeTotals(totals[i]!, t);
    });
    dropped.push(...p.dropped);
    labels ??= p.labels;
  }
  return { totals, dropped, labels };
}

/** The data description with the counts of the whole run. */
export function dataProvenance(
  partial: Partial,
  c: Combined,
  pairs: number,
): Readonly<Record<string, unknown>> {
  const data = (partial.provenance.data ?? {}) as Record<string, unknown>;
  const batches = Math.ceil(Number(partial.identity.data.pairs ?? 0) / partial.identity.batchSize);
  return {
    ...data,
    used: pairs,
    dropped: c.dropped.length,
    bos: partial.identity.bos,
    batchSize: partial.identity.batchSize,
    batches,
  };
}

/** No method scored a pair: every pair was dropped. */
export function nothingScored(c: Combined, what: string): never {
  const droppedByReason: CheckedPairs['droppedByReason'] = {};
  for (const d of c.dropped) droppedByReason[d.reason] = (droppedByReason[d.reason] ?? 0) + 1;
  const first = c.dropped[0];
  const where = first?.line === undefined ? '' : ` (first at line ${first.line}: ${first.detail})`;
  throw badInput(
    `no usable pairs remain in ${what}: ${describeDropped({ pairs: [], dropped: c.dropped, droppedByReason })}${where}`,
    { dropped: c.dropped.length, ...(first?.line === undefined ? {} : { line: first.line }) },
  );
}

/** result.json of `relp attribute` (one method) from the combined totals. */
export function attributeResult(
  partial: Partial,
  c: Combined,
  provenance: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  const t = c.totals[0];
  if (!t) nothingScored(c, 'the data set');
  const r = finishTotals(t, partial.identity.normalize);
  return {
    method: r.label,
    methodKind: r.method,
    rules: r.rules,
    direction: r.direction,
    metric: r.metric,
    scores: r.scores,
    granularity: r.granularity,
    cost: r.cost,
    batchSize: r.batchSize,
    seqLen: r.seqLen,
    firstDiff: r.firstDiff,
    ...(r.convergenceDelta === undefined ? {} : { convergenceDelta: r.convergenceDelta }),
    tokens: c.labels ?? [],
    dropped: c.dropped,
    provenance: { ...provenance, data: dataProvenance(partial, c, r.batchSize), rules: r.rules },
  };
}
