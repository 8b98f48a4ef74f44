import type { Direction } from '@relp/core';
import { badInput } from '@relp/core/errors';
import { methodByName } from '@relp/methods';
import { fmt, formatTable } from '@relp/report';
import type { CliIo } from '../io.js';
import { checkWritable, toJson, writeFileAtomic } from '../output.js';
import {
  type CommonOptions,
  cliSettings,
  loadData,
  openSession,
  runMethod,
  sessionProvenance,
} from '../session.js';
import { parseSites } from '../sites.js';

export interface AttributeCommandOptions extends CommonOptions {
  readonly method: string;
  readonly sites: string;
  readonly normalize?: boolean;
  readonly direction?: string;
  readonly out?: string;
  readonly igSteps?: number;
  readonly maxBatchRows?: number;
}

export function parseDirection(d: string | undefined): Direction | undefined {
  if (d === undefined) return undefined;
  if (d !== 'denoising' && d !== 'noising')
    throw badInput(`--direction must be denoising or noising (got ${d})`);
  return d;
}

/** `relp attribute`: one method on one data set → result.json (method, metric, scores, cost, provenance). */
export async function attributeCommand(o: AttributeCommandOptions, io: CliIo): Promise<void> {
  const spec = methodByName(o.method);
  const settings = cliSettings([spec], o);
  const sites = parseSites(o.sites);
  const direction = parseDirection(o.direction);
  if (!o.out && !o.json) throw badInput('pass --out result.json (or --json to print the result)');
  if (o.out) checkWritable(o.out, o.force === true, 'output file');
  const s = await openSession(o, io);
  const data = await loadData(s, o);
  const r = await runMethod(s, data.batch, spec, {
    sites,
    ...(o.normalize ? { normalize: true } : {}),
    ...(direction ? { direction } : {}),
    settings,
  });
  const result = {
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
    tokens: data.labels,
    dropped: data.checked.dropped,
    provenance: sessionProvenance(s, data, { method: r.label, rules: r.rules }),
  };
  if (o.out) await writeFileAtomic(o.out, toJson(result), o.force === true);
  if (o.json) {
    io.stdout.write(toJson(result));
    return;
  }
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
    const unit = units > 1 ? ` ${r.granularity[site as keyof typeof r.granularity]} ${best % units}` : '';
    return [site, fmt(flat.reduce((a, b) => a + b, 0)), `L${layer} pos ${pos}${unit}`, fmt(flat[best] ?? 0)];
  });
  io.stdout.write(
    `${r.label}: m(clean) = ${fmt(r.metric.clean, 4)}, m(corrupt) = ${fmt(r.metric.corrupt, 4)}` +
      `${r.metric.normalized ? ' (scores of the normalised metric)' : ''}\n` +
      `${formatTable({ header: ['site', 'sum of scores', 'largest cell', 'score'], rows })}\n` +
      (o.out ? `wrote ${o.out}\n` : ''),
  );
}
