import type { LanguageModel } from '@relp/core';
import { loadModel } from '@relp/loader';
import { nodeLoadOptions } from '@relp/loader/node';
import { auditRules, type RuleAudit, zeroBiasFamily } from '@relp/methods';
import { MODEL_FAMILIES } from '@relp/models';
import { buildRuleAuditReport, formatTable, type RuleAuditView } from '@relp/report';
import { type Command, InvalidArgumentError } from 'commander';
import type { CliIo } from '../io.js';
import { checkWritable, writeFolderAtomic } from '../output.js';
import { type CommonOptions, loadData, openSession, type Session, sessionProvenance } from '../session.js';
import { parseSites } from '../sites.js';
import { parseDirection } from './attribute.js';

export interface RulesAuditOptions extends CommonOptions {
  readonly split: number;
  readonly sites: string;
  readonly out: string;
  readonly normalize?: boolean;
  readonly direction?: string;
  readonly topK?: number;
  readonly maxBatchRows?: number;
}

/** The helpers main.ts defines for every command (shared flags and count parsers). */
export interface CommandHelpers {
  readonly common: (cmd: Command) => Command;
  readonly metricFlags: (cmd: Command) => Command;
  readonly int: (name: string, min?: number, max?: number) => (v: string) => number;
}

/** --split: a fraction strictly between 0 and 1. */
function fraction(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !(n > 0 && n < 1))
    throw new InvalidArgumentError(`--split must be a number between 0 and 1, exclusive (got ${v})`);
  return n;
}

/** `relp rules …`: the rule audit (docs/method.md §11.2). */
export function registerRulesCommand(program: Command, io: CliIo, h: CommandHelpers): void {
  const rules = program.command('rules').description('LRP rule sets: which rules, on which model');
  h.common(h.metricFlags(rules.command('audit')))
    .description(
      'every rule set (presets, the ladder none → LN → +Identity → +Half → +AH, single rules, LN norm subsets) against activation patching on a calibration and a held-out split, with conservation and coverage: report folder (HTML, SVG, JSON)',
    )
    .option(
      '--split <fraction>',
      'fraction of the pairs in the calibration split (the rest is held out)',
      fraction,
      0.5,
    )
    .option(
      '--sites <list>',
      'sites, comma-separated; site:granularity overrides',
      'resid_pre,attn_out,mlp_out',
    )
    .option('--top-k <k>', 'k of the top-k agreement (default 10)', h.int('--top-k', 1, 1_000_000))
    .option(
      '--max-batch-rows <n>',
      'activation patching: rows per forward pass (default 64)',
      h.int('--max-batch-rows', 1, 1_000_000),
    )
    .option('--out <folder>', 'report folder', 'relp-rules')
    .addHelpText(
      'after',
      '\nExamples:\n  $ pnpm relp rules audit --model ./gpt2 --task ioi --n 40 --out ioi-rules\n' +
        '  $ pnpm relp rules audit --model gemma3-270m --data pairs.jsonl --split 0.3 --sites resid_pre,z:head --out g3\n',
    )
    .action(async (o) => rulesAuditCommand(o, io));
}

/** The same checkpoint with every bias zeroed, for the conservation check (a second load of its files). */
async function loadBiasFree(s: Session, io: CliIo): Promise<LanguageModel> {
  const loaded = await loadModel(s.loaded.source.path, {
    ...nodeLoadOptions(io.env),
    families: MODEL_FAMILIES.map(zeroBiasFamily),
  });
  return loaded.model;
}

/** A site's label in the report: its name, with the granularity when it is not per position. */
function siteLabel(site: string, granularity: string | undefined): string {
  return granularity === undefined || granularity === 'position' ? site : `${site}:${granularity}`;
}

/** The report's view of each audited rule set. */
export function auditViews(audit: RuleAudit): { sites: string[]; rows: RuleAuditView[] } {
  const sites: string[] = [];
  const rows = audit.rows.map((row): RuleAuditView => {
    const pearson: Record<string, { calibration: number; heldOut: number }> = {};
    for (const a of row.agreement) {
      const label = siteLabel(a.site, a.granularity);
      if (!sites.includes(label)) sites.push(label);
      pearson[label] = {
        calibration: Number.NaN,
        heldOut: Number.NaN,
        ...pearson[label],
        [a.split]: a.agreement.pearson,
      };
    }
    const c = row.coverage;
    const subset = c.normsTreated.length > 0 && c.normsPlain.length > 0;
    return {
      name: row.name,
      group: row.group,
      ...(row.sameAs ? { sameAs: row.sameAs } : {}),
      ...(row.skipped ? { skipped: row.skipped } : {}),
      pearson,
      conservation: row.conservation.relativeError,
      treated: c.entries.filter((e) => e.rule !== null).map((e) => `${e.slot}:${e.kind} → ${e.rule}`),
      plain: [
        ...c.entries.filter((e) => e.rule === null).map((e) => `${e.slot}:${e.kind}`),
        ...(subset ? c.normsPlain.map((n) => `norm ${n}`) : []),
      ],
      normsTreated: c.normsTreated,
    };
  });
  return { sites, rows };
}

export async function rulesAuditCommand(o: RulesAuditOptions, io: CliIo): Promise<void> {
  const sites = parseSites(o.sites);
  const direction = parseDirection(o.direction);
  checkWritable(o.out, o.force === true, 'output folder');
  const s = await openSession(o, io);
  const data = await loadData(s, o);
  const biasFree = await loadBiasFree(s, io);
  let audit: RuleAudit;
  try {
    audit = await auditRules(s.loaded.model, data.batch, {
      sites,
      split: o.split,
      biasFree,
      ...(o.normalize ? { normalize: true } : {}),
      ...(direction ? { direction } : {}),
      ...(o.topK === undefined ? {} : { topK: o.topK }),
      ...(o.maxBatchRows === undefined ? {} : { maxBatchRows: o.maxBatchRows }),
      onProgress: (what, p) => s.progress.labelled(what)(p),
    });
  } finally {
    biasFree.dispose();
  }
  s.progress.stop();
  const { sites: siteLabels, rows } = auditViews(audit);
  const m = audit.reference.calibration.metric;
  const notes = [
    `${data.batch.size} pairs: ${audit.calibrationPairs.length} for calibration, ${audit.heldOutPairs.length} held out ` +
      `(split ${audit.fraction}; pair i is in calibration when ⌊(i+1)·f⌋ > ⌊i·f⌋). Metric ${m.name}` +
      `${m.normalized ? ', normalised' : ''}; activation patching ran once per split.`,
    'Conservation: Σ_b |S_b − m_b| / Σ_b |m_b| on the clean prompts of a copy of the model with every bias zeroed, ' +
      'S_b = Σ resid_pre.0 · ∂̃m_b/∂resid_pre.0 (0 for rules that conserve relevance).',
    'A row marked (= name) runs the same backward pass as that row on this model and reuses its numbers.',
    ...(data.droppedNote ? [data.droppedNote] : []),
  ];
  const provenance = sessionProvenance(s, data, { sites: o.sites, split: o.split });
  const json = {
    architecture: audit.architecture,
    split: audit.fraction,
    calibrationPairs: audit.calibrationPairs,
    heldOutPairs: audit.heldOutPairs,
    metric: { calibration: audit.reference.calibration.metric, heldOut: audit.reference.heldOut.metric },
    rows: audit.rows,
    provenance,
  };
  const report = buildRuleAuditReport({
    title: `relp rules audit · ${s.loaded.model.architecture} · ${String(data.description.task ?? data.description.path)}`,
    sites: siteLabels,
    rows,
    notes,
    provenance,
    json,
  });
  await writeFolderAtomic(o.out, report.files, o.force === true);
  if (o.json) {
    const summary = rows.map((r) => ({
      ruleSet: r.name,
      ...(r.sameAs ? { sameAs: r.sameAs } : {}),
      pearson: r.pearson,
      conservation: r.conservation,
      plain: r.plain,
    }));
    io.stdout.write(`${JSON.stringify({ out: o.out, split: audit.fraction, rows: summary }, null, 1)}\n`);
    return;
  }
  io.stdout.write(`${notes[0]}\n\n${formatTable(report.table)}\n\nwrote ${o.out}/report.html\n`);
}
