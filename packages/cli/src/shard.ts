/**
 * Shards: `--shard i/n` scores the i-th of n contiguous runs of batches (i from 0). The data set's batches are
 * numbered from its first pair (batch k holds pairs k·size … (k+1)·size − 1), and shard i takes batches
 * ⌊i·K/n⌋ … ⌊(i+1)·K/n⌋ − 1 of the K batches: every batch belongs to exactly one shard, shards differ by at
 * most one batch, and the batches are the unsplit run's, so merged shards add up the same batch results.
 */
import { badInput } from '@relp/core/errors';

export interface Shard {
  readonly index: number;
  readonly count: number;
}

/** The most shards a data set may be split into. */
export const MAX_SHARDS = 100_000;

export const WHOLE: Shard = { index: 0, count: 1 };

/** Parses `i/n` (0 ≤ i < n). */
export function parseShard(spec: string): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(spec);
  const index = m ? Number(m[1]) : Number.NaN;
  const count = m ? Number(m[2]) : Number.NaN;
  if (!m || count < 1 || count > MAX_SHARDS || index >= count) {
    throw badInput(
      `--shard must be i/n with 0 ≤ i < n ≤ ${MAX_SHARDS} (got ${spec}); in a SLURM array use --array=0-<n−1>`,
      { shard: spec },
    );
  }
  return { index, count };
}

export const shardName = (s: Shard): string => `${s.index}/${s.count}`;

/** The batches [first, end) of a shard, of a data set of `records` pairs in batches of `size`. */
export function shardBatches(s: Shard, records: number, size: number): { first: number; end: number } {
  const batches = Math.ceil(records / size);
  return {
    first: Math.floor((s.index * batches) / s.count),
    end: Math.floor(((s.index + 1) * batches) / s.count),
  };
}
