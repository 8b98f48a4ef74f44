import { resolve } from 'node:path';
import { badInput, isRelpError } from '@relp/core/errors';
import { type CliIo, Log } from '../io.js';
import { checkWritable, toJson, writeFileAtomic } from '../output.js';
import { readPartial } from '../partial.js';
import { shellQuote } from '../provenance.js';
import { attributeResult, checkShards, combine } from '../result.js';
import { shardName } from '../shard.js';
import { printSummary } from './attribute.js';

export interface MergeCommandOptions {
  readonly out: string;
  readonly force?: boolean;
  readonly json?: boolean;
  readonly quiet?: boolean;
}

/**
 * `relp merge`: the partial results of every shard of one `relp attribute --shard i/n` run → the result.json the
 * unsplit run writes (scores, metric, counts, dropped pairs), its provenance listing the shards. Partials of
 * different runs (model, method, settings, data), shards given twice or missing, and unfinished shards are
 * BAD_INPUT with `details.reason` saying which.
 */
export async function mergeCommand(
  paths: readonly string[],
  o: MergeCommandOptions,
  io: CliIo,
): Promise<void> {
  const log = new Log(io, o.quiet === true);
  checkWritable(o.out, o.force === true, 'output file');
  const parts = [];
  for (const path of paths) {
    try {
      parts.push({ path, partial: await readPartial(resolve(io.cwd, path)) });
    } catch (e) {
      if (isRelpError(e)) throw e;
      throw badInput(`cannot read partial result ${path}: ${(e as Error).message}`, { path });
    }
  }
  const ordered = checkShards(parts);
  const combined = combine(ordered);
  const first = ordered[0]!;
  const shards = ordered.map((p) => ({
    shard: shardName(p.shard),
    batches: [p.batches.first, p.batches.end],
    pairs: p.totals[0]?.pairs ?? 0,
    command: p.provenance.command,
    backend: p.provenance.backend,
    createdAt: p.provenance.createdAt,
  }));
  const { shard: _shard, ...runProvenance } = first.provenance as Record<string, unknown>;
  const result = attributeResult(first, combined, {
    ...runProvenance,
    command: ['relp', ...io.argv.slice(2)].map(shellQuote).join(' '),
    createdAt: new Date().toISOString(),
    shards,
  });
  await writeFileAtomic(o.out, toJson(result), o.force === true);
  log.info(
    `merged ${ordered.length} shard${ordered.length > 1 ? 's' : ''} of ${String(first.identity.data.pairs)} pairs`,
  );
  if (o.json) {
    io.stdout.write(toJson(result));
    return;
  }
  printSummary(result as unknown as Parameters<typeof printSummary>[0], o.out, io);
}
