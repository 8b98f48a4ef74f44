/**
 * `relp reproduce`: the RelP paper's IOI table in one command. Each of the paper's models that relp supports is
 * loaded in turn (a hub id, or a local folder given with --model-dir), activation patching, AtP and RelP score it
 * on IOI exactly as `relp compare --methods atp,relp --normalize` does (runBatched, then the exact totals), and the
 * Pearson correlations with activation patching per site type are printed beside the paper's published values.
 * A model that cannot be had (no hub, not cached) is a row of the table, not the end of the run.
 */
import { resolve } from 'node:path';
import { BACKEND_PREFERENCE, compareGrids, type ScoreGrid } from '@relp/core';
import { badInput, ErrorCodes, isRelpError, RelpError } from '@relp/core/errors';
import { comparedMethods, parseMethodList } from '@relp/methods';
import { fixed, formatTable, renderHtml, type Table } from '@relp/report';
import { type Command, Option } from 'commander';
import { DEFAULT_BATCH_SIZE, runBatched } from '../batched.js';
import type { DataOptions } from '../data.js';
import type { CliIo } from '../io.js';
import { Log } from '../io.js';
import { checkWritable, toJson, writeFolderAtomic } from '../output.js';
import { cliVersion, provenance, shellQuote } from '../provenance.js';
import { combine, nothingScored } from '../result.js';
import { openSession, type Session } from '../session.js';
import { WHOLE } from '../shard.js';
import { parseSites } from '../sites.js';
import { openPairSource } from '../stream.js';
import { finishTotals } from '../totals.js';
import type { CommandHelpers } from './rules.js';

/** The site types of the paper's table, in its order. */
export const REPRODUCE_SITES = ['resid_pre', 'attn_out', 'mlp_out'] as const;
export type ReproduceSite = (typeof REPRODUCE_SITES)[number];
/** The methods of the paper's table, each against activation patching. */
export const REPRODUCE_METHODS = ['atp', 'relp'] as const;
export type ReproduceMethod = (typeof REPRODUCE_METHODS)[number];

/** Published Pearson correlations with activation patching; a site the paper gives no value for is absent. */
export type PublishedValues = Readonly<
  Record<ReproduceMethod, Readonly<Partial<Record<ReproduceSite, number>>>>
>;

export interface PaperModel {
  /** The name --models and --model-dir take. */
  readonly name: string;
  readonly label: string;
  /** The Hugging Face hub id loaded by default. */
  readonly hub: string;
  /** The paper's values on its IOI setting (none known: every cell prints "—"). */
  readonly published?: PublishedValues;
  /** Why relp cannot run this model yet (listed, never run). */
  readonly unsupported?: string;
}

/** The RelP paper's models (Jafari et al. 2025) and the values of its IOI table that are known here. */
export const PAPER_MODELS: readonly PaperModel[] = [
  {
    name: 'gpt2',
    label: 'GPT-2 small',
    hub: 'openai-community/gpt2',
    published: {
      atp: { resid_pre: 0.753, attn_out: 0.979, mlp_out: 0.195 },
      relp: { resid_pre: 0.968, attn_out: 0.962, mlp_out: 0.992 },
    },
  },
  { name: 'gpt2-medium', label: 'GPT-2 medium', hub: 'openai-community/gpt2-medium' },
  {
    name: 'gpt2-large',
    label: 'GPT-2 large',
    hub: 'openai-community/gpt2-large',
    published: { atp: { mlp_out: 0.006 }, relp: { mlp_out: 0.956 } },
  },
  { name: 'pythia-70m', label: 'Pythia-70M', hub: 'EleutherAI/pythia-70m' },
  { name: 'pythia-410m', label: 'Pythia-410M', hub: 'EleutherAI/pythia-410m' },
  { name: 'qwen2-0.5b', label: 'Qwen2-0.5B', hub: 'Qwen/Qwen2-0.5B' },
  {
    name: 'gemma-2-2b',
    label: 'Gemma-2-2B',
    hub: 'google/gemma-2-2b',
    unsupported: 'relp has no Gemma 2 family yet',
  },
];

/**
 * The RelP paper's public demo on GPT-2 small (the 8 IOI prompts of task ioi-demo; docs/method.md §13), the values
 * `relp demo` quotes: run on GPT-2 small beside the paper's table when no --data replaces IOI.
 */
export const REFERENCE_DEMO: PublishedValues = {
  atp: { resid_pre: 0.735, attn_out: 0.982, mlp_out: 0.436 },
  relp: { resid_pre: 0.962, attn_out: 0.961, mlp_out: 0.989 },
};

export interface ReproduceCommandOptions {
  readonly models: string;
  readonly n: number;
  readonly seed: number;
  readonly data?: string;
  readonly modelDir: readonly string[];
  readonly out: string;
  readonly backend?: string;
  readonly force?: boolean;
  readonly json?: boolean;
  readonly quiet?: boolean;
}

/** One prompt set a model is scored on, and the published values its numbers are set beside. */
interface PromptSet {
  readonly name: string;
  readonly data: DataOptions;
  readonly published?: PublishedValues;
}

export interface ReproduceCell {
  readonly method: ReproduceMethod;
  readonly site: ReproduceSite;
  readonly pearson: number;
  readonly spearman: number;
  /** The paper's value, or null when it is not known. */
  readonly published: number | null;
  /** measured − published, or null. */
  readonly difference: number | null;
}

export interface ReproduceSetResult {
  readonly name: string;
  /** Pairs scored (0 when the set failed). */
  readonly pairs: number;
  readonly metric?: { readonly clean: number; readonly corrupt: number };
  readonly cells: readonly ReproduceCell[];
  /** Why the set could not be scored (e.g. the model's tokenizer cannot spell the prompts). */
  readonly error?: string;
}

export interface ReproduceModelResult {
  readonly name: string;
  readonly label: string;
  /** What was loaded: the hub id or the --model-dir folder. */
  readonly ref: string;
  /** ok: at least one prompt set scored; failed: the model loaded but none did. */
  readonly status: 'ok' | 'not available' | 'not supported yet' | 'failed';
  readonly reason?: string;
  readonly sets: readonly ReproduceSetResult[];
}

/** --models: "all" or names of PAPER_MODELS (hub ids too), in the paper's order. */
export function parseModelList(list: string): PaperModel[] {
  const names = list
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '');
  if (names.length === 0) throw badInput('--models: name at least one model, or all');
  if (names.includes('all')) return [...PAPER_MODELS];
  const unknown = names.filter((n) => !PAPER_MODELS.some((m) => matches(m, n)));
  if (unknown.length > 0) {
    throw badInput(
      `--models: unknown model ${unknown.map((u) => `'${u}'`).join(', ')}; the paper's models are ${PAPER_MODELS.map((m) => m.name).join(', ')} (or all)`,
      { unknown },
    );
  }
  return PAPER_MODELS.filter((m) => names.some((n) => matches(m, n)));
}

function matches(m: PaperModel, name: string): boolean {
  return m.name === name.toLowerCase() || m.hub.toLowerCase() === name.toLowerCase();
}

/** --model-dir name=PATH (repeatable): a local folder or GGUF file in place of a model's hub id. */
export function parseModelDirs(entries: readonly string[], cwd: string): Map<string, string> {
  const dirs = new Map<string, string>();
  for (const e of entries) {
    const eq = e.indexOf('=');
    const name = eq > 0 ? e.slice(0, eq).trim() : '';
    const path = eq > 0 ? e.slice(eq + 1).trim() : '';
    if (name === '' || path === '') throw badInput(`--model-dir ${e}: expected name=PATH (e.g. gpt2=./gpt2)`);
    const m = PAPER_MODELS.find((x) => matches(x, name));
    if (!m) {
      throw badInput(
        `--model-dir ${e}: unknown model '${name}'; the paper's models are ${PAPER_MODELS.map((x) => x.name).join(', ')}`,
      );
    }
    if (dirs.has(m.name)) throw badInput(`--model-dir: ${m.name} given twice`);
    dirs.set(m.name, resolve(cwd, path));
  }
  return dirs;
}

/** The prompt sets: IOI as `relp demo` generates it (or --data), plus the reference demo's 8 prompts on GPT-2 small. */
function promptSets(m: PaperModel, o: ReproduceCommandOptions): PromptSet[] {
  if (o.data !== undefined) {
    return [{ name: `--data ${o.data}`, data: { data: o.data }, ...published(m.published) }];
  }
  return [
    {
      name: `ioi n=${o.n} seed=${o.seed}`,
      data: { task: 'ioi', n: o.n, seed: o.seed, corruption: 's2-swap' },
      ...published(m.published),
    },
    ...(m.name === 'gpt2'
      ? [{ name: 'ioi-demo (8 reference prompts)', data: { task: 'ioi-demo' }, published: REFERENCE_DEMO }]
      : []),
  ];
}

const published = (p: PublishedValues | undefined) => (p ? { published: p } : {});

/** The compare command's pipeline on one prompt set: batched exact totals, then agreement per site type. */
async function scoreSet(
  s: Session,
  set: PromptSet,
  io: CliIo,
): Promise<ReproduceModelResult['sets'][number]> {
  const methods = parseMethodList(REPRODUCE_METHODS.join(','));
  const run = comparedMethods(methods);
  const sites = parseSites(REPRODUCE_SITES.join(','));
  const source = await openPairSource(set.data, io.cwd);
  const prov = provenance(
    io.argv,
    s.loaded.source,
    s.loaded.model.architecture,
    s.loaded.tokenizerSource,
    source.description,
    s.backend,
    { methods: [...REPRODUCE_METHODS], sites: REPRODUCE_SITES.join(',') },
  );
  const partial = await runBatched(s, {
    source,
    methods: run,
    sites,
    normalize: true,
    settings: {},
    batchSize: DEFAULT_BATCH_SIZE,
    shard: WHOLE,
    resume: false,
    command: 'reproduce',
    warmUp: true,
    provenance: prov,
  });
  const combined = combine([partial]);
  const finished = combined.totals.map((t) =>
    t ? finishTotals(t, true) : nothingScored(combined, source.what),
  );
  const reference = finished[0]!;
  const cells: ReproduceCell[] = [];
  REPRODUCE_METHODS.forEach((method, i) => {
    const r = finished[i + 1]!;
    for (const site of REPRODUCE_SITES) {
      const a = compareGrids(r.scores[site] as ScoreGrid, reference.scores[site] as ScoreGrid);
      const p = set.published?.[method][site];
      cells.push({
        method,
        site,
        pearson: a.pearson,
        spearman: a.spearman,
        published: p ?? null,
        difference: p === undefined ? null : a.pearson - p,
      });
    }
  });
  return {
    name: set.name,
    pairs: reference.batchSize,
    metric: { clean: reference.metric.clean, corrupt: reference.metric.corrupt },
    cells,
  };
}

/** Runs one model: its load failing (NOT_AVAILABLE, a bad folder) or its data failing is its row, not the end. */
async function runModel(
  m: PaperModel,
  ref: string,
  o: ReproduceCommandOptions,
  io: CliIo,
  log: Log,
): Promise<ReproduceModelResult> {
  const base = { name: m.name, label: m.label, ref };
  if (m.unsupported) return { ...base, status: 'not supported yet', reason: m.unsupported, sets: [] };
  let s: Session;
  try {
    s = await openSession(
      {
        model: ref,
        ...(o.backend === undefined ? {} : { backend: o.backend }),
        ...(o.quiet === undefined ? {} : { quiet: o.quiet }),
      },
      io,
    );
  } catch (e) {
    if (!isRelpError(e) || !e.isUserError) throw e;
    log.warn(
      `${m.label}: not available (${e.code}): ${e.message}` +
        (dirsHint(m, ref) ? ` — without hub access: --model-dir ${m.name}=PATH` : ''),
    );
    return { ...base, status: 'not available', reason: `${e.code}: ${e.message}`, sets: [] };
  }
  const sets: ReproduceSetResult[] = [];
  try {
    for (const set of promptSets(m, o)) {
      log.info(`— ${m.label}: ${set.name}`);
      try {
        sets.push(await scoreSet(s, set, io));
      } catch (e) {
        // A set the model cannot run (its tokenizer cannot spell the prompts, too long a context) is its row.
        if (!isRelpError(e) || !e.isUserError) throw e;
        s.progress.stop();
        log.warn(`${m.label}, ${set.name}: failed (${e.code}): ${e.message}`);
        sets.push({ name: set.name, pairs: 0, cells: [], error: `${e.code}: ${e.message}` });
      }
    }
  } finally {
    s.loaded.model.dispose();
  }
  const failed = sets.every((x) => x.error !== undefined);
  return {
    ...base,
    status: failed ? 'failed' : 'ok',
    ...(failed ? { reason: 'no prompt set could be scored' } : {}),
    sets,
  };
}

/** Whether the model came from the hub (then --model-dir is the way round an unreachable hub). */
const dirsHint = (m: PaperModel, ref: string): boolean => ref === m.hub;

const DASH = '—';
const signed = (x: number): string => `${x >= 0 ? '+' : ''}${fixed(x)}`;

/** A table cell's short form of a reason: its first line, at most 100 characters (the full text is in the JSON). */
function brief(reason: string): string {
  const line = reason.split('\n')[0]!;
  return line.length > 100 ? `${line.slice(0, 99)}…` : line;
}

/**
 * The table: one row per model × prompt set × method × site; a model or prompt set that did not run is one row
 * saying why (in the note column).
 */
export function reproduceTable(results: readonly ReproduceModelResult[]): Table {
  const rows: (string | number)[][] = [];
  const notRun = (label: string, set: string, note: string) =>
    rows.push([label, set, '', '', DASH, DASH, DASH, brief(note)]);
  for (const r of results) {
    for (const set of r.sets) {
      if (set.error !== undefined) notRun(r.label, set.name, `failed: ${set.error}`);
      for (const c of set.cells) {
        rows.push([
          r.label,
          set.name,
          c.method,
          c.site,
          c.published === null ? DASH : fixed(c.published),
          fixed(c.pearson),
          c.difference === null ? DASH : signed(c.difference),
          '',
        ]);
      }
    }
    if (r.status === 'not available' || r.status === 'not supported yet')
      notRun(r.label, '', `${r.status}: ${r.reason ?? ''}`);
  }
  return {
    header: ['model', 'prompts', 'method', 'site', 'published', 'measured', 'difference', 'note'],
    rows,
    align: ['left', 'left', 'left', 'left', 'right', 'right', 'right', 'left'],
  };
}

export async function reproduceCommand(o: ReproduceCommandOptions, io: CliIo): Promise<void> {
  const models = parseModelList(o.models);
  const dirs = parseModelDirs(o.modelDir, io.cwd);
  checkWritable(o.out, o.force === true, 'output folder');
  const log = new Log(io, o.quiet === true);
  const results: ReproduceModelResult[] = [];
  for (const [i, m] of models.entries()) {
    const ref = dirs.get(m.name) ?? m.hub;
    log.info(`[${i + 1}/${models.length}] ${m.label} (${ref})`);
    results.push(await runModel(m, ref, o, io, log));
  }
  const ran = results.filter((r) => r.status === 'ok').length;
  const table = reproduceTable(results);
  const setting =
    o.data === undefined
      ? `IOI, ${o.n} prompts generated with seed ${o.seed} (Wang et al. templates, s2-swap corruption), as \`relp demo\` generates them`
      : `the pairs of --data ${o.data} (in place of IOI)`;
  const notes = [
    `Pearson correlation over all layer × position cells of AtP and RelP with activation patching, per site type, on ${setting}; ` +
      'scores of the normalised logit difference, computed as `relp compare --methods atp,relp --normalize` computes them.',
    'Published: the RelP paper (Jafari et al. 2025) on GPT-2 small, and on GPT-2 large for mlp_out; "—" where no value is known. ' +
      'The ioi-demo rows of GPT-2 small are set beside the values of the paper’s public demo on its 8 IOI prompts.',
  ];
  const prov = {
    relpVersion: cliVersion(),
    command: ['relp', ...io.argv.slice(2)].map(shellQuote).join(' '),
    models: results.map((r) => ({ name: r.name, ref: r.ref })),
  };
  const json = {
    settings: {
      ...(o.data === undefined
        ? { task: 'ioi', n: o.n, seed: o.seed, corruption: 's2-swap' }
        : { data: o.data }),
      methods: [...REPRODUCE_METHODS],
      sites: [...REPRODUCE_SITES],
      normalize: true,
    },
    models: results,
    provenance: prov,
  };
  // The table's notes are cut short; the full reasons go on the page (and in reproduce.json).
  const whyNot = results.flatMap((r) => [
    ...(r.status === 'ok' ? [] : [`${r.label} (${r.ref}): ${r.status}: ${r.reason ?? ''}`]),
    ...r.sets.filter((x) => x.error !== undefined).map((x) => `${r.label}, ${x.name}: ${x.error}`),
  ]);
  const html = renderHtml({
    title: 'relp reproduce: the RelP paper’s IOI table',
    subtitle: 'AtP and RelP against activation patching, measured here beside the published values',
    sections: [
      { heading: 'Pearson correlation with activation patching', paragraphs: notes, tables: [{ table }] },
      ...(whyNot.length > 0 ? [{ heading: 'Not run, and why', paragraphs: whyNot }] : []),
    ],
    provenance: prov,
  });
  await writeFolderAtomic(o.out, { 'reproduce.json': toJson(json), 'report.html': html }, o.force === true);
  if (o.json) io.stdout.write(toJson({ out: o.out, ...json }));
  else io.stdout.write(`${notes.join('\n')}\n\n${formatTable(table)}\n\nwrote ${o.out}/report.html\n`);
  if (ran === 0) {
    throw new RelpError(
      ErrorCodes.NotAvailable,
      `no model could be run (${results.map((r) => `${r.name}: ${r.status}`).join('; ')}): with no hub access, point --model-dir name=PATH at local folders`,
    );
  }
}

const collect = (v: string, prev: string[]): string[] => [...prev, v];

export function registerReproduceCommand(program: Command, io: CliIo, h: CommandHelpers): void {
  program
    .command('reproduce')
    .description(
      'the RelP paper’s IOI table: AtP and RelP vs activation patching on its models (hub ids or local folders), beside the published values',
    )
    .option(
      '--models <list>',
      `models, comma-separated, or all: ${PAPER_MODELS.map((m) => m.name).join(', ')}`,
      'all',
    )
    .option('--n <count>', 'generated IOI prompts', h.int('--n', 1, 100_000), 100)
    .option('--seed <seed>', 'seed of the generated prompts', h.int('--seed', 0, 2 ** 32 - 1), 0)
    .option('--data <pairs.jsonl>', 'score these pairs instead of IOI (every model)')
    .option(
      '--model-dir <name=PATH>',
      'load a model from a local folder (or GGUF file) instead of its hub id; repeatable',
      collect,
      [],
    )
    .addOption(
      new Option(
        '--backend <name>',
        'tfjs backend (default: RELP_BACKEND, else the first that works)',
      ).choices([...BACKEND_PREFERENCE, 'auto']),
    )
    .option('--out <folder>', 'output folder: reproduce.json and report.html', 'relp-reproduce')
    .option('--force', 'replace an existing output')
    .option('--json', 'print machine-readable results on stdout')
    .option('-q, --quiet', 'no progress bars or messages')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  $ pnpm relp reproduce\n' +
        '  $ pnpm relp reproduce --models gpt2,pythia-70m --n 40\n' +
        '  $ pnpm relp reproduce --models gpt2 --model-dir gpt2=./gpt2-small --out repro --force\n' +
        '\nExit codes: 0 when at least one model ran, 2 when none could.\n',
    )
    .action(async (o) => reproduceCommand(o, io));
}
