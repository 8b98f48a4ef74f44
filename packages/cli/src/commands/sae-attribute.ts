import { methodByName } from '@relp/methods';
import { formatTable } from '@relp/report';
import { featureNodeId, featureNodesFromResult, selectFeatureNodes } from '@relp/sae';
import type { CliIo } from '../io.js';
import { checkWritable, toJson, writeFileAtomic } from '../output.js';
import { type CommonOptions, cliSettings, loadData, openSession, sessionProvenance } from '../session.js';
import { attributeOne, loadSaes, positionsOf, saeInfo } from './sae-common.js';

export interface SaeAttributeCommandOptions extends CommonOptions {
  readonly sae: string;
  readonly method: string;
  readonly positions: string;
  readonly normalize?: boolean;
  readonly direction?: string;
  readonly igSteps?: number;
  readonly maxBatchRows?: number;
  readonly top: number;
  readonly out?: string;
}

/** `relp sae attribute`: feature and error scores at every SAE site with one method; result.json. */
export async function saeAttributeCommand(o: SaeAttributeCommandOptions, io: CliIo): Promise<void> {
  const m = methodByName(o.method);
  const settings = cliSettings([m], o);
  const positions = positionsOf(o.positions);
  if (o.out) checkWritable(o.out, o.force === true, 'output file');
  const s = await openSession(o, io);
  const data = await loadData(s, o);
  const saes = await loadSaes(o.sae, io.cwd);
  try {
    const r = await attributeOne(s, data.batch, saes, m, {
      positions,
      normalize: o.normalize === true,
      ...(o.direction ? { direction: o.direction } : {}),
      settings,
    });
    const prov = sessionProvenance(s, data, { method: m.name, saes: saeInfo(saes), positions });
    const nodes = featureNodesFromResult(r);
    const top = selectFeatureNodes(nodes, { mode: 'top-k', value: o.top });
    const out = { ...r, top: top.map((n) => ({ id: featureNodeId(n), ...n })), provenance: prov };
    if (o.out) await writeFileAtomic(o.out, toJson(out), o.force === true);
    if (o.json) {
      io.stdout.write(toJson(out));
      return;
    }
    const table = {
      header: ['node', 'score'],
      rows: top.map((n) => [featureNodeId(n), n.score.toPrecision(4)]),
    };
    io.stdout.write(
      `${m.name}: m(clean) = ${r.metric.clean.toPrecision(5)}, m(corrupt) = ${r.metric.corrupt.toPrecision(5)}; ` +
        `${r.cost.forwardPasses} forward + ${r.cost.backwardPasses} backward passes, ${r.cost.seconds.toFixed(2)} s\n` +
        `${formatTable(table)}\n${o.out ? `wrote ${o.out}\n` : ''}`,
    );
  } finally {
    for (const x of saes) x.dispose();
  }
}
