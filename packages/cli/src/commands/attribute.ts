import { rm } from 'node:fs/promises';
import type { Direction } from '@relp/core';
import { badInput } from '@relp/core/errors';
import { methodByName } from '@relp/methods';
import { fmt, formatTable } from '@relp/report';
import { DEFAULT_BATCH_SIZE, removeOnUserError, runBatched } from '../batched.js';
import type { CliIo } from '../io.js';
import { checkWritable, toJson, writeFileAtomic } from '../output.js';
import { partialJson } from '../partial.js';
import { provenance } from '../provenance.js';
import { attributeResult, combine } from '../result.js';
import { type CommonOptions, cliSettings, openSession } from '../session.js';
import { parseShard, WHOLE } from '../shard.js';
import { parseSites } from '../sites.js';
import { openPairSource } from '../stream.js';

export interface AttributeCommandOptions extends CommonOptions {
  readonly method: string;
  readonly sites: string;
  readonly normalize?: boolean;
  readonly direction?: string;
  readonly out?: string;
  readonly igSteps?: number;
  readonly maxBatchRows?: number;
  /** Pairs per batch (default DEFAULT_BATCH_SIZE). */
  readonly batchSize?: number;
  /** `i/n`: score only the i-th of n shards and write a partial result for `relp merge`. */
  readonly shard?: string;
  /** false (--no-resume): ignore and replace a checkpoint instead of going on from it. */
  readonly resume?: boolean;
}

/** The checkpoint a batched run writes beside its output after every batch. */
export const checkpointPath = (out: string): string => `${out}.partial.json`;

export function parseDirection(d: string | undefined): Direction | undefined {
  if (d === undefined) return undefined;
  if (d !== 'denoising' && d !== 'noising')
    throw badInput(`--direction must be denoising or noising (got ${d})`);
  return d;
}

/**
 * `relp attribute`: one method on one data set → result.json (method, metric, scores, cost, provenance). The
 * pairs are scored in batches (--batch-size) with a checkpoint after each (resumed when the run is started again);
 * with --shard i/n only the i-th of n shards, into a partial result for `relp merge`.
 */
export async function attributeCommand(o: AttributeCommandOptions, io: CliIo): Promise<void> {
  const spec = methodByName(o.method);
  const settings = cliSettings([spec], o);
  const sites = parseSites(o.sites);
  const direction = parseDirection(o.direction);
  const shard = o.shard === undefined ? undefined : parseShard(o.shard);
  if (shard && !o.out) throw badInput('--shard writes a partial result: pass --out <partial.json>');
  if (!o.out && !o.json) throw badInput('pass --out result.json (or --json to print the result)');
  if (o.out) checkWritable(o.out, o.force === true, 'output file');
  const s = await openSession(o, io);
  const source = await openPairSource(o, io.cwd);
  const prov = provenance(
    io.argv,
    s.loaded.source,
    s.loaded.model.architecture,
    s.loaded.tokenizerSource,
    source.description,
    s.backend,
    { method: spec.name, ...(shard ? { shard: o.shard } : {}) },
  );
  const partial = await runBatched(s, {
    source,
    methods: [spec],
    sites,
    ...(direction ? { direction } : {}),
    normalize: o.normalize === true,
    settings,
    batchSize: o.batchSize ?? DEFAULT_BATCH_SIZE,
    shard: shard ?? WHOLE,
    ...(o.out ? { checkpoint: checkpointPath(o.out) } : {}),
    resume: o.resume !== false,
    ...(o.bos === undefined ? {} : { bos: o.bos }),
    command: 'attribute',
    provenance: prov,
  });
  if (shard) {
    await writeFileAtomic(o.out!, partialJson(partial), o.force === true);
    await rm(checkpointPath(o.out!), { force: true });
    const t = partial.totals[0];
    s.log.info(
      `shard ${o.shard}: ${t?.pairs ?? 0} pairs scored in ${partial.batches.end - partial.batches.first} batches; wrote ${o.out} (combine the shards with relp merge)`,
    );
    if (o.json) io.stdout.write(toJson({ out: o.out, shard: o.shard, pairs: t?.pairs ?? 0 }));
    return;
  }
  const combined = combine([partial]);
  const result = await removeOnUserError(o.out ? checkpointPath(o.out) : undefined, async () =>
    attributeResult(partial, combined, prov),
  );
  const r = result as unknown as {
    method: string;
    metric: { clean: number; corrupt: number; normalized: boolean };
    scores: Record<string, unknown>;
    granularity: Record<string, string>;
  };
  if (o.out) {
    await writeFileAtomic(o.out, toJson(result), o.force === true);
    await rm(checkpointPath(o.out), { force: true });
  }
  if (o.json) {
    io.stdout.write(toJson(result));
    return;
  }
  printSummary(r, o.out, io);
}

/** The summary table of a result: per site, the sum of scores and the largest cell. */
export function printSummary(
  r: {
    method: string;
    metric: { clean: number; corrupt: number; normalized: boolean };
    scores: Record<string, unknown>;
    granularity: Record<string, string>;
  },
  out: string | undefined,
  io: CliIo,
): void {
  const rows = Object.entries(r.scores).map(([site, grid]) => {
    const flat = (grid as unknown[]).flat(2) as number[];
    let best = 0;
    flat.forEach((v, i) => {
      if (Math.abs(v) > Math.abs(flat[best]!)) best = i;
    });
    const g = grid as unknown[][];
    const positions = g[0]?.length ?? 1;
    const units = Array.isArray(g[0]?.[0]) ? (g[0]![0] as unknown[]).length : 1;
    const layer = Math.floor(best / (positions * units));
    const pos = Math.floor(best / units) % positions;
    const unit = units > 1 ? ` ${r.granularity[site]} ${best % units}` : '';
    return [site, fmt(flat.reduce((a, b) => a + b, 0)), `L${layer} pos ${pos}${unit}`, fmt(flat[best] ?? 0)];
  });
  io.stdout.write(
    `${r.method}: m(clean) = ${fmt(r.metric.clean, 4)}, m(corrupt) = ${fmt(r.metric.corrupt, 4)}` +
      `${r.metric.normalized ? ' (scores of the normalised metric)' : ''}\n` +
      `${formatTable({ header: ['site', 'sum of scores', 'largest cell', 'score'], rows })}\n` +
      (out ? `wrote ${out}\n` : ''),
  );
}
